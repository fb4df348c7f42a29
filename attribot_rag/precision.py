"""Which floating-point dtype a model runs in: ``auto``, ``float32`` or ``bfloat16``.

``auto`` picks bfloat16 where the hardware runs it fast (a CUDA device with bf16 support,
or a CPU with AMX-BF16 or AVX512-BF16) and float32 elsewhere. On a 2-core CPU with
AVX512-BF16 a bf16 forward pass is 2.6-3.9x faster than fp32 (BENCHMARKS.md),
but per-token log-probabilities move by up to ~0.3 nats, so the choice and its reason are
always reported (``LoadedModel.metadata``, ``Attribution.info``), never made silently.

``ATTRIBOT_RAG_DTYPE`` (``auto``, ``float32`` or ``bfloat16``) sets what ``dtype=None``
means in this process; unset, it means ``auto``. The test suite sets it to float32 so
that its exactness tests (cached LOO == naive LOO) compare like with like.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from .errors import InputError

ENV_VAR = "ATTRIBOT_RAG_DTYPE"
NAMES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}
_ALIASES = {"fp32": "float32", "float": "float32", "bf16": "bfloat16"}
# What ``auto`` prefers per use: "bf16 where it is fast" for both. Measured (BENCHMARKS.md,
# "bf16 vs fp32 on a CPU with AVX512-BF16"): bf16 exact LOO kept fp32's top source in 16 of
# 16 cases (SmolLM2, both Qwen models, passage and sentence level), moved scores by at most
# 0.78 nats and ran 1.9-2.9x faster. Switching scoring to float32 would be a change of this
# table plus loading a second copy for generation.
AUTO_POLICY: dict[str, str] = {"generation": "fast", "scoring": "fast"}
_CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@dataclass(frozen=True)
class DtypeChoice:
    """The dtype a model is loaded in, what was asked for and why it was chosen."""

    dtype: torch.dtype
    requested: str
    reason: str

    @property
    def name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def as_metadata(self) -> dict[str, str]:
        return {"dtype": self.name, "dtype_requested": self.requested, "dtype_reason": self.reason}


def _cpuinfo_flags(path: Path = Path("/proc/cpuinfo")) -> set[str]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_bf16_support() -> str | None:
    """Why this CPU runs bf16 matrix products fast (a short description), or None."""
    capability = ""
    probe = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    if probe is not None:
        capability = str(probe())
    flags = _cpuinfo_flags() & set(_CPU_BF16_FLAGS)
    if flags:
        return f"CPU flags {', '.join(sorted(flags))} (torch CPU capability {capability or 'unknown'})"
    if capability.upper() == "AMX_BF16" or "AMX" in capability.upper():
        return f"torch CPU capability {capability}"
    return None


def cuda_bf16_support(device: torch.device) -> str | None:
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    if torch.cuda.is_bf16_supported():
        return f"CUDA device {torch.cuda.get_device_name(device)} supports bf16"
    return None


# The probes ``auto`` consults, by device type (replaceable in tests).
PROBES: dict[str, Callable[..., str | None]] = {"cpu": cpu_bf16_support, "cuda": cuda_bf16_support}


def _fast_bf16(device: torch.device) -> str | None:
    if device.type == "cpu":
        return PROBES["cpu"]()
    if device.type == "cuda":
        return PROBES["cuda"](device)
    return None


def normalise_request(dtype: Any) -> str:
    """``auto``, ``float32`` or ``bfloat16`` for a name, a torch dtype or None (the default)."""
    if dtype is None:
        dtype = os.environ.get(ENV_VAR) or "auto"
    if isinstance(dtype, torch.dtype):
        for name, value in NAMES.items():
            if value == dtype:
                return name
        raise InputError(f"dtype {dtype} is not supported: use 'auto', 'float32' or 'bfloat16'")
    if not isinstance(dtype, str):
        raise InputError(f"dtype must be 'auto', 'float32', 'bfloat16' or a torch dtype, got {dtype!r}")
    name = _ALIASES.get(dtype.strip().lower(), dtype.strip().lower())
    if name != "auto" and name not in NAMES:
        raise InputError(f"unknown dtype {dtype!r}: use 'auto', 'float32' or 'bfloat16'")
    return name


def resolve_dtype(dtype: Any = None, device: str | torch.device | None = None, use: str = "scoring") -> DtypeChoice:
    """The dtype to load a model in for ``use`` (``scoring`` or ``generation``) on ``device``.

    A :class:`DtypeChoice` (already resolved) is returned unchanged.
    """
    if isinstance(dtype, DtypeChoice):
        return dtype
    source = "" if dtype is not None or not os.environ.get(ENV_VAR) else f" (from ${ENV_VAR})"
    requested = normalise_request(dtype)
    if requested != "auto":
        return DtypeChoice(NAMES[requested], requested, f"asked for {requested}{source}")
    dev = torch.device(device or "cpu")
    if AUTO_POLICY[use] != "fast":
        return DtypeChoice(torch.float32, "auto", f"auto: float32 for {use} (policy)")
    why = _fast_bf16(dev)
    if why:
        return DtypeChoice(torch.bfloat16, "auto", f"auto{source}: bfloat16 runs fast here: {why}")
    return DtypeChoice(torch.float32, "auto", f"auto{source}: float32, no fast bf16 on {dev.type}")


def choice_of_model(model: Any, requested: Any = None) -> DtypeChoice:
    """The dtype of an already loaded model object (which is never converted in place)."""
    dtype = next(model.parameters()).dtype
    choice = DtypeChoice(dtype, "given", "the caller's model object, used as it is")
    asked = None if requested is None else normalise_request(requested)
    if asked not in (None, "auto") and NAMES[asked] != dtype:
        raise InputError(
            f"the model object is in {choice.name} but dtype={asked!r} was asked for: attribot-rag "
            "never converts a caller's model in place; convert it first or pass a model name"
        )
    return choice


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op threads of this process (None: leave them); the previous count.

    The service and the batch workers take ``threads=`` (``--threads``) instead of relying on
    ``$OMP_NUM_THREADS`` alone: a process sharing the machine's cores with others (Ray
    workers, a benchmark) runs fastest with its share, not with every core."""
    previous = torch.get_num_threads()
    if threads is None:
        return previous
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InputError(f"threads must be a positive integer, got {threads!r}")
    torch.set_num_threads(threads)
    return previous
