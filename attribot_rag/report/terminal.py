"""Terminal rendering of an attribution with rich."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from ..result import Attribution


def _clip(text: str, width: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def attribution_table(att: "Attribution", limit: int | None = None) -> Table:
    table = Table(
        title=f"{att.method} | {att.level} level | {att.model}",
        show_lines=False,
        expand=False,
    )
    table.add_column("rank", justify="right")
    table.add_column("score", justify="right")
    table.add_column("source")
    table.add_column("text")
    rows = att.ranked()
    unscored = [s for s in att.sources if s.rank is None]
    if limit is not None:
        rows = rows[:limit]
    for s in rows:
        table.add_row(str(s.rank), f"{s.score:+.4f}", s.id, _clip(s.text))
    if unscored and limit is None:
        for s in unscored:
            table.add_row("-", "not scored", s.id, _clip(s.text))
    return table


def render_text(att: "Attribution", limit: int | None = None, width: int = 140) -> str:
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(f"Question: {att.question}")
    console.print(f"Answer: {att.answer.strip()}")
    t = att.timings
    console.print(
        f"generation {t.get('generation_s', 0.0):.2f}s, attribution {t.get('attribution_s', 0.0):.2f}s, "
        f"{att.forward_tokens} forward tokens"
    )
    console.print(attribution_table(att, limit))
    return console.export_text()
