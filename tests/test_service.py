"""The HTTP service: endpoints on the real default model, limits, the queue, errors."""

import json
import math
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the service needs the serve extra: pip install 'attribot-rag[serve]'")
from fastapi.testclient import TestClient  # noqa: E402

from attribot_rag import Attributor, cite  # noqa: E402
from attribot_rag.index import PassageIndex, read_corpus  # noqa: E402
from attribot_rag.service import Limits, ModelQueue, create_app  # noqa: E402
from attribot_rag.service.limits import interruptible_modules  # noqa: E402

from conftest import TRAVEL_QUESTION  # noqa: E402

TRAVEL_ANSWER = "The hotel limit is $260 per night."


def _passages(handbook_passages):
    return [p.to_dict() for p in handbook_passages]


@pytest.fixture(scope="module")
def service_attributor(lm):
    return Attributor(lm, max_new_tokens=24)


@pytest.fixture(scope="module")
def handbook_index():
    return PassageIndex.build(read_corpus())


@pytest.fixture(scope="module")
def client(service_attributor, handbook_index):
    with TestClient(create_app(service_attributor, index=handbook_index)) as c:
        yield c


def test_cite_returns_the_library_citations(client, service_attributor, handbook_passages):
    body = {"question": TRAVEL_QUESTION, "passages": _passages(handbook_passages), "answer": TRAVEL_ANSWER}
    r = client.post("/v1/cite", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    expected = cite(service_attributor, TRAVEL_QUESTION, handbook_passages, TRAVEL_ANSWER)
    assert out["cited_answer"] == expected.text
    assert "[1]" in out["cited_answer"]
    assert [c["source_id"] for c in out["citations"]] == [c.source_id for c in expected.citations]
    first = out["citations"][0]
    assert first["passage_id"] == "travel"
    assert first["quote"] in handbook_passages[1].text
    # what each citation rests on comes back too (a client shows "supports" and "bridge" apart)
    assert [(c["evidence"], c["support"]) for c in out["citations"]] == [(c.evidence, c.support) for c in expected.citations]
    assert first["evidence"] == "supports" and first["support"] > 0
    # Every passage comes back with its sentences scored, for the page's shading.
    travel = next(p for p in out["passages"] if p["id"] == "travel")
    assert travel["number"] == 1
    best = max(travel["sentences"], key=lambda s: s["score"])
    assert best["id"] == first["source_id"]


def test_attribute_returns_attribution_to_dict(client, handbook_passages):
    body = {"question": TRAVEL_QUESTION, "passages": _passages(handbook_passages), "answer": TRAVEL_ANSWER}
    r = client.post("/v1/attribute", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["method"] == "at2" and out["level"] == "passage"  # "auto": AT2 weights ship for smollm2
    ranked = sorted(out["sources"], key=lambda s: s["rank"])
    assert ranked[0]["id"] == "travel"
    assert out["answer"] == TRAVEL_ANSWER


def test_prune_keeps_the_passage_the_draft_used(client, handbook_passages):
    body = {"question": TRAVEL_QUESTION, "passages": _passages(handbook_passages), "answer": TRAVEL_ANSWER, "k": 1}
    r = client.post("/v1/prune", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert [p["id"] for p in out["kept"]] == ["travel"]
    assert sorted(p["id"] for p in out["dropped"]) == ["leave", "parking"]
    assert out["draft"] == TRAVEL_ANSWER
    assert out["answer"]  # the second pass answered with the kept passage only


def test_ask_retrieves_answers_and_cites(client):
    question = "What is the nightly hotel limit for international business travel?"
    r = client.post("/v1/ask", json={"question": question, "k": 3})
    assert r.status_code == 200, r.text
    out = r.json()
    retrieved = [h["id"] for h in out["retrieved"]]
    assert len(retrieved) == 3 and "hb-05" in retrieved
    assert out["prune"] is None
    assert out["cite"]["answer"].strip()
    assert {c["passage_id"] for c in out["cite"]["citations"]} <= set(retrieved)


def test_ask_with_pruning_cites_over_the_kept_passages(client):
    r = client.post("/v1/ask", json={"question": "How many paid sick days do employees get?", "k": 3, "prune": True, "prune_k": 1})
    assert r.status_code == 200, r.text
    out = r.json()
    kept = [p["id"] for p in out["prune"]["kept"]]
    assert len(kept) == 1 and len(out["prune"]["dropped"]) == 2
    assert [p["id"] for p in out["cite"]["passages"]] == kept
    assert out["cite"]["answer"] == out["prune"]["answer"]


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda b: b.update(passages=b["passages"] * 7), "passages were sent; the limit is 20"),
        (lambda b: b["passages"][1].update(text="x" * 4001), "passage 1 ('travel') has 4001 characters"),
        (lambda b: b.update(answer="y" * 2001), "the answer has 2001 characters"),
        (lambda b: b.update(question="z" * 1001), "the question has 1001 characters"),
    ],
)
def test_request_limits_give_422_with_the_reason(client, handbook_passages, change, reason):
    body = {"question": TRAVEL_QUESTION, "passages": _passages(handbook_passages), "answer": TRAVEL_ANSWER}
    change(body)
    r = client.post("/v1/cite", json=body)
    assert r.status_code == 422
    assert r.json()["error"] == "limit_exceeded"
    assert reason in r.json()["detail"]


def test_ask_limit_on_k(client):
    r = client.post("/v1/ask", json={"question": "hotel?", "k": 11})
    assert r.status_code == 422 and "k=11" in r.json()["detail"]


@pytest.mark.parametrize(
    "change, status, phrase",
    [
        (lambda b: b["passages"][1].update(id="leave"), 400, "duplicate passage id 'leave'"),
        (lambda b: b.update(question="  "), 400, "question is empty"),
        (lambda b: b["passages"][0].update(text=" "), 400, "has empty text"),
        (lambda b: b.update(method="no-such-method"), 400, "no-such-method"),
        (lambda b: b.update(passages=[{"id": f"p{i}", "text": "Word " * 790} for i in range(20)]), 422, "context window"),
    ],
)
def test_library_errors_are_json_4xx(client, handbook_passages, change, status, phrase):
    body = {"question": TRAVEL_QUESTION, "passages": _passages(handbook_passages), "answer": TRAVEL_ANSWER}
    change(body)
    r = client.post("/v1/cite", json=body)
    assert r.status_code == status, r.text
    assert phrase in r.json()["detail"]
    assert "Traceback" not in r.text


def test_schema_errors_are_422_json(client):
    r = client.post("/v1/cite", json={"question": "q", "passages": [{"txt": "no text field"}]})
    assert r.status_code == 422
    assert isinstance(r.json()["detail"], list)


def test_unexpected_errors_are_500_json_without_traceback(service_attributor, handbook_passages, monkeypatch):
    app = create_app(service_attributor)
    monkeypatch.setattr(service_attributor, "attribute", lambda *a, **k: 1 / 0)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/v1/attribute", json={"question": "q", "passages": _passages(handbook_passages), "answer": "a"})
    assert r.status_code == 500
    assert r.json() == {"error": "internal", "detail": "unexpected ZeroDivisionError; see the server log"}


def test_ask_without_an_index_is_404(service_attributor):
    with TestClient(create_app(service_attributor)) as c:
        r = c.post("/v1/ask", json={"question": "hotel?"})
    assert r.status_code == 404 and r.json()["error"] == "no_index"


def test_full_queue_answers_503_with_retry_after(service_attributor, handbook_passages):
    queue = ModelQueue([service_attributor.lm.model], max_waiting=0)
    started, release = threading.Event(), threading.Event()

    def occupy_the_model():
        started.set()
        release.wait(30)

    body = {"question": TRAVEL_QUESTION, "passages": _passages(handbook_passages), "answer": TRAVEL_ANSWER}
    with TestClient(create_app(service_attributor, queue=queue)) as c:
        running = c.portal.start_task_soon(queue.run, occupy_the_model)
        assert started.wait(10)
        r = c.post("/v1/cite", json=body)
        assert r.status_code == 503
        assert r.json()["error"] == "busy"
        assert int(r.headers["Retry-After"]) >= 1
        release.set()
        running.result(10)
        assert c.post("/v1/cite", json=body).status_code == 200


def test_timed_out_request_is_cancelled_and_the_next_runs(service_attributor, handbook_passages):
    model = service_attributor.lm.model
    queue = ModelQueue([model], timeout_s=0.0)
    body = {"question": TRAVEL_QUESTION, "passages": _passages(handbook_passages)}
    with TestClient(create_app(service_attributor, queue=queue)) as c:
        r = c.post("/v1/cite", json=body)
        assert r.status_code == 504
        assert r.json()["error"] == "timeout" and "cancelled" in r.json()["detail"]
        assert all(not m._forward_pre_hooks for m in interruptible_modules(model))
        queue.timeout_s = 60.0
        r = c.post("/v1/cite", json={**body, "answer": TRAVEL_ANSWER})
        assert r.status_code == 200
        assert r.json()["citations"][0]["passage_id"] == "travel"


def test_docs_and_openapi(client):
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/attribute", "/v1/cite", "/v1/prune", "/v1/ask", "/v1/ask/stream", "/v1/cite/stream"} <= set(paths)
    assert "text/event-stream" in paths["/v1/cite/stream"]["post"]["responses"]["200"]["content"]


def test_page_is_served_and_self_contained(client):
    static = Path(__file__).resolve().parent.parent / "attribot_rag" / "service" / "static"
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for name in ("page.js", "page.css"):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and r.text == (static / name).read_text()
    for text in (page.text, (static / "page.js").read_text(), (static / "page.css").read_text()):
        assert "http://" not in text and "https://" not in text and "//cdn" not in text


def test_limits_reject_before_the_model_runs():
    limits = Limits(max_passages=1)
    with pytest.raises(Exception, match="2 passages were sent; the limit is 1"):
        limits.check("q", [object(), object()])


def test_queue_refuses_when_the_expected_wait_is_too_long():
    import asyncio
    import time

    from attribot_rag.service.limits import QueueFullError

    async def scenario():
        queue = ModelQueue([], max_waiting=8, max_wait_s=0.1)
        await queue.run(lambda: time.sleep(0.3))  # the typical request now takes 0.3 s
        release = threading.Event()
        running = asyncio.ensure_future(queue.run(lambda: release.wait(10)))
        await asyncio.sleep(0.05)
        try:
            with pytest.raises(QueueFullError, match="requests ahead would take about") as info:
                await queue.run(lambda: None)
            assert info.value.retry_after_s >= 1
        finally:
            release.set()
            await running
        assert await queue.run(lambda: "ran") == "ran"  # room again once it finished

    asyncio.run(scenario())


# --------------------------------------------------------------------------- validation, no real model
# The fast tier's service checks: the request validation above on a tiny random model
# (no weights loaded), so `make test-fast` covers schemas, limits and library errors.


@pytest.fixture(scope="module")
def tiny_client():
    from test_proxy import _tiny_model

    with TestClient(create_app(Attributor(_tiny_model(), max_new_tokens=4))) as c:
        yield c


def _tiny_body(handbook_passages, **change):
    return {"question": TRAVEL_QUESTION, "passages": _passages(handbook_passages), "answer": TRAVEL_ANSWER, **change}


@pytest.mark.parametrize(
    "path, change, status, error, phrase",
    [
        ("/v1/cite", {"passages": [{"id": f"p{i}", "text": "x"} for i in range(21)]}, 422, "limit_exceeded",
         "21 passages were sent; the limit is 20"),
        ("/v1/attribute", {"answer": "y" * 2001}, 422, "limit_exceeded", "the answer has 2001 characters"),
        ("/v1/prune", {"question": "z" * 1001}, 422, "limit_exceeded", "the question has 1001 characters"),
        ("/v1/cite", {"question": "  "}, 400, None, "question is empty"),
        ("/v1/cite", {"method": "no-such-method"}, 400, None, "no-such-method"),
        ("/v1/attribute", {"passages": [{"id": "a", "text": "A."}, {"id": "a", "text": "B."}]}, 400, None,
         "duplicate passage id 'a'"),
    ],
)
def test_requests_are_validated_before_the_model_runs(tiny_client, handbook_passages, path, change, status, error, phrase):
    r = tiny_client.post(path, json=_tiny_body(handbook_passages, **change))
    assert r.status_code == status, r.text
    if error:
        assert r.json()["error"] == error
    assert phrase in r.json()["detail"] and "Traceback" not in r.text


def test_malformed_requests_are_422_json(tiny_client):
    for body in ({"question": "q", "passages": [{"txt": "no text field"}]}, {"passages": []}, {"question": 3}):
        r = tiny_client.post("/v1/cite", json=body)
        assert r.status_code == 422 and isinstance(r.json()["detail"], list), r.text
    r = tiny_client.post("/v1/cite", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422


def test_ask_without_an_index_is_404_and_the_schema_is_served(tiny_client):
    r = tiny_client.post("/v1/ask", json={"question": "hotel?"})
    assert r.status_code == 404 and r.json()["error"] == "no_index"
    paths = tiny_client.get("/openapi.json").json()["paths"]
    assert {"/v1/attribute", "/v1/cite", "/v1/prune", "/v1/ask", "/v1/ask/stream", "/v1/cite/stream"} <= set(paths)


# --------------------------------------------------------------------------- streaming


def _read_sse(lines):
    """(event, data) pairs from an SSE body given line by line."""
    events, kind = [], None
    for line in lines:
        if line.startswith("event: "):
            kind = line[len("event: "):]
        elif line.startswith("data: "):
            events.append((kind, json.loads(line[len("data: "):])))
    return events


@pytest.fixture(scope="module")
def stream_client(lm, handbook_index):
    # A short answer keeps the streaming tests cheap.
    with TestClient(create_app(Attributor(lm, max_new_tokens=16), index=handbook_index)) as c:
        yield c


def test_cite_stream_spells_the_answer_and_ends_with_the_cite_body(stream_client, handbook_passages):
    body = {"question": TRAVEL_QUESTION, "passages": _passages(handbook_passages), "method": "at2"}
    with stream_client.stream("POST", "/v1/cite/stream", json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = _read_sse(r.iter_lines())
    kinds = [k for k, _ in events]
    assert kinds[-1] == "done" and kinds.count("done") == 1 and "error" not in kinds
    done = events[-1][1]
    assert "".join(d["text"] for k, d in events if k == "text") == done["answer"]
    for sentence in (d for k, d in events if k == "sentence"):
        assert {"index", "span", "text", "markers", "citations"} <= set(sentence)
    reference = stream_client.post("/v1/cite", json={**body, "answer": done["answer"]}).json()
    assert done["cited_answer"] == reference["cited_answer"]
    got, want = done["citations"], reference["citations"]
    assert [(c["number"], c["sentence_index"], c["source_id"]) for c in got] == [
        (c["number"], c["sentence_index"], c["source_id"]) for c in want
    ]
    assert all(math.isclose(a["score"], b["score"], rel_tol=1e-4, abs_tol=1e-4) for a, b in zip(got, want))


def test_ask_stream_ends_with_the_ask_body(stream_client):
    with stream_client.stream("POST", "/v1/ask/stream", json={"question": "How many paid sick days?", "k": 2, "method": "at2"}) as r:
        assert r.status_code == 200
        events = _read_sse(r.iter_lines())
    kind, done = events[-1]
    assert kind == "done" and len(done["retrieved"]) == 2 and done["prune"] is None
    assert "".join(d["text"] for k, d in events if k == "text") == done["cite"]["answer"]


@pytest.mark.parametrize(
    "change, status, phrase",
    [
        (lambda b: b.update(answer=TRAVEL_ANSWER), 422, "use /v1/cite"),
        (lambda b: b.update(question="z" * 1001), 422, "the question has 1001 characters"),
        (lambda b: b.update(question="  "), 400, "question is empty"),
        (lambda b: b.update(method="no-such-method"), 400, "no-such-method"),
        (lambda b: b.update(passages=[{"id": f"p{i}", "text": "Word " * 790} for i in range(20)]), 422, "context window"),
    ],
)
def test_cite_stream_errors_are_json_before_the_stream(stream_client, handbook_passages, change, status, phrase):
    body = {"question": TRAVEL_QUESTION, "passages": _passages(handbook_passages)}
    change(body)
    r = stream_client.post("/v1/cite/stream", json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json" and phrase in r.json()["detail"]


def test_cite_stream_full_queue_is_503_before_the_stream(service_attributor, handbook_passages):
    queue = ModelQueue([service_attributor.lm.model], max_waiting=0)
    release = threading.Event()
    body = {"question": TRAVEL_QUESTION, "passages": _passages(handbook_passages)}
    with TestClient(create_app(service_attributor, queue=queue)) as c:
        running = c.portal.start_task_soon(queue.run, lambda: release.wait(30))
        r = c.post("/v1/cite/stream", json=body)
        release.set()
        running.result(10)
    assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 1


def test_cite_stream_timeout_after_the_start_ends_with_what_was_computed(lm, handbook_passages):
    from attribot_rag.service.limits import RequestTimeoutError

    queue = ModelQueue([lm.model])
    checks = []

    def expire_at_the_second_token():  # the deadline passing once the stream has started
        checks.append(1)
        if len(checks) > 1:
            raise RequestTimeoutError("the request took longer than 0 s of model time and was cancelled")

    queue.checkpoint = expire_at_the_second_token
    body = {"question": TRAVEL_QUESTION, "passages": _passages(handbook_passages), "method": "at2"}
    with TestClient(create_app(Attributor(lm, max_new_tokens=16), queue=queue)) as c:
        with c.stream("POST", "/v1/cite/stream", json=body) as r:
            assert r.status_code == 200
            events = _read_sse(r.iter_lines())
    # the reader already has the first token: the stream ends with it and the reason it
    # stops there (what the page keeps on screen), not with a bare error
    assert [k for k, _ in events] == ["text", "incomplete"]
    last = events[-1][1]
    assert "cancelled" in last["detail"] and last["answer"] == events[0][1]["text"] and last["sentences"] == []
    assert queue.admitted == 0


def test_disconnect_stops_the_generation_and_frees_the_slot(lm, handbook_passages):
    queue = ModelQueue([lm.model])
    held, release, checks = threading.Event(), threading.Event(), []

    def hold_after_the_first_token():  # keeps the answer unfinished while the client leaves
        checks.append(1)
        if len(checks) > 1:
            held.set()
            release.wait(30)

    queue.checkpoint = hold_after_the_first_token
    body = {"question": TRAVEL_QUESTION, "passages": _passages(handbook_passages), "method": "at2"}
    with TestClient(create_app(Attributor(lm, max_new_tokens=16), queue=queue)) as c:
        with c.stream("POST", "/v1/cite/stream", json=body) as r:
            lines = r.iter_lines()  # kept: dropping the iterator would close the response
            assert next(lines).startswith("event: text") and held.wait(30)
            assert queue.admitted == 1
        # Leaving the block mid-stream is a disconnect: the slot is free at once ...
        assert queue.admitted == 0
        release.set()
        # ... and the model loop stops the generation at its next token.
        deadline = time.monotonic() + 10
        while any(t.name == "attribot-stream" for t in threading.enumerate()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(t.name == "attribot-stream" for t in threading.enumerate())
        r = c.post("/v1/cite", json={**body, "answer": TRAVEL_ANSWER})
        assert r.status_code == 200
