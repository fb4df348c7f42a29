"""Fact heads as the citation ranker, replayed on the choice split: the heads fitted to
supporting facts (``citation_head_probe.py``) choose the support check's candidate, the
bridges and the companions' ranks instead of AT2, cross-validated by example (each
answer scored by heads fitted on the other folds; the companion model refitted per fold)
and printed as ``companion_choice.py`` prints its rows (BENCHMARKS.md, "Fact heads as
companion features: no gain").

    git checkout 54a0698 -- benchmarks/citation-head   # the own answers' recorded features
    python benchmarks/fact_heads_ranker.py
"""
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold

sys.path.insert(0, "benchmarks")
from companion_choice import FOLDS, choice_items, cross_validated  # noqa: E402

from attribot_rag.citations import CitationPolicy  # noqa: E402

HEADS = Path("benchmarks/citation-head")
TEXT = [HEADS / f"dev{k}.npz" for k in (20, 60, 100, 140, 180, 240, 280, 320, 360)]
OWN = [HEADS / "answers-choice-20-own.npz", HEADS / "answers-choice-240-own.npz"]


def load():
    """(example, mode, sentence) -> (features [sources, heads], gold)."""
    missing = [str(p) for p in TEXT + OWN if not p.exists()]
    if missing:
        sys.exit(f"no recorded features at {', '.join(missing)}: git checkout 54a0698 -- benchmarks/citation-head")
    out = {}
    for p in TEXT:
        d = np.load(p)
        for g in dict.fromkeys(d["group"].tolist()):
            m = d["group"] == g
            out[(g, "external", -1)] = (d["features"][m].astype(np.float64), d["gold"][m])
    for p in OWN:
        d = np.load(p)
        keys = list(zip(d["group"].tolist(), d["mode"].tolist(), d["sentence"].tolist()))
        for key in dict.fromkeys(keys):
            m = (d["group"] == key[0]) & (d["mode"] == key[1]) & (d["sentence"] == key[2])
            out[key] = (d["features"][m].astype(np.float64), d["gold"][m])
    return out


def block(features, ex_id, mode, k):
    """A sentence's features (a text answer's are the whole answer's)."""
    return features.get((ex_id, mode, k)) or features.get((ex_id, mode, -1))


def fit(features, ids):
    """The heads' weights on raw features, fitted on these examples' answers."""
    blocks = [v for (g, _, _), v in features.items() if g in ids]
    x, y = np.vstack([b[0] for b in blocks]), np.concatenate([b[1] for b in blocks])
    scale = np.abs(x).max(axis=0) + 1e-9  # fitted on a common scale, returned for raw features
    return LogisticRegression(C=1.0, max_iter=5000).fit(x / scale, y).coef_[0] / scale


def scored(items, features):
    """Every answer with the heads' scores recorded as the method "facts" (heads fitted on
    the other folds), checked like the run's rankers (its top source's support is in the
    records for 687 of 689 sentences)."""
    uniq = sorted({e.id for e, _, _ in items})
    weights = {}
    for tr, te in GroupKFold(FOLDS).split(np.zeros(len(uniq)), groups=uniq):
        w = fit(features, {uniq[i] for i in tr})
        weights.update({uniq[i]: w for i in te})
    out = []
    for ex, mode, rec in items:
        facts = [None if t is None else [float(v) for v in block(features, ex.id, mode, k)[0] @ weights[ex.id]]
                 for k, t in enumerate(rec["targets"])]
        out.append((ex, mode, {**rec, "scores": {**rec["scores"], "facts": facts}, "checked": [*rec.get("checked", ["at2"]), "facts"]}))
    return out


def main() -> None:
    items = scored(choice_items(), load())
    p = CitationPolicy()
    grid = {"default (AT2 ranker)": p}
    grid.update({f"facts ranker, probability {t}": p.with_options(companion_probability=t) for t in (0.45, 0.55, 0.65)})
    grid["facts ranker, no bridges"] = p.with_options(bridge_relevance=None)
    cross_validated(items, grid, fit_per_setting=True, corrected=True, rankers={n: "facts" for n in grid if n.startswith("facts")})


if __name__ == "__main__":
    main()

