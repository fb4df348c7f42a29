"""The self-contained HTML report and ``attribot-rag attribute --html OUT``."""

import json
import os
import re

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402

from attribot_rag import Attributor, CitationPolicy, Passage, cite  # noqa: E402
from attribot_rag.citations import Citation, CitedAnswer, CitedSentence, Reference  # noqa: E402
from attribot_rag.models import get_model  # noqa: E402
from attribot_rag.report.html import render_html, write_html  # noqa: E402

from travel_fixture import ANSWER, PASSAGES, QUESTION  # noqa: E402


def assert_self_contained(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    low = page.lower()
    for needle in ("http://", "https://", "//cdn", "<link", "src=", "@import", "url("):
        assert needle not in low, needle
    # the only script is inert JSON data
    scripts = re.findall(r"<script([^>]*)>", page)
    assert all('type="application/json"' in s for s in scripts)


@pytest.fixture(scope="module")
def attributor():
    return Attributor(get_model("smollm2-135m"), max_new_tokens=24)


@pytest.fixture(scope="module")
def cited(attributor):
    # exact LOO, contributive evidence: the report's shading is asserted in nats below
    answer = ANSWER + " Thank you for asking, I hope you have a lovely day."
    return cite(attributor, QUESTION, PASSAGES, answer, method="loo", policy=CitationPolicy(evidence="used"))


def test_page_from_real_citations(cited, attributor):
    attribution = attributor.attribute(QUESTION, PASSAGES, ANSWER)  # passage level
    page = render_html(cited, attribution)
    assert_self_contained(page)
    # the answer carries its marker, linked to the reference, quote and score on hover
    assert re.search(r'<a href="#ref-1" title="\[1\] International travel expenses \(travel\): [^"]*score \+\d', page)
    assert 'id="ref-1"' in page
    # the supporting sentence is shaded and quoted; its score is in the tooltip
    m = re.search(r'<span class="s quoted" title="travel#s0: score \+([\d.]+)[^"]*" style="background: rgba\(255, 150, 30, ([\d.]+)\)', page)
    assert m and float(m.group(1)) > 1 and float(m.group(2)) > 0.5
    # every sentence of every passage has a score tooltip
    assert page.count('class="s') == sum(len(s.scores) for s in cited.sentences[:1])
    assert "passage score +" in page  # from the passage-level attribution
    assert "unsupported" in page  # the filler sentence is flagged
    data = re.search(r'<script type="application/json" id="attribot-data">(.*?)</script>', page, re.S)
    assert json.loads(data.group(1))["text"] == cited.text


def test_everything_is_escaped(tmp_path):
    evil = '<script>alert("x")</script> & "quotes"'
    passage = Passage(id="p<1>", title="<b>T</b>", text=f"{evil}. Second sentence.")
    sentence = f"Answer {evil}."
    citation = Citation(
        number=1,
        sentence_index=0,
        sentence=sentence,
        sentence_span=(0, len(sentence)),
        source_id="p<1>#s0",
        passage_id="p<1>",
        passage_index=0,
        title="<b>T</b>",
        score=2.0,
        quote=f"{evil}.",
        quote_span=(0, len(evil) + 1),
    )
    cited = CitedAnswer(
        question=f"Why {evil}?",
        answer=sentence,
        text=sentence[:-1] + " [1].",
        sentences=[
            CitedSentence(0, sentence, (0, len(sentence)), (citation,), {"p<1>#s0": 2.0, "p<1>#s1": -0.5})
        ],
        references=[Reference(1, "p<1>", 0, "<b>T</b>", passage.text)],
        passages=[passage],
        method="loo",
        model="m",
        level="sentence",
    )
    out = write_html(tmp_path / "sub" / "r.html", cited, title="<i>report</i>")
    page = out.read_text(encoding="utf-8")
    assert_self_contained(page)
    assert "<script>alert" not in page and "<b>T</b>" not in page and "<i>report" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &quot;quotes&quot;" in page
    assert "\\u003c/script\\u003e" in page  # JSON data cannot close its script element
    assert 'title="p&lt;1&gt;#s1: score -0.500"' in page  # negative score, cool shading
    assert "rgba(70, 130, 200" in page


def test_render_needs_something():
    with pytest.raises(ValueError, match="render_html needs a CitedAnswer, an Attribution, or both"):
        render_html()


@pytest.mark.slow  # the CLI loads smollm2-135m
def test_cli_attribute_writes_html(tmp_path, capsys):
    from attribot_rag.cli import main

    passages = tmp_path / "passages.json"
    passages.write_text(json.dumps([p.to_dict() for p in PASSAGES]), encoding="utf-8")
    out = tmp_path / "report.html"
    rc = main(["attribute", "-p", str(passages), "-q", QUESTION, "-a", ANSWER, "--html", str(out), "--json", "--model", "smollm2-135m"])
    assert rc == 0
    captured = capsys.readouterr()
    json.loads(captured.out)  # stdout stays pure JSON
    assert str(out) in captured.err
    page = out.read_text(encoding="utf-8")
    assert_self_contained(page)
    assert "$260 per night<sup" in page and 'href="#ref-1"' in page
