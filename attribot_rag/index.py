"""A FAISS index over a passage corpus, embedded offline with all-MiniLM-L6-v2.

``build_index(corpus, out)`` reads a JSONL corpus of ``{id, text, title?, metadata?}``
(or a JSON list of them, like the bundled handbook), embeds every passage and writes a
folder holding the FAISS index, the passages and a small JSON header naming the embedder.
``PassageIndex.load(folder)`` reads it back; ``search(query, k)`` returns the best
passages with their cosine similarity. This is a layer above the attribution core (the
service's ``/v1/ask`` retrieves with it); the core never imports it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .embeddings import DEFAULT_EMBEDDER, load_embedder
from .errors import InputError
from .sources import Passage, coerce_passages

INDEX_FILE = "passages.faiss"
PASSAGES_FILE = "passages.jsonl"
HEADER_FILE = "index.json"
FORMAT_VERSION = 1


def default_corpus_path() -> Path:
    """The bundled handbook (examples/data/handbook.json in a checkout)."""
    here = Path(__file__).resolve().parent.parent / "examples" / "data" / "handbook.json"
    if not here.exists():
        raise InputError(f"the demo corpus {here} is missing: run the demo from a checkout of attribot-rag")
    return here


def read_corpus(path: str | Path | None = None) -> list[Passage]:
    """Passages of a JSONL corpus (one object a line) or of a JSON list; default: the handbook."""
    path = Path(path) if path else default_corpus_path()
    if not path.is_file():
        raise InputError(f"corpus file {str(path)!r} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"corpus {str(path)!r} is not valid JSON: {exc}") from exc
        if not isinstance(records, list):
            raise InputError(f"corpus {str(path)!r} must hold a JSON list of passages")
    else:
        records = [_corpus_line(path, n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    for n, record in enumerate(records, 1):
        if not isinstance(record, dict) or "id" not in record:
            raise InputError(f"corpus {str(path)!r}, record {n}: each passage needs an 'id' and a 'text'")
    return coerce_passages(records)


def _corpus_line(path: Path, number: int, line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"corpus {str(path)!r}, line {number} is not valid JSON: {exc}") from exc


def _embedding_text(passage: Passage) -> str:
    # The title carries the topic ("International travel") the body often leaves implicit.
    return f"{passage.title}. {passage.text}" if passage.title else passage.text


@dataclass
class PassageIndex:
    """Passages and their normalised embeddings in a flat inner-product FAISS index."""

    passages: list[Passage]
    faiss_index: Any
    embedder_name: str = DEFAULT_EMBEDDER

    @classmethod
    def build(cls, passages: Sequence[Any], embedder_name: str = DEFAULT_EMBEDDER) -> "PassageIndex":
        import faiss

        ps = coerce_passages(passages)
        vectors = _encode(embedder_name, [_embedding_text(p) for p in ps])
        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(vectors)
        return cls(ps, index, embedder_name)

    def save(self, folder: str | Path) -> Path:
        import faiss

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.faiss_index, str(folder / INDEX_FILE))
        lines = (json.dumps(p.to_dict(), ensure_ascii=False) for p in self.passages)
        (folder / PASSAGES_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
        header = {
            "format": FORMAT_VERSION,
            "embedder": self.embedder_name,
            "dimension": int(self.faiss_index.d),
            "passages": len(self.passages),
        }
        (folder / HEADER_FILE).write_text(json.dumps(header, indent=2) + "\n", encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "PassageIndex":
        import faiss

        folder = Path(folder)
        missing = [f for f in (INDEX_FILE, PASSAGES_FILE, HEADER_FILE) if not (folder / f).is_file()]
        if missing:
            raise InputError(
                f"{str(folder)!r} is not an attribot-rag index (missing {', '.join(missing)}): "
                "build one with `attribot-rag index --out DIR`"
            )
        header = json.loads((folder / HEADER_FILE).read_text(encoding="utf-8"))
        passages = read_corpus(folder / PASSAGES_FILE)
        index = faiss.read_index(str(folder / INDEX_FILE))
        if index.ntotal != len(passages):
            raise InputError(f"index {str(folder)!r}: {index.ntotal} vectors for {len(passages)} passages")
        return cls(passages, index, header.get("embedder", DEFAULT_EMBEDDER))

    def search(self, query: str, k: int = 4) -> list[tuple[Passage, float]]:
        """The ``k`` passages most similar to the query, best first, with cosine similarity."""
        if not isinstance(query, str) or not query.strip():
            raise InputError("the search query is empty")
        if not isinstance(k, int) or k < 1:
            raise InputError(f"k must be a positive integer, got {k!r}")
        vector = _encode(self.embedder_name, [query])
        scores, ids = self.faiss_index.search(vector, min(k, len(self.passages)))
        return [(self.passages[i], float(s)) for s, i in zip(scores[0], ids[0]) if i >= 0]


def _encode(embedder_name: str, texts: list[str]) -> np.ndarray:
    embedder = load_embedder(embedder_name)
    vectors = embedder.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    return np.ascontiguousarray(vectors, dtype="float32")


def build_index(
    corpus: str | Path | None = None, out: str | Path = "index", embedder_name: str = DEFAULT_EMBEDDER
) -> PassageIndex:
    """Embed the corpus (default: the bundled handbook) and write the index folder ``out``."""
    index = PassageIndex.build(read_corpus(corpus), embedder_name)
    index.save(out)
    return index


__all__ = ["PassageIndex", "build_index", "default_corpus_path", "read_corpus"]
