"""Fact heads on the choice split: companions chosen with the heads' ranking of supporting
facts (``FACT_FEATURES``) against without, cross-validated by example.

Each fold fits the fact heads (a logistic regression over AT2's per-head features, on
the supporting-fact labels of the other folds' answers: ``citation_head_probe.py``'s
recordings), scores every answer's sources with them, fits the companion model on the
other folds and cites the fold. The rows pool the five folds, as ``companion_choice.py``
prints them (quality, the room to the targets less the measured optimism, and precision
/ fact recall / uncited per answer mode, correct answers only).

    python benchmarks/fact_heads_choice.py                 # the grid, cross-validated
    python benchmarks/fact_heads_choice.py --write         # fit on every choice answer and
                                                           # write heads + companions into
                                                           # the 1.5B's shipped calibration
    python benchmarks/fact_heads_choice.py --sidecars dev400 --modes own,external,external2

``--sidecars`` stores, for a range's cite-eval records, the shipped heads' scores as the
records' ``facts`` (what ``cite-eval`` computes for a new record, one pass each) from the
features ``citation_head_probe.py record-answers`` recorded for them (kept in float16), in
``benchmarks/cite-eval-cache/qwen15-hotpotqa-<range>-facts``, which a report reads with
``--read-cache``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold

sys.path.insert(0, "benchmarks")
from cite_bridge_choice import MODEL  # noqa: E402
from companion_choice import FOLDS, _print_row, choice_items  # noqa: E402

from attribot_rag.at2.weights import default_weights_path  # noqa: E402
from attribot_rag.citations import CitationPolicy, calibration_for, calibration_path  # noqa: E402
from attribot_rag.citations.companions import FactHeads  # noqa: E402
from attribot_rag.evaluation.calibrate import fit_companion  # noqa: E402
from attribot_rag.evaluation.cite_report import Citer, answer_metrics  # noqa: E402

HEADS = Path("benchmarks/citation-head")
# text answers: one row block per example, the whole answer "The answer is X." (one sentence
# for 331 of 340; a longer one gets the whole answer's features for each sentence)
TEXT = [HEADS / f"dev{k}.npz" for k in (20, 60, 100, 140, 180, 240, 280, 320, 360)]
OWN = [HEADS / "answers-choice-20-own.npz", HEADS / "answers-choice-240-own.npz"]
C = 1.0  # the heads' regularisation (citation_head_probe.py's)


def load_features() -> dict[tuple[str, str, int], tuple[np.ndarray, np.ndarray]]:
    """(example, mode, sentence) -> (features [sources, heads], gold [sources])."""
    out = {}
    for p in TEXT:
        d = np.load(p)
        for g in dict.fromkeys(d["group"].tolist()):
            m = d["group"] == g
            out[(g, "external", -1)] = (d["features"][m].astype(np.float64), d["gold"][m])
    for p in [p for p in OWN if p.exists()]:
        d = np.load(p)
        keys = list(zip(d["group"].tolist(), d["mode"].tolist(), d["sentence"].tolist()))
        for key in dict.fromkeys(keys):
            m = (d["group"] == key[0]) & (d["mode"] == key[1]) & (d["sentence"] == key[2])
            out[key] = (d["features"][m].astype(np.float64), d["gold"][m])
    return out


def rows_of(feats: dict, ex_id: str, mode: str, k: int):
    return feats.get((ex_id, mode, k)) or feats.get((ex_id, mode, -1))


def fit_heads(feats: dict, examples: set[str]) -> FactHeads:
    """The heads' weights on raw features (scaled back from the fit's common scale)."""
    blocks = [v for (g, _, _), v in feats.items() if g in examples]
    x = np.vstack([b[0] for b in blocks])
    y = np.concatenate([b[1] for b in blocks])
    scale = np.abs(x).max(axis=0) + 1e-9
    model = LogisticRegression(C=C, max_iter=5000).fit(x / scale, y)
    return FactHeads(tuple(float(w) for w in model.coef_[0] / scale))


def with_facts(items: list, feats: dict, heads: FactHeads) -> list:
    """The items whose every sentence has features, each record given the heads' scores."""
    w = np.asarray(heads.weights)
    out = []
    for ex, mode, rec in items:
        facts = []
        for k, target in enumerate(rec["targets"]):
            block = None if target is None else rows_of(feats, ex.id, mode, k)
            if target is not None and block is None:
                break
            facts.append(None if block is None else [float(v) for v in block[0] @ w])
        else:
            out.append((ex, mode, {**rec, "facts": facts}))
    return out


def out_of_fold(items: list, feats: dict) -> list:
    """The items scored by heads fitted on the others (inner folds): the companion model
    learns how far the heads' ranking can be trusted on answers they were not fitted on."""
    ids = [ex.id for ex, _, _ in items]
    out = []
    for train, test in GroupKFold(FOLDS - 1).split(np.zeros(len(items)), groups=ids):
        heads = fit_heads(feats, {ids[i] for i in train})
        out += with_facts([items[i] for i in test], feats, heads)
    return out


def grid() -> dict[str, CitationPolicy]:
    p = CitationPolicy()
    out = {}
    for k in (1, 2):
        for t in ((0.45, 0.5, 0.55, 0.575, 0.6, 0.65) if k == 1 else (0.6, 0.65)):
            out[f"companions {k}, probability {t}"] = p.with_options(companions=k, companion_probability=t, max_per_sentence=2 + k)
    return out


def cross_validated(items: list, feats: dict) -> None:
    shipped = calibration_for(MODEL)
    ids = [ex.id for ex, _, _ in items]
    settings = grid()
    rows: dict[str, dict[str, list]] = {f"{name}{tag}": {} for name in settings for tag in ("", " + fact heads")}
    for train, test in GroupKFold(FOLDS).split(np.zeros(len(items)), groups=ids):
        train_ids = {ids[i] for i in train}
        heads = fit_heads(feats, train_ids)
        te = [t for t in with_facts(items, feats, heads) if t[0].id not in train_ids]
        tr = out_of_fold([items[i] for i in train], feats)
        plain_tr = [(e, m, {k: v for k, v in r.items() if k != "facts"}) for e, m, r in tr]
        plain_te = [(e, m, {k: v for k, v in r.items() if k != "facts"}) for e, m, r in te]
        for name, policy in settings.items():
            for tag, train_items, test_items, cal in (
                ("", plain_tr, plain_te, None), (" + fact heads", tr, te, replace(shipped, fact_heads=heads))):
                fitted = fit_companion(train_items, cal or shipped, policy=policy)
                citer = Citer(name + tag, "at2", policy, fitted)
                for ex, mode, rec in test_items:
                    row = answer_metrics(citer, ex, mode, rec, MODEL)
                    if row["correct"]:
                        rows[name + tag].setdefault(mode, []).append(row)
        print(".", end="", flush=True)
    print()
    for name, by in rows.items():
        _print_row(name, by, corrected=True)


def sidecars(name: str, modes: list[str]) -> None:
    from citation_head_probe import range_records

    from attribot_rag.evaluation.cache import ResultsCache
    from attribot_rag.evaluation.cite_eval import cached_items, facts_desc

    heads = calibration_for(MODEL).fact_heads
    if heads is None:
        raise SystemExit("the shipped calibration has no fact heads: --write first")
    feats = {}
    for p in sorted(HEADS.glob(f"answers-{name}-*.npz")):
        d = np.load(p)
        keys = list(zip(d["group"].tolist(), d["mode"].tolist(), d["sentence"].tolist()))
        for key in dict.fromkeys(keys):
            m = (d["group"] == key[0]) & (d["mode"] == key[1]) & (d["sentence"] == key[2])
            feats[key] = d["features"][m].astype(np.float64)
    examples, cache, base, methods = range_records(name)
    out = ResultsCache(f"benchmarks/cite-eval-cache/qwen15-hotpotqa-{name}-facts")
    w, written = np.asarray(heads.weights), 0
    for mode in modes:
        items, missing = cached_items(examples, cache, base, [mode], methods)
        if missing:
            raise SystemExit(f"{name}: {len(missing)} examples have no {mode} record")
        for ex, _, rec in items:
            if any(t is not None and (ex.id, mode, k) not in feats for k, t in enumerate(rec["targets"])):
                raise SystemExit(f"{name}: no recorded features for {ex.id} ({mode}): record-answers first")
            facts = [None if t is None else [float(v) for v in feats[(ex.id, mode, k)] @ w] for k, t in enumerate(rec["targets"])]
            desc = {**base, "example": ex.id, "mode": mode, "methods": list(methods)}
            out.put(facts_desc(desc, heads), {"facts": facts, "seconds": None, "from": "recorded features (float16)"})
            written += 1
    print(f"{written} records' fact scores in {out.path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modes", default="own,external")
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--sidecars", metavar="RANGE")
    args = ap.parse_args()
    if args.sidecars:
        return sidecars(args.sidecars, args.modes.split(","))
    feats = load_features()
    items = [t for t in choice_items() if t[1] in args.modes.split(",")]
    have = with_facts(items, feats, FactHeads((0.0,) * next(iter(feats.values()))[0].shape[1]))
    print(f"{len({e.id for e, _, _ in have})} examples, {len(have)} answers with features (of {len(items)})")
    if args.write:
        write(have, feats)
    else:
        cross_validated(have, feats)


def write(items: list, feats: dict) -> None:
    shipped = calibration_for(MODEL)
    heads = fit_heads(feats, {ex.id for ex, _, _ in items})
    scored = with_facts(items, feats, heads)
    before = shipped.fitted_on.split("companion model =")[0].rstrip("; ") + "; "
    cal = fit_companion(scored, replace(shipped, fitted_on=before, fact_heads=heads))
    cal = replace(cal, fitted_on=cal.fitted_on + f"with fact heads fitted on the same {len({e.id for e, _, _ in items})} "
                  "choice-split examples (HotpotQA dev 20-199, 240-399: benchmarks/fact_heads_choice.py --write)")
    path = calibration_path(default_weights_path(MODEL))
    cal.save(path)
    print(f"wrote {path}: {cal.companion.to_dict()}")


if __name__ == "__main__":
    main()
