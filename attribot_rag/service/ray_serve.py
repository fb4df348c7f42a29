"""``attribot-rag serve --replicas N``: the same app, deployed with Ray Serve.

One code path for the app: each replica builds it in its own process with
:func:`~attribot_rag.service.server.build_app` (so it holds its own model, its own
:class:`~attribot_rag.service.limits.ModelQueue` and runs ``threads`` torch threads), and
Ray Serve's HTTP proxy spreads the requests over the replicas. The API, the page and the
errors are the single-process server's.

Back-pressure: Ray Serve sends a replica at most ``max_ongoing_requests`` requests at a
time. That is set a little above what the replica's model queue admits (the running
request and ``max_waiting`` waiting ones), so a full replica still takes the next request
and its queue refuses it at once with the service's own 503 JSON and ``Retry-After``;
Ray Serve's own refusal (plain text, ``max_queued_requests`` requests held at the proxy
while every replica is at its limit) is only a backstop, with a 503 and ``Retry-After``
too. A request is never held without bound.

Readiness: a replica takes traffic only once ``build_app`` returned (its model loaded);
``serve`` prints the address only when every replica has, Ray Serve calls each replica's
``check_health`` (the model loaded, its thread taking work), and ``GET /readyz`` answers
from a replica with its model loaded (``{"ready": true, "model", "replica", "threads"}``).

Ray is imported only here and only when called: the package imports without it.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("attribot_rag.service")

APP_NAME = "attribot-rag"
DEPLOYMENT_NAME = "AttributionReplica"
# Ongoing requests a replica takes beyond what its model queue admits: those are refused by
# the queue (503 JSON, Retry-After) at once, so Ray's proxy never has to hold requests.
QUEUE_MARGIN = 2
# --replicas auto: the ongoing requests per replica the autoscaler aims at (the model serves
# one request at a time: one running and one waiting keeps it busy without long waits).
DEFAULT_TARGET_ONGOING = 2.0
# Retry-After of Ray Serve's own 503 (the backstop above), in seconds.
BACKSTOP_RETRY_AFTER_S = 2
# Ray's router holds a burst of requests while it assigns them, even when the replicas will
# refuse most of them at once; a backstop sized to the replicas' slots alone dropped a
# burst of 8 on 6 slots with Ray's plain-text 503. So it holds this many bursts' worth.
BACKSTOP_BURSTS = 4


def parse_replicas(text: str | int) -> int | str:
    """``--replicas``: a positive number of replicas, or ``"auto"`` (autoscaling)."""
    if isinstance(text, str) and text.strip().lower() == "auto":
        return "auto"
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise ValueError(f"replicas must be a positive integer or 'auto', got {text!r}") from None
    if value < 1:
        raise ValueError(f"replicas must be a positive integer or 'auto', got {text!r}")
    return value


@dataclass(frozen=True)
class ReplicaPlan:
    """How many replicas, and what each one may take: Ray Serve's deployment options."""

    replicas: int | str = 1  # a number, or "auto"
    threads: int = 1  # torch threads and Ray CPUs per replica
    max_waiting: int = 8  # the replica's model queue (build_app's max_waiting)
    min_replicas: int = 1  # auto only
    max_replicas: int | None = None  # auto only (None: the cores / threads, at least min_replicas)
    target_ongoing_requests: float = DEFAULT_TARGET_ONGOING  # auto only

    def __post_init__(self) -> None:
        parse_replicas(self.replicas)
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.max_waiting < 0:
            raise ValueError(f"max_waiting must be >= 0, got {self.max_waiting}")
        if self.min_replicas < 1:
            raise ValueError(f"min_replicas must be >= 1, got {self.min_replicas}")
        if self.max_replicas is not None and self.max_replicas < self.min_replicas:
            raise ValueError(f"max_replicas ({self.max_replicas}) is below min_replicas ({self.min_replicas})")
        if not self.target_ongoing_requests > 0:
            raise ValueError(f"target_ongoing_requests must be > 0, got {self.target_ongoing_requests}")

    @property
    def autoscaling(self) -> bool:
        return self.replicas == "auto"

    def most_replicas(self, cpus: int | None = None) -> int:
        """The most replicas this plan may run (auto: max_replicas, or the cores / threads)."""
        if not self.autoscaling:
            return int(self.replicas)
        if self.max_replicas is not None:
            return self.max_replicas
        return max(self.min_replicas, (cpus or os.cpu_count() or 1) // self.threads)

    def max_ongoing_requests(self) -> int:
        """Requests Ray sends one replica at a time: its queue's (1 running + max_waiting)
        and a margin that the queue refuses with its 503 JSON."""
        return 1 + self.max_waiting + QUEUE_MARGIN

    def deployment_options(self, cpus: int | None = None) -> dict[str, Any]:
        """Keyword arguments of ``serve.deployment`` for this plan."""
        ongoing = self.max_ongoing_requests()
        options: dict[str, Any] = {
            "name": DEPLOYMENT_NAME,
            "ray_actor_options": {"num_cpus": self.threads},
            "max_ongoing_requests": ongoing,
            "max_queued_requests": BACKSTOP_BURSTS * ongoing * self.most_replicas(cpus),
            "backpressure_config": {"status_code": 503, "retry_after_s": BACKSTOP_RETRY_AFTER_S},
            "health_check_period_s": 10.0,
            # Loading a model on a busy CPU takes a while: the first health check waits for it.
            "health_check_timeout_s": 60.0,
        }
        if self.autoscaling:
            options["autoscaling_config"] = {
                "min_replicas": self.min_replicas,
                "initial_replicas": self.min_replicas,
                "max_replicas": self.most_replicas(cpus),
                "target_ongoing_requests": self.target_ongoing_requests,
            }
        else:
            options["num_replicas"] = int(self.replicas)
        return options


def _replica_class() -> type:
    """The deployment class (defined when called: ``ray.serve`` is imported only here)."""
    from ray import serve

    @serve.ingress()
    class AttributionReplica:
        """One replica: the app of :func:`build_app`, with its own model, built when the
        replica starts (Ray Serve routes to it only once that returned)."""

        def __init__(self, app_options: dict[str, Any]) -> None:
            self.app_options = dict(app_options)
            self.service: Any = None

        def __serve_build_asgi_app__(self) -> Any:
            from .server import build_app

            app = build_app(**self.app_options)
            self.service = app.state.service
            replica = _replica_id()

            @app.get("/readyz", include_in_schema=False)
            async def ready() -> dict[str, Any]:
                import torch

                return {"ready": True, "model": self.service.attributor.model_name, "replica": replica,
                        "threads": torch.get_num_threads()}

            return app

        def check_health(self) -> None:
            """Ray Serve's health check: the model is loaded and its thread takes work."""
            if self.service is None:
                raise RuntimeError("the model is not loaded")
            if getattr(self.service.queue._executor, "_shutdown", False):
                raise RuntimeError("the model thread is shut down")

    return AttributionReplica


def _replica_id() -> str:
    try:
        from ray import serve

        return str(serve.get_replica_context().replica_id.unique_id)
    except Exception:  # outside a replica
        return str(os.getpid())


def build_deployment(plan: ReplicaPlan, app_options: dict[str, Any], cpus: int | None = None) -> Any:
    """The Ray Serve application: ``plan``'s replicas, each running ``build_app(**app_options)``
    with ``threads=plan.threads`` and ``max_waiting=plan.max_waiting``."""
    from ray import serve

    options = {**app_options, "threads": plan.threads, "max_waiting": plan.max_waiting}
    deployment = serve.deployment(_replica_class(), **plan.deployment_options(cpus))
    return deployment.bind(options)


def start(
    plan: ReplicaPlan,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    address: str | None = None,
    **app_options: Any,
) -> str:
    """Start (or join, with ``address``) Ray, deploy ``plan`` and return the base URL once
    every replica has loaded its model. :func:`stop` takes it down."""
    import ray
    from ray import serve

    cpus = os.cpu_count() or 1
    if not ray.is_initialized():
        if address:
            ray.init(address=address, logging_level="WARNING")
        else:
            needed = plan.most_replicas(cpus) * plan.threads
            if needed > cpus:
                log.warning("%d replicas x %d threads need %d cores; this machine has %d: they will share them",
                            plan.most_replicas(cpus), plan.threads, needed, cpus)
            ray.init(num_cpus=max(cpus, needed), include_dashboard=False, logging_level="WARNING")
    cluster_cpus = int(ray.cluster_resources().get("CPU", cpus))
    start_http_proxy(host, port)
    serve.run(build_deployment(plan, app_options, cluster_cpus), name=APP_NAME, route_prefix="/")
    url = f"http://{host}:{port}"
    wait_ready(url.replace("://0.0.0.0:", "://127.0.0.1:"))
    return url


def start_http_proxy(host: str, port: int, attempts: int = 3) -> None:
    """Ray Serve's controller and HTTP proxy. On a loaded machine the controller may kill a
    proxy that has not come up in time (``ActorDiedError``); then Serve is shut down and
    started again, a few times, before the error goes to the caller."""
    import ray
    from ray import serve

    for attempt in range(1, attempts + 1):
        try:
            serve.start(http_options={"host": host, "port": port})
            return
        except ray.exceptions.ActorDiedError as exc:
            if attempt == attempts:
                raise
            log.warning("Ray Serve's proxy did not start (%s); starting Serve again (%d of %d)",
                        str(exc).splitlines()[0], attempt + 1, attempts)
            serve.shutdown()


def wait_ready(url: str, timeout_s: float = 60.0) -> None:
    """Wait until the proxy routes ``/readyz`` to a replica with its model loaded
    (``serve.run`` returns when the replicas are up; the proxy learns the route soon after)."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=10) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url}/readyz did not answer 200 within {timeout_s:g} s")
        time.sleep(0.5)


def stop(*, joined: bool = False) -> None:
    """Take the deployment down: on a cluster this process ``joined``, only this
    application; otherwise Ray Serve and the local Ray this process started."""
    import ray
    from ray import serve

    try:
        serve.delete(APP_NAME) if joined else serve.shutdown()
    finally:
        ray.shutdown()


def serve_replicas(
    *,
    replicas: int | str,
    host: str = "127.0.0.1",
    port: int = 8000,
    address: str | None = None,
    threads: int | None = None,
    max_waiting: int = 8,
    min_replicas: int = 1,
    max_replicas: int | None = None,
    target_ongoing_requests: float = DEFAULT_TARGET_ONGOING,
    **app_options: Any,
) -> None:
    """``attribot-rag serve --replicas``: deploy, print the address once ready, serve until
    interrupted. ``app_options``: :func:`build_app`'s other options."""
    plan = ReplicaPlan(
        replicas=parse_replicas(replicas), threads=threads or 1, max_waiting=max_waiting,
        min_replicas=min_replicas, max_replicas=max_replicas, target_ongoing_requests=target_ongoing_requests,
    )
    what = (f"{plan.min_replicas}-{plan.most_replicas()} replicas (autoscaling)" if plan.autoscaling
            else f"{plan.replicas} replica{'s' if plan.replicas != 1 else ''}")
    print(f"attribot-rag: starting {what} with Ray Serve, {plan.threads} thread(s) each ...", flush=True)
    url = start(plan, host=host, port=port, address=address, **app_options)
    print(f"attribot-rag: serving on {url}/ (API docs at /docs, readiness at /readyz)", flush=True)
    # SIGTERM (a service manager, the load test) takes the deployment down too, as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        stop(joined=bool(address))
