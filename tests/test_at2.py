"""AT2: recomputed attention rows, features, weights file, methods, trainer."""

import json

import numpy as np
import pytest
import torch

from attribot_rag.at2.attention import attention_rows, model_shape, source_features, span_matrix
from attribot_rag.training.at2 import fit_weights, masked_logprobs, pearson, read_examples, train_at2
from attribot_rag.at2.weights import AT2Weights, load_default_weights, resolve_weights
from attribot_rag.errors import InputError, MethodNotAvailableError
from attribot_rag.models import LoadedModel

from conftest import TRAVEL_QUESTION

ANSWER = "The hotel limit is $260 per night."


def _eager_rows(model, ids, rows):
    """The model's own eager attention for the same rows (restoring its attention after)."""
    old = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            out = model(input_ids=torch.tensor([ids]), output_attentions=True, use_cache=False)
    finally:
        model.set_attn_implementation(old)
    k = max(rows) + 1
    return [a[0][:, rows, :k].float() for a in out.attentions]


def _assert_rows_match(model, ids, rows, atol=1e-5):
    mine = attention_rows(model, ids, rows)
    ref = _eager_rows(model, ids, rows)
    assert len(mine) == len(ref) == model_shape(model)[0]
    for layer, (a, b) in enumerate(zip(mine, ref)):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=atol, rtol=0, msg=f"layer {layer}")


def test_rows_match_eager_attention_on_default_model(lm):
    assert lm.model.config._attn_implementation != "eager"
    ids = lm.tokenizer("Documents: the hotel limit is $260 per night.\nQuestion: the limit?\nAnswer: $260.")[
        "input_ids"
    ]
    n = len(ids)
    _assert_rows_match(lm.model, ids, list(range(n - 6, n - 1)), atol=1e-4)
    assert lm.model.config._attn_implementation != "eager"  # restored


TINY = dict(
    vocab_size=97,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
)


def _tiny(kind):
    import transformers as tf

    if kind == "llama":
        cfg = tf.LlamaConfig(**TINY)
    elif kind == "qwen2":
        cfg = tf.Qwen2Config(**TINY, use_sliding_window=True, sliding_window=7, max_window_layers=1)
    elif kind == "mistral":
        cfg = tf.MistralConfig(**TINY, sliding_window=7)
    elif kind == "phi3":
        cfg = tf.Phi3Config(**TINY, pad_token_id=0, partial_rotary_factor=0.5)
    elif kind == "gemma3":
        cfg = tf.Gemma3TextConfig(
            **TINY,
            head_dim=8,
            sliding_window=7,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        )
    else:  # gemma3 with attention-logit soft-capping
        cfg = tf.Gemma3TextConfig(
            **TINY, head_dim=8, sliding_window=5, attn_logit_softcapping=2.0,
            layer_types=["full_attention", "sliding_attention", "sliding_attention"],
        )
    torch.manual_seed(0)
    model = tf.AutoModelForCausalLM.from_config(cfg).eval()
    # sharper attention than the default init, so masks and windows matter
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("q_proj.weight", "k_proj.weight", "qkv_proj.weight")):
                p.mul_(8.0)
    return model


@pytest.mark.parametrize("kind", ["llama", "qwen2", "mistral", "phi3", "gemma3", "gemma3-config-softcap"])
def test_rows_match_eager_attention_on_tiny_models(kind):
    model = _tiny(kind)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 97, (30,), generator=g).tolist()
    rows = [0, 3, 12, 20, 25, 28]  # longer than the sliding windows
    _assert_rows_match(model, ids, rows)


def test_features_are_rows_summed_over_spans():
    model = _tiny("gemma3")
    ids = list(range(1, 31))
    rows = [20, 24, 28]
    spans = [(0, 5), (5, 17), (17, 29)]  # all keys up to the last row
    feats = source_features(model, ids, rows, spans)
    L, H = model_shape(model)
    assert feats.shape == (3, 3, L * H) and feats.dtype == torch.float32
    full = attention_rows(model, ids, rows)
    for s, (a, b) in enumerate(spans):
        expect = torch.stack([layer[:, :, a:b].sum(-1) for layer in full])  # [L, H, R]
        torch.testing.assert_close(feats[s], expect.permute(2, 0, 1).reshape(3, L * H), atol=1e-6, rtol=0)
    # spans covering every key: attention sums to 1 per (row, head)
    torch.testing.assert_close(feats.sum(0), torch.ones(3, L * H), atol=1e-5, rtol=0)
    m = span_matrix(spans, 29)
    torch.testing.assert_close(source_features(model, ids, rows, m), feats)


# ------------------------------------------------------------------ weights file
def _tiny_lm(lm, name="tiny-llama", kind="llama"):
    """A tiny random model that shares the default tokenizer (so layouts work)."""
    import transformers as tf

    cfg = dict(TINY, vocab_size=len(lm.tokenizer), num_hidden_layers=2, max_position_embeddings=2048)
    torch.manual_seed(0)
    model = tf.AutoModelForCausalLM.from_config(tf.LlamaConfig(**cfg)).eval()
    return LoadedModel(model=model, tokenizer=lm.tokenizer, name=name)


def test_weights_roundtrip_and_header(tmp_path):
    w = AT2Weights(np.arange(6, dtype=np.float32).reshape(2, 3), {"model": "m", "architecture": "llama"})
    path = w.save(tmp_path / "w.safetensors")
    back = AT2Weights.load(path)
    np.testing.assert_array_equal(back.weights, w.weights)
    assert back.metadata["model"] == "m" and back.metadata["num_layers"] == 2 and back.metadata["num_heads"] == 3
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as fh:
        header = json.loads(fh.metadata()["at2"])
        assert list(fh.keys()) == ["weights"]
    assert {"model", "architecture", "num_layers", "num_heads", "date", "feature"} <= set(header)


def test_weights_refuse_other_models(tmp_path, lm):
    tiny = _tiny_lm(lm)  # 2 layers x 4 heads, llama
    ok = AT2Weights.uniform(2, 4, model="tiny-llama", architecture="llama")
    ok.check_model(tiny)
    with pytest.raises(MethodNotAvailableError, match="3 layers x 4 heads.*2 layers x 4 heads.*train-at2"):
        AT2Weights.uniform(3, 4, model="tiny-llama").check_model(tiny)
    with pytest.raises(MethodNotAvailableError, match="not 'tiny-llama'"):
        AT2Weights.uniform(2, 4, model="other-model", architecture="llama").check_model(tiny)
    AT2Weights.uniform(2, 4, model="other-model").check_model(tiny, check_name=False)
    with pytest.raises(MethodNotAvailableError, match="'gemma3_text'"):
        AT2Weights.uniform(2, 4, model="tiny-llama", architecture="gemma3_text").check_model(tiny)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(InputError):
        AT2Weights.load(bad)
    with pytest.raises(InputError, match="does not exist"):
        AT2Weights.load(tmp_path / "missing.safetensors")


def test_at2_without_weights_says_how_to_train(lm, attributor, handbook_passages):
    with pytest.raises(MethodNotAvailableError, match="attribot-rag train-at2 --model tiny-llama"):
        load_default_weights("tiny-llama")
    from attribot_rag import Attributor

    att = Attributor(_tiny_lm(lm), max_new_tokens=8)
    with pytest.raises(MethodNotAvailableError, match="train-at2"):
        att.attribute(TRAVEL_QUESTION, handbook_passages, ANSWER, method="at2")


def _eager_attention_per_token(task) -> np.ndarray:
    """[L, H, S, r]: the model's own eager attention from the position predicting each answer
    token to each source's tokens (the reference the AT2 features must equal)."""
    p, r = len(task.prompt.input_ids), len(task.response.token_ids)
    ids = list(task.prompt.input_ids) + list(task.response.token_ids)
    eager = torch.stack(_eager_rows(task.lm.model, ids, list(range(p - 1, p + r - 1))))  # [L, H, r, k]
    spans = [task.prompt.token_span(s.index) for s in task.sources]
    return torch.stack([eager[..., a:b].sum(-1) for a, b in spans], dim=2).double().numpy()


def test_at2_uniform_weights_equal_attention_on_default_model(attributor, handbook_passages):
    task = attributor.task(TRAVEL_QUESTION, handbook_passages, ANSWER, level="sentence")
    att = attributor.run(task, method="attention")
    L, H = model_shape(attributor.lm.model)
    eager = _eager_attention_per_token(task)  # [L, H, S, r]
    # average attention: the mean over layers, heads and the answer's tokens
    np.testing.assert_allclose(att.scores, eager.mean(axis=(0, 1)).mean(axis=1), rtol=0, atol=2e-5)
    uni = attributor.run(task, method="at2", weights=np.full((L, H), 1 / (L * H)))
    np.testing.assert_allclose(uni.scores, att.scores, rtol=1e-5, atol=1e-7)
    # a weight on one head reads that head: the [L, H] layout is not transposed or shifted
    one = np.zeros((L, H))
    one[L - 2, 1] = 1.0
    head = attributor.run(task, method="at2", weights=one)
    np.testing.assert_allclose(head.scores, eager[L - 2, 1].mean(axis=1), rtol=0, atol=2e-5)
    assert not np.allclose(head.scores, att.scores, atol=1e-3)
    # a sub-span of the answer: the mean over its own tokens only
    sub = attributor.task(TRAVEL_QUESTION, handbook_passages, ANSWER, level="sentence", span=(4, 20))
    a, b = sub.target
    assert 0 < b - a < len(sub.response)
    np.testing.assert_allclose(
        attributor.run(sub, method="attention").scores, eager.mean(axis=(0, 1))[:, a:b].mean(axis=1), rtol=0, atol=2e-5
    )


def test_at2_weights_file_for_another_model_is_refused_by_path(attributor, handbook_passages, tmp_path):
    L, H = model_shape(attributor.lm.model)
    task = attributor.task(TRAVEL_QUESTION, handbook_passages, ANSWER)
    # the same shape and family, but trained for another model name
    other = AT2Weights.uniform(L, H, model="qwen2.5-coder-0.5b", architecture="llama").save(tmp_path / "other.safetensors")
    with pytest.raises(MethodNotAvailableError, match=r"other\.safetensors were trained for model 'qwen2\.5-coder-0\.5b', not 'smollm2-135m'"):
        attributor.run(task, method="at2", weights=str(other))
    np.testing.assert_allclose(
        attributor.run(task, method="at2", weights=str(other), check_model=False).scores,
        attributor.run(task, method="attention").scores,
        rtol=1e-5,
        atol=1e-7,
    )
    # the file shipped for the 1.5B: another shape, refused whatever check_model says
    shipped = load_default_weights("qwen2.5-coder-1.5b").metadata["path"]
    with pytest.raises(MethodNotAvailableError, match=r"qwen2\.5-coder-1\.5b.*but model 'smollm2-135m' has \d+ layers x \d+ heads"):
        attributor.run(task, method="at2", weights=shipped, check_model=False)
    # the file made for this model, by path, is accepted
    mine = AT2Weights.uniform(L, H, model="smollm2-135m", architecture="llama").save(tmp_path / "mine.safetensors")
    assert resolve_weights(str(mine), attributor.lm).num_layers == L


# ------------------------------------------------------------------ trainer
def test_masked_tokens_are_invisible(lm):
    tiny = _tiny_lm(lm)
    ids = list(range(100, 140))
    drop = np.zeros((2, 40), dtype=bool)
    drop[:, 10:20] = True
    a = masked_logprobs(tiny, ids, 5, drop)
    ids2 = ids[:10] + list(range(500, 510)) + ids[20:]
    b = masked_logprobs(tiny, ids2, 5, drop)
    assert np.all(np.isfinite(a))
    np.testing.assert_allclose(a, b, atol=1e-5)
    c = masked_logprobs(tiny, ids, 5, np.zeros((1, 40), dtype=bool))
    assert not np.allclose(a[0], c[0])


def test_fit_weights_recovers_a_planted_head():
    rng = np.random.default_rng(0)
    T, M, F = 200, 32, 12
    G = rng.random((T, M, F)).astype(np.float32)
    y = 5.0 * G[:, :, 3] + 0.05 * rng.standard_normal((T, M))
    fit = fit_weights(G, y, steps=300, lr=0.05, progress=False)
    assert abs(np.abs(fit.weights).sum() - 1) < 1e-5
    assert int(np.argmax(fit.weights)) == 3
    assert fit.train_corr > fit.train_corr_uniform and fit.val_corr > 0.9


def test_targets_with_fewer_masks_are_fitted_over_the_masks_they_have():
    # leave-one-out ablations give each example as many masks as it has sources: padded with nan
    rng = np.random.default_rng(1)
    T, M, F = 120, 40, 10
    G = rng.random((T, M, F)).astype(np.float32)
    y = 3.0 * G[:, :, 7] + 0.05 * rng.standard_normal((T, M))
    short = rng.random(T) < 0.5
    y[short, 25:] = np.nan
    G[short, 25:] = 1e6  # whatever sits under the padding must not count
    fit = fit_weights(G, y, steps=300, lr=0.05, progress=False)
    assert int(np.argmax(fit.weights)) == 7 and fit.targets == T
    w = torch.rand(F)
    padded = pearson(torch.as_tensor(G[short]) @ w, torch.as_tensor(y[short], dtype=torch.float32),
                     torch.as_tensor(~np.isnan(y[short])))
    cut = pearson(torch.as_tensor(G[short, :25]) @ w, torch.as_tensor(y[short, :25], dtype=torch.float32))
    torch.testing.assert_close(padded, cut)
    too_few = np.full((1, M), np.nan)
    too_few[0, :2] = [0.0, 1.0]
    assert fit_weights(np.concatenate([G, G[:1]]), np.concatenate([y, too_few]), steps=2,
                       progress=False).targets == T


SQUAD = {
    "version": "1.1",
    "data": [
        {
            "title": "Hotels",
            "paragraphs": [
                {"context": "The hotel limit is $260 per night. Meals are covered up to $95.",
                 "qas": [{"id": "q1", "question": "What is the hotel limit?", "answers": []}]},
                {"context": "The office has 40 parking spaces. Bikes go in the basement.",
                 "qas": [{"id": "q2", "question": "How many parking spaces?", "answers": []}]},
                {"context": "", "qas": [{"id": "q3", "question": "Skipped?", "answers": []}]},
            ],
        }
    ],
}


def test_train_at2_end_to_end_on_tiny_model(tmp_path, lm):
    data = tmp_path / "squad.json"
    data.write_text(json.dumps(SQUAD))
    assert len(read_examples(data)) == 2
    tiny = _tiny_lm(lm)
    out = tmp_path / "w.safetensors"
    w, summary = train_at2(tiny, [str(data)], out, examples=2, masks=6, steps=5, max_new_tokens=6,
                           cache_dir=tmp_path / "cache", command="test", progress=False)
    assert summary["computed_now"] == 2 and summary["targets"] >= 1
    back = AT2Weights.load(out)
    assert back.weights.shape == (2, 4) and abs(np.abs(back.weights).sum() - 1) < 1e-5
    assert back.metadata["model"] == "tiny-llama" and back.metadata["command"] == "test"
    assert back.metadata["training_data"]["masks"] == 6
    # resumes from the cache: nothing recomputed
    _, again = train_at2(tiny, [str(data)], out, examples=2, masks=6, steps=5, max_new_tokens=6,
                         cache_dir=tmp_path / "cache", progress=False)
    assert again["computed_now"] == 0
    # the file scores with the at2 method
    from attribot_rag import Attributor

    att = Attributor(tiny)
    res = att.attribute("What is the hotel limit?", ["The hotel limit is $260.", "Bikes go in the basement."],
                        "It is $260.", method="at2", weights=str(out))
    assert res.scores.shape == (2,) and np.all(np.isfinite(res.scores))


def test_training_refuses_the_held_out_test_split(tmp_path):
    bad = tmp_path / "hotpotqa" / "test.json"
    bad.parent.mkdir()
    bad.write_text("[]")
    with pytest.raises(InputError, match="held-out"):
        read_examples(bad)


def _hotpot_example(i: int) -> dict:
    return {"_id": f"h{i}", "question": f"Question {i}?", "answer": "x", "type": "bridge",
            "supporting_facts": [], "context": [["A", ["The hotel limit is $260.", " Meals are $95."]],
                                                 ["B", ["Bikes go in the basement."]]]}


def test_training_never_reads_the_held_out_dev_slices(tmp_path):
    data = tmp_path / "dev.json"
    data.write_text(json.dumps([_hotpot_example(i) for i in range(600)]))
    ids = {int(e.id[1:]) for e in read_examples(data)}
    assert min(ids) == 100  # the first 100 are held for checking
    assert not ids & (set(range(200, 240)) | set(range(400, 586)))
    assert {199, 240, 399, 586, 599} <= ids
    # a user's own HotpotQA-format file can turn the exclusion off
    assert len(read_examples(data, skip=0, exclude=())) == 600


def test_training_on_fewer_paragraphs_keeps_the_gold_ones(tmp_path):
    ex = _hotpot_example(100)
    ex["context"] = [[t, [f"About {t}."]] for t in "ABCDEF"]
    ex["supporting_facts"] = [["E", 0], ["C", 0]]
    data = tmp_path / "dev.json"
    data.write_text(json.dumps([ex]))
    (one,) = read_examples(data, skip=0, max_passages=3)
    assert [p.title for p in one.passages] == ["A", "C", "E"]  # gold C and E, then the first other, in order
    (full,) = read_examples(data, skip=0)
    assert len(full.passages) == 6


def test_train_at2_on_sentence_sources(tmp_path, lm):
    data = tmp_path / "dev.json"
    data.write_text(json.dumps([_hotpot_example(i) for i in range(2)]))
    tiny = _tiny_lm(lm)
    out = tmp_path / "w.safetensors"
    _, summary = train_at2(tiny, [str(data)], out, examples=2, masks=6, steps=5, max_new_tokens=6, skip=0,
                           sources="sentences", keep_prob=0.8, cache_dir=tmp_path / "cache", progress=False)
    assert summary["computed_now"] == 2
    recs = [np.load(f) for f in sorted((tmp_path / "cache").glob("*.npz"))]
    used = [r for r in recs if "G" in r.files]
    assert used and all(int(r["sources"]) == 3 for r in used)  # three sentences, not their tokens
    assert "sentences, keep probability 0.8" in AT2Weights.load(out).metadata["training_data"]["sources"]
    with pytest.raises(InputError, match="--sources"):
        train_at2(tiny, [str(data)], out, examples=2, sources="words", progress=False)


def test_train_at2_cli_parser():
    from attribot_rag.cli import build_parser

    args = build_parser().parse_args(
        ["train-at2", "--model", "smollm2-135m", "--data", "a.json", "b.json", "--out", "w.safetensors"]
    )
    assert args.data == ["a.json", "b.json"] and args.masks == 32 and args.steps == 1000
    assert args.examples == 150 and args.skip == 100 and args.seed == 0
    assert args.sources == "tokens" and args.keep_prob == 0.5
    from attribot_rag.evaluation.hotpotqa import parse_index_ranges

    assert parse_index_ranges(args.exclude) == ((200, 240), (400, 586))
    assert parse_index_ranges("none") == ()
    with pytest.raises(InputError, match="not an example range"):
        parse_index_ranges("2x0-239")


def test_features_from_generation_equal_a_fresh_forward_pass(attributor, handbook_passages):
    from attribot_rag.at2.capture import GenerationCapture, find_capture
    from attribot_rag.at2.features import task_features
    from attribot_rag.scoring import response_from_ids

    resp = attributor.generate(TRAVEL_QUESTION, handbook_passages, max_new_tokens=10)
    # the default model's generation must yield a usable capture (no silent extra pass)
    caps = [o for o in resp.observations if isinstance(o, GenerationCapture)]
    assert len(caps) == 1 and caps[0].reason == ""
    task = attributor.task(TRAVEL_QUESTION, handbook_passages, resp, level="sentence")
    res = attributor.run(task, method="attention")
    assert res.info["from_generation"] and res.forward_tokens == 0
    assert res.info["capture"] == "used"
    # a response rebuilt from the same ids has no capture: one forward pass, same features
    fresh = attributor.task(TRAVEL_QUESTION, handbook_passages, response_from_ids(attributor.lm.tokenizer, resp.token_ids),
                            level="sentence")
    torch.testing.assert_close(task_features(task), task_features(fresh), atol=1e-5, rtol=0)
    assert "without the AT2 capture" in fresh.cache.at2_capture  # the fallback says why
    # another prompt (other passages) for the same answer: the capture does not apply
    other = attributor.task(TRAVEL_QUESTION, handbook_passages[:2], resp, level="passage")
    info = attributor.run(other, method="attention").info
    assert not info["from_generation"] and "another prompt" in info["capture"]
    # an answer passed as text was never generated: no capture, and the info says so
    given = attributor.run(attributor.task(TRAVEL_QUESTION, handbook_passages, resp.text), method="at2").info
    assert not given["from_generation"] and "not generated" in given["capture"]
    # asked for by another model object: refused, with the reason
    assert find_capture(resp, object(), []) == (None, "the answer was generated by another model or from another prompt")


def test_a_text_answers_context_gain_reuses_the_at2_pass(attributor, handbook_passages):
    from attribot_rag.grounding import span_gain

    answer = "For international trips the hotel limit is $260 per night."
    task = attributor.task(TRAVEL_QUESTION, handbook_passages, answer, level="sentence")
    attributor.run(task, method="at2")  # one pass over prompt + answer
    passes = task.scorer.forward_passes
    gain = span_gain(task, task.target)
    # the gain ran only the short passage-free prompt: AT2's pass gave the full-prompt side
    assert task.scorer.forward_passes == passes + 1 and task.cache.full_pass is None
    fresh = attributor.task(TRAVEL_QUESTION, handbook_passages, answer, level="sentence")
    np.testing.assert_allclose(task.full_logprobs(), fresh.full_pass().logprobs, atol=1e-4)
    assert gain == pytest.approx(span_gain(fresh, fresh.target), abs=1e-3)


def test_at2_with_shipped_weights_on_default_model(attributor, handbook_passages):
    res = attributor.attribute(TRAVEL_QUESTION, handbook_passages, ANSWER, method="at2")
    assert res.method == "at2" and np.all(np.isfinite(res.scores))
    assert int(np.argmax(res.scores)) == 1  # the travel passage


def test_a_capture_does_not_keep_the_model_alive(lm):
    import gc
    import weakref

    from attribot_rag.at2.capture import CaptureObserver, find_capture
    from attribot_rag.scoring import Scorer

    tiny = _tiny_lm(lm)
    prompt = lm.tokenizer("Documents: the sky is blue. Question: what colour is the sky?")["input_ids"]
    resp = Scorer(tiny).generate(prompt, max_new_tokens=4, observers=[CaptureObserver()])
    assert find_capture(resp, tiny.model, prompt)[0] is not None
    alive = weakref.ref(tiny.model)
    del tiny
    gc.collect()
    assert alive() is None, "an AT2 capture on a response kept the model in memory"
    # the capture can no longer match anything
    cap, reason = find_capture(resp, None, prompt)
    assert cap is None and "another model" in reason


@pytest.mark.parametrize(
    "alias, layers, heads", [("smollm2-135m", 30, 9), ("qwen2.5-coder-1.5b", 28, 12), ("qwen2.5-coder-0.5b", 24, 14)]
)
def test_shipped_weights_fit_their_model(alias, layers, heads):
    """The packaged weights are found by the alias (and by its cache folder's name) and
    have one non-negative weight per (layer, head) of that model, summing to 1."""
    w = load_default_weights(alias)
    assert load_default_weights(f"{alias}-0123456789ab-float32").weights.shape == (layers, heads)
    assert w.weights.shape == (layers, heads)
    assert np.all(w.weights >= 0) and np.isclose(np.abs(w.weights).sum(), 1.0, atol=1e-5)
    assert w.metadata["model"] == alias
    # the command that made them, with one of the project's own trainers
    assert any(t in w.metadata["command"] for t in ("attribot-rag train-at2", "benchmarks/at2_loo_fit.py"))
