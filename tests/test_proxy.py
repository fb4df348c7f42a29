"""proxy and proxy-rescore: a second model with a different tokenizer scores the same text spans.

The second model is built here, offline: a byte-level BPE tokenizer trained in the test
(so its tokens differ from SmolLM2's) and a tiny random LlamaForCausalLM, with no chat
template (the plain prompt format). Gemma is an optional extra and is not needed.
"""

import copy

import numpy as np
import pytest
import torch

from attribot_rag import Attributor
from attribot_rag.errors import InputError, ModelNotFoundError
from attribot_rag.methods.proxy import Proxy, ProxyRescore, proxy_task
from attribot_rag.models import get_model, load_model

PASSAGES = [
    {"id": "lyon", "title": "Lyon", "text": "Lyon is a city in France. It lies on the Rhone."},
    {"id": "ada", "title": "Ada", "text": "Ada Lovelace wrote the first program. She was born in London."},
    {"id": "tea", "title": "Tea", "text": "Green tea comes from China. Black tea is oxidised."},
]
QUESTION = "Where was Ada Lovelace born?"
ANSWER = "Ada Lovelace was born in London, England."


def _tiny_model():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    corpus = [p["text"] for p in PASSAGES] + [QUESTION, ANSWER, "Documents: Title: Question: Answer:"] * 3
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
    )
    model = LlamaForCausalLM(cfg)
    return load_model(model, fast)


@pytest.fixture(scope="module")
def tiny():
    return _tiny_model()


@pytest.fixture(scope="module")
def attributor():
    return Attributor(get_model("smollm2-135m"), level="sentence")


def test_the_two_tokenizers_differ(attributor, tiny):
    a = attributor.lm.tokenizer(ANSWER, add_special_tokens=False)["input_ids"]
    b = tiny.tokenizer(ANSWER, add_special_tokens=False)["input_ids"]
    assert a != b
    assert not tiny.has_chat_template and attributor.lm.has_chat_template


def test_proxy_task_renders_the_same_spans(attributor, tiny):
    task = attributor.task(QUESTION, PASSAGES, ANSWER)
    ptask = proxy_task(task, tiny)
    assert ptask.sources == task.sources
    assert ptask.layout.system_prompt == task.layout.system_prompt
    assert ptask.layout.instruction == task.layout.instruction
    assert not ptask.layout.use_chat_template  # the proxy's own (plain) format
    assert ptask.response.text == ANSWER
    assert tiny.tokenizer.decode(ptask.response.token_ids) == ANSWER
    # every source's text sits at its span in both prompts, and removing a source
    # removes the same text from both
    for prompt in (task.prompt, ptask.prompt):
        for s in task.sources:
            a, b = prompt.char_spans[s.index]
            assert prompt.text[a:b] == s.text
    for s in task.sources:
        t_removed = task.render([s.index]).text
        p_removed = ptask.render([s.index]).text
        assert t_removed.count(s.text) == task.prompt.text.count(s.text) - 1
        assert p_removed.count(s.text) == ptask.prompt.text.count(s.text) - 1


def test_proxy_equals_loo_run_on_the_proxy(attributor, tiny):
    task = attributor.task(QUESTION, PASSAGES, ANSWER)
    res = attributor.run(task, method="proxy", proxy=tiny)
    # reference: an Attributor on the proxy model with the same prompt texts
    ref_att = Attributor(
        tiny,
        level="sentence",
        system_prompt=attributor.layout.system_prompt,
        instruction=attributor.layout.instruction,
    )
    ref = ref_att.run(ref_att.task(QUESTION, PASSAGES, ANSWER), method="loo-naive")
    assert [s.id for s in res.sources] == [s.id for s in ref.sources]
    np.testing.assert_allclose(res.scores, ref.scores, atol=1e-4, rtol=0)
    assert res.info["proxy_forward_tokens"] > 0
    assert res.forward_tokens == 0  # nothing ran on the target


def test_proxy_target_span_maps_by_characters(attributor, tiny):
    span = (ANSWER.index("London"), ANSWER.index("London") + len("London"))
    task = attributor.task(QUESTION, PASSAGES, ANSWER, span=span)
    ptask = proxy_task(task, tiny)
    a, b = ptask.target
    assert 0 < a < b <= len(ptask.response)
    covered = tiny.tokenizer.decode(ptask.response.token_ids[a:b])
    assert "London" in covered and "Ada" not in covered
    res = attributor.run(task, method="proxy", proxy=tiny)
    ref_att = Attributor(tiny, level="sentence")
    ref = ref_att.run(ref_att.task(QUESTION, PASSAGES, ANSWER, span=span), method="loo")
    np.testing.assert_allclose(res.scores, ref.scores, atol=1e-4, rtol=0)


def test_proxy_with_the_target_itself_is_exact_loo(attributor):
    task = attributor.task(QUESTION, PASSAGES, ANSWER)
    exact = attributor.run(task, method="loo").scores
    task = attributor.task(QUESTION, PASSAGES, ANSWER)
    res = attributor.run(task, method="proxy", proxy=attributor.lm)
    np.testing.assert_allclose(res.scores, exact, atol=2e-4, rtol=0)


def test_proxy_rescore(attributor, tiny):
    task = attributor.task(QUESTION, PASSAGES, ANSWER)
    exact = attributor.run(task, method="loo").scores
    task = attributor.task(QUESTION, PASSAGES, ANSWER)
    res = attributor.run(task, method="proxy-rescore", proxy=tiny, rescore=2)
    first = np.array(res.info["first_stage_scores"])
    top2 = sorted(np.argsort(-first, kind="stable")[:2].tolist())
    assert res.info["rescored"] == top2
    assert res.info["first_stage"] == "proxy"
    for i, v in enumerate(res.scores):
        if i in top2:
            assert v == pytest.approx(exact[i], abs=2e-4)  # exact LOO on the target
        else:
            assert np.isnan(v)
    # any method can be the first stage, by name or as an object
    task = attributor.task(QUESTION, PASSAGES, ANSWER)
    res = attributor.run(task, method=ProxyRescore(first_stage="loo", rescore=3))
    best3 = sorted(np.argsort(-exact, kind="stable")[:3].tolist())
    assert res.info["rescored"] == best3
    np.testing.assert_allclose(res.scores[best3], exact[best3], atol=2e-4, rtol=0)


def test_proxy_runs_any_method_on_the_proxy(attributor, tiny):
    # AttriBoT's combination: the proxy's hierarchical LOO ranks, the target rescores
    # the survivors. The proxy's hierarchical equals hierarchical run on the proxy itself.
    task = attributor.task(QUESTION, PASSAGES, ANSWER)
    res = attributor.run(task, method=Proxy(proxy=tiny, method="hierarchical", method_options={"keep": 1}))
    ref_att = Attributor(
        tiny, level="sentence", system_prompt=attributor.layout.system_prompt, instruction=attributor.layout.instruction
    )
    ref = ref_att.run(ref_att.task(QUESTION, PASSAGES, ANSWER), method="hierarchical", keep=1)
    np.testing.assert_allclose(res.scores, ref.scores, atol=1e-4, rtol=0)
    assert np.isnan(res.scores).sum() == np.isnan(ref.scores).sum() > 0  # dropped passages stay unscored
    assert res.info["proxy_method"] == "hierarchical"
    assert res.info["proxy_forward_tokens"] > 0 and res.forward_tokens == 0

    exact = attributor.run(attributor.task(QUESTION, PASSAGES, ANSWER), method="loo").scores
    both = attributor.run(
        attributor.task(QUESTION, PASSAGES, ANSWER),
        method="proxy-rescore", proxy=tiny, proxy_method="hierarchical", rescore=100,
    )
    survivors = [i for i, v in enumerate(both.info["first_stage_scores"]) if not np.isnan(v)]
    assert both.info["rescored"] == survivors  # every survivor, and nothing the proxy dropped
    np.testing.assert_allclose(both.scores[survivors], exact[survivors], atol=2e-4, rtol=0)
    with pytest.raises(InputError, match="proxy_method='hierarchical' needs the proxy first stage"):
        ProxyRescore(first_stage="at2", proxy_method="hierarchical")


def test_proxy_by_name_equals_the_loaded_model(attributor):
    # the README's call: the proxy given by alias, loaded once through get_model's cache
    res = attributor.attribute(QUESTION, PASSAGES, ANSWER, method="proxy", proxy="smollm2-135m")
    ref = attributor.attribute(QUESTION, PASSAGES, ANSWER, method="proxy", proxy=get_model("smollm2-135m"))
    np.testing.assert_array_equal(res.scores, ref.scores)
    assert res.info["proxy_model"] == "smollm2-135m"
    assert res.info["proxy_model_dtype"] == "float32"
    rescored = attributor.attribute(QUESTION, PASSAGES, ANSWER, method="proxy-rescore", proxy="smollm2-135m", rescore=2)
    np.testing.assert_array_equal(rescored.info["first_stage_scores"], ref.scores)


def test_proxy_by_path_is_loaded_in_the_targets_dtype(attributor, tiny, tmp_path):
    folder = tmp_path / "tiny-proxy"
    tiny.model.save_pretrained(folder)
    tiny.tokenizer.save_pretrained(folder)
    task = attributor.task(QUESTION, PASSAGES, ANSWER)
    by_path = attributor.run(task, method="proxy", proxy=str(folder))
    by_object = attributor.run(attributor.task(QUESTION, PASSAGES, ANSWER), method="proxy", proxy=tiny)
    np.testing.assert_allclose(by_path.scores, by_object.scores, atol=1e-6, rtol=0)
    assert by_path.info["proxy_model"] == str(folder)
    # a bfloat16 target gets its proxy in bfloat16 (the same path, a second cache entry)
    bf16 = load_model(copy.deepcopy(tiny.model).to(torch.bfloat16), tiny.tokenizer)
    bf16_att = Attributor(bf16, level="sentence")
    res = bf16_att.attribute(QUESTION, PASSAGES, ANSWER, method="proxy", proxy=folder)
    assert res.info["proxy_model_dtype"] == "bfloat16"
    assert get_model(str(folder), dtype="bfloat16") is not get_model(str(folder), dtype="float32")


def test_proxy_needs_a_model(attributor):
    with pytest.raises(InputError, match="needs a proxy model"):
        Proxy()
    with pytest.raises(InputError, match="proxy model name is empty"):
        Proxy(proxy="  ")
    with pytest.raises(InputError, match="proxy must be a model name.*got int"):
        Proxy(proxy=3)
    with pytest.raises(ModelNotFoundError, match="unknown model 'no-such-proxy-model'"):
        attributor.attribute(QUESTION, PASSAGES, ANSWER, method="proxy", proxy="no-such-proxy-model")
    with pytest.raises(InputError, match="rescore must be a positive integer, got 0"):
        ProxyRescore(rescore=0, proxy=None)


def test_adaptive_rescoring_stops_by_its_rule(attributor):
    exact = attributor.run(attributor.task(QUESTION, PASSAGES, ANSWER, level="sentence"), method="loo").scores
    order = np.argsort(-exact, kind="stable").tolist()
    # stop_ratio: the first-stage candidates within r of the best (here the first stage is exact LOO)
    res = attributor.run(attributor.task(QUESTION, PASSAGES, ANSWER, level="sentence"),
                         method=ProxyRescore(first_stage="loo", rescore=4, stop_ratio=0.5))
    expected = [i for i in order[:4] if exact[i] >= 0.5 * exact[order[0]]]
    assert res.info["rescored"] == sorted(expected) and 1 <= len(expected) < 4
    # stop_coverage: the shortest prefix whose positive effects reach f x the context gain
    task = attributor.task(QUESTION, PASSAGES, ANSWER, level="sentence")
    gain = task.target_ll(task.context_gain())
    assert gain > 0
    f = 0.9 * float(np.clip(exact, 0, None).max()) / gain  # the best source alone covers it
    res = attributor.run(attributor.task(QUESTION, PASSAGES, ANSWER, level="sentence"),
                         method=ProxyRescore(first_stage="loo", rescore=5, stop_coverage=f))
    assert res.info["rescored"] == [order[0]]
    assert res.info["context_gain"] == pytest.approx(gain, abs=1e-4)
    assert res.info["coverage"] >= f
    res = attributor.run(attributor.task(QUESTION, PASSAGES, ANSWER, level="sentence"),
                         method=ProxyRescore(first_stage="loo", rescore=3, stop_coverage=100.0))
    assert res.info["rescored"] == sorted(order[:3])  # never covered: the cap stops it
    np.testing.assert_allclose(res.scores[order[:3]], exact[order[:3]], atol=2e-4, rtol=0)


def test_rescoring_can_rank_the_tail_by_the_first_stage(attributor, tiny):
    res = attributor.run(attributor.task(QUESTION, PASSAGES, ANSWER, level="sentence"),
                         method=ProxyRescore(proxy=tiny, rescore=2, tail="first_stage"))
    first = np.asarray(res.info["first_stage_scores"])
    rescored = res.info["rescored"]
    rest = [i for i in np.argsort(-first, kind="stable") if i not in rescored]
    assert np.all(np.isfinite(res.scores)) and len(rescored) == 2
    assert res.scores[rest].max() < min(0.0, res.scores[rescored].min())  # ranks, never evidence
    assert list(np.argsort(-res.scores[rest], kind="stable")) == list(range(len(rest)))  # first-stage order
    assert res.info["tail"] == "first_stage"


def test_adaptive_rescoring_options_are_checked():
    with pytest.raises(InputError, match="stop_ratio or stop_coverage, not both"):
        ProxyRescore(first_stage="at2", stop_ratio=0.5, stop_coverage=0.5)
    with pytest.raises(InputError, match="stop_ratio must be in"):
        ProxyRescore(first_stage="at2", stop_ratio=1.5)
    with pytest.raises(InputError, match="stop_coverage must be positive"):
        ProxyRescore(first_stage="at2", stop_coverage=0)
    with pytest.raises(InputError, match="tail must be one of"):
        ProxyRescore(first_stage="at2", tail="proxy")
