"""A user-defined method (README "Methods"): registered with register_method, then used by
name like the built-in ones: Attributor.attribute, per-sentence queries, the CLI, bench."""

import json

import numpy as np
import pytest

from attribot_rag import AttributionMethod, register_method
from attribot_rag.cli import main
from attribot_rag.evaluation.bench import run_bench
from attribot_rag.methods import METHODS, TokenEffects, available_methods

from conftest import TRAVEL_QUESTION

NAME = "toy-length"
ANSWER = "The limit is $260 per night. Meals are covered too."


@pytest.fixture
def toy_method():
    """A toy method: each answer token credits a source with ``scale`` x its length."""

    @register_method
    class ToyLength(AttributionMethod):
        name = NAME

        def __init__(self, scale: float = 1.0) -> None:
            self.scale = scale

        def effects(self, task):
            per_token = np.array([[self.scale * len(s.text)] * len(task.response) for s in task.sources])
            return TokenEffects(per_token)

    yield ToyLength
    del METHODS[NAME]  # leave the registry as the other tests expect it


def _expected(result, scale=1.0):
    a, b = result.target_tokens
    return np.array([scale * len(s.source.text) * (b - a) for s in result.sources])


def test_registered_method_is_used_by_name(toy_method, attributor, handbook_passages):
    assert NAME in available_methods()
    res = attributor.attribute(TRAVEL_QUESTION, handbook_passages, ANSWER, method=NAME, level="sentence")
    assert res.method == NAME
    np.testing.assert_allclose(res.scores, _expected(res))
    longest = max(res.sources, key=lambda s: len(s.source.text))
    assert res.top(1)[0].id == longest.id
    # options go to its constructor
    doubled = attributor.attribute(TRAVEL_QUESTION, handbook_passages, ANSWER, method=NAME, scale=2.0)
    np.testing.assert_allclose(doubled.scores, _expected(doubled, 2.0))
    # other spans of the answer are queries of its effects
    sentences = res.per_sentence()
    assert [ANSWER[a:b].strip() for (a, b), _ in sentences] == ["The limit is $260 per night.", "Meals are covered too."]
    n_tokens = len(attributor.task(TRAVEL_QUESTION, handbook_passages, ANSWER).response)
    for _, sent in sentences:
        a, b = sent.target_tokens
        assert 0 < b - a < n_tokens
        np.testing.assert_allclose(sent.scores, _expected(sent))


@pytest.mark.slow  # the CLI loads smollm2-135m
def test_registered_method_in_the_cli(toy_method, tmp_path, capsys, handbook_passages):
    path = tmp_path / "passages.json"
    path.write_text(json.dumps([p.to_dict() for p in handbook_passages]))
    code = main(["attribute", "-q", TRAVEL_QUESTION, "-p", str(path), "-a", ANSWER, "--method", NAME, "--json", "--model", "smollm2-135m"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["method"] == NAME
    a, b = data["target_tokens"]
    assert [s["score"] for s in data["sources"]] == pytest.approx([len(p.text) * (b - a) for p in handbook_passages])


@pytest.mark.slow  # run_bench loads smollm2-135m
def test_registered_method_in_bench(toy_method, tmp_path):
    example = {
        "_id": "ex-ada",
        "question": "Where was Ada Lovelace born?",
        "answer": "London",
        "supporting_facts": [["Ada", 1]],
        "context": [
            ["Lyon", ["Lyon is a city in France. ", "It lies on the Rhone and the Saone rivers."]],
            ["Ada", ["Ada Lovelace was born in London."]],
            ["Tea", ["Green tea comes from China. ", "Black tea is oxidised after picking."]],
        ],
    }
    data = tmp_path / "mini.json"
    data.write_text(json.dumps([example]))
    label = f"{NAME}:scale=2"
    report = run_bench(
        str(data), n=1, level="passage", methods=[label], max_new_tokens=4, cache_dir=None, progress=False
    )
    row = report["methods"][label]
    # the bench ranks by its scores: the two longer passages first, the (short) gold one last
    assert row["gold_recall_at_2"] == 0.0 and row["gold_recall_at_3"] == 1.0
    assert 0.0 <= row["map_vs_exact"] <= 1.0
    assert row["tokens_per_example"] == 0  # it ran no model
