"""The attributing model as a LangChain chat model: ``ChatHuggingFace`` over a
``HuggingFacePipeline`` (langchain-huggingface, the extra ``[chat]``) built on the weights the
:class:`attribot_rag.Attributor` already holds, so the chain's answers and the
attribution run on one copy of the model.

>>> compressor = AttribotCompressor(model="smollm2-135m", top_n=2)
>>> chat_model = attribot_chat_model(compressor.attributor)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from attribot_rag import DEFAULT_MODEL, Attributor

from ._common import resolve_attributor

if TYPE_CHECKING:  # langchain-huggingface is the optional extra [chat]
    from langchain_huggingface import ChatHuggingFace, HuggingFacePipeline


def _langchain_huggingface(what: str) -> Any:
    """langchain-huggingface, imported on first use: it is the optional extra ``[chat]``
    (it caps huggingface-hub below 2, which would hold transformers back for everyone)."""
    try:
        import langchain_huggingface
    except ImportError as exc:
        raise ImportError(
            f"{what} needs langchain-huggingface, an optional extra of langchain-attribot: "
            "pip install 'langchain-attribot[chat]'"
        ) from exc
    return langchain_huggingface


def attribot_pipeline(
    attributor: Attributor | str | Any = DEFAULT_MODEL, *, max_new_tokens: Optional[int] = None
) -> HuggingFacePipeline:
    """A ``HuggingFacePipeline`` (text generation, greedy, the answer only) over the
    attributing model's model and tokenizer; ``max_new_tokens`` defaults to the
    attributor's answer length. ``attributor`` is an Attributor or what
    :func:`resolve_attributor` takes (a name is loaded once per process)."""
    hf = _langchain_huggingface("attribot_pipeline")
    from transformers import pipeline

    if not isinstance(attributor, Attributor):
        attributor = resolve_attributor(attributor)
    lm = attributor.lm
    tokenizer = lm.tokenizer
    generator = pipeline(
        "text-generation",
        model=lm.model,
        tokenizer=tokenizer,
        max_new_tokens=max_new_tokens or attributor.max_new_tokens,
        # greedy like Attributor.generate; None unsets the sampling flags a checkpoint's
        # generation_config may carry, which transformers warns about when not sampling
        do_sample=False,
        temperature=None,
        top_p=None,
        top_k=None,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        return_full_text=False,
    )
    return hf.HuggingFacePipeline(pipeline=generator, model_id=lm.name)


def attribot_chat_model(
    attributor: Attributor | str | Any = DEFAULT_MODEL, *, max_new_tokens: Optional[int] = None
) -> ChatHuggingFace:
    """A ``ChatHuggingFace`` (messages through the model's chat template) over
    :func:`attribot_pipeline`: the attributing model as the chain's chat model."""
    hf = _langchain_huggingface("attribot_chat_model")
    llm = attribot_pipeline(attributor, max_new_tokens=max_new_tokens)
    # the tokenizer is passed so ChatHuggingFace does not load one by model id (the hub)
    return hf.ChatHuggingFace(llm=llm, tokenizer=llm.pipeline.tokenizer, model_id=llm.model_id)
