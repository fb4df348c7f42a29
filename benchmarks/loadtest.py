"""Load test of `attribot-rag serve` on loopback: concurrent clients against /v1/cite.

    OMP_NUM_THREADS=1 python benchmarks/loadtest.py --clients 32 --seconds 60

Starts its own server on a free 127.0.0.1 port (or uses --url, loopback only), runs the
clients for a bounded time (and at most --max-requests requests), samples the server's
RSS, and reports requests served, 503s, p50/p95 latency and peak RSS. Clients honour
Retry-After, as well-behaved clients do. Exits 1 if any status other than 200 or 503 was
seen. Not part of the test suite: it takes a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

QUESTION = "What is the nightly hotel limit for international business travel?"
ANSWER = "The nightly hotel limit for international business travel is $260."
PASSAGE_IDS = ["hb-05", "hb-04", "hb-02", "hb-03"]  # what the index retrieves for QUESTION, and more


def cite_payload(with_answer: bool) -> dict:
    from attribot_rag.index import read_corpus

    by_id = {p.id: p for p in read_corpus()}
    payload = {"question": QUESTION, "passages": [by_id[i].to_dict() for i in PASSAGE_IDS]}
    if with_answer:
        payload["answer"] = ANSWER
    return payload


def start_server(port: int, replicas: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cli = Path(sys.executable).with_name("attribot-rag")
    # --replicas N|auto: `serve --replicas` (Ray Serve, one thread per replica) instead of uvicorn
    more = ["--replicas", replicas] if replicas else []
    return subprocess.Popen([str(cli), "serve", "--host", "127.0.0.1", "--port", str(port), *more], env=env)


def wait_until_up(url: str, timeout_s: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the server at {url} did not come up within {timeout_s} s")


class RssSampler(threading.Thread):
    """Peak resident memory of the server process and its children, sampled every 0.2 s."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        import psutil

        self.process = psutil.Process(pid)
        self.peak = 0
        self.replica_peaks: dict[int, int] = {}  # Ray Serve replica process -> its peak RSS
        self.stop = threading.Event()

    def run(self) -> None:
        import psutil

        while not self.stop.is_set():
            try:
                procs = [self.process, *self.process.children(recursive=True)]
                rss = {p.pid: p.memory_info().rss for p in procs}
                self.peak = max(self.peak, sum(rss.values()))
                for p in procs:
                    if "ServeReplica" in " ".join(p.cmdline()):
                        self.replica_peaks[p.pid] = max(self.replica_peaks.get(p.pid, 0), rss[p.pid])
            except psutil.Error:
                pass
            self.stop.wait(0.2)


async def client(http, url: str, payload: dict, end: float, budget: list[int], log: list) -> None:
    """One client: requests until ``end``; logs (status, latency, finish time)."""
    import httpx

    while time.monotonic() < end and budget[0] > 0:
        budget[0] -= 1
        t0 = time.monotonic()
        try:
            response = await http.post(url + "/v1/cite", json=payload)
        except httpx.TimeoutException:
            log.append(("client timeout", time.monotonic() - t0, time.monotonic()))
            continue
        log.append((response.status_code, time.monotonic() - t0, time.monotonic()))
        if response.status_code == 503:
            wait = float(response.headers.get("Retry-After", "1"))
            await asyncio.sleep(max(0.0, min(wait, end - time.monotonic())))


async def run_clients(url: str, payload: dict, clients: int, seconds: float, max_requests: int) -> list:
    import httpx

    log: list[tuple[int, float]] = []
    budget = [max_requests]
    end = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(timeout=300, limits=limits) as http:
        await asyncio.gather(*(client(http, url, payload, end, budget, log) for _ in range(clients)))
    return log


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def steady_rate(finishes: list[float]) -> float | None:
    """Answers per minute between the first and the last answer: the deployment's rate
    once every replica is busy, free of the warm-up before the first answer and of the
    queue still draining after the clients stop."""
    if len(finishes) < 3:
        return None
    finishes = sorted(finishes)
    return 60.0 * (len(finishes) - 1) / (finishes[-1] - finishes[0])


def summarise(
    log: list, wall_s: float, peak_rss: int, args: argparse.Namespace, t0: float, replica_peaks: list[int] = ()
) -> dict:
    ok = [t for s, t, _ in log if s == 200]
    busy = [t for s, t, _ in log if s == 503]
    other = sorted({str(s) for s, _, _ in log if s not in (200, 503)})
    in_window = [f for s, _, f in log if s == 200 and f - t0 <= args.seconds]
    return {
        "clients": args.clients,
        "seconds": args.seconds,
        "wall_s": round(wall_s, 1),
        "requests": len(log),
        "served_200": len(ok),
        "answers_per_minute_in_window": round(60.0 * len(in_window) / args.seconds, 2),
        "steady_answers_per_minute": round(steady_rate([f for s, _, f in log if s == 200]) or 0.0, 2),
        "max_latency_s": round(max(ok), 2) if ok else None,
        "rejected_503": len(busy),
        "other_statuses": other,
        "p50_latency_s": round(percentile(ok, 0.5), 2) if ok else None,
        "p95_latency_s": round(percentile(ok, 0.95), 2) if ok else None,
        "p50_503_latency_s": round(percentile(busy, 0.5), 3) if busy else None,
        "server_peak_rss_mib": round(peak_rss / 2**20, 1),
        "replica_peak_rss_mib": [round(v / 2**20, 1) for v in replica_peaks],
        "payload": "answer given" if not args.generate else "the model answers",
        "replicas": args.replicas or "one process",
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--max-requests", type=int, default=20000, help="a bound on the total")
    parser.add_argument("--url", help="a running server on loopback (default: start one)")
    parser.add_argument("--generate", action="store_true", help="let the model answer (default: answer given)")
    parser.add_argument("--json", metavar="OUT", help="also write the report here")
    parser.add_argument("--replicas", metavar="N|auto", help="start `serve --replicas N` (Ray Serve) instead")
    args = parser.parse_args()
    server = None
    if args.url:
        if urlparse(args.url).hostname not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit("the load test runs on loopback only")
        url = args.url.rstrip("/")
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = start_server(port, args.replicas)
        url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url)
        sampler = None
        if server is not None:
            sampler = RssSampler(server.pid)
            sampler.start()
        t0 = time.monotonic()
        log = asyncio.run(run_clients(url, cite_payload(not args.generate), args.clients, args.seconds, args.max_requests))
        wall = time.monotonic() - t0
        if sampler:
            sampler.stop.set()
        report = summarise(log, wall, sampler.peak if sampler else 0, args, t0,
                           sorted(sampler.replica_peaks.values()) if sampler else [])
    finally:
        if server is not None:
            server.terminate()  # uvicorn finishes the requests in flight first
            try:
                server.wait(180)
            except subprocess.TimeoutExpired:
                server.kill()
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 1 if report["other_statuses"] else 0


if __name__ == "__main__":
    sys.exit(main())
