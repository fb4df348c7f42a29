"""Prompt layout: (question, passages, instruction) -> the exact prompt string and tokens.

The user message is built as::

    Documents:

    Title: <title of passage 1>
    <text of passage 1>

    Title: <title of passage 2>
    <text of passage 2>

    Question: <question>
    <instruction>

(``Title:`` lines appear only for passages that have a title.) With a chat template the
system prompt and this user message go through ``tokenizer.apply_chat_template`` with a
generation prompt. A model without a chat template (a base model) gets the documented
plain format instead::

    <system prompt>

    <user message>

    Answer:

Ablation removes exactly a source's text: a removed passage loses its whole block
(title line included) and one blank-line separator, as if it had never been retrieved;
a removed sentence loses its characters and the whitespace that followed it (the
whitespace before it, for a passage's last sentence). The rest of the prompt is
unchanged, so an ablated prompt differs from the full one only by the removed text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from .errors import ContextTooLongError, InputError
from .sources import Passage, Source, split_sentences

DEFAULT_SYSTEM_PROMPT = (
    "You are a careful assistant. Answer the question using only the documents provided."
)
DEFAULT_INSTRUCTION = "Answer the question briefly, using only the documents above."
PLAIN_ANSWER_CUE = "Answer:"


@dataclass
class RenderedPrompt:
    """A rendered prompt with the position of every (kept) source in it."""

    text: str
    input_ids: list[int]
    offsets: list[tuple[int, int]]  # character span of each token in ``text``
    char_spans: dict[int, tuple[int, int]]  # source index -> span in ``text``
    removed: frozenset[int] = field(default_factory=frozenset)

    def __len__(self) -> int:
        return len(self.input_ids)

    def token_span(self, source_index: int) -> tuple[int, int]:
        """Token slice [a, b) of the tokens overlapping the source's characters."""
        a, b = self.char_spans[source_index]
        first = last = None
        for t, (s, e) in enumerate(self.offsets):
            if s < b and e > a:
                if first is None:
                    first = t
                last = t
        if first is None:
            raise InputError(f"source {source_index} maps to no token of the prompt")
        return first, last + 1


class PromptLayout:
    """Renders prompts for one tokenizer; the same layout serves generation and scoring."""

    def __init__(
        self,
        tokenizer: Any,
        *,
        system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
        instruction: str | None = DEFAULT_INSTRUCTION,
        use_chat_template: bool | None = None,
        show_titles: bool = True,
    ) -> None:
        self.tokenizer = tokenizer
        self.system_prompt = system_prompt
        self.instruction = instruction
        has_template = bool(getattr(tokenizer, "chat_template", None))
        if use_chat_template and not has_template:
            raise InputError("use_chat_template=True but the tokenizer has no chat template")
        self.use_chat_template = has_template if use_chat_template is None else use_chat_template
        self.show_titles = show_titles
        self._frame: tuple[str, str] | None = None

    # ------------------------------------------------------------------ building
    def _passage_block(
        self, passage: Passage, keep_sentences: set[int] | None, sentence_spans
    ) -> tuple[str, list[tuple[int, int, int]]]:
        """Block text for a passage and [(local sentence k, start, end)] spans in it.

        ``keep_sentences`` None keeps the whole text.
        """
        header = f"Title: {passage.title}\n" if (self.show_titles and passage.title) else ""
        text = passage.text
        if keep_sentences is None:
            spans = [(k, len(header) + a, len(header) + b) for k, (a, b) in enumerate(sentence_spans)]
            return header + text, spans
        kept = [k for k in range(len(sentence_spans)) if k in keep_sentences]
        parts = [header]
        pos = len(header)
        spans = []
        if kept:
            lead = text[: sentence_spans[0][0]]
            parts.append(lead)
            pos += len(lead)
            for j, k in enumerate(kept):
                a, b = sentence_spans[k]
                parts.append(text[a:b])
                spans.append((k, pos, pos + (b - a)))
                pos += b - a
                if j + 1 < len(kept):
                    gap = text[b : sentence_spans[k + 1][0]]
                    parts.append(gap)
                    pos += len(gap)
            tail = text[sentence_spans[-1][1] :]
            parts.append(tail)
        return "".join(parts), spans

    def build_content(
        self,
        question: str,
        passages: Sequence[Passage],
        sources: Sequence[Source] | None = None,
        removed: Iterable[int] = (),
    ) -> tuple[str, dict[int, tuple[int, int]]]:
        """The user message and each kept source's character span inside it."""
        removed = set(removed)
        sources = list(sources or [])
        level = sources[0].level if sources else "passage"
        by_passage: dict[int, list[Source]] = {}
        for s in sources:
            by_passage.setdefault(s.passage_index, []).append(s)
        content = "Documents:\n\n"
        spans: dict[int, tuple[int, int]] = {}
        first = True
        for pi, p in enumerate(passages):
            ps = by_passage.get(pi, [])
            if level == "passage":
                if any(s.index in removed for s in ps):
                    continue
                block, _ = self._passage_block(p, None, [])
                header_len = len(block) - len(p.text)
                if not first:
                    content += "\n\n"
                for s in ps:
                    spans[s.index] = (len(content) + header_len, len(content) + len(block))
                content += block
            else:
                sent_spans = [(s.start, s.end) for s in ps] or split_sentences(p.text)
                keep = {k for k, s in enumerate(ps) if s.index not in removed}
                block, local = self._passage_block(p, keep if ps else None, sent_spans)
                if not first:
                    content += "\n\n"
                for k, a, b in local:
                    if ps:
                        spans[ps[k].index] = (len(content) + a, len(content) + b)
                content += block
            first = False
        content += f"\n\nQuestion: {question.strip()}"
        if self.instruction:
            content += f"\n{self.instruction}"
        return content, spans

    def _chat_frame(self) -> tuple[str, str]:
        """Prefix and suffix the chat template puts around the user message."""
        if self._frame is None:
            sentinel = "\u2063ATTRIBOT_CONTENT\u2063"
            text = self._apply_template(sentinel)
            i = text.find(sentinel)
            if i < 0 or text.find(sentinel, i + 1) >= 0:
                raise InputError("the chat template does not reproduce the user message verbatim")
            self._frame = (text[:i], text[i + len(sentinel) :])
        return self._frame

    def _apply_template(self, content: str) -> str:
        messages = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user", "content": content})
        try:
            return self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        except Exception:
            # Templates without a system role: fold the system prompt into the user turn.
            if not self.system_prompt:
                raise
            merged = [{"role": "user", "content": f"{self.system_prompt}\n\n{content}"}]
            return self.tokenizer.apply_chat_template(
                merged, tokenize=False, add_generation_prompt=True
            )

    def wrap(self, content: str) -> tuple[str, int]:
        """Full prompt text for a user message, and the offset of the message in it."""
        if self.use_chat_template:
            prefix, suffix = self._chat_frame()
        else:
            prefix = f"{self.system_prompt}\n\n" if self.system_prompt else ""
            suffix = f"\n\n{PLAIN_ANSWER_CUE}"
        return prefix + content + suffix, len(prefix)

    @property
    def add_special_tokens(self) -> bool:
        # A chat template writes its own special tokens; a plain prompt gets the
        # tokenizer's usual ones (the BOS token base models expect).
        return not self.use_chat_template

    def encode(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        enc = self.tokenizer(
            text, add_special_tokens=self.add_special_tokens, return_offsets_mapping=True
        )
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]

    def render(
        self,
        question: str,
        passages: Sequence[Passage],
        sources: Sequence[Source] | None = None,
        removed: Iterable[int] = (),
    ) -> RenderedPrompt:
        removed = frozenset(removed)
        content, spans = self.build_content(question, passages, sources, removed)
        text, offset = self.wrap(content)
        ids, offsets = self.encode(text)
        char_spans = {i: (a + offset, b + offset) for i, (a, b) in spans.items()}
        return RenderedPrompt(text, ids, offsets, char_spans, removed)


def check_fits(prompt_tokens: int, response_tokens: int, window: int, model_name: str) -> None:
    total = prompt_tokens + response_tokens
    if total > window:
        raise ContextTooLongError(
            f"the prompt ({prompt_tokens} tokens) plus the answer ({response_tokens} tokens) is "
            f"{total} tokens, longer than the context window of model {model_name!r} "
            f"({window} tokens); pass fewer or shorter passages"
        )
