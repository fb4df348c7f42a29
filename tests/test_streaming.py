"""Streaming citations: the answer arrives token by token, each sentence's citations as it
completes, and the final cited answer is the one the non-streaming call gives."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import math  # noqa: E402

import pytest  # noqa: E402

from attribot_rag import Attributor, cite  # noqa: E402
from attribot_rag.models import get_model  # noqa: E402
from attribot_rag.streaming import stream_cite  # noqa: E402

from travel_fixture import PASSAGES  # noqa: E402

QUESTION = "Summarize the travel, vacation and Lisbon office rules in three sentences."


@pytest.fixture(scope="module")
def attributor():
    return Attributor(get_model("smollm2-135m"), max_new_tokens=48)


def _collect(events):
    text, sentences, final = "", [], None
    for e in events:
        text += e.text
        if e.sentence is not None:
            sentences.append(e.sentence)
        if e.answer is not None:
            final = e.answer
    return text, sentences, final


@pytest.mark.parametrize("method", ["at2", "loo"])
def test_streamed_citations_equal_the_non_streaming_call(attributor, method):
    text, streamed, final = _collect(stream_cite(attributor, QUESTION, PASSAGES, method=method))
    assert final is not None and text == final.answer  # the text events spell the answer
    assert len(final.sentences) >= 2 and len(streamed) >= 1  # sentences completed mid-stream
    reference = cite(attributor, QUESTION, PASSAGES, final.answer, method=method)
    assert final.text == reference.text  # same markers
    assert [c.source_id for c in final.citations] == [c.source_id for c in reference.citations]
    for got, want in zip(final.sentences, reference.sentences):
        assert got.span == want.span
        for sid, score in want.scores.items():
            assert math.isclose(got.scores[sid], score, rel_tol=1e-5, abs_tol=1e-4)  # fp32 batching noise
    # a sentence's scores when it completed are its scores in the finished answer
    for early in streamed:
        late = final.sentences[early.index]
        assert early.span == late.span
        for sid, score in late.scores.items():
            assert math.isclose(early.scores[sid], score, rel_tol=1e-5, abs_tol=1e-4)


def test_at2_streaming_reads_the_generation_capture(attributor):
    _, streamed, _ = _collect(stream_cite(attributor, QUESTION, PASSAGES, method="at2"))
    for s in streamed:
        assert s.attribution.info["from_generation"] and s.attribution.forward_passes == 0


def test_stopping_early_ends_the_generation(attributor):
    events = stream_cite(attributor, QUESTION, PASSAGES, method="at2")
    first = next(events)
    assert first.text
    events.close()  # the reader stops: the worker thread must not hang, the model is free again
    assert attributor.generate(QUESTION, PASSAGES, max_new_tokens=4).text


# --------------------------------------------------------------------------- another LLM's text

# An answer "another LLM" wrote, in uneven chunks (a chunk ends mid-word, mid-number).
EXTERNAL = (
    "International hotels are limited to $260 per night. "
    "The Lisbon office opens at 08:00 on weekdays. "
    "Unused vacation days expire on March 31."
)


def _chunks(text, sizes=(7, 3, 11, 1, 5)):
    out, i, k = [], 0, 0
    while i < len(text):
        out.append(text[i : i + sizes[k % len(sizes)]])
        i += sizes[k % len(sizes)]
        k += 1
    return out


from attribot_rag import InputError  # noqa: E402
from attribot_rag.streaming import TextCitationStream, stream_cite_text  # noqa: E402


@pytest.mark.parametrize("method", ["loo", "at2"])
def test_text_stream_ends_with_cite_of_the_whole_text(attributor, method):
    chunks = _chunks(EXTERNAL)
    events = list(stream_cite_text(attributor, QUESTION, PASSAGES, iter(chunks), method=method))
    text, streamed, final = _collect(events)
    assert text == EXTERNAL and events[-1].answer is final  # the chunks spell the text; the answer is last
    assert len(streamed) == 2 and [s.index for s in streamed] == [0, 1]  # the last completes only at the end
    reference = cite(attributor, QUESTION, PASSAGES, EXTERNAL, method=method)
    assert final.answer == EXTERNAL and final.text == reference.text
    assert [s.span for s in final.sentences] == [s.span for s in reference.sentences]
    assert [s.scores for s in final.sentences] == [s.scores for s in reference.sentences]  # exactly
    assert final.citations == reference.citations and final.references == reference.references
    # each sentence's event comes right after its last character, before the next sentence
    before = ""
    for e in events:
        if e.sentence is not None:
            assert before.rstrip().endswith(e.sentence.text.strip())
        before += e.text
    if method == "loo":  # a sentence's scores on the text so far are its scores in the whole
        for early in streamed:
            late = final.sentences[early.index]
            assert early.span == late.span and early.text == late.text
            for sid, score in late.scores.items():
                assert math.isclose(early.scores[sid], score, rel_tol=1e-5, abs_tol=1e-4)
    else:  # no generation capture for external text: a forward pass per sentence
        assert all(not s.attribution.info.get("from_generation") for s in streamed)


def test_text_stream_push_api_and_empty_stream(attributor):
    stream = TextCitationStream(attributor, QUESTION, PASSAGES, method="loo", max_per_sentence=1)
    events = [e for c in _chunks(EXTERNAL, (20,)) for e in stream.add(c)]
    assert stream.text == EXTERNAL and sum(e.sentence is not None for e in events) == 2
    final = stream.close()[-1].answer
    assert final.settings["max_per_sentence"] == 1 and all(len(s.citations) <= 1 for s in final.sentences)
    with pytest.raises(InputError, match="answer stream is empty"):
        list(stream_cite_text(attributor, QUESTION, PASSAGES, iter([])))
    with pytest.raises(InputError, match="answer stream is empty"):
        list(stream_cite_text(attributor, QUESTION, PASSAGES, ["", "  "]))
    with pytest.raises(InputError, match="expected a string"):
        list(stream_cite_text(attributor, QUESTION, PASSAGES, [b"bytes"]))
