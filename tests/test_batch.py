"""Batch attribution: one output line per record, errors as lines, resume, Ray = no Ray."""

import json
import os

import pytest

from attribot_rag import Attributor
from attribot_rag.batch import run_batch
from attribot_rag.cli import main
from attribot_rag.errors import InputError

from conftest import TRAVEL_QUESTION

ANSWERS = {"a": "The hotel limit is $260 per night.", "b": "Employees receive 22 paid vacation days."}


def _write_input(path, handbook_passages):
    passages = [p.to_dict() for p in handbook_passages]
    lines = [
        json.dumps({"id": "a", "question": TRAVEL_QUESTION, "passages": passages, "answer": ANSWERS["a"]}),
        json.dumps({"id": "b", "question": "How many vacation days?", "passages": passages, "answer": ANSWERS["b"]}),
        json.dumps({"id": "no-passages", "question": "Anything?"}),
        "{not json",
        json.dumps({"id": 7, "question": "q", "passages": [{"id": "x", "text": " "}], "answer": "a"}),
        "",
        json.dumps({"id": "a", "question": "a repeated id", "passages": passages, "answer": "x"}),
    ]
    path.write_text("\n".join(lines) + "\n")


def _read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _comparable(outputs):
    """Output records by id, without the wall-clock timings and without how the dtype was
    chosen (a Ray worker reads it from the environment, the test process from its fixture;
    the dtype itself, model_dtype, must match)."""
    out = {}
    for rec in outputs:
        rec = json.loads(json.dumps(rec))
        if "attribution" in rec:
            rec["attribution"].pop("timings")
            rec["attribution"]["info"].pop("model_dtype_reason", None)
        out[str(rec["id"]) if rec["id"] is not None else f"line {rec['line']}"] = rec
    return out


@pytest.fixture(scope="module")
def batch_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("batch")
    return folder / "in.jsonl", folder / "out.jsonl"


def test_batch_without_ray_via_the_cli(batch_files, handbook_passages, lm, capsys):
    inp, out = batch_files
    _write_input(inp, handbook_passages)
    args = ["batch", "--input", str(inp), "--output", str(out), "--no-ray", "--no-progress", "--method", "at2"]
    assert main([*args, "--model", "smollm2-135m", "--dtype", "float32"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["written"] == 5 and summary["errors"] == 3 and summary["duplicate_lines"] == [7]
    records = _comparable(_read(out))
    assert set(records) == {"a", "b", "no-passages", "line 4", "7"}
    expected = Attributor(lm, method="at2").attribute(TRAVEL_QUESTION, handbook_passages, ANSWERS["a"]).to_dict()
    got = records["a"]["attribution"]
    assert [s["id"] for s in got["sources"]] == [s["id"] for s in expected["sources"]]
    assert [s["score"] for s in got["sources"]] == pytest.approx([s["score"] for s in expected["sources"]], abs=1e-6)
    assert got["method"] == "at2"
    assert "has no 'passages'" in records["no-passages"]["error"]
    assert "line 4 is not valid JSON" in records["line 4"]["error"]
    assert "has empty text" in records["7"]["error"]


@pytest.mark.slow  # resumes the output of the model run above
def test_batch_resumes_skipping_ids_already_in_the_output(batch_files, handbook_passages):
    inp, out = batch_files
    lines = out.read_text().splitlines()
    # Simulate an interrupted run: the last record is gone and a line is cut off.
    out.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:25])
    summary = run_batch(inp, out, method="at2", use_ray=False, progress=False, model="smollm2-135m", dtype="float32")
    # Skipped: a, b, no-passages, line 4, and line 7 (its id "a" is done); run again: id 7.
    assert summary.skipped == 5 and summary.written == 1
    assert json.loads(out.read_text().splitlines()[-1])["id"] == 7
    records = _read_valid(out)
    assert sorted(str(r.get("id")) for r in records) == sorted(["a", "b", "no-passages", "None", "7"])


def _read_valid(path):
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def test_batch_options_are_checked(tmp_path):
    with pytest.raises(InputError, match="needs Ray"):
        run_batch(tmp_path / "in.jsonl", tmp_path / "out.jsonl", workers=2, use_ray=False)
    with pytest.raises(InputError, match="does not exist"):
        run_batch(tmp_path / "missing.jsonl", tmp_path / "out.jsonl", use_ray=False)


@pytest.mark.slow  # the Ray run loads smollm2-135m
def test_batch_on_ray_gives_the_same_output(batch_files, tmp_path):
    ray = pytest.importorskip("ray", reason="the Ray test needs the batch extra: pip install 'attribot-rag[batch]'")
    inp, no_ray_out = batch_files
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(num_cpus=1, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    try:
        ray_out = tmp_path / "ray.jsonl"
        summary = run_batch(inp, ray_out, method="at2", workers=1, progress=False, model="smollm2-135m", dtype="float32")
    finally:
        ray.shutdown()
    assert summary.ray and summary.written == 5
    with_ray, without = _comparable(_read(ray_out)), _comparable(_read_valid(no_ray_out))
    assert set(with_ray) == set(without)
    for key, rec in without.items():
        if "attribution" in rec:
            got = with_ray[key]["attribution"]
            assert [s["score"] for s in got["sources"]] == pytest.approx(
                [s["score"] for s in rec["attribution"]["sources"]], abs=1e-5
            )
            assert {k: v for k, v in got.items() if k != "sources"} == {
                k: v for k, v in rec["attribution"].items() if k != "sources"
            }
        else:
            assert with_ray[key] == rec
