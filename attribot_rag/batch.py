"""Batch attribution of a JSONL log of ``{id, question, passages, answer?}`` records.

Each input line gives one output line: ``{id, attribution}`` (``Attribution.to_dict()``)
or ``{id, error}``: a bad record never stops the batch. Records run on Ray Data with an
actor pool holding one model per worker (a local Ray is started when no address is
given), or in this process (``use_ray=False``, one worker). Output lines are appended as
they are produced, so an interrupted run resumes: ids already in the output are skipped.

>>> from attribot_rag.batch import run_batch
>>> summary = run_batch("log.jsonl", "attributions.jsonl", method="at2", workers=2)

``dtype`` (``"auto"``, ``"float32"``, ``"bfloat16"``; None: ``$ATTRIBOT_RAG_DTYPE`` or auto)
and ``threads`` (torch intra-op threads per worker; default one per Ray worker, as they
are) reach every worker, Ray's included.

A layer above the core: it calls :class:`Attributor` only, and the core never imports it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from .attributor import Attributor
from .errors import AttribotError, InputError
from .models import DEFAULT_MODEL, get_model
from .precision import normalise_request, set_threads

# Passed to every Ray worker: nothing may reach the network, one thread per model worker
# (the workers share the machine's cores; oversubscribed threads only slow each other).
WORKER_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "RAY_USAGE_STATS_ENABLED": "0",
    "OMP_NUM_THREADS": "1",
}


@dataclass
class BatchSummary:
    input: str
    output: str
    records: int  # non-empty input lines
    skipped: int  # already in the output (resumed run)
    duplicate_lines: list[int]  # lines whose id an earlier line already has (not run)
    written: int  # output lines written by this run
    errors: int  # of those, {id, error} lines
    seconds: float
    workers: int
    ray: bool

    @property
    def records_per_minute(self) -> float:
        return 60.0 * self.written / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "records_per_minute": round(self.records_per_minute, 2)}


# --------------------------------------------------------------------------- records


def parse_record(line_number: int, raw: str) -> dict[str, Any]:
    """One input line as ``{id, question, passages, answer}``; InputError names the problem."""
    try:
        record = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InputError(f"line {line_number} is not valid JSON: {exc}") from None
    if not isinstance(record, dict):
        raise InputError(f"line {line_number} must be a JSON object, got {type(record).__name__}")
    if record.get("id") is None:
        raise InputError(f"line {line_number} has no 'id'")
    for key in ("question", "passages"):
        if key not in record:
            raise InputError(f"record {record['id']!r} (line {line_number}) has no {key!r}")
    answer = record.get("answer")
    if answer is not None and not isinstance(answer, str):
        raise InputError(f"record {record['id']!r}: 'answer' must be a string or absent")
    return {"id": record["id"], "question": record["question"], "passages": record["passages"], "answer": answer}


def _id_of(raw: str) -> Any:
    """The record's id, or None when the line is not an object with one."""
    try:
        record = json.loads(raw)
    except json.JSONDecodeError:
        return None
    return record.get("id") if isinstance(record, dict) else None


def record_key(line_number: int, raw: str) -> str:
    """What identifies a record in the output: its id, or its line when it has none."""
    record_id = _id_of(raw)
    return f"id:{record_id}" if record_id is not None else f"line:{line_number}"


def output_key(output: dict[str, Any]) -> str:
    return f"id:{output['id']}" if output.get("id") is not None else f"line:{output.get('line')}"


def done_keys(output: Path) -> set[str]:
    """Keys of the records already in the output file (a cut-off last line is ignored)."""
    keys: set[str] = set()
    if not output.exists():
        return keys
    for line in output.read_text(encoding="utf-8").splitlines():
        try:
            keys.add(output_key(json.loads(line)))
        except (json.JSONDecodeError, AttributeError, TypeError):
            continue  # a line cut off by an interrupted run: that record runs again
    return keys


@dataclass
class BatchPlan:
    pending: list[tuple[int, str]]  # (line number, line) still to run
    records: int  # non-empty input lines
    skipped: int  # already in the output
    duplicates: list[int]  # line numbers repeating an earlier line's id (not run)


def plan(input_path: Path, output_path: Path) -> BatchPlan:
    """Which input lines still need to run."""
    if not input_path.is_file():
        raise InputError(f"batch input {str(input_path)!r} does not exist")
    done = done_keys(output_path)
    result = BatchPlan([], 0, 0, [])
    queued: set[str] = set()
    for number, raw in enumerate(input_path.read_text(encoding="utf-8").splitlines(), 1):
        if not raw.strip():
            continue
        result.records += 1
        key = record_key(number, raw)
        if key in done:
            result.skipped += 1
        elif key in queued:
            result.duplicates.append(number)  # one output line per id, or resuming breaks
        else:
            queued.add(key)
            result.pending.append((number, raw))
    return result


# --------------------------------------------------------------------------- workers


class RecordAttributor:
    """One model that turns input lines into output records (one Ray actor holds one)."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        method: str = "auto",
        level: str = "passage",
        max_new_tokens: int | None = None,
        dtype: Any = None,
        threads: int | None = None,
    ) -> None:
        set_threads(threads)  # this worker's process (a Ray actor has one of its own)
        kwargs = {"max_new_tokens": max_new_tokens} if max_new_tokens else {}
        self.attributor = Attributor(get_model(model, dtype=dtype), method=method, level=level, **kwargs)

    def attribute_line(self, line_number: int, raw: str) -> dict[str, Any]:
        """The output record for one input line; errors become ``{id, error}``, never raised."""
        record_id = _id_of(raw)
        try:
            record = parse_record(line_number, raw)
            result = self.attributor.attribute(record["question"], record["passages"], record["answer"])
            return {"id": record_id, "attribution": result.to_dict()}
        except AttribotError as exc:
            return _error_record(record_id, line_number, str(exc))
        except Exception as exc:  # a bad record never stops the batch: say what happened
            return _error_record(record_id, line_number, f"{type(exc).__name__}: {exc}")

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Ray Data batch UDF: columns line, raw -> column output (one JSON line each)."""
        import numpy as np

        outputs = [json.dumps(self.attribute_line(int(n), str(r))) for n, r in zip(batch["line"], batch["raw"])]
        return {"output": np.array(outputs, dtype=object)}


def _error_record(record_id: Any, line_number: int, message: str) -> dict[str, Any]:
    if record_id is None:
        return {"id": None, "line": line_number, "error": message}
    return {"id": record_id, "error": message}


def _in_process(pending: list[tuple[int, str]], options: dict[str, Any]) -> Iterator[str]:
    previous = torch_threads()
    try:
        worker = RecordAttributor(**options)
        for number, raw in pending:
            yield json.dumps(worker.attribute_line(number, raw))
    finally:
        set_threads(previous)  # the caller's process gets its thread count back


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _on_ray(
    pending: list[tuple[int, str]], options: dict[str, Any], workers: int, address: str | None
) -> Iterator[str]:
    import ray
    import ray.data

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    threads = options.get("threads") or 1
    env = {**WORKER_ENV, "OMP_NUM_THREADS": str(threads)}
    if options.get("dtype"):
        env["ATTRIBOT_RAG_DTYPE"] = normalise_request(options["dtype"])
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(
            address=address,
            num_cpus=None if address else workers * threads,
            include_dashboard=False,
            logging_level="WARNING",
            log_to_driver=False,
        )
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False  # ours is enough
        items = [{"line": number, "raw": raw} for number, raw in pending]
        dataset = ray.data.from_items(items, override_num_blocks=min(len(items), 1000))
        results = dataset.map_batches(
            RecordAttributor,
            fn_constructor_kwargs=options,
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=threads,  # each worker's share of the cores
            runtime_env={"env_vars": env},
        )
        for row in results.iter_rows():
            yield str(row["output"])
    finally:
        if started_here:
            ray.shutdown()


# --------------------------------------------------------------------------- entry point


def run_batch(
    input: str | Path,
    output: str | Path,
    *,
    method: str = "auto",
    model: str = DEFAULT_MODEL,
    level: str = "passage",
    workers: int = 1,
    ray_address: str | None = None,
    use_ray: bool = True,
    max_new_tokens: int | None = None,
    progress: bool = True,
    dtype: Any = None,
    threads: int | None = None,
) -> BatchSummary:
    """Attribute every record of ``input`` not yet in ``output``, appending to ``output``.

    ``dtype``: the weights dtype of every worker's model; ``threads``: torch threads per
    worker (in this process: for the run only, restored after)."""
    if not isinstance(workers, int) or workers < 1:
        raise InputError(f"workers must be a positive integer, got {workers!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise InputError(f"threads must be a positive integer, got {threads!r}")
    if dtype is not None:
        dtype = normalise_request(dtype)  # an unknown dtype fails here, not in every worker
    if not use_ray and (workers > 1 or ray_address):
        raise InputError("more than one worker, or a Ray address, needs Ray (drop use_ray=False / --no-ray)")
    if level not in ("passage", "sentence"):
        raise InputError(f"unknown level {level!r}: use passage or sentence")
    input_path, output_path = Path(input), Path(output)
    todo = plan(input_path, output_path)
    options = {
        "model": model, "method": method, "level": level, "max_new_tokens": max_new_tokens,
        "dtype": dtype, "threads": threads,
    }
    t0 = time.perf_counter()
    written = errors = 0
    if todo.pending:
        pending = todo.pending
        lines = _on_ray(pending, options, workers, ray_address) if use_ray else _in_process(pending, options)
        written, errors = _append(output_path, lines, len(pending), progress)
    return BatchSummary(
        input=str(input_path), output=str(output_path), records=todo.records, skipped=todo.skipped,
        duplicate_lines=todo.duplicates, written=written, errors=errors,
        seconds=round(time.perf_counter() - t0, 3), workers=workers, ray=use_ray,
    )


def _append(output_path: Path, lines: Iterable[str], total: int, progress: bool) -> tuple[int, int]:
    from tqdm import tqdm

    _end_with_newline(output_path)
    written = errors = 0
    with output_path.open("a", encoding="utf-8") as out, tqdm(
        total=total, disable=not progress, desc="attributing", unit="record"
    ) as bar:
        for line in lines:
            out.write(line + "\n")
            out.flush()  # every finished record survives an interruption
            written += 1
            errors += "error" in json.loads(line)
            bar.update(1)
    return written, errors


def _end_with_newline(path: Path) -> None:
    """An interrupted run may leave a cut-off last line: start the next record on its own line."""
    if path.exists() and path.stat().st_size:
        with path.open("rb") as fh:
            fh.seek(-1, os.SEEK_END)
            last = fh.read(1)
        if last != b"\n":
            with path.open("a", encoding="utf-8") as fh:
                fh.write("\n")


__all__ = ["BatchSummary", "RecordAttributor", "parse_record", "run_batch"]
