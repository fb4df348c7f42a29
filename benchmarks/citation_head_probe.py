"""Probe: how well the attention heads, weighted for *support* instead of for leave-one-out,
find HotpotQA's supporting facts for an answer given as text.

AT2's shipped weights are fitted to exact leave-one-out (what the model used). A citation
for a reader wants the sources that state what the answer rests on. This probe records,
per choice-split example, each source sentence's AT2 features (the per-head attention
from the answer "The answer is {gold}." to the sentence, averaged over answer tokens),
then fits a logistic regression over the heads on the supporting-fact labels,
cross-validated by example (five folds), and ranks the sources with it. The rows compare
it with AT2's weights and with the plain average over heads, on the same sources:
ROC AUC, average precision, and the share of gold facts among each example's top 2 / top
4 sources and the share of gold facts they hold.

    OMP_NUM_THREADS=1 python benchmarks/citation_head_probe.py record --offset 20 --n 40 --out benchmarks/citation-head/dev20.npz
    python benchmarks/citation_head_probe.py fit benchmarks/citation-head/dev20.npz benchmarks/citation-head/dev60.npz

Choice split only (HotpotQA dev 20-199, 240-399): the probe refuses held-out ranges.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

MODEL = "qwen2.5-coder-1.5b"
HELD_OUT = (range(200, 240), range(400, 586))
FOLDS = 5


def record(offset: int, n: int, out: Path, data: str) -> None:
    from tqdm.auto import tqdm

    from attribot_rag import Attributor
    from attribot_rag.at2.features import task_features
    from attribot_rag.at2.weights import load_default_weights
    from attribot_rag.evaluation.cite_eval import TEMPLATES, load_examples
    from attribot_rag.evaluation.cite_report import sentence_sources

    if any(k in r for r in HELD_OUT for k in range(offset, offset + n)) or offset < 20:
        raise SystemExit("refused: dev 0-19 trained AT2, and dev 200-239 and 400-585 are held out")
    att = Attributor(model=MODEL, dtype="bfloat16")
    at2 = np.asarray(load_default_weights(att.lm.name).vector, dtype=np.float64).reshape(-1)
    feats, gold, group, at2_scores = [], [], [], []
    for ex in tqdm(load_examples("hotpotqa", data, n, offset), desc="citation-head", unit="ex"):
        task = att.task(ex.question, ex.passages, TEMPLATES["external"].format(answer=ex.answers[0]), level="sentence")
        f = task_features(task).float().mean(dim=1).double().numpy()  # [sources, heads]
        sources = sentence_sources(ex)
        if len(sources) != f.shape[0]:
            raise SystemExit(f"{ex.id}: {f.shape[0]} feature rows for {len(sources)} sources")
        feats.append(f)
        gold += [ex.is_gold_source(s) for s in sources]
        group += [ex.id] * len(sources)
        at2_scores.append(f @ at2)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, features=np.vstack(feats).astype(np.float16), gold=np.array(gold), group=np.array(group),
                        at2=np.concatenate(at2_scores))


def top_k(scores: np.ndarray, gold: np.ndarray, group: np.ndarray, k: int) -> tuple[float, float]:
    """Over examples: the share of gold among each one's top k, and of its gold facts there."""
    from attribot_rag.evaluation.metrics import top_k_sources

    hits = gold_total = 0
    examples = np.unique(group)
    for g in examples:
        m = group == g
        hits += gold[m][top_k_sources(scores[m], k)].sum()
        gold_total += gold[m].sum()
    return hits / (k * len(examples)), hits / gold_total


def fit(paths: list[Path]) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score, roc_auc_score
    from sklearn.model_selection import GroupKFold

    parts = [np.load(p) for p in paths]
    x = np.vstack([p["features"] for p in parts]).astype(np.float64)
    gold = np.concatenate([p["gold"] for p in parts])
    group = np.concatenate([p["group"] for p in parts])
    plain = x.mean(axis=1)
    x = x / (np.abs(x).max(axis=0, keepdims=True) + 1e-9)  # heads on one scale (the fit is regularised)
    learned = np.zeros(len(gold))
    for train, test in GroupKFold(FOLDS).split(x, gold, group):
        model = LogisticRegression(C=1.0, max_iter=5000).fit(x[train], gold[train])
        learned[test] = model.decision_function(x[test])
    rows = {"heads fitted to supporting facts (cross-validated)": learned,
            "AT2's shipped weights (fitted to leave-one-out)": np.concatenate([p["at2"] for p in parts]),
            "the plain average over heads": plain}
    print(f"{len(np.unique(group))} examples, {len(gold)} sources, {int(gold.sum())} supporting facts")
    print("| ranking | ROC AUC | average precision | top 2: gold share / facts held | top 4 |")
    print("|---|---|---|---|---|")
    for name, s in rows.items():
        (p2, r2), (p4, r4) = top_k(s, gold, group, 2), top_k(s, gold, group, 4)
        print(f"| {name} | {roc_auc_score(gold, s):.3f} | {average_precision_score(gold, s):.3f} | "
              f"{p2:.2f} / {r2:.2f} | {p4:.2f} / {r4:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("--offset", type=int, required=True)
    rec.add_argument("--n", type=int, required=True)
    rec.add_argument("--out", type=Path, required=True)
    rec.add_argument("--data", default="../shared/data/hotpotqa/dev.json")
    f = sub.add_parser("fit")
    f.add_argument("paths", type=Path, nargs="+")
    args = ap.parse_args()
    if args.command == "record":
        record(args.offset, args.n, args.out, args.data)
    else:
        fit(args.paths)


if __name__ == "__main__":
    main()
