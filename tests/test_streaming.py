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
    return Attributor(get_model(), max_new_tokens=48)


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
