"""AT2 weights: one weight per (layer, head), stored as safetensors with a JSON header.

File layout: one tensor ``weights`` of shape [num_layers, num_heads] (float32) and the
safetensors metadata (a dict of strings) with ``format = "attribot-at2"`` and ``at2``, a
JSON object naming the model (``model``), its ``architecture`` (config.model_type),
``num_layers``, ``num_heads``, the ``feature`` layout, the ``training_data``, the
``date`` and the ``command`` that produced it. Never a pickle.

Score of a source for a target span = mean over the span's tokens t of w . f_s(t).
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, MethodNotAvailableError

FORMAT = "attribot-at2"
FEATURE_LAYOUT = "sum over source tokens of attention from row t-1, index layer*H+head"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def train_command(model_name: str) -> str:
    """The command that trains weights for a model (shown when none are available)."""
    return (
        f"attribot-rag train-at2 --model {model_name} --data ../shared/data/squad/dev-v1.1.json "
        f"--examples 150 --masks 32 --steps 1000 --out at2-{_safe_name(model_name)}.safetensors"
    )


def _safe_name(name: str) -> str:
    return "".join(c if (c.isalnum() or c in "-_.") else "_" for c in str(name)).strip("._") or "model"


@dataclass
class AT2Weights:
    """Per-head weights with the identity of the model they were trained for."""

    weights: np.ndarray  # float32 [num_layers, num_heads]
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        w = np.asarray(self.weights, dtype=np.float32)
        if w.ndim != 2:
            raise InputError(f"AT2 weights must be a [layers, heads] matrix, got shape {w.shape}")
        self.weights = w

    @property
    def num_layers(self) -> int:
        return int(self.weights.shape[0])

    @property
    def num_heads(self) -> int:
        return int(self.weights.shape[1])

    @property
    def vector(self) -> np.ndarray:
        """Flattened weights, index layer * H + head (the feature layout)."""
        return self.weights.reshape(-1)

    @classmethod
    def uniform(cls, num_layers: int, num_heads: int, **metadata: Any) -> "AT2Weights":
        n = num_layers * num_heads
        return cls(np.full((num_layers, num_heads), 1.0 / n, dtype=np.float32), dict(metadata))

    # ------------------------------------------------------------------ I/O
    def save(self, path: str | Path) -> Path:
        from safetensors.numpy import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "feature": FEATURE_LAYOUT,
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            **self.metadata,
        }
        tmp = path.with_name(path.name + ".tmp")
        save_file(
            {"weights": np.ascontiguousarray(self.weights)},
            str(tmp),
            metadata={"format": FORMAT, "at2": json.dumps(meta, sort_keys=True, default=str)},
        )
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "AT2Weights":
        from safetensors import safe_open

        path = Path(path)
        if not path.exists():
            raise InputError(f"AT2 weights file {str(path)!r} does not exist")
        try:
            with safe_open(str(path), framework="np") as fh:
                header = fh.metadata() or {}
                if "weights" not in fh.keys():
                    raise InputError(f"{str(path)!r} holds no 'weights' tensor: not an AT2 weights file")
                weights = fh.get_tensor("weights")
        except InputError:
            raise
        except Exception as exc:  # safetensors raises its own error types
            raise InputError(f"could not read AT2 weights from {str(path)!r}: {exc}") from exc
        if header.get("format") != FORMAT or "at2" not in header:
            raise InputError(f"{str(path)!r} is not an attribot-rag AT2 weights file (no 'at2' header)")
        try:
            meta = json.loads(header["at2"])
        except json.JSONDecodeError as exc:
            raise InputError(f"{str(path)!r}: the AT2 header is not valid JSON: {exc}") from exc
        out = cls(weights, meta)
        if (meta.get("num_layers"), meta.get("num_heads")) != (out.num_layers, out.num_heads):
            raise InputError(f"{str(path)!r}: header and tensor disagree on the layer/head counts")
        out.metadata["path"] = str(path)
        return out

    # ------------------------------------------------------------------ checks
    def check_model(self, lm: Any, check_name: bool = True) -> None:
        """Refuse (MethodNotAvailableError) when these weights were made for another model."""
        from .attention import _config, model_shape

        layers, heads = model_shape(lm.model)
        arch = getattr(_config(lm.model), "model_type", None)
        where = self.metadata.get("path", "these AT2 weights")
        trained = self.metadata.get("model", "?")
        if (layers, heads) != (self.num_layers, self.num_heads):
            raise MethodNotAvailableError(
                f"{where} were trained for model {trained!r} with {self.num_layers} layers x "
                f"{self.num_heads} heads, but model {lm.name!r} has {layers} layers x {heads} heads; "
                f"train weights for it with `{train_command(lm.name)}`"
            )
        want_arch = self.metadata.get("architecture")
        if want_arch and arch and want_arch != arch:
            raise MethodNotAvailableError(
                f"{where} were trained for a {want_arch!r} model ({trained!r}), but model "
                f"{lm.name!r} is {arch!r}; train weights for it with `{train_command(lm.name)}`"
            )
        if check_name and trained not in {"?", None} and not same_model_name(trained, lm.name):
            raise MethodNotAvailableError(
                f"{where} were trained for model {trained!r}, not {lm.name!r} (same shape, but "
                f"another model's heads mean other things); train weights for it with "
                f"`{train_command(lm.name)}`, or pass check_model=False to use them anyway"
            )


def _canonical(name: str) -> str:
    """A model name without its folder; an alias's converted checkpoint folder
    (``<cache>/models/<alias>-<12 hex>[-<dtype>]``, what a model object loaded from it
    reports as its name) maps back to the alias."""
    import re

    from ..models import ALIASES

    base = str(name).rstrip("/").split("/")[-1].lower()
    m = re.fullmatch(r"(.+)-[0-9a-f]{12}(?:-float32|-bfloat16)?", base)
    if m and m.group(1) in ALIASES:
        return m.group(1)
    return base


def same_model_name(a: str, b: str) -> bool:
    return _canonical(a) == _canonical(b)


def default_weights_path(model_name: str) -> Path | None:
    """The weights shipped inside the package for this model name, if any."""
    for cand in (str(model_name), _canonical(model_name)):
        path = WEIGHTS_DIR / f"{_safe_name(cand)}.safetensors"
        if path.exists():
            return path
    return None


def load_default_weights(model_name: str) -> AT2Weights:
    """Shipped weights for the model, or a MethodNotAvailableError saying how to train them."""
    path = default_weights_path(model_name)
    if path is None:
        raise MethodNotAvailableError(
            f"no AT2 weights ship for model {model_name!r}. Train them (once, on CPU this takes "
            f"a while) with `{train_command(model_name)}` and pass weights=<that file> "
            f"(Python: method_options={{'weights': path}}; bench: at2:weights=<file>)"
        )
    return AT2Weights.load(path)


@functools.lru_cache(maxsize=32)
def shipped_weights_tag(model_name: str) -> str | None:
    """The ``cache_tag`` of the weights shipped for the model: results computed with other
    weights must not be read back as theirs (None: no weights, or a set older than tags)."""
    path = default_weights_path(model_name)
    return None if path is None else AT2Weights.load(path).metadata.get("cache_tag")


def resolve_weights(weights: Any, lm: Any, check_name: bool = True) -> AT2Weights:
    """An AT2Weights from a path, an array, an AT2Weights or None (the shipped default)."""
    if weights is None:
        w = load_default_weights(lm.name)
    elif isinstance(weights, AT2Weights):
        w = weights
    elif isinstance(weights, (str, Path)):
        w = AT2Weights.load(weights)
    else:
        w = AT2Weights(np.asarray(weights, dtype=np.float32))
        check_name = False
    w.check_model(lm, check_name=check_name)
    return w


__all__ = [
    "AT2Weights",
    "FORMAT",
    "WEIGHTS_DIR",
    "default_weights_path",
    "load_default_weights",
    "resolve_weights",
    "same_model_name",
    "shipped_weights_tag",
    "train_command",
]
