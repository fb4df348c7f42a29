"""Foundation behaviour: exact LOO with prefix reuse, spans, layout, results."""

import json

import numpy as np
import pytest

from attribot_rag import Attribution, Passage, PromptLayout, make_sources, split_sentences
from attribot_rag.scoring import Scorer, common_prefix, response_from_text

from conftest import TRAVEL_QUESTION

TOL = 1e-3  # nats, the bound for loo vs loo-naive

# Passages built so that removing some sources changes how neighbouring tokens merge.
# Sentence level: the last passage's only sentence ends the context, and without it
# ".\n\n\n\n" tokenizes differently from ".\n\n" + "The". Passage level: chunks with
# leading or trailing newlines and spaces (as chunkers produce) merge with the
# blank line that separates passages.
MERGE_PASSAGES = {
    "sentence": [
        Passage(id="a", text="The rate is 12%. It rises in May."),
        Passage(id="b", text="Code:XJ-9. Then 42."),
        Passage(id="c", text="The sky is blue!!! And then?"),
    ],
    "passage": [
        Passage(id="a", text="The rate is 12%.\n"),
        Passage(id="b", text="\nThen 42."),
        Passage(id="c", text="  The sky."),
    ],
}
MERGE_QUESTION = "What is the rate?"
MERGE_ANSWER = "The rate is 12%."


def _merge_sources(layout, passages, level):
    sources = make_sources(passages, level)
    full = layout.render(MERGE_QUESTION, passages, sources)
    merged = []
    for s in sources:
        ablated = layout.render(MERGE_QUESTION, passages, sources, [s.index])
        if common_prefix(full.input_ids, ablated.input_ids) < full.token_span(s.index)[0]:
            merged.append(s.id)
    return merged


@pytest.mark.parametrize("level", ["passage", "sentence"])
def test_loo_equals_naive_on_generated_answer(attributor, handbook_passages, level):
    answer = attributor.generate(TRAVEL_QUESTION, handbook_passages)
    task = attributor.task(TRAVEL_QUESTION, handbook_passages, answer, level=level)
    fast = attributor.run(task, method="loo")
    naive = attributor.run(attributor.task(TRAVEL_QUESTION, handbook_passages, answer, level=level), method="loo-naive")
    assert len(fast.sources) == len(naive.sources) == len(make_sources(handbook_passages, level))
    np.testing.assert_allclose(fast.scores, naive.scores, atol=TOL, rtol=0)
    # prefix reuse feeds fewer tokens through the model than full passes
    assert fast.forward_tokens < naive.forward_tokens


@pytest.mark.parametrize("level", ["passage", "sentence"])
def test_loo_equals_naive_when_removal_changes_token_merges(attributor, level):
    passages = MERGE_PASSAGES[level]
    merged = _merge_sources(attributor.layout, passages, level)
    assert merged, "the fixture must contain a source whose removal re-merges tokens before it"
    fast = attributor.attribute(MERGE_QUESTION, passages, MERGE_ANSWER, method="loo", level=level)
    naive = attributor.attribute(MERGE_QUESTION, passages, MERGE_ANSWER, method="loo-naive", level=level)
    np.testing.assert_allclose(fast.scores, naive.scores, atol=TOL, rtol=0)


def test_loo_is_independent_of_batch_size_and_attention_kernel(attributor, handbook_passages):
    answer = "The hotel limit is $260 per night."
    runs = []
    for batch_size, split in [(1, False), (3, True), (16, True)]:
        task = attributor.task(TRAVEL_QUESTION, handbook_passages, answer, level="sentence")
        task.scorer.split_attention = split
        runs.append(attributor.run(task, method="loo", batch_size=batch_size).scores)
    for other in runs[1:]:
        np.testing.assert_allclose(other, runs[0], atol=TOL, rtol=0)


def test_answer_span_is_a_slice_of_the_whole(attributor, handbook_passages):
    answer = "The hotel limit is $260 per night. Meals are covered."
    first = (0, answer.index(".") + 1)
    whole = attributor.attribute(TRAVEL_QUESTION, handbook_passages, answer)
    part = attributor.attribute(TRAVEL_QUESTION, handbook_passages, answer, span=first)
    naive_part = attributor.attribute(
        TRAVEL_QUESTION, handbook_passages, answer, span=first, method="loo-naive"
    )
    assert part.target_tokens[0] == 0 and part.target_tokens[1] < whole.target_tokens[1]
    assert part.target_span is not None and answer[slice(*part.target_span)].startswith("The hotel")
    np.testing.assert_allclose(part.scores, naive_part.scores, atol=TOL, rtol=0)
    assert not np.allclose(part.scores, whole.scores)


def test_supporting_passage_ranks_first(attributor, handbook_passages):
    result = attributor.attribute(
        TRAVEL_QUESTION, handbook_passages, "The hotel limit is $260 per night.", level="passage"
    )
    assert result.ranked()[0].id == "travel"
    assert result.ranked()[0].score > 1.0
    ranks = sorted(s.rank for s in result.sources)
    assert ranks == [1, 2, 3]
    # sources keep their original order
    assert [s.id for s in result.sources] == ["leave", "travel", "parking"]


# ----------------------------------------------------------------------------- spans


@pytest.mark.parametrize("level", ["passage", "sentence"])
def test_source_spans_map_to_their_text(lm, handbook_passages, level):
    layout = PromptLayout(lm.tokenizer)
    sources = make_sources(handbook_passages, level)
    prompt = layout.render(TRAVEL_QUESTION, handbook_passages, sources)
    for s in sources:
        passage = handbook_passages[s.passage_index]
        assert passage.text[s.start : s.end] == s.text
        a, b = prompt.char_spans[s.index]
        assert prompt.text[a:b] == s.text
        ta, tb = prompt.token_span(s.index)
        decoded = lm.tokenizer.decode(prompt.input_ids[ta:tb])
        assert s.text in decoded
        # the tokens just inside the span are needed: dropping either end loses text
        assert s.text not in lm.tokenizer.decode(prompt.input_ids[ta + 1 : tb])
        assert s.text not in lm.tokenizer.decode(prompt.input_ids[ta : tb - 1])


def test_ablation_removes_exactly_the_source_text(lm, handbook_passages):
    layout = PromptLayout(lm.tokenizer)
    sources = make_sources(handbook_passages, "sentence")
    full = layout.render(TRAVEL_QUESTION, handbook_passages, sources)
    for s in sources:
        ablated = layout.render(TRAVEL_QUESTION, handbook_passages, sources, [s.index])
        a, b = full.char_spans[s.index]
        removed_len = len(full.text) - len(ablated.text)
        # the sentence and one whitespace gap next to it are gone, nothing else
        assert ablated.text in (full.text[:a] + full.text[a + removed_len :], full.text[: b - removed_len] + full.text[b:])
        assert full.text[a:b] == s.text and removed_len - len(s.text) <= 1
        for other in sources:
            if other.index != s.index:
                x, y = ablated.char_spans[other.index]
                assert ablated.text[x:y] == other.text
    # passage level: a removed passage is as if it had never been retrieved
    psources = make_sources(handbook_passages, "passage")
    ablated = layout.render(TRAVEL_QUESTION, handbook_passages, psources, [1])
    without = layout.render(TRAVEL_QUESTION, [handbook_passages[0], handbook_passages[2]])
    assert ablated.text == without.text
    assert "International travel" not in ablated.text and "$260" not in ablated.text


def test_plain_prompt_format_without_chat_template(lm, handbook_passages):
    layout = PromptLayout(lm.tokenizer, use_chat_template=False)
    sources = make_sources(handbook_passages, "sentence")
    prompt = layout.render(TRAVEL_QUESTION, handbook_passages, sources)
    assert prompt.text.startswith(layout.system_prompt + "\n\nDocuments:\n\nTitle: Vacation\n")
    assert prompt.text.endswith(f"Question: {TRAVEL_QUESTION}\n{layout.instruction}\n\nAnswer:")
    assert "<|im_start|>" not in prompt.text
    for s in sources:
        a, b = prompt.char_spans[s.index]
        assert prompt.text[a:b] == s.text


def test_chat_template_frames_the_documents(lm, handbook_passages):
    layout = PromptLayout(lm.tokenizer)
    prompt = layout.render(TRAVEL_QUESTION, handbook_passages)
    expected = lm.tokenizer.apply_chat_template(
        [
            {"role": "system", "content": layout.system_prompt},
            {"role": "user", "content": layout.build_content(TRAVEL_QUESTION, handbook_passages)[0]},
        ],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert prompt.text == expected


def test_sentence_splitter_keeps_abbreviations_together():
    text = "Dr. Smith moved to Washington D.C. in 2010. He left at 5 p.m. on Monday!  Then 3.5 km."
    spans = split_sentences(text)
    sentences = [text[a:b] for a, b in spans]
    assert sentences == [
        "Dr. Smith moved to Washington D.C. in 2010.",
        "He left at 5 p.m. on Monday!",
        "Then 3.5 km.",
    ]


# ----------------------------------------------------------------------------- scoring


def test_per_token_logprobs_sum_and_prefix_reuse_match(lm, handbook_passages):
    layout = PromptLayout(lm.tokenizer)
    prompt = layout.render(TRAVEL_QUESTION, handbook_passages)
    response = response_from_text(lm.tokenizer, "The limit is $260.")
    scorer = Scorer(lm)
    lp = scorer.logprobs(prompt.input_ids, response.token_ids)
    assert lp.shape == (len(response),) and np.all(lp <= 0)
    full = scorer.full_pass(prompt.input_ids, response.token_ids)
    np.testing.assert_allclose(full.logprobs, lp, atol=1e-4)
    # an "ablation" identical to the full prompt reproduces the full log-probs
    (same,) = scorer.ablation_logprobs(full, [prompt.input_ids])
    np.testing.assert_allclose(same, lp, atol=1e-4)


def test_generation_reusing_a_prompt_prefix_gives_the_same_answer(lm, handbook_passages):
    from attribot_rag.at2.capture import CaptureObserver, find_capture

    layout = PromptLayout(lm.tokenizer)
    scorer = Scorer(lm)
    full_prompt = layout.render(TRAVEL_QUESTION, handbook_passages).input_ids
    pruned = layout.render(TRAVEL_QUESTION, handbook_passages[:2]).input_ids  # shares a long start
    observe = [CaptureObserver()]
    first = scorer.generate(full_prompt, max_new_tokens=12, keep_prompt_kv=True, observers=observe)
    assert first.prompt_kv is not None and first.prompt_kv.ids == list(full_prompt)
    assert find_capture(first, lm.model, full_prompt)[0] is not None  # a full run still feeds AT2
    assert common_prefix(full_prompt, pruned) >= 16
    plain = scorer.generate(pruned, max_new_tokens=12)
    # of several caches the one sharing the longest start is used
    plain_kv = scorer.generate(layout.render("Where is Lisbon?", handbook_passages[2:]).input_ids,
                               max_new_tokens=2, keep_prompt_kv=True)
    reused = scorer.generate(pruned, max_new_tokens=12, prefix=[plain_kv.prompt_kv, first.prompt_kv],
                             observers=observe)
    assert reused.token_ids == plain.token_ids and reused.text == plain.text
    cap, reason = find_capture(reused, lm.model, pruned)
    assert cap is None and "prefix" in reason  # its prompt was not run in full
    assert plain.prompt_kv is None  # only kept when asked for
    # the same prompt again: everything but its last token comes from the cache
    again = scorer.generate(full_prompt, max_new_tokens=12, prefix=first.prompt_kv)
    assert again.token_ids == first.token_ids


# ----------------------------------------------------------------------------- results


def test_result_to_dict_and_json(attributor, handbook_passages):
    result = attributor.attribute(TRAVEL_QUESTION, handbook_passages, "The limit is $260 per night.")
    data = json.loads(result.to_json())
    assert data["method"] == "loo" and data["model"] == "smollm2-135m" and data["level"] == "passage"
    assert data["answer"] == "The limit is $260 per night."
    assert [s["id"] for s in data["sources"]] == ["leave", "travel", "parking"]
    assert {s["rank"] for s in data["sources"]} == {1, 2, 3}
    assert data["timings"]["attribution_s"] > 0 and data["timings"]["generation_s"] == 0
    assert data["forward_tokens"] > 0
    text = str(result)
    assert "travel" in text and "Answer: The limit is $260 per night." in text
    assert isinstance(result, Attribution)


def test_generated_answer_reports_generation_time(attributor, handbook_passages):
    result = attributor.attribute(TRAVEL_QUESTION, handbook_passages, max_new_tokens=12)
    assert result.answer.strip()
    assert result.timings["generation_s"] > 0


def test_caller_objects_are_not_mutated(attributor):
    passages = [
        {"id": "x", "text": "Alpha is the first letter. It starts the alphabet.", "metadata": {"k": 1}},
        {"id": "y", "text": "Omega is the last letter."},
    ]
    snapshot = json.dumps(passages, sort_keys=True)
    attributor.attribute("Which letter is first?", passages, "Alpha.", level="sentence")
    assert json.dumps(passages, sort_keys=True) == snapshot


@pytest.mark.parametrize("level", ["passage", "sentence"])
def test_chained_ablations_equal_full_passes_and_feed_fewer_tokens(attributor, handbook_passages, level):
    """Random-mask ablations continuing each other's KV caches give each prompt's own
    full-pass log-probs, including prompts whose removals re-merge tokens."""
    from attribot_rag.methods.contextcite import random_masks

    for question, passages, answer in [
        (TRAVEL_QUESTION, handbook_passages, "The hotel limit is $260 per night."),
        (MERGE_QUESTION, MERGE_PASSAGES[level], MERGE_ANSWER),
    ]:
        task = attributor.task(question, passages, answer, level=level)
        masks = random_masks(12, len(task.sources), 0.5, seed=3)
        prompts = task.ablated_prompt_ids([[i for i in range(len(m)) if not m[i]] for m in masks])
        scorer = task.scorer
        full = task.full_pass()
        before = scorer.forward_tokens
        chained = scorer.ablation_logprobs_chained(full, prompts)
        chained_tokens = scorer.forward_tokens - before
        naive = scorer.ablation_logprobs_naive(prompts, full.response_ids)
        for c, n in zip(chained, naive):
            np.testing.assert_allclose(c, n, atol=TOL, rtol=0)
        assert chained_tokens < sum(len(p) + len(full.response_ids) for p in prompts)


def test_attributors_by_name_share_one_copy_of_the_weights(lm):
    from attribot_rag import Attributor

    # The suite's ATTRIBOT_RAG_DTYPE is float32, so a name resolves to the fixture's copy.
    first, second = Attributor("smollm2-135m"), Attributor("smollm2-135m", level="sentence")
    assert first.lm is second.lm is lm
    assert first.lock is second.lock
    # A loaded model or a model object is used as given, never swapped for the cached one.
    assert Attributor(lm).lm is lm
    assert Attributor(lm.model, lm.tokenizer).lm.model is lm.model
