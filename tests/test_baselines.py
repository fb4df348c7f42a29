"""Baselines: contextcite (LASSO on random ablations), similarity (embeddings), attention,
question-similarity and random (no model, no answer)."""

import numpy as np
import pytest
import torch

from attribot_rag import Attributor
from attribot_rag.methods import available_methods, create_method
from attribot_rag.methods.contextcite import fit_lasso, logit_prob, random_masks
from attribot_rag.models import LoadedModel

from conftest import TRAVEL_QUESTION

ANSWER = "The hotel limit is $260 per night."


def test_baselines_are_registered():
    assert {"at2", "attention", "contextcite", "similarity", "question-similarity", "random"} <= set(available_methods())
    assert create_method("contextcite").ablations == 64


def test_logit_prob_is_stable():
    lp = np.array([-1e-9, -1e-4, -0.5, -0.7, -2.0, -50.0, -800.0, 0.0])
    y = logit_prob(lp)
    assert np.all(np.isfinite(y))
    p = np.exp(lp[1:5])
    np.testing.assert_allclose(y[1:5], np.log(p) - np.log1p(-p), rtol=1e-10)
    np.testing.assert_allclose(y[5:7], lp[5:7], atol=1e-12)  # p tiny: logit ~ log p
    assert np.all(np.diff(y[:7]) < 0)  # monotone in log p


def test_masks_are_seeded_with_keep_half():
    a = random_masks(256, 10, 0.5, seed=3)
    np.testing.assert_array_equal(a, random_masks(256, 10, 0.5, seed=3))
    assert not np.array_equal(a, random_masks(256, 10, 0.5, seed=4))
    assert a.dtype == bool and abs(a.mean() - 0.5) < 0.05


def test_lasso_recovers_a_planted_surrogate():
    masks = random_masks(64, 6, seed=0)
    y = 2.0 + 4.0 * masks[:, 1] - 3.0 * masks[:, 4] + 0.01 * np.random.default_rng(0).standard_normal(64)
    w, bias = fit_lasso(masks, y, num_tokens=5, alpha=0.01)
    np.testing.assert_allclose(w, [0, 4, 0, 0, -3, 0], atol=0.15)
    assert abs(bias - 2.0) < 0.2


def _tiny_lm(lm):
    import transformers as tf

    cfg = tf.LlamaConfig(vocab_size=len(lm.tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048)
    torch.manual_seed(0)
    return LoadedModel(model=tf.AutoModelForCausalLM.from_config(cfg).eval(), tokenizer=lm.tokenizer, name="tiny")


def test_contextcite_runs_its_ablations_through_the_cached_scorer(lm, handbook_passages):
    att = Attributor(_tiny_lm(lm))
    task = att.task(TRAVEL_QUESTION, handbook_passages, ANSWER, level="sentence")
    res = att.run(task, method="contextcite", ablations=12)
    assert res.scores.shape == (6,) and np.all(np.isfinite(res.scores))
    assert res.info["ablations"] == 12 and res.forward_passes >= 2
    again = att.attribute(TRAVEL_QUESTION, handbook_passages, ANSWER, level="sentence", method="contextcite",
                          ablations=12)
    np.testing.assert_allclose(again.scores, res.scores)  # seeded
    with pytest.raises(ValueError):
        create_method("contextcite", ablations=1)


def test_contextcite_finds_the_answer_passage_on_default_model(attributor, handbook_passages):
    res = attributor.attribute(TRAVEL_QUESTION, handbook_passages, ANSWER, method="contextcite", ablations=16)
    assert int(np.argmax(res.scores)) == 1  # the travel passage
    assert res.scores[1] > 1.0


class FakeEmbedder:
    """Bag of words over a fixed vocabulary: deterministic, no model."""

    def encode(self, texts):
        vocab = ["hotel", "limit", "night", "parking", "vacation", "days"]
        return np.array([[t.lower().count(w) + 1e-3 for w in vocab] for t in texts], dtype=np.float32)


def test_similarity_with_a_given_embedder(attributor, handbook_passages):
    res = attributor.attribute(TRAVEL_QUESTION, handbook_passages, ANSWER, method="similarity",
                               embedder=FakeEmbedder())
    assert int(np.argmax(res.scores)) == 1 and np.all(res.scores <= 1 + 1e-9)
    assert res.forward_tokens == 0


def test_question_similarity_and_random_order_read_neither_model_nor_answer(attributor, handbook_passages):
    # question-similarity compares the question (not the answer) with each title + text
    fake = FakeEmbedder()
    a = attributor.attribute(TRAVEL_QUESTION, handbook_passages, ANSWER, method="question-similarity", embedder=fake)
    b = attributor.attribute(TRAVEL_QUESTION, handbook_passages, "Parking is free.", method="question-similarity",
                             embedder=fake)
    np.testing.assert_array_equal(a.scores, b.scores)
    emb = fake.encode([TRAVEL_QUESTION] + [f"{p.title}\n{p.text}" if p.title else p.text for p in a.passages])
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    np.testing.assert_allclose(a.scores, emb[1:] @ emb[0], rtol=1e-6)
    assert a.forward_tokens == 0 and a.for_span((0, 5)).scores.tolist() == a.scores.tolist()
    # random: a seeded permutation of the sources, the seed a constructor option
    r = attributor.attribute(TRAVEL_QUESTION, handbook_passages, ANSWER, method="random", seed=7, level="sentence")
    expected = -np.random.default_rng(7).permutation(len(r.sources))
    np.testing.assert_array_equal(r.scores, expected)
    assert r.forward_tokens == 0
    assert create_method("random").seed == 0 and create_method("random", seed=3).seed == 3
    # which option takes a per-example seed, and older caches' name, are read from the class
    from attribot_rag.methods import METHODS

    assert METHODS["random"].example_seed_option == "seed"
    assert METHODS["question-similarity"].cached_as("question-similarity") == "similarity"
    assert METHODS["similarity"].cached_as("similarity") == "similarity"
    assert METHODS["similarity"].cache_identity({})  # never the old question rankings' key


def test_similarity_with_minilm(attributor, handbook_passages):
    pytest.importorskip("sentence_transformers")
    res = attributor.attribute(TRAVEL_QUESTION, handbook_passages, ANSWER, method="similarity", level="sentence")
    assert res.scores.shape == (6,)
    assert int(np.argmax(res.scores)) == 2  # "... the hotel limit is $260 per night."
    assert np.all(np.abs(res.scores) <= 1 + 1e-6)
