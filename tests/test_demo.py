"""The offline demo: FAISS retrieval with all-MiniLM-L6-v2 over the bundled handbook."""

import io

import pytest
from rich.console import Console

from attribot_rag.demo import load_corpus, run_demo
from attribot_rag.index import PassageIndex


def test_bundled_corpus_is_valid():
    passages = load_corpus()
    assert 20 <= len(passages) <= 40
    assert len({p.id for p in passages}) == len(passages)
    assert all(p.title and len(p.text.split()) >= 30 for p in passages)


@pytest.mark.slow  # loads the MiniLM embedder
def test_retrieval_finds_the_right_passage():
    retriever = PassageIndex.build(load_corpus())
    hits = retriever.search("What is the nightly hotel limit for international business travel?", k=3)
    assert hits[0][0].id == "hb-05"
    assert hits[0][1] >= hits[1][1] >= hits[2][1]


def test_demo_runs_end_to_end_offline(lm):
    out = io.StringIO()
    console = Console(file=out, width=120, color_system=None)
    question = "On what date do annual salary adjustments take effect?"
    (result,) = run_demo(model=lm, k=3, questions=[question], console=console)
    text = out.getvalue()
    assert question in text and "Answer:" in text and "hb-27" in text
    assert "February 1" in result.answer
    assert result.ranked()[0].id == "hb-27"
