"""Issue 17 items 3-5: pruning that keeps the retriever's order unless attribution says
otherwise, citations above a calibrated null, marker placement, one answer length.

Rules that are pure arithmetic or text handling use fixed scores and strings; behaviour
that depends on the model uses the real default model (smollm2-135m).
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402

from attribot_rag import DEFAULT_MAX_NEW_TOKENS, Attributor, InputError, cite, filter_passages  # noqa: E402
from attribot_rag.citations import (  # noqa: E402
    GENERIC_MIN_CONTEXT_GAIN,
    TRUNCATION_MARK,
    CitationPolicy,
    ResolvedPolicy,
    SentenceEvidence,
    calibration_for,
    insert_markers,
    is_truncated,
)

DEFAULT_MIN_CONTEXT_GAIN = GENERIC_MIN_CONTEXT_GAIN
USED = CitationPolicy(evidence="used")


def choose_citations(sentences, gains=None, per_token=False, **settings):
    """The "used" rules over (scores, tokens) per sentence (no floor or gate unless given;
    the answer-relative floor at 0.1 of the best score, so the rule under test decides)."""
    policy = USED.with_options(**{"null_floor": None, "min_context_gain": None, "answer_relative_threshold": 0.1, **settings})
    gains = gains or [None] * len(sentences)
    evidence = [SentenceEvidence(s, t, g) for (s, t), g in zip(sentences, gains)]
    return policy.choose(evidence, per_token=per_token)


def null_floor(method, model):
    """The null floor the default policy resolves to for a method's scores on a model."""
    return ResolvedPolicy.of(USED, method, model).policy.null_floor
from attribot_rag.models import get_model  # noqa: E402
from attribot_rag.pruning import DEFAULT_FUSION, GUARD_MARGIN, fused_order, keep_indices  # noqa: E402

from travel_fixture import PASSAGES, QUESTION  # noqa: E402

SELF_DESCRIPTION = "I'm a helpful AI named SmolLM, trained by Hugging Face."


@pytest.fixture(scope="module")
def attributor():
    return Attributor(get_model("smollm2-135m"))


# --------------------------------------------------------------------------- fusion rules


def test_attribution_alone_ranks_by_score_and_retrieval_alone_by_order():
    scores = [0.1, 5.0, 0.2, 0.3]
    assert fused_order(scores, fusion="attribution") == [1, 3, 2, 0]
    assert fused_order(scores, fusion="retrieval") == [0, 1, 2, 3]
    # the retriever's scores, when every passage has one, give its rank instead of the order
    assert fused_order(scores, [0.2, 0.1, 0.9, 0.5], fusion="retrieval") == [2, 3, 0, 1]
    assert fused_order(scores, [0.2, None, 0.9, 0.5], fusion="retrieval") == [0, 1, 2, 3]


def test_rrf_weights_the_retrievers_order_above_attribution():
    # passage 1: retrieval 2nd, attribution 1st; passage 0: retrieval 1st, attribution last
    # of 10: attribution that strongly disagrees moves the retriever's top down
    assert fused_order([0.0, 5.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2], fusion="rrf")[0] == 1
    # attribution 4th of 4 is not enough against the retriever's weighted vote
    assert fused_order([0.1, 5.0, 0.2, 0.3], fusion="rrf")[:2] == [0, 1]
    # two passages with their ranks swapped: the retriever's vote counts more
    assert fused_order([1.0, 2.0], fusion="rrf") == [0, 1]


def test_guarded_keeps_the_retrievers_top_unless_attribution_is_confidently_negative():
    assert keep_indices([0.1, 5.0, 0.2, 0.3], k=1, fusion="guarded") == [0]
    assert keep_indices([0.1, 5.0, 0.2, 0.3], k=2, fusion="guarded") == [0, 1]
    # slightly negative is noise: still kept
    assert keep_indices([-0.5 * GUARD_MARGIN, 5.0, 0.2, 0.3, 0.4], k=1, fusion="guarded") == [0]
    # the answer is clearly better without it: it loses its place (the rest is rrf)
    assert keep_indices([-2 * GUARD_MARGIN, 5.0, 0.2, 0.3, 0.4], k=1, fusion="guarded") == [1]
    # the top by retrieval score, not position
    assert keep_indices([0.1, 5.0, 0.2], k=1, fusion="guarded", retrieval_scores=[0.1, 0.2, 0.9]) == [2]


def test_keep_mass_counts_along_the_fused_ranking():
    # guarded: passage 0 (no positive score) first, then passage 1 holds all the mass
    assert keep_indices([0.0, 4.0, 1.0], keep_mass=0.8, fusion="guarded") == [0, 1]
    assert keep_indices([0.0, 4.0, 1.0], keep_mass=0.8, fusion="attribution") == [1]


def test_bad_fusion_and_retrieval_scores_are_refused_by_name():
    with pytest.raises(InputError, match="fusion must be one of attribution, retrieval, rrf, guarded"):
        keep_indices([1.0, 2.0], k=1, fusion="magic")
    with pytest.raises(InputError, match="retrieval_scores has 1 values for 2 passages"):
        keep_indices([1.0, 2.0], k=1, retrieval_scores=[0.3])


def test_filter_passages_fuses_with_the_retriever_order_by_default(attributor):
    # the handbook's answer passage is "travel"; put it last in retrieval order
    passages = [PASSAGES[2], PASSAGES[0], PASSAGES[1]]
    result, selection = filter_passages(attributor, QUESTION, passages, top_n=1)
    assert result.info["fusion"] == DEFAULT_FUSION
    expected = keep_indices([ps.score for ps, _ in selection], k=1, fusion=DEFAULT_FUSION)
    assert [ps.index for ps, keep in selection if keep] == expected
    # attribution alone keeps the passage the answer used most
    _, alone = filter_passages(attributor, QUESTION, passages, top_n=1, fusion="attribution")
    best = max(range(3), key=lambda i: alone[i][0].score)
    assert [ps.index for ps, keep in alone if keep] == [best]
    # the method "auto" ran AT2: weights ship for smollm2-135m
    assert result.attribution.method == "at2"


def test_filter_passages_ranks_by_retrieval_scores_when_given(attributor):
    _, selection = filter_passages(
        attributor, QUESTION, PASSAGES, top_n=1, fusion="retrieval", retrieval_scores=[0.1, 0.2, 0.9]
    )
    assert [ps.index for ps, keep in selection if keep] == [2]


# --------------------------------------------------------------------------- null floor


def test_choose_citations_drops_sources_below_the_null_floor_per_token():
    sentences = [([3.0, 0.2, None], 10), ([0.9, 0.8], 10), (None, 0)]
    assert choose_citations(sentences) == [[0], [0, 1], []]
    # 0.9 / 10 tokens = 0.09 nats per token < 0.1: not cited; 3.0 / 10 = 0.3 is
    assert choose_citations(sentences, null_floor=0.1, per_token=True) == [[0], [], []]
    # raw scores (AT2's are already a per-token mean)
    assert choose_citations(sentences, null_floor=0.85) == [[0], [0], []]


def test_null_floors_apply_to_at2_on_its_calibration_model_only():
    assert null_floor("at2", "smollm2-135m") == calibration_for("smollm2-135m").floors["at2"] > 0
    assert null_floor("loo", "smollm2-135m") is None  # not calibrated yet (BENCHMARKS.md)
    assert null_floor("at2", "some-other-model") is None
    assert null_floor("contextcite", "smollm2-135m") is None


@pytest.mark.parametrize("method", ["loo", "at2"])
def test_a_self_description_gets_no_marker(attributor, method):
    answer = "The hotel limit is $260 per night. " + SELF_DESCRIPTION
    cited = cite(attributor, QUESTION, PASSAGES, answer, method=method, policy=USED)
    assert cited.settings["null_floor"] == null_floor(method, attributor.model_name)
    assert cited.settings["min_context_gain"] == DEFAULT_MIN_CONTEXT_GAIN
    assert cited.sentences[1].citations == ()
    assert cited.text.endswith(SELF_DESCRIPTION)
    # the passages make the hotel sentence likelier, not the self-description
    assert cited.sentences[0].context_gain >= DEFAULT_MIN_CONTEXT_GAIN > cited.sentences[1].context_gain
    assert cited.sentences[0].supported


def test_without_the_context_gain_gate_at2_cites_the_self_description(attributor):
    # what the gate is for: AT2's attention always lands somewhere, and on this sentence
    # its best score (0.0287) clears the calibrated null floor (0.0269)
    answer = "The hotel limit is $260 per night. " + SELF_DESCRIPTION
    # (the default answer-relative floor, 0.3 of the claim's score, would drop it too)
    ungated = cite(attributor, QUESTION, PASSAGES, answer, method="at2", policy=USED, min_context_gain=None,
                   answer_relative_threshold=0.1)
    assert ungated.sentences[1].citations != ()
    assert ungated.sentences[1].context_gain is None
    assert ungated.settings["min_context_gain"] is None


def test_choose_citations_drops_sentences_below_the_context_gain_gate():
    sentences = [([3.0, 0.2], 10), ([0.9, 0.8], 10), ([1.0], 5)]
    gains = [1.3, 0.1, None]  # None: not measured, so not gated
    assert choose_citations(sentences, gains=gains, min_context_gain=0.25) == [[0], [], [0]]
    assert choose_citations(sentences, gains=gains, min_context_gain=None) == [[0], [0, 1], [0]]


def test_bad_min_context_gain_is_refused_by_name(attributor):
    with pytest.raises(InputError, match="min_context_gain must be a number"):
        cite(attributor, QUESTION, PASSAGES, "Yes.", min_context_gain="high")


def test_bad_null_floor_is_refused_by_name(attributor):
    with pytest.raises(InputError, match="null_floor must be a number"):
        cite(attributor, QUESTION, PASSAGES, "Yes.", null_floor="high")


# --------------------------------------------------------------------------- markers


def test_markers_go_after_the_last_word_before_final_punctuation():
    assert insert_markers("It is $260 per night.", [((0, 21), [1])]) == "It is $260 per night [1]."
    assert insert_markers('He said "yes."', [((0, 14), [2])]) == 'He said "yes [2]."'
    assert insert_markers("Meals are $95!?", [((0, 15), [1])]) == "Meals are $95 [1]!?"


def test_a_marker_never_goes_before_a_colon():
    assert insert_markers("The limits are:", [((0, 15), [1])]) == "The limits are: [1]"
    assert "[1]:" not in insert_markers("The limits are: $260.", [((0, 15), [1])])


def test_a_marker_never_goes_inside_a_word():
    # a span that stops mid-word ("Sutt|er"): the marker goes after the word
    assert insert_markers("It was at Sutter Hall", [((0, 14), [1])]) == "It was at Sutter [1] Hall"


def test_truncation_is_detected_from_missing_final_punctuation():
    assert is_truncated("It was at Sutter", (0, 16))
    assert not is_truncated("It was at Sutter.", (0, 17))
    assert not is_truncated('He said "yes."', (0, 14))
    assert not is_truncated("The limits are:", (0, 15))


def test_a_text_answer_cut_mid_sentence_is_flagged_not_cited(attributor):
    answer = "The hotel limit is $260 per night. The meal allowance is"
    cited = cite(attributor, QUESTION, PASSAGES, answer)
    last = cited.sentences[-1]
    assert last.truncated and last.citations == ()
    assert cited.truncated and last not in cited.unsupported
    assert cited.text.endswith("allowance is" + TRUNCATION_MARK)
    assert cited.to_dict()["truncated"] is True
    # a one-sentence answer without a period is a complete short answer
    assert not cite(attributor, QUESTION, PASSAGES, "$260 per night").truncated


def test_a_generated_answer_stopped_at_the_length_limit_is_flagged(attributor):
    cited = cite(attributor, QUESTION, PASSAGES, max_new_tokens=5)
    assert cited.truncated
    assert cited.sentences[-1].citations == ()
    assert cited.text.endswith(TRUNCATION_MARK)
    assert "[" not in cited.text.split()[-1]


# --------------------------------------------------------------------------- answer length


def test_one_answer_length_default():
    import inspect

    from attribot_rag.service import server

    assert DEFAULT_MAX_NEW_TOKENS == 64
    assert inspect.signature(Attributor).parameters["max_new_tokens"].default == DEFAULT_MAX_NEW_TOKENS
    assert inspect.signature(server.build_app).parameters["max_new_tokens"].default == DEFAULT_MAX_NEW_TOKENS


def test_generation_keeps_each_tokens_logprob_so_the_gate_costs_one_short_pass(attributor):
    import numpy as np

    response = attributor.generate(QUESTION, PASSAGES)
    task = attributor.task(QUESTION, PASSAGES, response)
    recorded = response.logprobs.for_prompt(task.prompt.input_ids, len(response.token_ids))
    full = task.scorer.full_pass(task.prompt.input_ids, response.token_ids).logprobs
    np.testing.assert_allclose(recorded, full, atol=1e-4)  # fp32: generation's steps vs one pass
    assert response.logprobs.for_prompt(task.prompt.input_ids[1:], len(response.token_ids)) is None
    # AT2 reads the generation capture; the gate adds only the passage-free prompt's pass
    cited = cite(attributor, QUESTION, PASSAGES, method="at2", policy=USED)
    assert cited.forward_passes == 1
    assert all(s.context_gain is not None for s in cited.sentences)
