"""Response log-probabilities, generation, and batched ablation scoring with prefix-KV reuse.

LL(C) = sum_t log p(r_t | prompt(C), r_<t): the response is tokenized once and appended to
the prompt tokens. We keep per-token log-probs so that a target span is a slice.

Prefix-KV reuse (docs/architecture.md, Methods > Prefix KV-cache reuse): the full
prompt + response is run once and its
KV cache kept. An ablated prompt shares its first tokens with the full prompt (compared on
token ids, since removing text can change how neighbouring tokens merge); only the tokens
after that common prefix are fed, with the cached keys and values of the prefix. At least
the last prompt token is always recomputed so that the logits for r_1 exist. Ablations are
run in batches that share one prefix length (the smallest common prefix in the batch),
right-padded, pads masked, and each row's log-probs read at its own positions. In a causal
model this is exact, not an approximation.
"""

from __future__ import annotations

import weakref

import dataclasses
import threading
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, ContextManager, Protocol, Sequence

import numpy as np
import torch

from .errors import InputError
from .fastattn import prefix_split_attention
from .models import LoadedModel

DEFAULT_BATCH_SIZE = 4
# Largest difference of reusable prefix lengths (tokens) within one batch of ablations:
# "auto" = CPU_MAX_SPREAD on a CPU, no limit on an accelerator (where batching pays).
CPU_MAX_SPREAD = 32
DEFAULT_MAX_SPREAD = "auto"


@dataclass
class Response:
    """The response being explained: its text, token ids and each token's character span."""

    text: str
    token_ids: list[int]
    offsets: list[tuple[int, int]]
    generated: bool = False
    # What the generation observers recorded while the model generated this answer
    # (e.g. AT2's capture): opaque here, each observer's reader finds its own.
    observations: list[Any] = field(default_factory=list, repr=False, compare=False)
    # The prompt's KV cache, when asked for (Scorer.generate(keep_prompt_kv=True)).
    prompt_kv: Any = field(default=None, repr=False, compare=False)
    # Each token's log-probability as generation computed it (LogprobObserver), with the
    # prompt it followed; None for a text answer. Saves a context-gain check a full pass.
    logprobs: "GeneratedLogprobs | None" = field(default=None, repr=False, compare=False)
    # The prompt it followed and the KV cache its generation built; None for a text answer.
    generation: "GenerationRecord | None" = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.token_ids)

    def token_slice(self, span: tuple[int, int] | None) -> tuple[int, int]:
        """Token slice [a, b) covering the character span (the whole response if None)."""
        if span is None:
            return 0, len(self.token_ids)
        start, end = span
        if not (0 <= start < end <= len(self.text)):
            raise InputError(
                f"answer span {span} is not a non-empty range inside the answer (length {len(self.text)})"
            )
        idx = [t for t, (s, e) in enumerate(self.offsets) if s < end and e > start]
        if not idx:
            raise InputError(f"answer span {span} covers no answer token")
        return idx[0], idx[-1] + 1


def response_from_text(tokenizer: Any, text: str) -> Response:
    if text is None or not str(text).strip():
        raise InputError("the answer is empty: there is nothing to attribute")
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    if not ids:
        raise InputError("the answer tokenizes to no tokens")
    return Response(text, ids, [tuple(o) for o in enc["offset_mapping"]], generated=False)


def response_from_ids(tokenizer: Any, ids: Sequence[int]) -> Response:
    """Response for generated token ids: text decoded without special tokens; offsets by
    incremental decoding (a trailing end-of-turn token gets an empty span at the end)."""
    ids = [int(i) for i in ids]
    text = tokenizer.decode(ids, skip_special_tokens=True)
    offsets: list[tuple[int, int]] = []
    prev = 0
    for t in range(len(ids)):
        cur = len(tokenizer.decode(ids[: t + 1], skip_special_tokens=True))
        cur = min(max(cur, prev), len(text))
        offsets.append((prev, cur))
        prev = cur
    return Response(text, ids, offsets, generated=True)


# Do not keep a generation's KV cache on its response beyond this size (bytes); above it
# a full pass over the same prompt runs the prompt again.
MAX_KEPT_KV_BYTES = 512 * 1024 * 1024


@dataclass
class GenerationRecord:
    """What every generation leaves on its response, whoever reads it later: the model
    (weakly), the prompt it followed and the KV cache it built. The cache's first
    positions are the prompt's keys and values, exactly what a full pass over the same
    prompt would compute again (LOO's full pass reuses them; AT2 reads the same cache
    through its capture). ``reason`` says why no cache was kept."""

    model_ref: Any
    prompt_ids: tuple[int, ...]
    cache: Any = None
    reason: str = ""

    def prompt_kv(self, model: Any, prompt_ids: Sequence[int]) -> tuple[list[tuple[torch.Tensor, torch.Tensor]] | None, str]:
        """The prompt's keys and values per layer (views, never modified), or None and why."""
        if self.cache is None:
            return None, self.reason
        if self.model_ref() is not model or tuple(int(t) for t in prompt_ids) != self.prompt_ids:
            return None, "the answer was generated by another model or from another prompt"
        p = len(self.prompt_ids)
        return [(layer.keys[:, :, :p], layer.values[:, :, :p]) for layer in self.cache.layers], ""


def generation_record(model: Any, prompt_ids: Sequence[int], cache: Any) -> GenerationRecord:
    """The record of a finished generation, its cache kept when it is complete and small."""
    layers = getattr(cache, "layers", None) or []
    p = len(prompt_ids)
    reason = ""
    if not layers or any(getattr(layer, "keys", None) is None or layer.keys.shape[2] < p for layer in layers):
        reason = "the generation's KV cache does not hold every prompt position"
    else:
        nbytes = sum(2 * layer.keys.numel() * layer.keys.element_size() for layer in layers)
        if nbytes > MAX_KEPT_KV_BYTES:
            reason = f"the generation's KV cache ({nbytes >> 20} MiB) is above the {MAX_KEPT_KV_BYTES >> 20} MiB kept"
    return GenerationRecord(weakref.ref(model), tuple(int(t) for t in prompt_ids), None if reason else cache, reason)


def generated_prompt_kv(
    response: Response, model: Any, prompt_ids: Sequence[int]
) -> tuple[list[tuple[torch.Tensor, torch.Tensor]] | None, str]:
    """The prompt's keys and values from this model's generation of the response after
    exactly this prompt, or None and the reason there are none."""
    if response.generation is None:
        if response.generated:
            return None, "the answer was generated without a record of its generation (rebuilt from its ids)"
        return None, "the answer was given, not generated by this model"
    return response.generation.prompt_kv(model, prompt_ids)


class Recording(Protocol):
    def attach(self, response: Response) -> None:
        """File what was recorded on the finished response (``response.observations``)."""


class GenerationObserver(Protocol):
    """Watches the forward steps of one generation, e.g. with hooks on the decoder layers.

    ``full_prompt`` is False when generation continued a cached prompt prefix, so the
    first forward step did not see the whole prompt."""

    def watch(self, model: Any, prompt_ids: Sequence[int], full_prompt: bool) -> ContextManager[Recording]: ...


@dataclass(frozen=True)
class GeneratedLogprobs:
    """Per-token log-probs of a generated response, and the prompt they were computed after."""

    prompt_ids: tuple[int, ...]
    values: np.ndarray

    def for_prompt(self, prompt_ids: Sequence[int], length: int) -> np.ndarray | None:
        """The values, if they belong to this prompt and a response of this length."""
        same = len(self.values) == length and tuple(int(t) for t in prompt_ids) == self.prompt_ids
        return self.values if same else None


class LogprobObserver:
    """The generation observer that keeps each generated token's log-probability.

    A hook on the output layer keeps the latest step's log-softmax; the next step's input
    (a pre-hook on the model) names the token that was chosen from it. ``values(ids)``
    gives the log-probs of the tokens ``ids`` generated so far (a streaming reader asks
    mid-generation); the finished response gets its own as ``response.logprobs``."""

    def __init__(self) -> None:
        self._prompt: tuple[int, ...] = ()
        self._chosen: list[float] = []
        self._pending: torch.Tensor | None = None

    def values(self, ids: Sequence[int]) -> GeneratedLogprobs | None:
        out = self._chosen[: len(ids)]
        if len(out) == len(ids) - 1 and self._pending is not None:
            out = out + [float(self._pending[int(ids[-1])])]
        if len(out) != len(ids):
            return None
        return GeneratedLogprobs(self._prompt, np.asarray(out, dtype=np.float64))

    @contextmanager
    def watch(self, model: Any, prompt_ids: Sequence[int], full_prompt: bool):
        self._prompt = tuple(int(t) for t in prompt_ids)
        self._chosen, self._pending = [], None
        # A streaming reader scores the answer so far on the same model while generation
        # waits: only the generating thread's forward steps are recorded.
        owner = threading.get_ident()

        def on_input(module, args, kwargs):
            ids = kwargs.get("input_ids")
            if threading.get_ident() != owner:
                return
            if self._pending is not None and ids is not None and ids.shape[-1] == 1:
                self._chosen.append(float(self._pending[int(ids[0, -1])]))
                self._pending = None

        def on_logits(module, args, output):
            if threading.get_ident() == owner:
                self._pending = torch.log_softmax(output[0, -1].float(), dim=-1)

        handles = [
            model.register_forward_pre_hook(on_input, with_kwargs=True),
            model.get_output_embeddings().register_forward_hook(on_logits),
        ]
        try:
            yield self
        finally:
            for h in handles:
                h.remove()

    def attach(self, response: Response) -> None:
        response.logprobs = self.values(response.token_ids)


@dataclass
class FullPass:
    """The full-context run: per-token log-probs and the prompt's KV cache per layer."""

    prompt_ids: list[int]
    response_ids: list[int]
    logprobs: np.ndarray
    kv: list[tuple[torch.Tensor, torch.Tensor]] = field(repr=False)


@dataclass
class PromptKV:
    """A prompt's token ids and its KV cache per layer (to reuse its prefix in generation)."""

    ids: list[int]
    kv: list[tuple[torch.Tensor, torch.Tensor]] = field(repr=False)


# Below this many shared tokens a prefix cache is not worth copying.
MIN_SHARED_PREFIX = 16


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _prefix_batches(
    prefixes: Sequence[int], lengths: Sequence[int], batch_size: int, max_spread: int | None
) -> list[list[int]]:
    """Rows grouped into batches of at most ``batch_size``, in order of prefix and length, such
    that no row wastes more than ``max_spread`` tokens (None: any) against running alone.

    A batch runs every row from the shortest reusable prefix to the longest prompt, so a
    row pays for the prefix gap it recomputes and for the right padding to the widest row.
    Leave-one-out rows differ mostly in the first; prompts with one source each (support
    checks) only in the second."""
    batches: list[list[int]] = []
    for i in sorted(range(len(prefixes)), key=lambda i: (prefixes[i], lengths[i])):
        b = batches[-1] if batches else None
        fits = b is not None and len(b) < batch_size
        if fits and (max_spread is None or _waste([*b, i], prefixes, lengths) <= max_spread):
            b.append(i)
        else:
            batches.append([i])
    return batches


def _waste(rows: Sequence[int], prefixes: Sequence[int], lengths: Sequence[int]) -> int:
    """The most tokens any of ``rows`` computes in one batch beyond its own suffix."""
    shared = min(prefixes[j] for j in rows)
    width = max(lengths[j] - shared for j in rows)
    return max(width - (lengths[j] - prefixes[j]) for j in rows)


class Scorer:
    """Scores responses with one model; counts the tokens it feeds through the model."""

    def __init__(
        self, lm: LoadedModel, batch_size: int = DEFAULT_BATCH_SIZE, split_attention: bool = True
    ) -> None:
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        self.lm = lm
        self.batch_size = batch_size
        self.split_attention = split_attention
        self.forward_tokens = 0
        self.forward_passes = 0

    @property
    def model(self):
        return self.lm.model

    def _pad_id(self) -> int:
        tok = self.lm.tokenizer
        for cand in (tok.pad_token_id, tok.eos_token_id, 0):
            if cand is not None:
                return int(cand)
        return 0

    @staticmethod
    def _gather(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(logits.float(), dim=-1)
        return logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)

    # ---------------------------------------------------------------- single pass
    @torch.inference_mode()
    def logprobs(self, prompt_ids: Sequence[int], response_ids: Sequence[int]) -> np.ndarray:
        """Per-token log-probs of the response after the prompt: one full forward pass, no cache."""
        p, r = len(prompt_ids), len(response_ids)
        ids = torch.tensor([list(prompt_ids) + list(response_ids)], device=self.lm.device)
        out = self.model(input_ids=ids, use_cache=False, logits_to_keep=r + 1)
        self.forward_tokens += p + r
        self.forward_passes += 1
        logits = out.logits[0, :-1]
        return self._gather(logits, ids[0, p:]).cpu().numpy().astype(np.float64)

    @torch.inference_mode()
    def full_pass(self, prompt_ids: Sequence[int], response_ids: Sequence[int]) -> FullPass:
        """The full-context run, keeping the KV cache of the prompt for later ablations."""
        from transformers import DynamicCache

        p, r = len(prompt_ids), len(response_ids)
        ids = torch.tensor([list(prompt_ids) + list(response_ids)], device=self.lm.device)
        # A cache without a config keeps every position on every layer (no sliding-window
        # trimming), so it can be cut at any prefix length; masks still follow the config.
        cache = DynamicCache()
        out = self.model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=r + 1)
        self.forward_tokens += p + r
        self.forward_passes += 1
        lp = self._gather(out.logits[0, :-1], ids[0, p:]).cpu().numpy().astype(np.float64)
        kv = [(layer.keys[:, :, :p], layer.values[:, :, :p]) for layer in out.cache.layers]
        return FullPass(list(prompt_ids), list(response_ids), lp, kv)

    def full_pass_on_prompt_kv(
        self,
        prompt_ids: Sequence[int],
        response_ids: Sequence[int],
        kv: Sequence[tuple[torch.Tensor, torch.Tensor]],
    ) -> FullPass:
        """The full-context run when the prompt's keys and values are already known (the
        generation that wrote the answer computed them): the prompt is scored like an
        ablation that shares all but its last token, so only that token, whose logits
        predict r_1, and the answer run."""
        known = FullPass(list(prompt_ids), list(response_ids), np.zeros(0), list(kv))
        (lp,) = self.ablation_logprobs(known, [prompt_ids])
        return dataclasses.replace(known, logprobs=lp)

    # ---------------------------------------------------------------- ablations
    def ablation_logprobs_naive(
        self, prompts: Sequence[Sequence[int]], response_ids: Sequence[int]
    ) -> list[np.ndarray]:
        """Reference path: each ablated prompt gets its own full forward pass (batch size 1)."""
        return [self.logprobs(p, response_ids) for p in prompts]

    @torch.inference_mode()
    def ablation_logprobs(
        self,
        full: FullPass,
        prompts: Sequence[Sequence[int]],
        batch_size: int | None = None,
        max_spread: int | str | None = DEFAULT_MAX_SPREAD,
    ) -> list[np.ndarray]:
        """Per-token log-probs of the response under each ablated prompt, reusing the
        full prompt's KV cache up to the common token prefix, in batches.

        A batch shares the smallest reusable prefix of its rows and is as wide as its
        longest row, so every other row recomputes the tokens between its own prefix and
        that one and is padded to that width. Batches therefore hold at most
        ``batch_size`` ablations none of which wastes more than ``max_spread`` tokens that
        way (None: no limit; "auto": 32 on a CPU, no limit elsewhere). Sentences of one
        passage sit a few tokens apart and batch almost for free; passages sit hundreds of
        tokens apart, and prompts with one short source each differ by their sources'
        lengths: on a CPU recomputing or padding those costs more than batching saves.
        Scores are identical either way up to rounding; only the work differs."""
        bs = batch_size or self.batch_size
        if max_spread == "auto":
            max_spread = CPU_MAX_SPREAD if self.lm.device.type == "cpu" else None
        prefixes = []
        for p in prompts:
            if len(p) < 1:
                raise InputError("an ablated prompt is empty")
            prefixes.append(min(common_prefix(full.prompt_ids, p), len(p) - 1))
        results: list[np.ndarray | None] = [None] * len(prompts)
        for rows in _prefix_batches(prefixes, [len(p) for p in prompts], bs, max_spread):
            for i, lp in zip(rows, self._score_batch(full, [prompts[i] for i in rows], min(prefixes[i] for i in rows))):
                results[i] = lp
        return results  # type: ignore[return-value]

    @torch.inference_mode()
    def ablation_logprobs_chained(self, full: FullPass, prompts: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """Per-token log-probs of the response under each ablated prompt, one prompt per
        forward pass, each continuing the KV cache of the longest start it shares with the
        full prompt or with the prompt run just before it.

        Prompts run in the order of their token ids, so neighbours share the longest starts
        (for random masks, the first sources' combinations repeat): a start common to
        several ablations runs once per run of neighbours, not once per ablation. Exact,
        like the prefix reuse of :meth:`ablation_logprobs`; it pays where ablations differ
        in many places (ContextCite's random masks), not for leave-one-out."""
        from transformers import DynamicCache

        r_ids = list(full.response_ids)
        targets = torch.tensor(r_ids, device=self.lm.device)
        results: list[np.ndarray | None] = [None] * len(prompts)
        prev: list[int] = []
        prev_kv: list[tuple[torch.Tensor, torch.Tensor]] = []
        for i in sorted(range(len(prompts)), key=lambda j: list(prompts[j])):
            p = list(prompts[i])
            if not p:
                raise InputError("an ablated prompt is empty")
            from_full, from_prev = common_prefix(full.prompt_ids, p), common_prefix(prev, p)
            shared, kv = (from_full, full.kv) if from_full >= from_prev else (from_prev, prev_kv)
            shared = min(shared, len(p) - 1)  # the last prompt token gives r_1's logits
            cache = DynamicCache(ddp_cache_data=[(k[:, :, :shared], v[:, :, :shared]) for k, v in kv]) if shared else DynamicCache()
            ids = torch.tensor([p[shared:] + r_ids], device=self.lm.device)
            out = self.model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=len(r_ids) + 1)
            self.forward_tokens += ids.shape[1]
            self.forward_passes += 1
            results[i] = self._gather(out.logits[0, :-1], targets).cpu().numpy().astype(np.float64)
            prev, prev_kv = p, [(layer.keys[:, :, : len(p)], layer.values[:, :, : len(p)]) for layer in out.cache.layers]
        return results  # type: ignore[return-value]

    def _score_batch(self, full: FullPass, prompts: list[Sequence[int]], shared: int) -> list[np.ndarray]:
        """One forward pass over ablated prompts that all start with the full prompt's
        first ``shared`` tokens: right-padded suffixes on the cached prefix."""
        from transformers import DynamicCache

        device, r_ids = self.lm.device, list(full.response_ids)
        r = len(r_ids)
        suffixes = [list(p[shared:]) + r_ids for p in prompts]
        n, width = len(suffixes), max(len(s) for s in suffixes)
        ids = torch.full((n, width), self._pad_id(), dtype=torch.long, device=device)
        mask = torch.zeros((n, shared + width), dtype=torch.long, device=device)
        mask[:, :shared] = 1
        # Row j predicts response token k at suffix position (len(prompt suffix) - 1 + k).
        starts = []
        for j, s in enumerate(suffixes):
            ids[j, : len(s)] = torch.tensor(s, device=device)
            mask[j, shared : shared + len(s)] = 1
            starts.append(len(s) - r - 1)
        lo, hi = min(starts), max(starts) + r
        cache = None
        if shared > 0:
            cache = DynamicCache(
                ddp_cache_data=[
                    (k[:, :, :shared].expand(n, -1, -1, -1), v[:, :, :shared].expand(n, -1, -1, -1)) for k, v in full.kv
                ]
            )
        with prefix_split_attention(self.model, self.split_attention) as split:
            out = self.model(
                input_ids=ids,
                # The split kernel needs no mask (see fastattn); the stock path does.
                attention_mask=None if split else mask,
                cache=cache,
                use_cache=cache is not None,
                logits_to_keep=torch.arange(lo, hi, device=device),
            )
        self.forward_tokens += sum(len(s) for s in suffixes)
        self.forward_passes += 1
        targets = torch.tensor(r_ids, device=device)
        return [self._gather(out.logits[j, starts[j] - lo : starts[j] - lo + r], targets).cpu().numpy().astype(np.float64) for j in range(n)]

    # ---------------------------------------------------------------- generation
    @torch.inference_mode()
    def generate(
        self,
        prompt_ids: Sequence[int],
        max_new_tokens: int = 128,
        *,
        prefix: "PromptKV | Sequence[PromptKV] | None" = None,
        keep_prompt_kv: bool = False,
        observers: Sequence[GenerationObserver] = (),
        **generate_kwargs: Any,
    ) -> Response:
        """Greedy answer to a prompt. The end-of-turn token is kept if the model produced it.

        ``prefix``: the KV cache of an earlier prompt (``response.prompt_kv`` of an earlier
        call with ``keep_prompt_kv=True``), or several (the one sharing the longest start
        is used); the tokens this prompt shares with it at the start are not run again.
        ``keep_prompt_kv``: keep this prompt's KV cache on the response. ``observers``
        watch the forward steps (see :class:`GenerationObserver`) and file what they saw
        on ``response.observations``.
        """
        from transformers import DynamicCache

        tok = self.lm.tokenizer
        prompt_ids = [int(t) for t in prompt_ids]
        ids = torch.tensor([prompt_ids], device=self.lm.device)
        kwargs = dict(
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=self._pad_id(),
        )
        kwargs.update(generate_kwargs)
        if not kwargs.get("do_sample"):
            for key in ("temperature", "top_p", "top_k"):
                kwargs.setdefault(key, None)
        shared = 0
        if isinstance(prefix, PromptKV):
            prefix = [prefix]
        prefix = max(prefix or [], key=lambda p: common_prefix(p.ids, prompt_ids), default=None)
        if prefix is not None:
            # at least one prompt token must run to give the first answer token's logits
            shared = min(common_prefix(prefix.ids, prompt_ids), len(prompt_ids) - 1)
            if shared < MIN_SHARED_PREFIX:
                shared = 0
        # Our own cache, kept on the response (GenerationRecord). A cache without a config
        # keeps every position (no sliding-window trimming), so it holds the whole prompt.
        cache = DynamicCache(
            ddp_cache_data=[(k[:, :, :shared].clone(), v[:, :, :shared].clone()) for k, v in prefix.kv]
        ) if shared else DynamicCache()
        kwargs["cache"] = cache
        if not any(isinstance(o, LogprobObserver) for o in observers):
            observers = [*observers, LogprobObserver()]
        with ExitStack() as stack:
            recordings = [stack.enter_context(o.watch(self.model, prompt_ids, not shared)) for o in observers]
            out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)
        if not isinstance(out, torch.Tensor):  # a caller asked for return_dict_in_generate
            out = out.sequences
        record = generation_record(self.model, prompt_ids, cache)
        prompt_kv = None
        if keep_prompt_kv and record.cache is not None:
            prompt_kv = PromptKV(prompt_ids, record.prompt_kv(self.model, prompt_ids)[0])
        new = out[0, len(prompt_ids) :].tolist()
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
        if tok.eos_token_id is not None:
            eos_ids.add(tok.eos_token_id)
        # Drop anything after the first end-of-turn token (there should be nothing).
        for t, tid in enumerate(new):
            if tid in eos_ids:
                new = new[: t + 1]
                break
        response = response_from_ids(tok, new)
        if not response.text.strip():
            raise InputError("the model generated an empty answer; pass an answer or change the prompt")
        for recording in recordings:
            recording.attach(response)
        response.prompt_kv = prompt_kv
        response.generation = record
        return response


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "FullPass",
    "GeneratedLogprobs",
    "GenerationObserver",
    "GenerationRecord",
    "LogprobObserver",
    "PromptKV",
    "Recording",
    "Response",
    "Scorer",
    "common_prefix",
    "generated_prompt_kv",
    "generation_record",
    "response_from_ids",
    "response_from_text",
]
