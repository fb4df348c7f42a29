"""The speed-versus-faithfulness picture of a bench run (``attribot-rag bench --plot``).

One point per method and setting: x is the speedup over naive LOO (log scale), y the
mAP against exact LOO with its bootstrap 95% interval over the examples. A run without a
``loo-naive`` row can still be drawn against naive LOO when the caller gives the ratio of
naive to exact LOO's time measured elsewhere (``naive_over_exact``); the figure then says
so, and without it the x axis is the speedup over exact LOO, and says that instead.
Needs matplotlib (the ``plots`` extra).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..errors import InputError
from .bench import NAIVE


@dataclass(frozen=True)
class FrontierPoint:
    label: str
    speedup: float
    map: float
    ci95: tuple[float, float] | None
    seconds_per_example: float


COSTS = {"wall": ("speedup", "wall time"), "cpu": ("cpu_speedup", "CPU time"), "tokens": ("tokens", "forward tokens")}


def _speedups(report: Mapping[str, Any], rows: Mapping[str, Any], cost: str) -> dict[str, tuple[float | None, float | None]]:
    """Per row: (speedup over naive LOO, over exact LOO) in the chosen cost."""
    if cost != "tokens":
        prefix = COSTS[cost][0]
        return {k: (r.get(f"{prefix}_vs_naive"), r.get(f"{prefix}_vs_exact")) for k, r in rows.items()}
    naive = (rows.get(NAIVE) or {}).get("tokens_per_example")  # the run's naive LOO row, if it had one
    exact = (report.get("exact") or {}).get("tokens_per_example")
    out = {}
    for k, r in rows.items():
        t = r.get("tokens_per_example") or 0
        out[k] = (naive / t if naive and t else None, exact / t if exact and t else None)
    return out


def frontier_points(
    report: Mapping[str, Any], naive_over_exact: float | None = None, cost: str = "cpu"
) -> tuple[list[FrontierPoint], str]:
    """The points of a bench report and the x axis's label (what the speedup is over, in
    what time: ``cost="cpu"``, this process's CPU seconds, steadier than wall time when
    other jobs share the cores, ``"wall"``, or ``"tokens"``: tokens through the model,
    which no other job changes)."""
    if cost not in COSTS:
        raise InputError(f"cost must be one of {', '.join(COSTS)}, got {cost!r}")
    rows = dict(report.get("methods") or {})
    if not rows:
        raise InputError("the bench report has no method rows to plot")
    words = COSTS[cost][1]
    speedups = _speedups(report, rows, cost)
    measured = any(naive for naive, _ in speedups.values())
    if measured:
        axis = f"speedup over naive LOO in {words} (measured in this run)"
    elif naive_over_exact:
        axis = f"speedup over naive LOO in {words} (naive = {naive_over_exact:.2f} x exact LOO, measured separately)"
    else:
        axis = f"speedup over exact LOO in {words} (no naive LOO timing in this run)"
    points = []
    for label, r in rows.items():
        speedup = speedups[label][0] if measured else speedups[label][1]
        if not measured and speedup and naive_over_exact:
            speedup *= naive_over_exact
        if not speedup or r.get("map_vs_exact") is None:
            continue
        ci = r.get("map_vs_exact_ci95")
        points.append(FrontierPoint(label, float(speedup), float(r["map_vs_exact"]),
                                    tuple(ci) if ci else None, float(r["seconds_per_example"])))
    return points, axis


def display_names(points: list[FrontierPoint], names: Mapping[str, str] | None) -> dict[str, str]:
    """Each point's name in the legend: the caller's where given (a name for a row the
    report lacks is an error, not silently dropped), else its method spec."""
    names = dict(names or {})
    unknown = sorted(set(names) - {p.label for p in points})
    if unknown:
        raise InputError(f"plot names for rows the report has not plotted: {', '.join(unknown)}")
    return {p.label: names.get(p.label, p.label) for p in points}


def plot_frontier(
    report: Mapping[str, Any],
    out: str | Path,
    *,
    naive_over_exact: float | None = None,
    title: str | None = None,
    goal: tuple[float, float] | None = None,
    cost: str = "cpu",
    names: Mapping[str, str] | None = None,
) -> Path:
    """Draw the report's frontier to ``out`` (PNG); ``goal`` = (speedup, mAP) marks a target;
    ``names`` maps a row (its method spec) to the name the legend gives it. Points are told
    apart by colour and marker in a legend below the axes: method specs are long, and
    points with similar cost and mAP would overprint labels written beside them."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError as exc:
        raise InputError("plotting needs matplotlib: pip install 'attribot-rag[plots]'") from exc
    points, axis = frontier_points(report, naive_over_exact, cost)
    shown = display_names(points, names)
    colours = plt.get_cmap("tab10").colors
    markers = "osD^vP*Xh<>"
    fig, ax = plt.subplots(figsize=(8.5, 5.4), dpi=150)
    for k, p in enumerate(points):
        err = [[p.map - p.ci95[0]], [p.ci95[1] - p.map]] if p.ci95 else None
        colour = colours[k % len(colours)]
        ax.errorbar([p.speedup], [p.map], yerr=err, fmt=markers[k % len(markers)], color=colour, ecolor=colour,
                    elinewidth=1, alpha=0.9, capsize=3, zorder=3,
                    label=f"{shown[p.label]}: {p.speedup:.3g}x, mAP {p.map:.3f}, {p.seconds_per_example:.3g} s/example (wall)")
    if goal:
        ax.axvline(goal[0], color="#c0392b", ls="--", lw=0.8)
        ax.axhline(goal[1], color="#c0392b", ls="--", lw=0.8)
        ax.annotate(f"goal: {goal[0]:g}x, mAP {goal[1]:g}", (goal[0], goal[1]), xytext=(4, 4),
                    textcoords="offset points", fontsize=7, color="#c0392b")
    xs = [p.speedup for p in points]
    ax.set_xscale("log")
    ax.set_xlim(min(xs + [1.0]) / 1.6, max(xs + [goal[0] if goal else 1.0]) * 3)
    ax.set_ylim(min([p.ci95[0] if p.ci95 else p.map for p in points] + [0.5]) - 0.03, 1.03)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.set_xlabel(axis + "; log scale", fontsize=8)
    ax.set_ylabel("mAP against exact LOO (bootstrap 95% interval)", fontsize=8)
    ax.set_title(title or "Speed against faithfulness", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    model = report.get("model", "?")
    where = f"examples {report['examples']}" if report.get("examples") else f"from offset {report.get('offset', 0)}"
    if report.get("not_cached"):
        where += f" ({len(report['not_cached'])} of them not computed yet)"
    ax.text(0.01, 0.02, f"{model}, {report.get('level', '?')} level, n = {report.get('n', '?')} examples, {where}",
            transform=ax.transAxes, fontsize=7, color="#555555")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=7, frameon=False, ncol=1)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight")  # the legend below the axes stays in the picture
    plt.close(fig)
    return out


__all__ = ["FrontierPoint", "display_names", "frontier_points", "plot_frontier"]
