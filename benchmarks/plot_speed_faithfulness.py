"""Plot speed against faithfulness: each method's speedup over exact LOO (log x) and its
mAP against exact LOO (y), from a small committed JSON of measured numbers.

The numbers are read, not measured here: ``benchmarks/results/speed_faithfulness.json``
holds the rows of one BENCHMARKS.md table (the 1.5B held-out table), so the figure can be
redrawn without a model and always shows what the table says. matplotlib is the only
dependency (not one of the library's); the Agg backend needs no display.

    python benchmarks/plot_speed_faithfulness.py                   # writes docs/img/speed_faithfulness.png
    python benchmarks/plot_speed_faithfulness.py --data other.json --out other.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
from matplotlib.ticker import FuncFormatter  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / "results" / "speed_faithfulness.json"
OUT = ROOT / "docs" / "img" / "speed_faithfulness.png"

# Label placement (points from the marker) where the default would overlap a neighbour.
OFFSETS = {
    "hierarchical:passage_method=loo": (-8, -12),
    "hierarchical:passage_method=at2": (8, -4),
    "proxy-rescore:first_stage=at2:rescore=5": (8, 8),
}
RIGHT_ALIGNED = {"hierarchical:passage_method=loo"}


def plot(data: dict, out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 5.2), dpi=150)
    rows = data["methods"]
    ax.scatter([r["speedup_vs_exact"] for r in rows], [r["map_vs_exact"] for r in rows], s=55, color="#1f5fa8", zorder=3)
    for r in rows:
        dx, dy = OFFSETS.get(r["method"], (8, 4))
        ax.annotate(
            f'{r["label"]}\n{r["seconds_per_example"]:g} s/example',
            (r["speedup_vs_exact"], r["map_vs_exact"]),
            xytext=(dx, dy),
            textcoords="offset points",
            fontsize=8,
            ha="right" if r["method"] in RIGHT_ALIGNED else "left",
            va="center",
        )
    ref = data.get("reference")
    if ref:
        ax.scatter([ref["speedup_vs_exact"]], [ref["map_vs_exact"]], s=55, facecolors="none", edgecolors="#777777", zorder=3)
        ax.annotate(
            f'{ref["label"]}\n{ref["seconds_per_example"]:g} s/example',
            (ref["speedup_vs_exact"], ref["map_vs_exact"]),
            xytext=(8, -14),
            textcoords="offset points",
            fontsize=8,
            color="#555555",
            va="center",
        )
    ax.set_xscale("log")
    ax.set_xlim(0.4, 400)
    ax.set_ylim(0.5, 1.05)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.set_xlabel("speedup vs exact LOO (log scale; higher = faster)")
    ax.set_ylabel("mAP vs exact LOO (higher = more faithful)")
    ax.set_title(data.get("title", "Speed against faithfulness"), fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    ax.text(
        0.01,
        0.02,
        f'{data["model"]}\n{data["data"]}\n{data["machine"]}',
        transform=ax.transAxes,
        fontsize=7,
        color="#555555",
        va="bottom",
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="JSON of measured numbers")
    parser.add_argument("--out", type=Path, default=OUT, help="PNG to write")
    args = parser.parse_args()
    print(plot(json.loads(args.data.read_text(encoding="utf-8")), args.out))


if __name__ == "__main__":
    main()
