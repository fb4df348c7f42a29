"""Fit AT2 head weights to exact leave-one-out effects and compare weights by mAP against
exact LOO, offline, on the features ``at2_loo_features.py`` wrote.

A leave-one-out ablation is a mask that drops one source, so AT2's training objective (the
Pearson correlation, across masks, between w . G and the answer's log-probability) over an
example's LOO masks is the correlation between the sources' AT2 scores w . F and their exact
LOO effects. Each example is one target whose masks are its sources (padded: examples have
different numbers of sentences). Random-mask targets from an ``attribot-rag train-at2``
cache can be added (``--random-cache``).

    python benchmarks/at2_loo_fit.py --features benchmarks/at2-train/loo-features-qwen15 \
      --train 0-19 --eval 200-223 --folds 5 --compare shipped=attribot_rag/at2/weights/qwen2.5-coder-1.5b.safetensors
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from datetime import date
from pathlib import Path

import numpy as np

from attribot_rag.at2.weights import AT2Weights
from attribot_rag.evaluation import metrics
from attribot_rag.evaluation.hotpotqa import parse_index_ranges
from attribot_rag.training.at2 import fit_weights

LR = 5e-3  # the fit was flat in lr 1e-3..2e-2 and 300..3000 steps (5-fold CV on dev 0-19)


def read_features(folder: str) -> dict[int, dict]:
    out = {}
    for path in sorted(Path(folder).glob("*.npz")):
        with np.load(path, allow_pickle=False) as z:
            out[int(z["index"])] = {"F": z["F"].astype(np.float32), "loo": z["loo"], "example": str(z["example"])}
    return out


def in_ranges(index: int, ranges) -> bool:
    return any(a <= index < b for a, b in ranges)


def loo_targets(examples: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """G [examples, max sources, features] (zeros as padding) and y = exact LOO (nan padding)."""
    m = max(e["F"].shape[0] for e in examples)
    G = np.zeros((len(examples), m, examples[0]["F"].shape[1]), dtype=np.float32)
    y = np.full((len(examples), m), np.nan)
    for i, e in enumerate(examples):
        keep = ~np.isnan(e["loo"])
        s = int(keep.sum())
        G[i, :s], y[i, :s] = e["F"][keep], e["loo"][keep]
    return G, y


def padded(G: np.ndarray, y: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Targets padded to ``width`` masks (G with zeros, y with nan: masks they do not have)."""
    pad = width - G.shape[1]
    return np.pad(G, ((0, 0), (0, pad), (0, 0))), np.pad(y, ((0, 0), (0, pad)), constant_values=np.nan)


def joined(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    width = max(g.shape[1] for g, _ in parts)
    gs, ys = zip(*(padded(g, y, width) for g, y in parts))
    return np.concatenate(gs), np.concatenate(ys)


def random_targets(folder: str | None) -> tuple[np.ndarray, np.ndarray] | None:
    """Targets of a ``train-at2`` cache (y: logit-probability; G sums the kept sources, so
    the sign matches LOO's: more kept, higher output)."""
    if not folder:
        return None
    parts = []
    for path in sorted(Path(folder).glob("*.npz")):
        with np.load(path, allow_pickle=False) as z:
            if "G" in z.files:
                parts.append((z["G"], z["y"]))
    return joined(parts) if parts else None


def fit(examples: list[dict], extra, steps: int, seed: int) -> np.ndarray:
    # for LOO targets G = F and y = the LOO effect: the drop when a source is left out is
    # the kept-sum's prediction minus w . F, so Pearson(w . F, LOO) is the mask objective
    G, y = loo_targets(examples)
    if extra is not None:
        G, y = joined([(G, y), extra])
    return fit_weights(G, y, steps=steps, lr=LR, seed=seed, val_fraction=0.0, non_negative=True,
                       progress=False).weights


def mean_ap(examples: list[dict], w: np.ndarray) -> float:
    return metrics.mean_average_precision((e["F"] @ w, e["loo"]) for e in examples)


def cross_validated(examples: list[dict], folds: int, extra, steps: int, seed: int) -> float:
    order = np.random.default_rng(seed).permutation(len(examples))
    aps = []
    for k in range(folds):
        test = [examples[i] for i in order[k::folds]]
        train = [examples[i] for i in order if i not in set(order[k::folds])]
        w = fit(train, extra, steps, seed)
        aps += [metrics.average_precision(e["F"] @ w, e["loo"]) for e in test]
    return float(np.nanmean(aps))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--features", required=True)
    ap.add_argument("--train", required=True, help="index ranges to fit on")
    ap.add_argument("--eval", default=None, help="index ranges to report on (never chosen on)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--random-cache", default=None, help="a train-at2 cache whose targets join the fit")
    ap.add_argument("--compare", nargs="*", default=[], help="NAME=WEIGHTS.safetensors")
    ap.add_argument("--save", default=None, help="write the weights fitted on all of --train here")
    ap.add_argument("--model", default=None, help="model name for the saved weights' header")
    ap.add_argument("--cache-tag", default=None, help="the saved weights' cache tag (cached results of other weights are not read back)")
    ap.add_argument("--data-name", default="hotpotqa dev.json", help="where the examples come from, for the header")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    feats = read_features(args.features)
    train = [e for i, e in sorted(feats.items()) if in_ranges(i, parse_index_ranges(args.train))]
    test = [e for i, e in sorted(feats.items()) if args.eval and in_ranges(i, parse_index_ranges(args.eval))]
    lh = train[0]["F"].shape[1]
    extra = random_targets(args.random_cache)
    w_fit = fit(train, extra, args.steps, args.seed)
    rows = {"uniform": np.full(lh, 1.0 / lh, dtype=np.float32)}
    for spec in args.compare:
        name, _, path = spec.partition("=")
        rows[name] = AT2Weights.load(path).vector
    rows["fitted to LOO" + (" + random masks" if extra is not None else "")] = w_fit
    report = {"train": [e["example"] for e in train], "eval": [e["example"] for e in test],
              "cv_map_fitted": cross_validated(train, args.folds, extra, args.steps, args.seed),
              "rows": {n: {"train_map": mean_ap(train, w), "eval_map": mean_ap(test, w) if test else None}
                       for n, w in rows.items()}}
    print(json.dumps(report["rows"], indent=1), f"\nCV mAP (fitted, {args.folds} folds of --train): "
          f"{report['cv_map_fitted']:.3f}; train n={len(train)}, eval n={len(test)}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1), encoding="utf-8")
    if args.save:
        save(args, w_fit, report)


def save(args: argparse.Namespace, w: np.ndarray, report: dict) -> None:
    """The weights with their training record; shape and architecture from --compare's first file."""
    like = AT2Weights.load(args.compare[0].partition("=")[2])
    meta = {
        "model": args.model or like.metadata.get("model"),
        "architecture": like.metadata.get("architecture"),
        "cache_tag": args.cache_tag,
        "training_data": {"loo_examples": report["train"], "data": args.data_name, "level": "sentence",
                          "random_mask_cache": args.random_cache, "features": args.features},
        "fit": {"loss": "negative Pearson over each example's leave-one-out masks", "non_negative": True,
                "normalised": "unit L1", "lr": LR, "steps": args.steps, "seed": args.seed,
                "cv_map_vs_exact_loo": report["cv_map_fitted"], "folds": args.folds},
        "trained": date.today().isoformat(),
        "command": shlex.join(["python", *sys.argv]),
    }
    AT2Weights(w.reshape(like.num_layers, like.num_heads), meta).save(args.save)


if __name__ == "__main__":
    main()
