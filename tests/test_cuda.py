"""CUDA smoke test (issue 33): tiny randomly initialised Qwen2 and Llama models on the GPU.

* exact ``loo`` (prefix reuse, batched ablations) equals ``loo-naive`` (one full pass per
  ablation), on a given and on a generated answer;
* AT2 reads a CUDA generation's capture (no forward pass), and its features equal a fresh
  forward pass's;
* ``dtype="auto"`` picks bfloat16 on a CUDA device that supports it, and a model loaded by
  path in ``auto`` lands on the device in that dtype.

Skipped without CUDA. ``ATTRIBOT_RAG_TEST_DEVICE=cpu`` runs the same checks on the CPU
(how the test itself was checked on a machine without a GPU).
"""

import os

import numpy as np
import pytest
import torch

from attribot_rag import Attributor
from attribot_rag.models import LoadedModel, alias_checkpoint, load_model
from attribot_rag.precision import cpu_bf16_support, resolve_dtype

DEVICE = os.environ.get("ATTRIBOT_RAG_TEST_DEVICE", "cuda")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        DEVICE == "cuda" and not torch.cuda.is_available(),
        reason=f"no CUDA device: torch.cuda.is_available() is False (torch {torch.__version__}, "
        f"CUDA build {torch.version.cuda or 'none'}); ATTRIBOT_RAG_TEST_DEVICE=cpu runs these checks on the CPU",
    ),
]

TOL = 1e-3  # nats: the bound of loo vs loo-naive (tests/test_core.py)
QUESTION = "What is the hotel limit per night for international trips?"
ANSWER = "The hotel limit for international trips is $260 per night."
PASSAGES = [
    {"id": "leave", "title": "Vacation", "text": "Full-time employees receive 22 paid vacation days per year. "
     "Unused days expire on March 31."},
    {"id": "travel", "title": "Travel", "text": "For international trips the hotel limit is $260 per night. "
     "Meals are covered up to $95 a day."},
    {"id": "parking", "title": "Parking", "text": "The office has 40 parking spaces. Bicycles go in the basement."},
]
TINY = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=2048,
)


@pytest.fixture(scope="module")
def tokenizer():
    """The smollm2-135m tokenizer (shipped offline with the default small model; only its
    tokenizer files are read, not the weights)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(alias_checkpoint("smollm2-135m", "float32")))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _tiny(kind, tokenizer):
    import transformers as tf

    ids = dict(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    cfg = tf.Qwen2Config(**TINY, **ids) if kind == "qwen2" else tf.LlamaConfig(**TINY, **ids)
    torch.manual_seed(0)
    model = tf.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
    with torch.no_grad():  # sharper attention than the default init, so ablations matter
        for name, p in model.named_parameters():
            if name.endswith(("q_proj.weight", "k_proj.weight")):
                p.mul_(8.0)
    return model


@pytest.fixture(scope="module", params=["qwen2", "llama"])
def attributor(request, tokenizer):
    model = _tiny(request.param, tokenizer).to(DEVICE)
    lm = LoadedModel(model=model, tokenizer=tokenizer, name=f"tiny-{request.param}")
    return Attributor(lm, max_new_tokens=12)


def test_models_are_on_the_device(attributor):
    assert attributor.lm.device.type == DEVICE
    assert next(attributor.lm.model.parameters()).dtype == torch.float32


@pytest.mark.parametrize("level", ["passage", "sentence"])
def test_loo_equals_naive(attributor, level):
    generated = attributor.generate(QUESTION, PASSAGES)
    assert len(generated.token_ids) > 0
    for answer in (ANSWER, generated):
        fast = attributor.run(attributor.task(QUESTION, PASSAGES, answer, level=level), method="loo")
        naive = attributor.run(attributor.task(QUESTION, PASSAGES, answer, level=level), method="loo-naive")
        assert len(fast.scores) == len(naive.scores) > 0
        assert np.all(np.isfinite(fast.scores))
        np.testing.assert_allclose(fast.scores, naive.scores, atol=TOL, rtol=0)
        assert np.abs(naive.scores).max() > 1e-6  # the ablations change something
        assert fast.forward_tokens < naive.forward_tokens


def test_at2_capture_from_a_generation_on_the_device(attributor):
    from attribot_rag.at2.attention import model_shape
    from attribot_rag.at2.capture import GenerationCapture
    from attribot_rag.at2.features import task_features
    from attribot_rag.scoring import response_from_ids

    resp = attributor.generate(QUESTION, PASSAGES, max_new_tokens=10)
    caps = [o for o in resp.observations if isinstance(o, GenerationCapture)]
    assert len(caps) == 1 and caps[0].reason == "", caps[0].reason if caps else "no capture"
    task = attributor.task(QUESTION, PASSAGES, resp, level="sentence")
    res = attributor.run(task, method="attention")
    assert res.info["from_generation"] and res.info["capture"] == "used"
    assert res.forward_tokens == 0  # read from the capture: no forward pass
    # the same ids without the capture: one forward pass, the same features
    fresh = attributor.task(
        QUESTION, PASSAGES, response_from_ids(attributor.lm.tokenizer, resp.token_ids), level="sentence"
    )
    torch.testing.assert_close(task_features(task), task_features(fresh), atol=1e-4, rtol=1e-4)
    # AT2 over the capture: uniform head weights give average attention
    n_layers, n_heads = model_shape(attributor.lm.model)
    uniform = attributor.run(task, method="at2", weights=np.full((n_layers, n_heads), 1 / (n_layers * n_heads)))
    assert uniform.info["from_generation"] and uniform.forward_tokens == 0
    np.testing.assert_allclose(uniform.scores, res.scores, rtol=1e-4, atol=1e-6)


def test_auto_dtype_on_the_device(tokenizer, tmp_path):
    choice = resolve_dtype("auto", device=DEVICE)
    if DEVICE == "cuda":
        if torch.cuda.is_bf16_supported():
            assert choice.dtype == torch.bfloat16 and "CUDA device" in choice.reason, choice.reason
        else:
            assert choice.dtype == torch.float32 and "no fast bf16 on cuda" in choice.reason, choice.reason
    else:
        assert choice.dtype == (torch.bfloat16 if cpu_bf16_support() else torch.float32), choice.reason
    # a model loaded by path with dtype="auto": on the device, in the dtype auto picked
    folder = tmp_path / "tiny-qwen2"
    _tiny("qwen2", tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    lm = load_model(str(folder), device=DEVICE, dtype="auto")
    assert lm.device.type == DEVICE
    assert next(lm.model.parameters()).dtype == choice.dtype
    assert lm.metadata["dtype"] == choice.name and lm.metadata["dtype_requested"] == "auto"
    result = Attributor(lm, max_new_tokens=8).attribute(QUESTION, PASSAGES, ANSWER, method="loo")
    assert result.info["model_dtype"] == choice.name and np.all(np.isfinite(result.scores))
