"""GGUF weight files shipped inside Python packages: locate, assemble, verify.

Some models ship as one GGUF file inside a package, others split into parts across
several packages (third-party uploads whose names say nothing of their content). Either
way the packages are only *located*, with ``importlib.util.find_spec``, never imported:
their ``__init__`` may import dependencies that are not installed, or run code.

Every file is checked against the sha256 recorded for it before it is converted. A file
is hashed once: the verified digest is remembered in a stamp file in the cache, keyed by
the file's path, size and modification time, so later loads cost a ``stat``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .errors import ModelNotFoundError, WeightsIntegrityError

logger = logging.getLogger(__name__)

_BLOCK = 8 * 1024 * 1024


@dataclass(frozen=True)
class GGUFPart:
    """One piece of a split GGUF file: a file inside an installed package."""

    package: str  # import name (never imported)
    path: str  # relative to the package folder


def package_dir(package: str) -> Path | None:
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


def locate_parts(parts: Iterable[GGUFPart], model: str, pip_install: str) -> list[Path]:
    """The part files in order, or a ModelNotFoundError naming every missing one."""
    found: list[Path] = []
    missing: list[str] = []
    for part in parts:
        folder = package_dir(part.package)
        path = folder / part.path if folder is not None else None
        if path is None or not path.is_file():
            missing.append(f"{part.package}/{part.path}")
        else:
            found.append(path)
    if missing:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        raise ModelNotFoundError(
            f"model {model!r}: {len(missing)} weight part file(s) are not installed ({shown}): "
            f"run `{pip_install}`"
        )
    return found


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _stamp_path(path: Path, cache: Path) -> Path:
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    return cache / "verified" / f"{path.name}.{key}.sha256.json"


def _file_key(path: Path) -> dict[str, object]:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _read_stamp(path: Path, cache: Path) -> str | None:
    """The remembered digest of ``path`` if the file has not changed since it was hashed."""
    try:
        stamp = json.loads(_stamp_path(path, cache).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(stamp, dict) or stamp.get("file") != _file_key(path):
        return None
    digest = stamp.get("sha256")
    return digest if isinstance(digest, str) else None


def _write_stamp(path: Path, cache: Path, digest: str) -> None:
    target = _stamp_path(path, cache)
    target.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"file": _file_key(path), "sha256": digest})
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", dir=target.parent)
    with os.fdopen(fd, "w") as fh:
        fh.write(body)
    os.replace(tmp, target)


def _mismatch(path: Path, expected: str, actual: str, advice: str) -> WeightsIntegrityError:
    return WeightsIntegrityError(
        f"weights file {str(path)!r} failed its integrity check: sha256 {actual}, "
        f"expected {expected}. {advice}"
    )


def _check_size(path: Path, size: int, expected_size: int | None, advice: str) -> None:
    """A wrong size fails at once, before hashing a file of a gigabyte."""
    if expected_size is not None and size != expected_size:
        raise WeightsIntegrityError(
            f"weights file {str(path)!r} failed its integrity check: {size:,} bytes, "
            f"expected {expected_size:,}. {advice}"
        )


def verify_file(path: Path, expected: str, cache: Path, advice: str, expected_size: int | None = None) -> str:
    """Check ``path`` against ``expected`` (hashing only if not verified before); the digest."""
    if _read_stamp(path, cache) == expected:
        return expected
    _check_size(path, path.stat().st_size, expected_size, advice)
    logger.info("checking the sha256 of %s (once)", path)
    actual = sha256_file(path)
    if actual != expected:
        raise _mismatch(path, expected, actual, advice)
    _write_stamp(path, cache, actual)
    return actual


def _concatenate(parts: list[Path], out) -> str:
    """Write the parts in order to ``out``; the sha256 of what was written."""
    digest = hashlib.sha256()
    for part in parts:
        with open(part, "rb") as src:
            while block := src.read(_BLOCK):
                digest.update(block)
                out.write(block)
    out.flush()
    os.fsync(out.fileno())
    return digest.hexdigest()


def assemble_parts(
    parts: list[Path], target: Path, expected: str, cache: Path, advice: str, expected_size: int | None = None
) -> Path:
    """Concatenate ``parts`` into ``target`` atomically, refusing a result with the wrong hash.

    The parts are written to a temporary file in the target's folder, fsynced, hashed on
    the way, and renamed into place only when the hash matches: a reader never sees a
    partial or unverified file under the final name, and a bad result is deleted.
    """
    _check_size(target, sum(p.stat().st_size for p in parts), expected_size, advice)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=target.name + ".", suffix=".partial", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            actual = _concatenate(parts, out)
        if actual != expected:
            raise _mismatch(target, expected, actual, advice)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; it is an ordinary cache file
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _write_stamp(target, cache, actual)
    return target


def assembled_gguf(
    parts: list[Path], target: Path, expected: str, cache: Path, advice: str, expected_size: int | None = None
) -> Path:
    """The verified assembled file, assembling it first when it is missing or damaged."""
    if target.exists():
        try:
            verify_file(target, expected, cache, advice, expected_size)
            return target
        except WeightsIntegrityError as exc:
            # The assembled file is derived data; the parts are the source of truth.
            logger.warning("%s; removing it and assembling it again from its parts", exc)
            target.unlink(missing_ok=True)
    logger.info("assembling %s from %d parts (once)", target, len(parts))
    return assemble_parts(parts, target, expected, cache, advice, expected_size)
