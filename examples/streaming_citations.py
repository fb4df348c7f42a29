"""Citations streamed with the answer, in the terminal.

    python examples/streaming_citations.py ["your question"] [--method at2] [--model NAME]

Retrieves four handbook passages (FAISS over all-MiniLM-L6-v2, offline), then prints the
model's answer token by token; as each sentence completes, its [n] markers appear after
it. AT2 (the default) reads what generation captured, so the markers cost no extra
forward pass; LOO-based methods attribute each sentence once it is complete. The numbered
sources and their quoted sentences follow the answer.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import sys  # noqa: E402

from attribot_rag import DEFAULT_MAX_NEW_TOKENS, Attributor, get_model, stream_cite  # noqa: E402
from attribot_rag.models import QUALITY_MODEL  # noqa: E402
from attribot_rag.demo import load_corpus  # noqa: E402
from attribot_rag.index import PassageIndex  # noqa: E402

DEFAULT_QUESTION = "What are the rules for international business travel, and how are meals covered?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("question", nargs="?", default=DEFAULT_QUESTION)
    parser.add_argument("--method", default="at2")
    parser.add_argument("--model", default=QUALITY_MODEL, help="alias, Hugging Face id or local path")
    parser.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS)
    args = parser.parse_args(argv)

    passages = [p for p, _ in PassageIndex.build(load_corpus()).search(args.question, k=4)]
    attributor = Attributor(get_model(args.model), max_new_tokens=args.max_new_tokens)
    print(f"Q: {args.question}\nA: ", end="", flush=True)
    final, marked = None, set()
    for event in stream_cite(attributor, args.question, passages, method=args.method):
        sys.stdout.write(event.text)
        if event.sentence is not None:
            marked.add(event.sentence.index)
            sys.stdout.write(_markers(event.sentence.numbers))
        sys.stdout.flush()
        final = event.answer or final
    # the last sentence completes with the answer: its markers come with the final event
    print("".join(_markers(s.numbers) for s in final.sentences if s.index not in marked) + "\n")
    print(final.format(quotes=True).split("\n", 1)[1].strip() if final.references else "(no sources cited)")
    return 0


def _markers(numbers: list[int]) -> str:
    return " " + "".join(f"[{n}]" for n in numbers) if numbers else ""


if __name__ == "__main__":
    raise SystemExit(main())
