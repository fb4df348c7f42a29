"""dtype= and threads= of build_app / serve / run_batch (and --dtype / --threads of the
`serve` and `batch` commands), and the SSE keep-alive of the streaming endpoints (issue 33)."""

import json
import time

import pytest
import torch

pytest.importorskip("fastapi", reason="the service needs the serve extra: pip install 'attribot-rag[serve]'")
from fastapi.testclient import TestClient  # noqa: E402

import attribot_rag.batch as batch  # noqa: E402
import attribot_rag.service.app as service_app  # noqa: E402
import attribot_rag.service.server as server  # noqa: E402
from attribot_rag import Attributor  # noqa: E402
from attribot_rag.batch import run_batch  # noqa: E402
from attribot_rag.cli import main  # noqa: E402
from attribot_rag.errors import InputError  # noqa: E402
from attribot_rag.precision import set_threads  # noqa: E402
from attribot_rag.service import create_app  # noqa: E402

from conftest import TRAVEL_QUESTION  # noqa: E402


@pytest.fixture
def keep_threads():
    """Whatever a test sets, this process gets its torch thread count back."""
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


# --------------------------------------------------------------------------- keep-alive


def _slowed(stream_cite, pause_s):
    """stream_cite whose events come ``pause_s`` apart (a slow generation)."""

    def slow(*args, **kwargs):
        inner = stream_cite(*args, **kwargs)
        try:
            for event in inner:
                time.sleep(pause_s)
                yield event
        finally:
            inner.close()

    return slow


@pytest.fixture(scope="module")
def tiny_attributor():
    from test_proxy import _tiny_model

    return Attributor(_tiny_model(), max_new_tokens=4)


def _stream_lines(client, handbook_passages):
    body = {
        "question": TRAVEL_QUESTION,
        "passages": [p.to_dict() for p in handbook_passages[:3]],
        "method": "loo",
    }
    with client.stream("POST", "/v1/cite/stream", json=body) as r:
        assert r.status_code == 200, r.read()
        return list(r.iter_lines())


def test_stream_sends_keep_alive_comments_while_the_answer_is_slow(tiny_attributor, handbook_passages, monkeypatch):
    monkeypatch.setattr(service_app, "stream_cite", _slowed(service_app.stream_cite, 0.3))
    with TestClient(create_app(tiny_attributor, keepalive_s=0.05)) as client:
        lines = _stream_lines(client, handbook_passages)
    kinds = [line[len("event: "):] for line in lines if line.startswith("event: ")]
    comments = [i for i, line in enumerate(lines) if line.startswith(":")]
    assert set(lines[i] for i in comments) == {": keep-alive"}
    first_event = next(i for i, line in enumerate(lines) if line.startswith("event: "))
    last_event = max(i for i, line in enumerate(lines) if line.startswith("event: "))
    # comments between the events of a slow answer (none before the stream starts)
    assert len(comments) >= 3 and first_event < comments[0] < last_event
    assert kinds[0] == "text" and kinds[-1] == "done"  # the events themselves are unchanged
    done = json.loads(lines[last_event + 1][len("data: "):])
    texts = [json.loads(lines[i + 1][len("data: "):])["text"] for i, line in enumerate(lines) if line == "event: text"]
    assert "".join(texts) == done["answer"]


def test_no_keep_alive_when_events_come_fast_or_it_is_off(tiny_attributor, handbook_passages, monkeypatch):
    with TestClient(create_app(tiny_attributor)) as client:  # the default: 15 s
        assert not any(line.startswith(":") for line in _stream_lines(client, handbook_passages))
    monkeypatch.setattr(service_app, "stream_cite", _slowed(service_app.stream_cite, 0.1))
    with TestClient(create_app(tiny_attributor, keepalive_s=None)) as client:
        assert not any(line.startswith(":") for line in _stream_lines(client, handbook_passages))
    with pytest.raises(ValueError, match="keepalive_s must be > 0"):
        create_app(tiny_attributor, keepalive_s=0)


# --------------------------------------------------------------------------- threads


def test_set_threads(keep_threads):
    assert set_threads(None) == keep_threads and torch.get_num_threads() == keep_threads
    assert set_threads(2) == keep_threads and torch.get_num_threads() == 2
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InputError, match="threads must be a positive integer"):
            set_threads(bad)
    with pytest.raises(InputError, match="threads must be a positive integer"):
        run_batch("in.jsonl", "out.jsonl", use_ray=False, threads=0)
    with pytest.raises(InputError, match="unknown dtype 'float8'"):
        run_batch("in.jsonl", "out.jsonl", use_ray=False, dtype="float8")


# --------------------------------------------------------------------------- real model


@pytest.mark.slow
def test_build_app_and_serve_take_dtype_threads_and_keep_alive(monkeypatch, keep_threads):
    monkeypatch.setattr(server, "load_index", lambda folder: None)  # no embedder: not what is tested
    app = server.build_app(model="smollm2-135m", dtype="bfloat16", threads=2, keepalive_s=0.5)
    service = app.state.service
    assert next(service.attributor.lm.model.parameters()).dtype == torch.bfloat16
    assert torch.get_num_threads() == 2 and service.keepalive_s == 0.5
    torch.set_num_threads(keep_threads)

    # the CLI: serve --dtype --threads --keep-alive reach build_app (uvicorn not started)
    import uvicorn

    served = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.append(app))
    monkeypatch.setenv("ATTRIBOT_RAG_DTYPE", "float32")  # main() sets it from --dtype; restored after
    assert main(["serve", "--model", "smollm2-135m", "--dtype", "bfloat16", "--threads", "2", "--keep-alive", "3"]) == 0
    service = served[0].state.service
    assert next(service.attributor.lm.model.parameters()).dtype == torch.bfloat16
    assert torch.get_num_threads() == 2 and service.keepalive_s == 3.0
    torch.set_num_threads(keep_threads)
    main(["serve", "--model", "smollm2-135m", "--keep-alive", "0"])
    assert served[1].state.service.keepalive_s is None


@pytest.mark.slow
def test_run_batch_takes_dtype_and_threads(tmp_path, handbook_passages, monkeypatch, keep_threads, capsys):
    inp = tmp_path / "in.jsonl"
    passages = [p.to_dict() for p in handbook_passages[:3]]
    inp.write_text(
        json.dumps({"id": "a", "question": TRAVEL_QUESTION, "passages": passages, "answer": "It is $260."}) + "\n"
    )
    seen = []
    real = batch.set_threads

    def spy(threads):
        seen.append((threads, torch.get_num_threads()))
        return real(threads)

    monkeypatch.setattr(batch, "set_threads", spy)

    class Spy(batch.RecordAttributor):
        def attribute_line(self, *args):
            seen.append(("in the worker", torch.get_num_threads()))
            return super().attribute_line(*args)

    monkeypatch.setattr(batch, "RecordAttributor", Spy)
    out = tmp_path / "out.jsonl"
    summary = run_batch(inp, out, model="smollm2-135m", method="loo", use_ray=False, progress=False,
                        dtype="bfloat16", threads=2)
    assert summary.written == 1 and summary.errors == 0
    record = json.loads(out.read_text())
    assert record["attribution"]["info"]["model_dtype"] == "bfloat16"
    assert ("in the worker", 2) in seen  # the worker ran with 2 threads
    assert torch.get_num_threads() == keep_threads  # and this process has its own count back

    # the CLI: batch --dtype --threads
    seen.clear()
    monkeypatch.setenv("ATTRIBOT_RAG_DTYPE", "float32")
    out2 = tmp_path / "out2.jsonl"
    args = ["batch", "--input", str(inp), "--output", str(out2), "--no-ray", "--no-progress", "--method", "loo",
            "--model", "smollm2-135m", "--dtype", "bfloat16", "--threads", "2"]
    assert main(args) == 0
    capsys.readouterr()
    assert json.loads(out2.read_text())["attribution"]["info"]["model_dtype"] == "bfloat16"
    assert ("in the worker", 2) in seen and torch.get_num_threads() == keep_threads
