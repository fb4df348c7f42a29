"""A self-contained HTML page for a cited answer: no scripts, fonts or images from anywhere.

The page shows the question, the answer with its ``[n]`` markers (linked to the
references, the quote and score on hover), the numbered references, and every passage
with its sentences shaded by score (warm = the answer needs it, cool = negative score),
the score in each sentence's ``title`` tooltip. All text is HTML-escaped; the structured
citations are embedded as JSON in a ``<script type="application/json">`` block (data,
not code) for tools that want to read the page back.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..sources import make_sources, split_sentences

if TYPE_CHECKING:
    from ..citations import CitedAnswer
    from ..result import Attribution

_CSS = """
:root { --ink: #1d232b; --muted: #5b6573; --line: #d9dee5; --bg: #fbfbfc; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 15px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; }
main { max-width: 960px; margin: 0 auto; padding: 24px 20px 48px; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 28px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
.meta { color: var(--muted); font-size: 13px; }
.question { font-size: 17px; font-weight: 600; margin: 16px 0 4px; }
.answer { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; font-size: 16px; }
.unsupported { text-decoration: underline dotted #b44; text-underline-offset: 3px; }
sup.cite a { text-decoration: none; color: #0b5cad; font-weight: 600; }
ol.refs { padding-left: 22px; }
ol.refs li { margin: 6px 0; }
.quote { color: var(--muted); font-style: italic; display: block; }
.passage { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; margin: 10px 0; }
.passage.cited { border-color: #e0a040; }
.passage header { display: flex; justify-content: space-between; gap: 12px; font-size: 13px; color: var(--muted); margin-bottom: 4px; }
.passage header b { color: var(--ink); }
.s { border-radius: 3px; padding: 1px 0; }
.s.quoted { outline: 1.5px solid #c77700; outline-offset: 1px; }
.s.unscored { color: var(--muted); }
.legend { font-size: 12px; color: var(--muted); margin-top: 4px; }
.legend span { padding: 1px 6px; border-radius: 3px; margin-right: 6px; }
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _fmt(score: float | None) -> str:
    return "not scored" if score is None else f"{score:+.3f}"


def _shade(score: float | None, scale: float) -> str:
    """Inline background for a score: warm for positive, cool for negative."""
    if score is None or scale <= 0 or math.isnan(score):
        return ""
    a = min(1.0, abs(score) / scale)
    if a < 0.02:
        return ""
    if score > 0:
        return f"background: rgba(255, 150, 30, {0.08 + 0.6 * a:.3f});"
    return f"background: rgba(70, 130, 200, {0.05 + 0.35 * a:.3f});"


def _answer_html(cited: "CitedAnswer") -> str:
    """The answer with linked markers, placed as :func:`citations.insert_markers` does."""
    from ..citations.markers import _TRAILING_PUNCT

    text = cited.answer
    refs = {r.number: r for r in cited.references}
    parts: list[str] = []
    pos = 0
    for sent in cited.sentences:
        a, b = sent.span
        parts.append(_e(text[pos:a]))
        cut = b
        if sent.numbers:
            while cut > a and text[cut - 1] in _TRAILING_PUNCT:
                cut -= 1
            if cut == a:
                cut = b
        body = _e(text[a:cut].rstrip() if sent.numbers else text[a:b])
        if not sent.supported:
            tip = "no source clears the citation threshold for this sentence"
            if sent.top_score is not None:
                tip += f" (best score {sent.top_score:+.3f})"
            parts.append(f'<span class="unsupported" title="{_e(tip)}">{body}</span>')
        else:
            parts.append(body)
        for n in sent.numbers:
            cits = [c for c in sent.citations if c.number == n]
            tip = f"[{n}] {refs[n].label}: " + "; ".join(
                f"\u201c{c.quote}\u201d (score {c.score:+.3f})" for c in cits
            )
            parts.append(f'<sup class="cite"><a href="#ref-{n}" title="{_e(tip)}">[{n}]</a></sup>')
        if sent.numbers:
            parts.append(_e(text[cut:b]))
        pos = b
    parts.append(_e(text[pos:]))
    return "".join(parts)


def _scored_sources(cited: "CitedAnswer | None", attribution: "Attribution | None"):
    """(sources, scores by source id, what the scores are) for shading the passages."""
    if attribution is not None and attribution.level == "sentence":
        return (
            [s.source for s in attribution.sources],
            {s.id: s.score for s in attribution.sources},
            f"{attribution.method} score of each sentence for the whole answer",
        )
    if cited is not None:
        atts = [s.attribution for s in cited.sentences if s.attribution is not None]
        if atts:
            sources = [s.source for s in atts[0].sources]
        else:
            sources = make_sources(cited.passages, cited.level)
        return (
            sources,
            cited.source_scores(),
            f"{cited.method} score summed over the answer sentences",
        )
    assert attribution is not None
    return (
        [s.source for s in attribution.sources],
        {s.id: s.score for s in attribution.sources},
        f"{attribution.method} score of each passage",
    )


def render_html(
    cited: "CitedAnswer | None" = None,
    attribution: "Attribution | None" = None,
    *,
    title: str = "attribot-rag report",
) -> str:
    """One self-contained HTML page for a cited answer and/or an attribution."""
    if cited is None and attribution is None:
        raise ValueError("render_html needs a CitedAnswer, an Attribution, or both")
    base = cited if cited is not None else attribution
    out: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f"<style>{_CSS}</style></head><body><main>",
        f"<h1>{_e(title)}</h1>",
        f'<div class="meta">model {_e(base.model)} &middot; method {_e(base.method)}'  # type: ignore[union-attr]
        + (f" &middot; citations at {_e(cited.level)} level" if cited is not None else "")
        + "</div>",
        f'<div class="question">{_e(base.question)}</div>',  # type: ignore[union-attr]
        "<h2>Answer</h2>",
    ]
    out += _cited_answer_html(cited) if cited is not None else [f'<div class="answer">{_e(base.answer)}</div>']  # type: ignore[union-attr]
    out += _passages_html(cited, attribution, base.passages)  # type: ignore[union-attr]
    if cited is not None:
        # \u-escape <, > and & so no markup can appear inside the data block.
        data = (
            json.dumps(cited.to_dict(), ensure_ascii=True)
            .replace("<", "\\u003c")
            .replace(">", "\\u003e")
            .replace("&", "\\u0026")
        )
        out.append(f'<script type="application/json" id="attribot-data">{data}</script>')
    out.append("</main></body></html>")
    return "\n".join(out) + "\n"


def _cited_answer_html(cited: "CitedAnswer") -> list[str]:
    """The answer with its markers, then the numbered references with their quotes."""
    out = [f'<div class="answer">{_answer_html(cited)}</div>']
    if cited.unsupported:
        out.append(
            f'<div class="meta">{len(cited.unsupported)} sentence(s) without a citation '
            "(dotted underline).</div>"
        )
    out.append("<h2>References</h2>")
    if not cited.references:
        return out + ['<div class="meta">No passage clears the citation threshold.</div>']
    out.append('<ol class="refs">')
    for ref in cited.references:
        quotes = []
        seen: set[str] = set()
        for c in cited.citations:
            if c.number == ref.number and c.source_id not in seen:
                seen.add(c.source_id)
                quotes.append(
                    f'<span class="quote" title="{_e(f"score {c.score:+.3f}, characters {c.quote_span[0]}-{c.quote_span[1]} of the passage")}">'
                    f"\u201c{_e(c.quote)}\u201d</span>"
                )
        out.append(
            f'<li id="ref-{ref.number}" value="{ref.number}">'
            f'<a href="#passage-{ref.passage_index}">{_e(ref.label)}</a>{"".join(quotes)}</li>'
        )
    return out + ["</ol>"]


def _passages_html(cited: "CitedAnswer | None", attribution: "Attribution | None", passages: list) -> list[str]:
    """Every passage, its sentences shaded by score, cited ones marked with their number."""
    sources, scores, what = _scored_sources(cited, attribution)
    passage_scores = attribution.passage_scores() if attribution is not None else None
    finite = [v for v in scores.values() if v is not None and not math.isnan(v)]
    scale = max([abs(v) for v in finite], default=0.0)
    quoted: dict[str, list[int]] = {}
    cited_passages: dict[int, int] = {}
    if cited is not None:
        for c in cited.citations:
            quoted.setdefault(c.source_id, [])
            if c.number not in quoted[c.source_id]:
                quoted[c.source_id].append(c.number)
        cited_passages = {r.passage_index: r.number for r in cited.references}
    out = [
        "<h2>Passages</h2>",
        f'<div class="legend">Shading: {_e(what)} (hover a sentence for its score). '
        '<span style="background: rgba(255,150,30,0.6)">needed</span>'
        '<span style="background: rgba(70,130,200,0.35)">negative</span></div>',
    ]
    by_passage: dict[int, list] = {}
    for s in sources:
        by_passage.setdefault(s.passage_index, []).append(s)
    for pi, p in enumerate(passages):
        number = cited_passages.get(pi)
        head = f"<b>{_e(p.title or p.id)}</b>"
        if p.title:
            head += f" &middot; {_e(p.id)}"
        if number is not None:
            head += f' &middot; cited as <a href="#ref-{number}">[{number}]</a>'
        right = f"passage score {_e(_fmt(passage_scores.get(p.id)))}" if passage_scores is not None else ""
        out.append(
            f'<section class="passage{" cited" if number is not None else ""}" id="passage-{pi}">'
            f"<header><span>{head}</span><span>{right}</span></header><div>"
        )
        out.append(_passage_body(p.text, by_passage.get(pi, []), scores, scale, quoted))
        out.append("</div></section>")
    return out


def _passage_body(text: str, srcs: list, scores: dict, scale: float, quoted: dict) -> str:
    """The passage text with each sentence in a shaded span (sources in span order)."""
    spans: list[tuple[int, int, str, float | None]] = []
    if srcs and srcs[0].level == "sentence":
        spans = [(s.start, s.end, s.id, scores.get(s.id)) for s in srcs]
    else:
        sid = srcs[0].id if srcs else None
        score = scores.get(sid) if sid is not None else None
        spans = [(a, b, sid or "", score) for a, b in split_sentences(text)]
    parts: list[str] = []
    pos = 0
    for a, b, sid, score in sorted(spans):
        parts.append(_e(text[pos:a]))
        classes = ["s"]
        tip = f"{sid}: score {_fmt(score)}" if sid else f"score {_fmt(score)}"
        if score is None:
            classes.append("unscored")
        if sid in quoted:
            classes.append("quoted")
            tip += " \u00b7 quoted by " + "".join(f"[{n}]" for n in quoted[sid])
        style = _shade(score, scale)
        style_attr = f' style="{style}"' if style else ""
        parts.append(
            f'<span class="{" ".join(classes)}" title="{_e(tip)}"{style_attr}>{_e(text[a:b])}</span>'
        )
        pos = b
    parts.append(_e(text[pos:]))
    return "".join(parts)


def write_html(
    path: str | Path,
    cited: "CitedAnswer | None" = None,
    attribution: "Attribution | None" = None,
    **kwargs: Any,
) -> Path:
    """Write :func:`render_html` to ``path`` (UTF-8); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(cited, attribution, **kwargs), encoding="utf-8")
    return path


__all__ = ["render_html", "write_html"]
