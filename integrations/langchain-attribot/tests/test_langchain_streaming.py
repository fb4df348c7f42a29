"""AttribotCitations.transform / atransform over an upstream chain's answer chunks
(issue 33): the text passes through as it arrives, each completed sentence's citations
follow it, the whole answer's citations come last and equal invoke's."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ATTRIBOT_RAG_DTYPE", "float32")  # as tests/conftest.py: float32 runs

import asyncio  # noqa: E402

import pytest  # noqa: E402
from langchain_core.documents import Document  # noqa: E402
from langchain_core.messages import AIMessageChunk  # noqa: E402

from langchain_attribot import AttribotCitations, message_text  # noqa: E402

pytestmark = pytest.mark.slow

QUESTION = "What is the hotel limit per night for international trips?"
ANSWER = "The hotel limit for international trips is $260 per night."
FILLER = "Thank you for asking, I hope you have a lovely day."
FULL = ANSWER + " " + FILLER
DOCS = [
    Document("Full-time employees receive 22 paid vacation days per year.", id="leave"),
    Document("For international trips the hotel limit is $260 per night.", id="travel"),
    Document("The Pittsburgh office has 40 parking spaces.", id="parking"),
]
CITED_KEYS = ("citations", "cited_answer", "unsupported")


def _pieces(text, size=5):
    return [text[i : i + size] for i in range(0, len(text), size)]


def _upstream(message=False):
    """What a RAG chain streams into the step: the question and context, then the answer
    in pieces (str, or AIMessageChunk without an output parser)."""
    yield {"question": QUESTION, "context": DOCS}
    for piece in _pieces(FULL):
        yield {"answer": AIMessageChunk(content=piece) if message else piece}


async def _aupstream(message=False):
    for chunk in _upstream(message):
        await asyncio.sleep(0)
        yield chunk


@pytest.fixture(scope="module")
def step():
    from attribot_rag import Attributor, get_model

    return AttribotCitations(attributor=Attributor(get_model("smollm2-135m"), max_new_tokens=16))


def _check(chunks, whole):
    text_at = [i for i, c in enumerate(chunks) if "answer" in c]
    sentence_at = [i for i, c in enumerate(chunks) if "sentences" in c and "citations" not in c]
    assert "citations" in chunks[-1] and all("citations" not in c for c in chunks[:-1])
    assert len(text_at) == len(_pieces(FULL)) and text_at[-1] < len(chunks) - 1  # text before the last citations
    assert "".join(message_text(chunks[i]["answer"]) for i in text_at) == FULL
    assert sentence_at and sentence_at[0] < text_at[-1]  # the first sentence cited while the answer streams
    first = chunks[sentence_at[0]]["sentences"][0]
    assert first["text"] == ANSWER and first["citations"] and first["citations"][0]["passage_id"] == "travel"
    for key in CITED_KEYS:
        assert chunks[-1][key] == whole[key]  # the final citations are invoke's
    streamed = [s["text"] for i in sentence_at for s in chunks[i]["sentences"]] + [
        s["text"] for s in chunks[-1]["sentences"]
    ]
    assert streamed == [s["text"] for s in whole["sentences"]]


@pytest.mark.parametrize("message", [False, True], ids=["str", "AIMessageChunk"])
def test_transform_over_answer_chunks(step, message):
    whole = step.invoke({"question": QUESTION, "context": DOCS, "answer": FULL})
    _check(list(step.transform(_upstream(message))), whole)


def test_atransform_over_answer_chunks(step):
    whole = step.invoke({"question": QUESTION, "context": DOCS, "answer": FULL})

    async def collect():
        return [c async for c in step.atransform(_aupstream())]

    _check(asyncio.run(collect()), whole)
