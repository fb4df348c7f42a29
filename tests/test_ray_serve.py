"""`attribot-rag serve --replicas N|auto`: the service's app on Ray Serve replicas (issue 33).

The fast tests check the plan (deployment options), the command line and that Ray stays
an optional import; the slow one starts a local Ray with two replicas of smollm2-135m,
sends /v1/cite requests through Ray Serve's HTTP proxy, then fills the replicas' queues
and expects the service's own 503 JSON with Retry-After, promptly."""

import json
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

pytest.importorskip("fastapi", reason="the service needs the serve extra: pip install 'attribot-rag[serve]'")

from attribot_rag.cli import main  # noqa: E402
from attribot_rag.service import ray_serve  # noqa: E402
from attribot_rag.service.ray_serve import BACKSTOP_BURSTS, QUEUE_MARGIN, ReplicaPlan, parse_replicas  # noqa: E402

from conftest import TRAVEL_QUESTION  # noqa: E402

TRAVEL_ANSWER = "The hotel limit is $260 per night."


# --------------------------------------------------------------------------- the plan


def test_replicas_are_a_positive_number_or_auto():
    assert parse_replicas("2") == 2 and parse_replicas(3) == 3
    assert parse_replicas("auto") == parse_replicas(" AUTO ") == "auto"
    for bad in ("0", "-1", "two", ""):
        with pytest.raises(ValueError, match="positive integer or 'auto'"):
            parse_replicas(bad)


def test_fixed_replicas_get_their_threads_as_cpus_and_backpressure_above_the_queue():
    options = ReplicaPlan(replicas=2, threads=3, max_waiting=4).deployment_options(cpus=8)
    assert options["num_replicas"] == 2 and "autoscaling_config" not in options
    # Ray schedules each replica on `threads` cores; build_app runs that many torch threads.
    assert options["ray_actor_options"] == {"num_cpus": 3}
    # One running + 4 waiting are the model queue's; the margin is refused by it (503 JSON).
    assert options["max_ongoing_requests"] == 1 + 4 + QUEUE_MARGIN
    # Ray's own refusal is a bounded backstop, with a 503 and Retry-After too, well above
    # the replicas' slots: a burst waits at the router while the replicas refuse it.
    assert options["max_queued_requests"] == BACKSTOP_BURSTS * options["max_ongoing_requests"] * 2
    assert BACKSTOP_BURSTS >= 2
    assert options["backpressure_config"]["status_code"] == 503
    assert options["backpressure_config"]["retry_after_s"] >= 1


def test_auto_replicas_autoscale_between_min_and_max():
    options = ReplicaPlan(replicas="auto", min_replicas=2, max_replicas=5,
                          target_ongoing_requests=1.5).deployment_options(cpus=16)
    assert "num_replicas" not in options
    assert options["autoscaling_config"] == {
        "min_replicas": 2, "initial_replicas": 2, "max_replicas": 5, "target_ongoing_requests": 1.5,
    }
    # Without max_replicas: the cluster's cores / threads per replica.
    plan = ReplicaPlan(replicas="auto", threads=2)
    assert plan.deployment_options(cpus=8)["autoscaling_config"]["max_replicas"] == 4
    assert plan.most_replicas(cpus=1) == 1  # never below min_replicas


@pytest.mark.parametrize(
    "fields, phrase",
    [
        ({"threads": 0}, "threads"),
        ({"max_waiting": -1}, "max_waiting"),
        ({"replicas": "auto", "min_replicas": 3, "max_replicas": 2}, "below min_replicas"),
        ({"replicas": "auto", "target_ongoing_requests": 0}, "target_ongoing_requests"),
        ({"replicas": 0}, "replicas"),
    ],
)
def test_a_plan_refuses_impossible_settings(fields, phrase):
    with pytest.raises(ValueError, match=phrase):
        ReplicaPlan(**fields)


def test_the_deployment_class_builds_the_app_in_the_replica():
    pytest.importorskip("ray.serve", reason="needs ray[serve]: pip install 'attribot-rag[serve-ray]'")
    cls = ray_serve._replica_class()
    # Late-bound ingress: the app (and its model) is built in the replica, by build_app.
    assert hasattr(cls, "__serve_build_asgi_app__") and hasattr(cls, "check_health")
    with pytest.raises(RuntimeError, match="not loaded"):  # Ray Serve's health check before the model
        cls.check_health(SimpleNamespace(service=None))


# --------------------------------------------------------------------------- the command


def test_serve_without_replicas_stays_the_single_process_server(monkeypatch):
    import attribot_rag.service.server as server

    calls = []
    monkeypatch.setattr(server, "serve", lambda **kw: calls.append(("uvicorn", kw)))
    monkeypatch.setattr(ray_serve, "serve_replicas", lambda **kw: calls.append(("ray", kw)))
    assert main(["serve", "--model", "smollm2-135m", "--threads", "2"]) == 0
    assert [c[0] for c in calls] == ["uvicorn"] and calls[0][1]["threads"] == 2


def test_serve_replicas_goes_to_ray_serve_with_the_same_options(monkeypatch):
    calls = []
    monkeypatch.setattr(ray_serve, "serve_replicas", lambda **kw: calls.append(kw))
    assert main(["serve", "--model", "smollm2-135m", "--replicas", "2", "--max-waiting", "3",
                 "--address", "ray://head:10001", "--port", "8123"]) == 0
    kw = calls[0]
    assert kw["replicas"] == 2 and kw["address"] == "ray://head:10001" and kw["port"] == 8123
    assert kw["model"] == "smollm2-135m" and kw["max_waiting"] == 3
    assert kw["threads"] is None  # serve_replicas makes it 1 per replica

    calls.clear()
    assert main(["serve", "--model", "smollm2-135m", "--replicas", "auto", "--min-replicas", "1",
                 "--max-replicas", "3", "--target-ongoing-requests", "1.5", "--threads", "2"]) == 0
    kw = calls[0]
    assert (kw["replicas"], kw["min_replicas"], kw["max_replicas"]) == ("auto", 1, 3)
    assert kw["target_ongoing_requests"] == 1.5 and kw["threads"] == 2


def test_a_proxy_killed_while_starting_is_started_again(monkeypatch):
    import ray.exceptions
    from ray import serve

    calls = []

    def flaky_start(**kwargs):
        calls.append("start")
        if calls.count("start") < 3:
            raise ray.exceptions.ActorDiedError()

    monkeypatch.setattr(serve, "start", flaky_start)
    monkeypatch.setattr(serve, "shutdown", lambda: calls.append("shutdown"))
    ray_serve.start_http_proxy("127.0.0.1", 8000)
    assert calls == ["start", "shutdown", "start", "shutdown", "start"]
    calls.clear()
    with pytest.raises(ray.exceptions.ActorDiedError):  # still dead after the last try: the caller hears it
        ray_serve.start_http_proxy("127.0.0.1", 8000, attempts=2)
    assert calls == ["start", "shutdown", "start"]


def test_serve_refuses_zero_replicas(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--replicas", "0"])
    assert "--replicas" in capsys.readouterr().err


def test_the_package_and_the_ray_module_import_without_ray():
    code = (
        "import sys, attribot_rag, attribot_rag.cli, attribot_rag.service.ray_serve, attribot_rag.service.server; "
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- Ray Serve


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cite_body(handbook_passages) -> dict:
    return {"question": TRAVEL_QUESTION, "passages": [p.to_dict() for p in handbook_passages],
            "answer": TRAVEL_ANSWER}


@pytest.fixture(scope="module")
def two_replicas():
    """Ray Serve with two replicas of smollm2-135m, one thread each, no waiting room
    (each replica's model queue admits one request: the next is refused)."""
    ray = pytest.importorskip("ray", reason="needs ray[serve]: pip install 'attribot-rag[serve-ray]'")
    pytest.importorskip("ray.serve", reason="needs ray[serve]: pip install 'attribot-rag[serve-ray]'")
    try:
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    except Exception as exc:  # no shared memory, no sockets, ...
        pytest.skip(f"Ray cannot start here: {type(exc).__name__}: {exc}")
    plan = ReplicaPlan(replicas=2, threads=1, max_waiting=0)
    try:
        url = ray_serve.start(plan, port=_free_port(), model="smollm2-135m", max_new_tokens=16, timeout_s=60.0)
        yield url
    finally:
        ray_serve.stop()


@pytest.mark.slow
def test_two_replicas_answer_cite_and_refuse_promptly_when_full(two_replicas, handbook_passages):
    import httpx
    from ray import serve

    url = two_replicas
    app = serve.status().applications[ray_serve.APP_NAME]
    replicas = app.deployments[ray_serve.DEPLOYMENT_NAME].replica_states
    assert replicas.get("RUNNING") == 2, replicas

    with httpx.Client(base_url=url, timeout=120) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["ready"] is True
        assert "smollm2" in ready.json()["model"].lower() and ready.json()["threads"] == 1
        assert client.get("/healthz").status_code == 200
        assert "<html" in client.get("/").text.lower()  # the page, through the proxy

        body = _cite_body(handbook_passages)
        for _ in range(4):  # one at a time: never refused
            r = client.post("/v1/cite", json=body)
            assert r.status_code == 200, r.text
            out = r.json()
            assert out["citations"] and "[1]" in out["cited_answer"]
            assert out["citations"][0]["passage_id"] == "travel"

    def timed_cite(_):
        t0 = time.perf_counter()
        r = httpx.post(f"{url}/v1/cite", json=body, timeout=120)
        return r, time.perf_counter() - t0

    # 8 at once on 2 replicas that each run one and admit no waiting one.
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(timed_cite, range(8)))
    done = [(r, s) for r, s in results if r.status_code == 200]
    busy = [(r, s) for r, s in results if r.status_code == 503]
    assert len(done) + len(busy) == 8, [(r.status_code, r.text[:200]) for r, _ in results]
    assert done and busy
    for r, seconds in busy:
        # The service's own refusal (its JSON shape), not Ray's plain-text one, and prompt.
        assert r.json()["error"] == "busy", r.text
        assert int(r.headers["Retry-After"]) >= 1
        assert seconds < max(s for _, s in done) + 1.0 and seconds < 30
    print(json.dumps({"ok": len(done), "503": len(busy),
                      "503_seconds": [round(s, 2) for _, s in busy],
                      "200_seconds": [round(s, 2) for _, s in done]}))
