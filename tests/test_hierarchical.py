"""hierarchical: passage pass, keep rule, sentence pass; keep = all equals exact sentence LOO."""

import numpy as np
import pytest

from attribot_rag import Attributor
from attribot_rag.errors import InputError, MethodNotAvailableError
from attribot_rag.methods.hierarchical import Hierarchical, select_passages
from attribot_rag.models import get_model

PASSAGES = [
    {"id": "lyon", "title": "Lyon", "text": "Lyon is a city in France. It lies on the Rhone."},
    {"id": "ada", "title": "Ada", "text": "Ada Lovelace wrote the first program. She was born in London."},
    {"id": "tea", "title": "Tea", "text": "Green tea comes from China. Black tea is oxidised."},
    {"id": "owl", "title": "Owls", "text": "Owls hunt at night."},
]
QUESTION = "Where was Ada Lovelace born?"
ANSWER = "She was born in London."


@pytest.fixture(scope="module")
def attributor():
    return Attributor(get_model("smollm2-135m"), level="sentence")


@pytest.fixture(scope="module")
def exact(attributor):
    task = attributor.task(QUESTION, PASSAGES, ANSWER)
    return attributor.run(task, method="loo").scores


def test_select_passages_top_k_keeps_ties():
    s = np.array([1.0, 3.0, 2.0, 2.0, -1.0])
    assert select_passages(s, keep=1) == [1]
    assert select_passages(s, keep=2) == [1, 2, 3]  # tie at the cutoff kept
    assert select_passages(s, keep=10) == [0, 1, 2, 3, 4]


def test_select_passages_mass():
    s = np.array([1.0, 6.0, 3.0, -2.0])  # positive total 10
    assert select_passages(s, keep_mass=0.5) == [1]
    assert select_passages(s, keep_mass=0.6) == [1]
    assert select_passages(s, keep_mass=0.61) == [1, 2]
    assert select_passages(s, keep_mass=1.0) == [0, 1, 2]
    # nothing positive: keep the best one so that something is scored
    assert select_passages(np.array([-1.0, -0.5, -3.0]), keep_mass=0.9) == [1]


def test_options_checked():
    with pytest.raises(InputError, match="give keep .* or keep_mass, not both"):
        Hierarchical(keep=2, keep_mass=0.5)
    with pytest.raises(InputError, match="keep must be a positive integer, got 0"):
        Hierarchical(keep=0)
    with pytest.raises(InputError, match=r"keep_mass must be in \(0, 1\], got 1.5"):
        Hierarchical(keep_mass=1.5)
    with pytest.raises(InputError, match="sentence_context must be one of full, kept, got 'half'"):
        Hierarchical(sentence_context="half")


def test_keep_all_equals_exact_sentence_loo(attributor, exact):
    task = attributor.task(QUESTION, PASSAGES, ANSWER)
    res = attributor.run(task, method="hierarchical", keep=len(PASSAGES), sentence_context="full")
    assert not np.isnan(res.scores).any()
    np.testing.assert_allclose(res.scores, exact, atol=2e-4, rtol=0)
    assert res.info["kept_passages"] == [p["id"] for p in PASSAGES]


def test_dropped_passages_are_not_scored(attributor, exact):
    task = attributor.task(QUESTION, PASSAGES, ANSWER)
    res = attributor.run(task, method="hierarchical", keep=1)
    kept = res.info["kept_passages"]
    assert len(kept) == 1
    passage_scores = np.array(res.info["passage_scores"])
    assert kept == [PASSAGES[int(np.argmax(passage_scores))]["id"]]
    for s in res.sources:
        if s.source.passage_id in kept:
            assert s.score is not None
            # full context: a kept sentence's score is its exact LOO score
            assert s.score == pytest.approx(exact[s.source.index], abs=2e-4)
        else:
            assert s.score is None and s.rank is None


def test_kept_context_scores_kept_sentences(attributor):
    task = attributor.task(QUESTION, PASSAGES, ANSWER)
    res = attributor.run(task, method="hierarchical", keep_mass=0.9, sentence_context="kept")
    kept = res.info["kept_passages"]
    assert 0 < len(kept) < len(PASSAGES) and res.info["sentence_context"] == "kept"
    for s in res.sources:
        assert (s.score is not None) == (s.source.passage_id in kept)
    # the values: exact sentence LOO over a context of the kept passages only (in order)
    kept_passages = [p for p in PASSAGES if p["id"] in kept]
    assert [p["id"] for p in kept_passages] == kept
    ref = attributor.run(attributor.task(QUESTION, kept_passages, ANSWER), method="loo-naive")
    by_id = {s.id: s.score for s in ref.sources}
    got = {s.id: s.score for s in res.sources if s.score is not None}
    assert set(got) == set(by_id)
    for sid, score in got.items():
        assert score == pytest.approx(by_id[sid], abs=2e-4), sid
    assert res.info["kept_context_ll"] == pytest.approx(ref.info["full_ll"], abs=2e-4)
    # and they differ from the full-context scores (otherwise this test could not tell them apart)
    full = attributor.run(attributor.task(QUESTION, PASSAGES, ANSWER), method="hierarchical", keep_mass=0.9)
    assert max(abs(got[s.id] - s.score) for s in full.sources if s.score is not None) > 1e-3


def test_passage_level_task_is_the_passage_rankers_scores(attributor):
    task = attributor.task(QUESTION, PASSAGES, ANSWER, level="passage")
    ref = attributor.run(task, method="loo").scores
    task = attributor.task(QUESTION, PASSAGES, ANSWER, level="passage")
    res = attributor.run(task, method="hierarchical", keep=1, passage_method="loo")
    np.testing.assert_allclose(res.scores, ref, atol=2e-4, rtol=0)
    # by default SmolLM2's shipped AT2 weights rank the passages, so the scores are AT2's
    at2 = attributor.run(attributor.task(QUESTION, PASSAGES, ANSWER, level="passage"), method="at2").scores
    auto = attributor.run(attributor.task(QUESTION, PASSAGES, ANSWER, level="passage"), method="hierarchical")
    np.testing.assert_allclose(auto.scores, at2, rtol=1e-5, atol=1e-7)
    assert auto.info["passage_method"] == "at2"


def _renamed(lm, name):
    """The same weights under a name no AT2 weights ship for."""
    import dataclasses

    return dataclasses.replace(lm, name=name)


def test_default_is_the_at2_guided_setting_where_weights_ship(attributor):
    default = attributor.run(attributor.task(QUESTION, PASSAGES, ANSWER), method="hierarchical")
    explicit = attributor.run(
        attributor.task(QUESTION, PASSAGES, ANSWER),
        method="hierarchical", passage_method="at2", keep_mass=0.5, top_sentences=0.3,
    )
    np.testing.assert_allclose(default.scores, explicit.scores, atol=1e-6, rtol=0, equal_nan=True)
    assert default.info["passage_method"] == "at2"
    assert default.info["rule"] == {"keep_mass": 0.5} and default.info["top_sentences"] == 0.3
    assert "AT2 weights ship for 'smollm2-135m'" in default.info["passage_method_choice"]
    assert explicit.info["passage_method_choice"] == "given"
    # a ranker named by the caller keeps the plain rule (the measured `passage_method=at2` row)
    named = attributor.run(attributor.task(QUESTION, PASSAGES, ANSWER), method="hierarchical", passage_method="at2")
    assert named.info["rule"] == {"keep_mass": 0.75} and named.info["top_sentences"] is None
    # a keep rule the caller gives replaces the setting's own (and its top_sentences)
    keep1 = attributor.run(attributor.task(QUESTION, PASSAGES, ANSWER), method="hierarchical", keep=1)
    assert keep1.info["rule"] == {"keep": 1} and keep1.info["top_sentences"] is None
    assert keep1.info["passage_method"] == "at2"


def test_default_without_weights_is_passage_loo_and_says_so(attributor):
    other = Attributor(_renamed(attributor.lm, "smollm2-renamed"), level="sentence")
    default = other.run(other.task(QUESTION, PASSAGES, ANSWER), method="hierarchical")
    loo = other.run(other.task(QUESTION, PASSAGES, ANSWER), method="hierarchical", passage_method="loo", keep_mass=0.75)
    np.testing.assert_allclose(default.scores, loo.scores, atol=1e-6, rtol=0, equal_nan=True)
    assert default.info["passage_method"] == "loo" and default.info["rule"] == {"keep_mass": 0.75}
    assert default.info["passage_method_choice"] == "auto: no AT2 weights ship for 'smollm2-renamed', so exact passage LOO"
    # top_sentences needs the cheap ranker "auto" could not find: an error, not a silent LOO run
    with pytest.raises(MethodNotAvailableError, match="top_sentences needs a cheap passage_method.*no AT2 weights"):
        other.run(other.task(QUESTION, PASSAGES, ANSWER), method="hierarchical", top_sentences=0.3)


def test_passage_method_ranks_passages_then_exact_sentence_loo(attributor, exact):
    task = attributor.task(QUESTION, PASSAGES, ANSWER)
    res = attributor.run(task, method="hierarchical", passage_method="attention", keep=1)
    ptask = attributor.task(QUESTION, PASSAGES, ANSWER, level="passage")
    att_scores = attributor.run(ptask, method="attention").scores
    best = int(np.argmax(att_scores))
    assert res.info["passage_method"] == "attention"
    assert res.info["kept_passage_indices"] == [best]
    got = np.array(res.scores, dtype=float)
    in_best = np.array([s.passage_index == best for s in task.sources])
    # sentences of the kept passage carry their exact LOO scores; the rest are not scored
    np.testing.assert_allclose(got[in_best], np.array(exact, dtype=float)[in_best], atol=2e-4, rtol=0)
    assert np.isnan(got[~in_best]).all()
    # the default passage pass is exact passage LOO
    assert Hierarchical(passage_method="loo").passage_method is None


def test_passage_method_at2_with_the_shipped_weights(attributor, exact):
    """The README's passage_method="at2": AT2 (SmolLM2's shipped weights) ranks the
    passages, then exact sentence LOO inside the kept ones."""
    task = attributor.task(QUESTION, PASSAGES, ANSWER)
    res = attributor.run(task, method="hierarchical", passage_method="at2", keep=2)
    at2 = attributor.run(attributor.task(QUESTION, PASSAGES, ANSWER, level="passage"), method="at2").scores
    best2 = sorted(np.argsort(-at2, kind="stable")[:2].tolist())
    assert res.info["passage_method"] == "at2"
    np.testing.assert_allclose(res.info["passage_scores"], at2, rtol=1e-5, atol=1e-7)
    assert res.info["kept_passage_indices"] == best2
    got = np.array(res.scores, dtype=float)
    kept = np.array([s.passage_index in best2 for s in task.sources])
    np.testing.assert_allclose(got[kept], np.array(exact, dtype=float)[kept], atol=2e-4, rtol=0)
    assert np.isnan(got[~kept]).all()


def test_top_sentences_options_checked():
    with pytest.raises(InputError, match="top_sentences needs a passage_method"):
        Hierarchical(passage_method="loo", top_sentences=0.3)
    with pytest.raises(InputError, match="sentence_context='full'"):
        Hierarchical(passage_method="at2", top_sentences=0.3, sentence_context="kept")
    for bad in (0, 1.5, -0.2, True, "half"):
        with pytest.raises(InputError, match="top_sentences"):
            Hierarchical(passage_method="at2", top_sentences=bad)


def test_top_sentences_also_scores_the_first_stage_best_sentences(attributor, exact):
    task = attributor.task(QUESTION, PASSAGES, ANSWER)
    first = np.array(attributor.run(task, method="attention").scores, dtype=float)
    task = attributor.task(QUESTION, PASSAGES, ANSWER)
    res = attributor.run(task, method="hierarchical", passage_method="attention", keep=1, top_sentences=0.25)
    pidx = np.array([s.passage_index for s in task.sources])
    # passages ranked by the sum of their sentences' first-stage scores
    summed = np.bincount(pidx, weights=first, minlength=len(PASSAGES))
    np.testing.assert_allclose(res.info["passage_scores"], summed, rtol=1e-5)
    best_passage = int(np.argmax(summed))
    assert res.info["kept_passage_indices"] == [best_passage]
    n_top = int(np.ceil(0.25 * len(task.sources)))
    top = set(np.argsort(-first, kind="stable")[:n_top].tolist())
    expected = {i for i in range(len(task.sources)) if pidx[i] == best_passage} | top
    got = np.array(res.scores, dtype=float)
    assert {i for i in range(len(got)) if not np.isnan(got[i])} == expected
    assert res.info["extra_sentences"] == sorted(i for i in top if pidx[i] != best_passage)
    assert res.info["extra_sentences"], "the case should add a sentence outside the kept passage"
    # every scored sentence carries its exact LOO score (full context)
    idx = sorted(expected)
    np.testing.assert_allclose(got[idx], np.array(exact, dtype=float)[idx], atol=2e-4, rtol=0)
