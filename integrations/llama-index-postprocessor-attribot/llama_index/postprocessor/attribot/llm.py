"""The attributing model as a LlamaIndex LLM: ``HuggingFaceLLM`` (llama-index-llms-huggingface,
the optional extra ``[llm]``) over the weights the :class:`attribot_rag.Attributor` already
holds, so a query engine's synthesizer and the attribution run on one copy of the model.

>>> pruner = AttribotPostprocessor(model="smollm2-135m", top_n=2)
>>> llm = attribot_llm(pruner.attributor)
>>> engine = index.as_query_engine(llm=llm, similarity_top_k=5, node_postprocessors=[pruner])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from attribot_rag import DEFAULT_MODEL, Attributor

from .base import resolve_attributor

if TYPE_CHECKING:  # llama-index-llms-huggingface is the optional extra [llm]
    from llama_index.llms.huggingface import HuggingFaceLLM


def _huggingface_llm() -> Any:
    """``HuggingFaceLLM``, imported on first use: llama-index-llms-huggingface is the
    optional extra ``[llm]`` (it pulls transformers[torch] and its kernels for everyone)."""
    try:
        from llama_index.llms.huggingface import HuggingFaceLLM
    except ImportError as exc:
        raise ImportError(
            "attribot_llm needs llama-index-llms-huggingface, an optional extra of "
            "llama-index-postprocessor-attribot: pip install 'llama-index-postprocessor-attribot[llm]'"
        ) from exc
    return HuggingFaceLLM


def attribot_llm(
    attributor: Attributor | str | Any = DEFAULT_MODEL,
    *,
    max_new_tokens: Optional[int] = None,
    context_window: Optional[int] = None,
    **kwargs: Any,
) -> HuggingFaceLLM:
    """A ``HuggingFaceLLM`` over the attributing model's own model and tokenizer.

    ``attributor``: an :class:`attribot_rag.Attributor` (its weights are reused), or
    anything :func:`resolve_attributor` takes as ``model`` (a name: loaded once per
    process and shared with every other component given the same name).
    ``max_new_tokens`` defaults to the attributor's answer length, so the synthesizer's
    answers are as long as the drafts attributed; ``context_window`` to the model's
    window. Decoding is greedy, as the attributor's; ``kwargs`` go to ``HuggingFaceLLM``.
    """
    llm_class = _huggingface_llm()
    if not isinstance(attributor, Attributor):
        attributor = resolve_attributor(attributor)
    lm = attributor.lm
    tokenizer = lm.tokenizer
    window = context_window or lm.context_window
    chat = bool(getattr(tokenizer, "chat_template", None))
    options: dict[str, Any] = dict(
        model=lm.model,
        tokenizer=tokenizer,
        # names only label the LLM (HuggingFaceLLM's defaults name a StableLM it would load)
        model_name=lm.name,
        tokenizer_name=lm.name,
        max_new_tokens=max_new_tokens or attributor.max_new_tokens,
        context_window=window,
        # greedy like Attributor.generate; None unsets the sampling flags a checkpoint's
        # generation_config may carry, which transformers warns about when not sampling
        generate_kwargs=dict(
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        ),
        stopping_ids=[tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [],
        is_chat_model=chat,
    )
    if chat:
        # complete() too goes through the chat template: an instruct model given the raw
        # prompt often answers nothing (SmolLM2 returned "" for "What is 2+2?")
        options["completion_to_prompt"] = lambda text: tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
    options.update(kwargs)
    return llm_class(**options)
