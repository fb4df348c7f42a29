"""Citations: per-sentence attribution, thresholds, markers, the structured form.

The real default model (smollm2-135m) is used where attribution behaviour is asserted,
over three short handbook passages; selection and marker placement are tested without it.
"""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import math  # noqa: E402

import pytest  # noqa: E402

from attribot_rag import Attributor, CitedAnswer, InputError, cite  # noqa: E402
from attribot_rag.citations import CitationPolicy, SentenceEvidence, insert_markers  # noqa: E402
from attribot_rag.models import get_model  # noqa: E402

from travel_fixture import ANSWER as SUPPORTED  # noqa: E402
from travel_fixture import PASSAGES, QUESTION  # noqa: E402

FILLER = "Thank you for asking, I hope you have a lovely day."


# These tests pin contributive citations (evidence="used": what the model relied on, by
# exact LOO); tests/test_support.py covers the default, corroborative evidence.
USED = CitationPolicy(evidence="used")


@pytest.fixture(scope="module")
def attributor():
    return Attributor(get_model("smollm2-135m"), max_new_tokens=24, method="loo", policy=USED)


@pytest.fixture(scope="module")
def cited(attributor):
    return cite(attributor, QUESTION, PASSAGES, SUPPORTED + " " + FILLER)


# --------------------------------------------------------------------------- real model


def test_supporting_passage_is_cited_and_irrelevant_is_not(cited):
    first = cited.sentences[0]
    assert first.supported
    assert cited.references[0].passage_id == "travel"
    assert {c.passage_id for c in first.citations} == {"travel"}
    assert "lisbon" not in cited.cited_passage_ids
    assert first.citations[0].source_id == "travel#s0"
    assert "$260" in first.citations[0].quote
    assert "[1]" in cited.text
    assert cited.text.startswith("The nightly hotel limit for international business travel is $260 per night [1].")


def test_unsupported_sentence_gets_no_marker(cited):
    second = cited.sentences[1]
    assert second.text == FILLER
    assert not second.supported
    assert second.numbers == []
    assert [s.index for s in cited.unsupported] == [1]
    assert cited.text.endswith(FILLER)  # no marker after it


def test_structured_form_spans_are_exact(cited):
    for c in cited.citations:
        a, b = c.sentence_span
        assert cited.answer[a:b] == c.sentence
        passage = cited.passages[c.passage_index]
        qa, qb = c.quote_span
        assert passage.text[qa:qb] == c.quote
        assert passage.id == c.passage_id
        assert cited.reference(c.number).passage_id == c.passage_id
        assert c.score > 0


def test_to_dict_is_json_and_format_lists_references(cited):
    data = json.loads(json.dumps(cited.to_dict()))
    assert data["text"] == cited.text
    assert data["references"][0]["passage_id"] == "travel"
    assert data["citations"][0]["quote_span"] == list(cited.citations[0].quote_span)
    assert data["sentences"][1]["supported"] is False
    assert data["unsupported"] == [1]
    text = cited.format()
    assert "[1] International travel expenses (travel)" in text
    assert "unsupported" in text
    assert str(cited) == text


def test_shared_ablations_equal_loo_per_sentence(attributor, cited):
    """The LOO fast path (one set of ablations for all sentences) = LOO run on a sentence span."""
    for sent in cited.sentences[1:]:  # the second sentence: a span that starts mid-answer
        ref = attributor.attribute(
            QUESTION, PASSAGES, cited.answer, method="loo", level="sentence", span=sent.span
        )
        for s in ref.sources:
            assert math.isclose(sent.scores[s.id], s.score, rel_tol=1e-6, abs_tol=1e-4)


def test_any_method_and_passage_level(attributor):
    """Another registered method (the per-sentence path) gives the same LOO scores; at
    passage level the quote is the whole passage."""
    fast = cite(attributor, QUESTION, PASSAGES, SUPPORTED, level="passage")
    slow = cite(attributor, QUESTION, PASSAGES, SUPPORTED, level="passage", method="loo-naive")
    assert slow.method == "loo-naive"
    for a, b in zip(fast.sentences, slow.sentences):
        for sid in a.scores:
            assert math.isclose(a.scores[sid], b.scores[sid], rel_tol=1e-4, abs_tol=1e-3)
    c = fast.citations[0]
    assert c.passage_id == "travel" and c.source_id == "travel"
    assert c.quote == PASSAGES[1].text and c.quote_span == (0, len(PASSAGES[1].text))


def test_generated_answer_is_cited(attributor):
    cited = cite(attributor, QUESTION, PASSAGES, max_new_tokens=24)
    assert cited.answer.strip()
    assert cited.timings["generation_s"] > 0
    assert cited.citations, f"nothing cited in the generated answer {cited.answer!r}"
    # SmolLM2 answers here by copying a sentence of a passage: that sentence cites the passage
    copied = [(s, p) for s in cited.sentences for p in PASSAGES if len(s.text.strip()) > 20 and s.text.strip() in p.text]
    assert copied, f"the generated answer {cited.answer!r} copies no passage sentence any more"
    for sent, passage in copied:
        assert passage.id in {c.passage_id for c in sent.citations}, sent.text
        assert all(f"[{n}]" in cited.text for n in sent.numbers)
    assert [r.number for r in cited.references] == list(range(1, len(cited.references) + 1))
    assert cited.text.replace(" [", "[").count("[") >= len(cited.references)
    for c in cited.citations:  # every marker points at the passage its quote comes from
        assert cited.reference(c.number).passage_id == c.passage_id
        assert cited.passages[c.passage_index].text[c.quote_span[0] : c.quote_span[1]] == c.quote


def test_caller_passages_unchanged(attributor):
    dicts = [p.to_dict() for p in PASSAGES]
    before = json.dumps(dicts, sort_keys=True)
    cite(attributor, QUESTION, dicts, SUPPORTED, level="passage")
    assert json.dumps(dicts, sort_keys=True) == before


def test_bad_settings_and_inputs(attributor):
    with pytest.raises(InputError):
        cite(attributor, QUESTION, PASSAGES, SUPPORTED, max_per_sentence=0)
    with pytest.raises(InputError):
        cite(attributor, QUESTION, PASSAGES, SUPPORTED, relative_threshold=1.5)
    with pytest.raises(InputError, match="no passages"):
        cite(attributor, QUESTION, [], SUPPORTED)
    with pytest.raises(InputError, match="empty"):
        cite(attributor, QUESTION, PASSAGES, "   ")


def test_absolute_threshold_can_silence_everything(attributor):
    cited = cite(attributor, QUESTION, PASSAGES, SUPPORTED, level="passage", threshold=1e6)
    assert cited.references == [] and cited.text == SUPPORTED
    assert isinstance(cited, CitedAnswer) and not cited.sentences[0].supported


# --------------------------------------------------------------------------- no model


def select_citations(scores, floor=None, **settings):
    """One sentence's choice under the "used" rules, no null floor or gate."""
    settings.setdefault("max_per_sentence", 2)  # the rules below are read against a limit of 2
    policy = USED.with_options(null_floor=None, min_context_gain=None, **settings)
    return policy.choose_sentence(SentenceEvidence(scores), answer_floor=floor)


def test_select_citations_rules():
    scores = [5.0, 3.0, 2.4, -1.0, None, float("nan"), 0.0]
    assert select_citations(scores) == [0, 1]  # >= 0.5 x 5, at most 2
    assert select_citations(scores, max_per_sentence=None) == [0, 1]
    assert select_citations(scores, relative_threshold=0.4, max_per_sentence=None) == [0, 1, 2]
    assert select_citations(scores, relative_threshold=None, max_per_sentence=None) == [0, 1, 2]
    assert select_citations(scores, threshold=2.5, relative_threshold=None) == [0, 1]
    assert select_citations(scores, floor=4.0) == [0]
    assert select_citations([-1.0, 0.0]) == []  # nothing positive: unsupported
    assert select_citations([None, float("nan")]) == []
    assert select_citations([1.0, 1.0, 1.0]) == [0, 1]  # ties: document order


def test_insert_markers_before_final_punctuation():
    answer = "It is $260 per night. Meals are $95! No idea"
    marks = [((0, 21), [1]), ((22, 36), [1, 2]), ((37, 44), [])]
    assert insert_markers(answer, marks) == "It is $260 per night [1]. Meals are $95 [1][2]! No idea"
    assert insert_markers("Yes", [((0, 3), [3])]) == "Yes [3]"
    assert insert_markers("...", [((0, 3), [1])]) == "... [1]"
    assert insert_markers("Plain.", []) == "Plain."
