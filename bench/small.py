"""The small-imports step: many JSON imports of a few rows from concurrent clients, POST to completed,
beside RQ's own rate for no-op jobs on the same worker, both with the Procfile's defaults."""

from __future__ import annotations

import http.client
import json
import random
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

import redis
from rq import Queue, Worker
from rq.job import Job

from bench.stack import AUTHORIZATION, REDIS_URL, ROOT, Stack, wait_for_turn

QUEUE_NAME = "imports"


def noop() -> None:
    """A job that does nothing: what RQ and the worker cost for each job, and nothing else."""


def procfile_worker(stack: Stack) -> subprocess.Popen:
    """``flask --app wsgi worker`` as the Procfile starts it: WORKER_CONCURRENCY's default."""
    env = {k: v for k, v in stack.env.items() if k != "WORKER_CONCURRENCY"}
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "worker"],
        cwd=ROOT,
        env=env,
        stdout=stack.log,
        stderr=stack.log,
    )


def _wait_for_workers(connection: redis.Redis, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while Worker.count(connection=connection) < count:
        if time.monotonic() > deadline:
            raise RuntimeError("the Procfile's worker did not start its workers; see stack.log")
        time.sleep(0.1)


def noop_rate(connection: redis.Redis, count: int) -> float:
    """No-op jobs per second: queued in one go, timed from the first enqueue to the last job's end."""
    queue = Queue(QUEUE_NAME, connection=connection)
    started = time.time()
    jobs = queue.enqueue_many([Queue.prepare_data("bench.small.noop", result_ttl=600) for _ in range(count)])
    ids = [job.id for job in jobs]
    deadline = time.monotonic() + 600
    while True:
        fetched = Job.fetch_many(ids, connection=connection)
        ended = [job.ended_at for job in fetched if job is not None and job.ended_at is not None]
        if len(ended) == count:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count - len(ended)} no-op jobs did not run in 600 s")
        time.sleep(0.05)
    last = max(ended).timestamp()
    return count / (last - started)


def _bodies(count: int, seed: int) -> list[bytes]:
    """JSON imports of 1 to 10 rows each, every email new."""
    rng = random.Random(seed)
    bodies = []
    for i in range(count):
        data = [
            {"name": f"Contact {i}-{j}", "email": f"s{seed}-{i}-{j}@example.com"}
            for j in range(rng.randint(1, 10))
        ]
        bodies.append(json.dumps({"source": "bench-small", "data": data}).encode())
    return bodies


def _post_all(
    stack: Stack, bodies: list[bytes], clients: int, rate: float | None = None
) -> tuple[list[str], list[float]]:
    """POST every body from ``clients`` keep-alive connections at once, each as fast as it is answered
    or, with ``rate``, on a schedule that sends ``rate`` imports a second between them all; the ids
    and each POST's seconds."""
    ids: list[str] = []
    latencies: list[float] = []
    failures: list[str] = []
    headers = {"Accept": "application/json", "Content-Type": "application/json", **AUTHORIZATION}
    start = time.perf_counter()

    def client(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=60)
        mine, times = [], []
        for k, body in enumerate(bodies[n::clients]):
            if rate is not None:
                wait_for_turn(start, k, n, clients, rate)
            began = time.perf_counter()
            conn.request("POST", "/import", body=body, headers=headers)
            response = conn.getresponse()
            answer = response.read()
            times.append(time.perf_counter() - began)
            if response.status != 202:
                failures.append(f"{response.status} {answer[:200]!r}")
                continue
            mine.append(json.loads(answer)["jobId"])
        conn.close()
        ids.extend(mine)
        latencies.extend(times)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"{len(failures)} POST /import failed, first: {failures[0]}")
    return ids, latencies


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def small_run(stack: Stack, count: int, clients: int, seed: int, rate: float | None = None) -> dict[str, Any]:
    """``count`` small imports from ``clients`` clients (at ``rate`` a second between them, or as
    fast as they are answered): imports/s from the first POST until every import completed, the
    POSTs' p50/p99, and each import's time from accepted to completed."""
    bodies = _bodies(count, seed)
    started = time.time()
    ids, posts = _post_all(stack, bodies, clients, rate)
    deadline = time.monotonic() + 900
    query = (
        "SELECT count(*) FILTER (WHERE status IN ('completed', 'failed', 'cancelled')),"
        " count(*) FILTER (WHERE status = 'completed') FROM imports WHERE id = ANY(%s)"
    )
    while stack.sql(query, ids)[0][0] < len(ids):
        if time.monotonic() > deadline:
            raise TimeoutError("small imports still not done after 900 s")
        time.sleep(0.02)
    ended, completed = stack.sql(query, ids)[0]
    if completed != len(ids):
        raise RuntimeError(f"only {completed} of {len(ids)} small imports completed")
    rows = stack.sql(
        "SELECT extract(epoch FROM max(finished_at)), array_agg(extract(epoch FROM finished_at - created_at))"
        " FROM imports WHERE id = ANY(%s)",
        ids,
    )[0]
    last, waits = float(rows[0]), [float(w) for w in rows[1]]
    return {
        "imports": len(ids),
        "clients": clients,
        "rate": rate,
        "imports_per_s": len(ids) / (last - started),
        "post_p50_ms": _percentile(posts, 0.5) * 1000,
        "post_p99_ms": _percentile(posts, 0.99) * 1000,
        "completed_p50_ms": statistics.median(waits) * 1000,
        "completed_p99_ms": _percentile(waits, 0.99) * 1000,
    }


PACED = 150.0  # imports a second: the target rate, at which POST /import's p99 is judged


def small_imports(stack: Stack, results: Any, count: int, noops: int, repeats: int, verdict: Any) -> None:
    """The Procfile's worker in place of the stack's one-process pool; interleaved, best of ``repeats``:
    RQ's no-op jobs through it, small imports from 8 and from 16 clients as fast as they are
    answered, and from 16 clients at 150 a second beside one client's POSTs one at a time."""
    connection = redis.Redis.from_url(REDIS_URL)
    stack.stop_process(stack.worker)
    worker = procfile_worker(stack)
    try:
        _wait_for_workers(connection, 10)
        rates: list[float] = []
        runs: dict[str, list[dict[str, Any]]] = {"8": [], "16": [], "paced": [], "alone": []}
        for attempt in range(repeats):
            seed = attempt * 100
            rates.append(noop_rate(connection, noops))
            runs["8"].append(small_run(stack, count, 8, seed + 1))
            runs["16"].append(small_run(stack, count, 16, seed + 2))
            runs["paced"].append(small_run(stack, count, 16, seed + 3, rate=PACED))
            runs["alone"].append(small_run(stack, max(10, count // 10), 1, seed + 4))
    finally:
        stack.stop_process(worker)
        stack.start_worker()
    noop = max(rates)
    results.figures["small_imports"] = {"noop_jobs_per_s": rates, "runs": runs}
    for clients in ("8", "16"):
        best = max(runs[clients], key=lambda f: f["imports_per_s"])
        results.add(
            f"small JSON imports (1-10 rows), {clients} clients, POST to completed "
            f"(imports/s; POST p50/p99 ms; best of {repeats})",
            f"{best['imports_per_s']:,.0f}; {best['post_p50_ms']:.1f}/{best['post_p99_ms']:.1f}",
            f"RQ no-op jobs, Procfile worker {noop:,.0f}/s",
            f"{best['imports_per_s'] / noop:.2f}",
            f"≥ 150/s {verdict(best['imports_per_s'] >= 150)}",
        )
    paced = min(runs["paced"], key=lambda f: f["post_p99_ms"])
    alone = min(runs["alone"], key=lambda f: f["post_p99_ms"])
    kept_up = paced["imports_per_s"] >= 0.95 * PACED
    results.add(
        f"small JSON imports at {PACED:.0f}/s from 16 clients (POST p50/p99 ms; "
        f"POST to completed p99 ms; imports/s; best of {repeats})",
        f"{paced['post_p50_ms']:.1f}/{paced['post_p99_ms']:.1f}; {paced['completed_p99_ms']:.0f}; "
        f"{paced['imports_per_s']:,.0f}",
        f"one client alone {alone['post_p50_ms']:.1f}/{alone['post_p99_ms']:.1f}",
        f"{paced['post_p99_ms'] / alone['post_p99_ms']:.2f}",
        f"p99 < 50 ms {verdict(paced['post_p99_ms'] < 50 and kept_up)}",
    )
