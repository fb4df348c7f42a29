"""The HTTP service: endpoints on the real default model, limits, the queue, errors."""

import threading
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
    assert out["method"] == "loo" and out["level"] == "passage"
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
    assert {"/v1/attribute", "/v1/cite", "/v1/prune", "/v1/ask"} <= set(paths)


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
