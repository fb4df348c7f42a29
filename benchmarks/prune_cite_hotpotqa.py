"""Issue 17 items 3 and 4 on HotpotQA dev: which paragraphs pruning keeps when the
retriever's order is fused with attribution, and how precise citations are.

Collect (resumable: one JSON per example under ``--out``, skipped when present):

* the 10 paragraphs ranked by all-MiniLM-L6-v2 question-paragraph cosine similarity, as a
  retriever would hand them over (the prompt lists them in that order);
* the model's answer with the library defaults (``Attributor`` defaults: layout, answer
  length), whether it was cut at the length limit;
* per method (loo, at2): the passage-level scores, and the sentence-level scores of every
  answer sentence (the sources are the paragraphs' sentences, as ``cite`` uses them), plus
  each answer sentence's token count;
* the gold: the supporting paragraphs and the character spans of the supporting sentences.

Context gain (``--context-gain``, issue 17 item 4): for every collected example, each answer
sentence's context gain (:mod:`attribot_rag.grounding`) with its own paragraphs, and the
null: the same sentence's gain with the next example's paragraphs in their place (context
that supports nothing in the answer).

Summarise (``--summary``): gold-kept rates at k = 2, 3 for the similarity order, each
attribution alone and each fusion rule of :func:`attribot_rag.pruning.fused_order`; citation
precision and recall before (the old rule) and after (the null-calibrated default) with
:func:`attribot_rag.citations.choose_citations`, the rule ``cite`` itself runs.

    OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python benchmarks/prune_cite_hotpotqa.py \
        --data ../shared/data/hotpotqa/dev.json --offset 0 --n 60 --out benchmarks/prune-cite-hotpotqa
    OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python benchmarks/prune_cite_hotpotqa.py \
        --data ../shared/data/hotpotqa/dev.json --out benchmarks/prune-cite-hotpotqa --context-gain
    .venv/bin/python benchmarks/prune_cite_hotpotqa.py --out benchmarks/prune-cite-hotpotqa --summary
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

METHODS = ("loo", "at2")


def supporting_spans(obj: dict[str, Any]) -> dict[str, list[list[int]]]:
    """Paragraph id -> character spans of its supporting sentences in the passage text
    (``hotpotqa_passages`` joins the sentences and strips the result)."""
    wanted: dict[str, set[int]] = {}
    for title, k in obj["supporting_facts"]:
        wanted.setdefault(title, set()).add(int(k))
    out: dict[str, list[list[int]]] = {}
    for i, (title, sentences) in enumerate(obj["context"]):
        joined = "".join(sentences)
        lead = len(joined) - len(joined.lstrip())
        pos, spans = 0, []
        for k, s in enumerate(sentences):
            if k in wanted.get(title, set()):
                spans.append([max(pos - lead, 0), pos + len(s) - lead])
            pos += len(s)
        if spans:
            out[f"p{i}"] = spans
    return out


def retrieval_order(question: str, passages: list[Any]) -> tuple[list[int], list[float]]:
    from attribot_rag.embeddings import load_embedder

    emb = load_embedder()
    q = emb.encode([question], normalize_embeddings=True)
    p = emb.encode([f"{x.title}: {x.text}" for x in passages], normalize_embeddings=True)
    sims = (p @ q[0]).astype(float)
    order = sorted(range(len(passages)), key=lambda i: (-sims[i], i))
    return order, [float(sims[i]) for i in order]


def passage_record(att: Any, question: str, ps: list[Any], draft: Any, method: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    passage = att.attribute(question, ps, draft, method=method, level="passage")
    return {"passage_scores": [passage.passage_scores()[p.id] for p in ps], "passage_s": time.perf_counter() - t0}


def sentence_record(att: Any, question: str, ps: list[Any], draft: Any, method: str) -> dict[str, Any]:
    """Sentence-level sources (what ``cite`` uses): every answer sentence's scores."""
    t0 = time.perf_counter()
    whole = att.run(att.task(question, ps, draft, level="sentence"), method=method)
    sentences = []
    for span, sa in whole.per_sentence():
        tokens = 0 if sa is None else sa.task.target[1] - sa.task.target[0]
        scores = None if sa is None else [s.score for s in sa.sources]
        sentences.append({"span": list(span), "tokens": tokens, "scores": scores})
    return {
        "sources": [[s.passage_id, s.start, s.end] for s in whole.task.sources],
        "sentences": sentences,
        "sentence_s": time.perf_counter() - t0,
        "sentence_dtype": att.lm.metadata.get("dtype"),  # may differ from the draft's (add_missing)
    }


def collect(args: argparse.Namespace) -> None:
    from attribot_rag import Attributor
    from attribot_rag.evaluation.hotpotqa import parse_example
    from attribot_rag.models import get_model

    data = json.loads(Path(args.data).read_text())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    att = Attributor(get_model(args.model))
    for i in range(args.offset, args.offset + args.n):
        path = out / f"dev-{i:04d}.json"
        ex = parse_example(data[i])
        order, sims = retrieval_order(ex.question, ex.passages)
        ps = [ex.passages[j] for j in order]
        if path.exists():
            add_missing(att, ex.question, ps, path, args)
            continue
        t0 = time.perf_counter()
        draft = att.generate(ex.question, ps)
        eos = att.lm.tokenizer.eos_token_id
        rec = {
            "index": i,
            "id": ex.id,
            "question": ex.question,
            "gold_answer": ex.answer,
            "gold_ids": ex.gold_passage_ids,
            "supporting_spans": supporting_spans(data[i]),
            "order": [p.id for p in ps],
            "similarity": sims,
            "draft": draft.text,
            "draft_tokens": len(draft.token_ids),
            "draft_truncated": draft.token_ids[-1] != eos,
            "generation_s": time.perf_counter() - t0,
            "max_new_tokens": att.max_new_tokens,
            "model": att.model_name,
            "model_dtype": att.lm.metadata.get("dtype"),  # auto: bfloat16 on AVX512-BF16 CPUs
            "methods": {m: passage_record(att, ex.question, ps, draft, m) for m in args.methods},
        }
        for m in args.sentence_methods:
            rec["methods"].setdefault(m, {}).update(sentence_record(att, ex.question, ps, draft, m))
        path.write_text(json.dumps(rec, indent=1))
        print(f"dev {i}: {rec['draft'][:60]!r} gen {rec['generation_s']:.1f}s", flush=True)


def add_missing(att: Any, question: str, ps: list[Any], path: Path, args: argparse.Namespace) -> None:
    """A collected example gets the passage-level (``--methods``) and sentence-level
    (``--sentence-methods``) scores it lacks, for the same answer: re-generated (greedy
    decoding gives the recorded text again, checked) when AT2 is among them, so that it
    reads the generation capture; otherwise the recorded text is attributed as given
    (which also holds when the model now runs in another dtype than at collection)."""
    rec = json.loads(path.read_text())
    have = rec["methods"]
    todo_p = [m for m in args.methods if "passage_scores" not in have.get(m, {})]
    todo_s = [m for m in args.sentence_methods if "sentences" not in have.get(m, {})]
    if not todo_p and not todo_s:
        return
    assert [p.id for p in ps] == rec["order"], "the retrieval order changed since collection"
    draft = rec["draft"]
    if "at2" in todo_p + todo_s:
        draft = att.generate(question, ps)
        assert draft.text == rec["draft"], "the model's answer changed since collection"
    for m in todo_p:
        have.setdefault(m, {}).update(passage_record(att, question, ps, draft, m))
    for m in todo_s:
        have.setdefault(m, {}).update(sentence_record(att, question, ps, draft, m))
    path.write_text(json.dumps(rec, indent=1))
    print(f"dev {rec['index']}: added {todo_p} passage, {todo_s} sentence", flush=True)


def collect_context_gain(args: argparse.Namespace) -> None:
    """Each collected example's answer-sentence context gains: own paragraphs and the null
    (the next dataset example's paragraphs). Resumable: examples that have them are skipped."""
    from attribot_rag import Attributor
    from attribot_rag.evaluation.hotpotqa import parse_example
    from attribot_rag.grounding import span_gain
    from attribot_rag.models import get_model

    data = json.loads(Path(args.data).read_text())
    att = Attributor(get_model(args.model))
    for path in sorted(Path(args.out).glob("dev-*.json")):
        rec = json.loads(path.read_text())
        if "context_gain" in rec:
            continue
        spans = next(m["sentences"] for m in rec["methods"].values() if "sentences" in m)
        ex = parse_example(data[rec["index"]])
        by_id = {p.id: p for p in ex.passages}
        own = [by_id[i] for i in rec["order"]]
        other = parse_example(data[rec["index"] + 1]).passages
        t0 = time.perf_counter()
        gains = {}
        for name, ps in (("own", own), ("null", other)):
            task = att.task(ex.question, ps, rec["draft"], level="sentence")
            gains[name] = [None if s["scores"] is None else span_gain(task, task.response.token_slice(tuple(s["span"])))
                           for s in spans]
        rec["context_gain"] = {**gains, "model": att.model_name, "dtype": att.lm.metadata.get("dtype"),
                               "seconds": time.perf_counter() - t0}
        path.write_text(json.dumps(rec, indent=1))
        print(f"dev {rec['index']}: own {gains['own']} null {gains['null']}", flush=True)


# --------------------------------------------------------------------------- summary


def load(out: Path, extra: list[str] = ()) -> list[dict[str, Any]]:
    """The examples of ``out``, with the method records of the same examples in the
    ``extra`` folders merged in (a second run, e.g. LOO on fewer examples; the answers
    must match)."""
    records = {json.loads(p.read_text())["index"]: json.loads(p.read_text()) for p in sorted(out.glob("dev-*.json"))}
    for folder in extra:
        for p in sorted(Path(folder).glob("dev-*.json")):
            rec = json.loads(p.read_text())
            base = records.get(rec["index"])
            if base is None:
                continue
            assert base["draft"] == rec["draft"] and base["order"] == rec["order"], f"dev {rec['index']} differs"
            for m, v in rec["methods"].items():
                base["methods"].setdefault(m, {}).update(v)
    return [records[i] for i in sorted(records)]


def kept_rates(records: list[dict[str, Any]], rank_fn: Any, k: int) -> dict[str, float]:
    one = both = 0
    for r in records:
        kept = {r["order"][i] for i in rank_fn(r)[:k]}
        hits = len(kept & set(r["gold_ids"]))
        one += hits >= 1
        both += hits >= 2
    return {"at_least_one": one / len(records), "both": both / len(records)}


def pruning_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Gold-kept rates per ranking rule, on the examples every method of the rule has."""
    from attribot_rag.pruning import FUSIONS, fused_order

    methods = [m for m in METHODS if any("passage_scores" in r["methods"].get(m, {}) for r in records)]
    out: dict[str, Any] = {}
    for subset in methods:
        have = [r for r in records if "passage_scores" in r["methods"].get(subset, {})]
        rules: dict[str, Any] = {"similarity": lambda r: list(range(len(r["order"])))}
        for m in [x for x in methods if all("passage_scores" in r["methods"].get(x, {}) for r in have)]:
            for f in FUSIONS:
                if f != "retrieval":
                    rules[f"{m} {f}"] = lambda r, m=m, f=f: fused_order(r["methods"][m]["passage_scores"], fusion=f)
        out[f"examples with {subset}"] = {
            "n": len(have),
            "rates": {name: {f"k={k}": kept_rates(have, fn, k) for k in (2, 3)} for name, fn in rules.items()},
        }
    return out


def null_scores(records: list[dict[str, Any]], method: str) -> list[float]:
    """The null: each answer sentence's scores for the sentences of non-gold paragraphs
    (paragraphs with no supporting fact), per answer-sentence token for LOO."""
    from attribot_rag.citations import PER_TOKEN_METHODS

    out = []
    for r in records:
        m = r["methods"][method]
        for sent in m["sentences"]:
            if sent["scores"] is None:
                continue
            scale = max(sent["tokens"], 1) if method in PER_TOKEN_METHODS else 1
            out += [v / scale for v, src in zip(sent["scores"], m["sources"])
                    if v is not None and src[0] not in r["supporting_spans"]]
    return out


def citation_counts(records: list[dict[str, Any]], method: str, settings: dict[str, Any]) -> dict[str, float]:
    """Citation precision/recall: a citation is one (answer sentence, source sentence) pair.
    Passage level: correct when the cited sentence's paragraph holds a supporting fact;
    recall = gold paragraphs cited at least once / gold paragraphs. Sentence level: correct
    when the cited sentence overlaps a supporting sentence; recall = supporting sentences
    cited / supporting sentences."""
    from attribot_rag.citations import choose_citations

    cites = p_ok = s_ok = 0
    gold_p = gold_s = hit_p = hit_s = 0
    for r in records:
        m = r["methods"][method]
        sources = m["sources"]
        chosen = choose_citations([(s["scores"], s["tokens"]) for s in m["sentences"]], **_gated(r, settings))
        cited = {i for c in chosen for i in c}
        support = r["supporting_spans"]

        def is_support(i: int) -> bool:
            pid, a, b = sources[i]
            return any(a < e and s < b for s, e in support.get(pid, []))

        for c in chosen:
            for i in c:
                cites += 1
                p_ok += sources[i][0] in support
                s_ok += is_support(i)
        gold_p += len(support)
        hit_p += len({sources[i][0] for i in cited} & set(support))
        gold_s += sum(len(v) for v in support.values())
        hit_s += sum(
            any(sources[i][0] == pid and sources[i][1] < e and s < sources[i][2] for i in cited)
            for pid, spans in support.items()
            for s, e in spans
        )
    cited_sentences = sum(bool(c) for r in records for c in choose_citations(
        [(s["scores"], s["tokens"]) for s in r["methods"][method]["sentences"]], **_gated(r, settings)))
    n_sent = sum(len(r["methods"][method]["sentences"]) for r in records)
    return {
        "citations": cites,
        "answer_sentences": n_sent,
        "cited_sentences": cited_sentences,
        "passage_precision": p_ok / cites if cites else None,
        "passage_recall": hit_p / gold_p,
        "sentence_precision": s_ok / cites if cites else None,
        "sentence_recall": hit_s / gold_s,
    }


def _gated(rec: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """The settings with this example's context gains when a gate is asked for."""
    if settings.get("min_context_gain") is None:
        return settings
    return {**settings, "gains": rec["context_gain"]["own"]}


GATE_CANDIDATES = (None, 0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)


def _citation_f1(counts: dict[str, Any]) -> float:
    p, r = counts["passage_precision"] or 0.0, counts["passage_recall"]
    return 2 * p * r / (p + r) if p + r else 0.0


def gate_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The context-gain gate. The null: answer sentences' gains with another example's
    paragraphs. The choice: of GATE_CANDIDATES, the gate with the best passage-level
    citation F1 (mean over methods, each with its null floor) on the first half of the
    examples that have gains; then citations without and with the shipped gate on the
    second half, per method."""
    from attribot_rag.citations import DEFAULT_MIN_CONTEXT_GAIN, PER_TOKEN_METHODS, null_floor

    have = [r for r in records if "context_gain" in r]
    if len(have) < 2:
        return {}
    calib, test = have[: len(have) // 2], have[len(have) // 2 :]
    own = [g for r in have for g in r["context_gain"]["own"] if g is not None]
    null = [g for r in have for g in r["context_gain"]["null"] if g is not None]
    methods = [m for m in METHODS if any("sentences" in r["methods"].get(m, {}) for r in have)]

    def floor(m: str, rs: list[dict[str, Any]]) -> dict[str, Any]:
        return {"null_floor": null_floor(m, rs[0]["model"]), "per_token": m in PER_TOKEN_METHODS}

    def with_method(rs: list[dict[str, Any]], m: str) -> list[dict[str, Any]]:
        return [r for r in rs if "sentences" in r["methods"].get(m, {})]

    choice = {
        str(g): float(np.mean([_citation_f1(citation_counts(with_method(calib, m), m,
                                                            {**floor(m, calib), "min_context_gain": g}))
                               for m in methods if with_method(calib, m)]))
        for g in GATE_CANDIDATES
    }
    out: dict[str, Any] = {
        "calibration_examples": [r["index"] for r in calib],
        "test_examples": [r["index"] for r in test],
        "null_quantiles": {str(q): float(np.quantile(null, q)) for q in (0.5, 0.75, 0.9, 0.99)},
        "own_quantiles": {str(q): float(np.quantile(own, q)) for q in (0.1, 0.25, 0.5, 0.75)},
        "calibration_f1_by_gate": choice,
        "shipped_gate": DEFAULT_MIN_CONTEXT_GAIN,
    }
    for m in methods:
        rs = with_method(test, m)
        if not rs:
            continue
        out[m] = {
            "examples": len(rs),
            "null floor only": citation_counts(rs, m, floor(m, rs)),
            "null floor + gate": citation_counts(rs, m, {**floor(m, rs), "min_context_gain": DEFAULT_MIN_CONTEXT_GAIN}),
            "neither": citation_counts(rs, m, {"null_floor": None}),
        }
    return out


def citation_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Calibrate each method's null floor on the first half of the examples that have its
    sentence scores, measure before (no null floor) and after on the second half."""
    from attribot_rag.citations import DEFAULT_NULL_QUANTILE, PER_TOKEN_METHODS, null_floor

    out: dict[str, Any] = {"null_quantile": DEFAULT_NULL_QUANTILE}
    for m in METHODS:
        have = [r for r in records if "sentences" in r["methods"].get(m, {})]
        if len(have) < 2:
            continue
        calib, test = have[: len(have) // 2], have[len(have) // 2 :]
        floor = float(np.quantile(null_scores(calib, m), DEFAULT_NULL_QUANTILE))
        shipped = null_floor(m, records[0]["model"])
        per_token = m in PER_TOKEN_METHODS
        out[m] = {
            "calibration_examples": [r["index"] for r in calib],
            "test_examples": [r["index"] for r in test],
            "calibrated_floor": floor,
            "shipped_floor": shipped,
            "before": citation_counts(test, m, {"null_floor": None}),
            "after": citation_counts(test, m, {"null_floor": shipped, "per_token": per_token}),
        }
    return out


def summary(args: argparse.Namespace) -> None:
    records = load(Path(args.out), args.extra)
    import torch
    import transformers

    res = {
        "examples": [r["index"] for r in records],
        "n": len(records),
        "model": records[0]["model"] if records else None,
        "max_new_tokens": records[0]["max_new_tokens"] if records else None,
        "truncated_drafts": sum(r["draft_truncated"] for r in records),
        "seconds_per_example": {
            "generation": float(np.mean([r["generation_s"] for r in records])),
            **{f"{m} {lvl}": float(np.mean(v)) for m in METHODS for lvl in ("passage", "sentence")
               if (v := [r["methods"][m][f"{lvl}_s"] for r in records if f"{lvl}_s" in r["methods"].get(m, {})])},
        },
        "pruning": pruning_summary(records),
        "citations": citation_summary(records),
        "context_gain_gate": gate_summary(records),
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__},
    }
    text = json.dumps(res, indent=1)
    (Path(args.out) / "summary.json").write_text(text)
    print(text)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", help="the HotpotQA dev file (e.g. ../shared/data/hotpotqa/dev.json); "
                    "needed to collect and for --context-gain, not for --summary")
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), help="passage-level methods")
    ap.add_argument("--sentence-methods", nargs="*", default=["at2"],
                    help="sentence-level methods (citations; loo there costs one pass per context sentence)")
    ap.add_argument("--out", default="benchmarks/prune-cite-hotpotqa")
    ap.add_argument("--summary", action="store_true", help="summarise the collected examples")
    ap.add_argument("--context-gain", action="store_true", help="add the answer sentences' context gains")
    ap.add_argument("--extra", nargs="*", default=[], help="more result folders to merge (--summary)")
    args = ap.parse_args(argv)
    if not args.summary and not args.data:
        ap.error("--data is required (the HotpotQA dev file) unless --summary")
    if args.summary:
        summary(args)
    elif args.context_gain:
        collect_context_gain(args)
    else:
        collect(args)


if __name__ == "__main__":
    sys.exit(main())
