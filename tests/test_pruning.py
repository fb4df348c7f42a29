"""Context pruning: draft -> attribute -> keep -> answer again (real model), and the
selection rule (no model)."""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402

from attribot_rag import Attributor, InputError, PruneResult, prune  # noqa: E402
from attribot_rag.models import get_model  # noqa: E402
from attribot_rag.pruning import keep_indices  # noqa: E402

from travel_fixture import ANSWER as DRAFT  # noqa: E402
from travel_fixture import PASSAGES, QUESTION  # noqa: E402


@pytest.fixture(scope="module")
def attributor():
    return Attributor(get_model("smollm2-135m"), max_new_tokens=24)


# --------------------------------------------------------------------------- real model


def test_prune_keeps_the_supporting_passage_and_answers_again(attributor):
    # In this order the model's draft reads the travel passage (it says "$95 per day",
    # the meal allowance); pruning keeps that passage and the second pass answers from it.
    order = [PASSAGES[0], PASSAGES[2], PASSAGES[1]]
    dicts = [p.to_dict() for p in order]
    before = json.dumps(dicts, sort_keys=True)
    result = prune(attributor, QUESTION, dicts, k=1, max_new_tokens=24)
    assert isinstance(result, PruneResult)
    assert [p.id for p in result.kept] == ["travel"]
    assert [p.id for p in result.dropped] == ["vacation", "lisbon"]
    assert result.kept_indices == [2] and result.dropped_indices == [0, 1]
    assert result.kept[0].rank == 1 and result.kept[0].score > 0
    assert all(d.score < result.kept[0].score for d in result.dropped)
    assert result.draft.strip() and result.answer and result.answer.strip()
    assert "answer_s" in result.timings  # a second generation ran
    assert json.dumps(dicts, sort_keys=True) == before  # the caller's passages are unchanged
    data = json.loads(json.dumps(result.to_dict()))
    assert data["kept"][0]["id"] == "travel" and len(data["dropped"]) == 2
    text = result.format()
    assert "keep" in text and "drop" in text and "Pruned (1 passages)" in text


def test_k_larger_than_input_keeps_everything(attributor):
    result = prune(attributor, QUESTION, PASSAGES, k=10, max_new_tokens=24)
    assert [p.id for p in result.kept] == ["vacation", "travel", "lisbon"]
    assert result.dropped == []
    # Greedy decoding over the same prompt gives the same answer: no second generation.
    assert result.answer == result.draft
    assert "answer_s" not in result.timings


def test_given_draft_from_another_model(attributor):
    result = prune(attributor, QUESTION, PASSAGES, k=2, draft=DRAFT, max_new_tokens=24)
    assert result.draft == DRAFT
    assert "travel" in [p.id for p in result.kept] and len(result.kept) == 2
    assert result.answer is not None and "answer_s" in result.timings


def test_keep_mass_with_a_given_draft_and_no_second_pass(attributor):
    result = prune(attributor, QUESTION, PASSAGES, keep_mass=0.5, draft=DRAFT, second_pass=False)
    assert result.draft == DRAFT and result.answer is None
    assert result.kept_indices == [1]  # the travel passage holds most of the positive score
    assert result.info["draft_generated"] is False
    assert result.kept_passages == [PASSAGES[1]]


def test_empty_context_is_a_clear_error(attributor):
    with pytest.raises(InputError, match="no passages"):
        prune(attributor, QUESTION, [], k=2)
    with pytest.raises(InputError, match="k must be"):
        prune(attributor, QUESTION, PASSAGES, k=0, draft=DRAFT)
    with pytest.raises(InputError, match="keep_mass"):
        prune(attributor, QUESTION, PASSAGES, keep_mass=1.5, draft=DRAFT)


# --------------------------------------------------------------------------- no model


def test_keep_indices_rules():
    scores = [0.5, 4.0, -1.0, 2.0, None]
    assert keep_indices(scores, k=2) == [1, 3]  # original order
    assert keep_indices(scores, k=99) == [0, 1, 2, 3, 4]
    assert keep_indices(scores, keep_mass=0.6) == [1]  # 4.0 of 6.5 positive
    assert keep_indices(scores, keep_mass=0.7) == [1, 3]
    assert keep_indices(scores, keep_mass=1.0) == [0, 1, 3]  # never the non-positive ones
    assert keep_indices(scores, k=1, keep_mass=1.0) == [1]  # both: the smaller set
    assert keep_indices(scores) == [0, 1, 3]  # default k=3
    assert keep_indices([float("nan"), 1.0], k=1) == [1]


def test_never_prunes_to_empty():
    assert keep_indices([-3.0, -1.0, -2.0], keep_mass=0.9) == [1]
    assert keep_indices([0.0, 0.0], keep_mass=0.5) == [0]
    assert keep_indices([None, None], k=1) == [0]


def test_keep_indices_validation():
    with pytest.raises(InputError, match="no passages to prune"):
        keep_indices([], k=1)
    with pytest.raises(InputError, match="k must be a positive integer, got 0"):
        keep_indices([1.0], k=0)
    with pytest.raises(InputError, match="k must be a positive integer, got True"):
        keep_indices([1.0], k=True)
    with pytest.raises(InputError, match=r"keep_mass must be in \(0, 1\], got 0"):
        keep_indices([1.0], keep_mass=0)


def test_filter_passages_selects_without_a_second_answer(attributor):
    from attribot_rag import filter_passages

    before = [p.text for p in PASSAGES]
    result, selection = filter_passages(attributor, QUESTION, PASSAGES, top_n=1, method="loo")
    assert result.answer is None  # no second pass: the framework writes the answer
    assert [ps.index for ps, _ in selection] == [0, 1, 2]  # input order
    assert sum(keep for _, keep in selection) == 1
    assert [ps.rank for ps, _ in selection if _] == [1]
    _, sel_all = filter_passages(attributor, QUESTION, PASSAGES)
    assert all(keep for _, keep in sel_all)  # neither top_n nor keep_mass: keep all, ranked
    assert sorted(ps.rank for ps, _ in sel_all) == [1, 2, 3]
    assert [p.text for p in PASSAGES] == before
