"""The results cache the evaluation runs share (bench, prune-eval, cite-eval): finished
work in a JSON-lines file, keyed by a hash of what produced it, so runs resume, and
parallel runs over other example ranges are read back (``read_also``, ``cached_only``).

Keys name data files by :func:`data_signature` (name and content hash, not path);
values are made JSON-safe by :func:`jsonable`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputError
from ..models import LoadedModel


def _upgraded_desc(desc: dict[str, Any]) -> dict[str, Any] | None:
    """A description written when the shared key held ``[target, proxy]`` dtypes, rewritten
    with the target's dtype shared and the proxy's only on results that used the proxy;
    None for one that needs no rewrite. (Under the old keys a run without a proxy method
    could not find the answers and exact LOO of a run with one.)"""
    dtypes = desc.get("dtypes")
    if not (isinstance(dtypes, list) and len(dtypes) == 2):
        return None
    target, proxy = dtypes
    new = {k: v for k, v in desc.items() if k != "dtypes"}
    if target not in (None, "float32"):
        new["dtypes"] = [target]
    options = new.get("options") if isinstance(new.get("options"), dict) else {}
    if (new.get("proxy") or options.get("proxy")) and proxy not in (None, "float32"):
        new["proxy_dtype"] = proxy
    return new


class NotCached(LookupError):
    """A result a cached-only run needs is not in its caches."""


class ResultsCache:
    """JSON-lines store of finished work, keyed by a hash of what produced it.

    ``read_also``: more cache folders whose results are read (those of runs over other
    example ranges, in parallel processes); new results go to ``directory`` only.
    ``cached_only``: a lookup that misses raises :class:`NotCached` instead of letting
    the caller compute, so a report covers only the work already done."""

    def __init__(
        self, directory: str | Path | None, read_also: Sequence[str | Path] = (), cached_only: bool = False
    ) -> None:
        self.path = Path(directory) / "results.jsonl" if directory else None
        self.cached_only = cached_only
        self.data: dict[str, Any] = {}
        if cached_only and self.path is None and not read_also:
            raise InputError("a cached-only run needs a cache to read: pass --cache DIR")
        # the run's own cache last: where two hold the same key, its result wins
        for path in [*(Path(d) / "results.jsonl" for d in read_also), self.path]:
            if path is not None and path.exists():
                self._load(path)
            elif path is not None and path != self.path:
                raise InputError(f"no results cache at {path.parent} (no {path.name} there)")

    def _load(self, path: Path) -> None:
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
                current = _upgraded_desc(rec.get("desc") or {})
                self.data[self.key(current) if current is not None else rec["key"]] = rec["value"]
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
                continue  # a line cut by an interruption

    @staticmethod
    def key(desc: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps(desc, sort_keys=True, default=str).encode()).hexdigest()

    def get(self, desc: dict[str, Any]) -> Any | None:
        value = self.data.get(self.key(desc))
        if value is None and self.cached_only:
            raise NotCached(str(desc.get("kind", "result")))
        return value

    def put(self, desc: dict[str, Any], value: Any) -> Any:
        k = self.key(desc)
        self.data[k] = value
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps({"key": k, "desc": desc, "value": value}, default=str) + "\n")
                fh.flush()
        return value


def jsonable(obj: Any) -> Any:
    """``obj`` as JSON can hold it: numpy values as Python ones, nan as None, a loaded
    model as its name."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return None if math.isnan(float(obj)) else float(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, LoadedModel):
        return obj.name
    return obj


def data_signature(path: str) -> dict[str, Any]:
    """What identifies a data file in cache keys: its name and a hash of its content.

    Not its path or modification time: a copied or re-extracted file (same content, new
    mtime, another folder) must still find the results computed from it.
    """
    p = Path(path).resolve()
    st = p.stat()
    return {"name": p.name, "sha256": _file_sha256(str(p), st.st_size, st.st_mtime_ns)}


@functools.lru_cache(maxsize=16)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# the names bench, prune-eval and cite-eval imported before this module existed
_jsonable = jsonable
_data_signature = data_signature

__all__ = ["NotCached", "ResultsCache", "data_signature", "jsonable"]
