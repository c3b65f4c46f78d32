"""The ops page with a long history behind it: fill imports and their rollups, time it beside /health.

Viewers share the charts the web processes keep in Redis; the drawing itself is timed apart,
by dropping the kept charts before each request.
"""

from __future__ import annotations

import http.client
import time
from typing import Any

import redis

from bench.stack import AUTHORIZATION, REDIS_URL, Stack

# Over the last 7 days (the longest chart but the reasons' 30 days): 90% completed, 7% failed,
# 3% cancelled; sizes from 2 KB to about 200 MB; a few imports still wait.
FILL_IMPORTS = """
INSERT INTO imports (id, status, source, format, filename, size_bytes, use_resumable, total_rows,
                     processed_rows, inserted_rows, duplicate_rows, rejected_rows, checkpoint, attempts,
                     created_at, started_at, finished_at)
SELECT md5('bench-ops-' || n)::uuid::text,
       CASE WHEN n % 100 < 90 THEN 'completed' WHEN n % 100 < 97 THEN 'failed' ELSE 'cancelled' END,
       'bench-ops-' || (n % 40), 'csv', 'file-' || n || '.csv', size, false, rows, rows,
       rows - rows / 10 - rows / 20, rows / 10, rows / 20, rows, 1,
       at, at + interval '2 seconds', at + interval '2 seconds' + (size / 400000.0 + 1) * interval '1 second'
FROM (
  SELECT n, now() - (n::float / %(count)s) * interval '7 days' AS at,
         (2000 * power(10, (n * 7919 % 1000) / 1000.0 * 5))::bigint AS size,
         greatest(1, (2000 * power(10, (n * 7919 % 1000) / 1000.0 * 5) / 60))::int AS rows
  FROM generate_series(1, %(count)s) AS n
) AS made
"""
FILL_MINUTES = """
INSERT INTO import_minutes (minute, import_id, inserted, updated, duplicate, rejected)
SELECT date_trunc('minute', finished_at), id, inserted_rows, 0, duplicate_rows, rejected_rows
FROM imports WHERE source LIKE 'bench-ops-%' AND status = 'completed'
"""
REASONS = (
    ("email", "Not a valid email address"),
    ("email", "Email is missing"),
    ("name", "Name is missing"),
    ("name", "Name is longer than 255 characters"),
    ("", "This row has more cells than the header"),
    ("email", "The domain cannot receive email"),
)
FILL_REASONS = """
INSERT INTO import_reasons (import_id, field, message, rows, last_at)
SELECT id, reason.field, reason.message, greatest(1, rejected_rows / reason.k), finished_at
FROM imports
JOIN (VALUES {values}) AS reason(k, field, message) ON (hashtext(imports.id) & 7) >= reason.k - 1
WHERE source LIKE 'bench-ops-%' AND rejected_rows > 0
"""
FILL_REASON_HOURS = """
INSERT INTO reason_hours (hour, field, message, rows, imports)
SELECT date_trunc('hour', last_at), field, message, sum(rows), count(*)
FROM import_reasons JOIN imports ON imports.id = import_reasons.import_id
WHERE imports.source LIKE 'bench-ops-%'
GROUP BY 1, 2, 3
ON CONFLICT (hour, field, message) DO UPDATE
SET rows = reason_hours.rows + excluded.rows, imports = reason_hours.imports + excluded.imports
"""
WAITING = """
INSERT INTO imports (id, status, source, size_bytes, use_resumable, processed_rows, inserted_rows,
                     duplicate_rows, rejected_rows, checkpoint, attempts, created_at)
SELECT md5('bench-ops-waiting-' || n)::uuid::text, 'queued', 'bench-ops-waiting', 1000, false,
       0, 0, 0, 0, 0, 0, now() - n * interval '1 minute'
FROM generate_series(1, 5) AS n
"""


def fill(stack: Stack, count: int) -> dict[str, int]:
    """Add ``count`` ended imports with their rollups and five waiting ones; the rows each table got.

    The worker's upkeep sums closed hours once; these hours were summed before the history was
    written into them, so their sums are dropped and the worker sums them again.
    """
    values = ", ".join(f"({k}, '{field}', '{message}')" for k, (field, message) in enumerate(REASONS, 1))
    stack.sql(FILL_IMPORTS.replace("%(count)s", str(count)))
    stack.sql(FILL_MINUTES)
    stack.sql(FILL_REASONS.format(values=values))
    stack.sql(FILL_REASON_HOURS)
    stack.sql(WAITING)
    stack.sql("TRUNCATE import_hours")
    stack.sql("ANALYZE imports")
    stack.sql("ANALYZE import_minutes")
    stack.sql("ANALYZE import_reasons")
    stack.sql("ANALYZE reason_hours")
    return {
        table: stack.sql(f"SELECT count(*) FROM {table}")[0][0]
        for table in ("imports", "import_minutes", "import_reasons", "reason_hours")
    }


def wait_for_summaries(stack: Stack, timeout: float = 300) -> float:
    """Seconds until the worker's upkeep has summed the closed hours (it runs every 30 s)."""
    started = time.monotonic()
    query = "SELECT count(*) FROM import_hours WHERE hour >= date_trunc('hour', now() - interval '7 days')"
    while not stack.sql(query)[0][0]:
        if time.monotonic() - started > timeout:
            raise TimeoutError("the worker did not sum the closed hours; see stack.log")
        time.sleep(0.5)
    return time.monotonic() - started


def _time(conn: http.client.HTTPConnection, path: str) -> float:
    headers = {"Accept": "text/html", **AUTHORIZATION}
    started = time.perf_counter()
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    body = response.read()
    elapsed = time.perf_counter() - started
    if response.status != 200:
        raise RuntimeError(f"GET {path} answered {response.status}: {body[:300]!r}")
    return elapsed


def _quantiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": ordered[len(ordered) // 2] * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "n": len(ordered),
    }


def _forget_drawings() -> None:
    """Drop every chart the web processes keep in Redis, so the next request draws its own."""
    from app.dashboard.cards import PREFIX

    kept = redis.Redis.from_url(REDIS_URL)
    names = kept.keys(f"{PREFIX}*")
    if names:
        kept.delete(*names)
    kept.close()


def measure(stack: Stack, paths: list[str], rounds: int, drawn: bool = False) -> dict[str, dict[str, float]]:
    """Each path ``rounds`` times over one kept-alive connection, interleaved with the others.

    ``drawn``: every ``/ops`` request draws what it shows, as the one viewer who redraws does.
    """
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=60)
    samples: dict[str, list[float]] = {path: [] for path in paths}
    try:
        for path in paths:  # warm each worker's caches and connection pool
            for _ in range(3):
                _time(conn, path)
        for _ in range(rounds):
            for path in paths:
                if drawn:
                    _forget_drawings()
                samples[path].append(_time(conn, path))
    finally:
        conn.close()
    return {path: _quantiles(found) for path, found in samples.items()}


# What the charts would cost as plain aggregates over the imports table, instead of rollups.
PLAIN = {
    "statuses": "SELECT date_trunc('hour', finished_at), status, count(*) FROM imports "
    "WHERE finished_at >= now() - interval '7 days' AND status IN ('completed', 'failed', 'cancelled') "
    "GROUP BY 1, 2",
    "durations": "SELECT size_bytes >= 1000000, count(*), "
    "percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at)), "
    "percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at)) "
    "FROM imports WHERE status = 'completed' AND finished_at >= now() - interval '7 days' GROUP BY 1",
    "reasons?period=30d": "SELECT field, message, sum(rows), count(DISTINCT import_id) FROM import_reasons "
    "JOIN imports ON imports.id = import_id WHERE imports.finished_at >= now() - interval '30 days' "
    "GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 10",
}


def plain_aggregates(stack: Stack) -> dict[str, float]:
    """Milliseconds of each plain aggregate, the best of five."""
    found = {}
    for name, query in PLAIN.items():
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            stack.sql(query)
            best = min(best, time.perf_counter() - started)
        found[name] = best * 1000
    return found


# An ops team: a few browsers, each polling its charts, up to many.
CONNECTIONS = (4, 16)
LOAD_RUNS = 2


def under_load(stack: Stack, seconds: float) -> dict[int, dict[str, dict[str, float]]]:
    """GET /ops and GET /health by each number of clients, interleaved, the lower p99 of two runs each."""
    from bench.run import load

    found: dict[int, dict[str, dict[str, float]]] = {}
    for connections in CONNECTIONS:
        runs: dict[str, list[dict[str, float]]] = {"/health": [], "/ops": []}
        for _ in range(LOAD_RUNS):
            for path, kept in runs.items():
                kept.append(load(stack, "GET", path, None, seconds, connections))
        found[connections] = {path: min(kept, key=lambda r: r["p99_ms"]) for path, kept in runs.items()}
    return found


CHART_PATHS = [f"/ops/charts/{key}" for key in ("throughput", "statuses", "reasons", "durations", "queue")]


def ops_page(stack: Stack, results: Any, count: int, rounds: int, seconds: float) -> None:
    """GET /ops with ``count`` imports and their rollups in the tables, beside GET /health.

    Once by one client, then by several at once for ``seconds`` each.
    """
    from bench.run import verdict

    rows = fill(stack, count)
    summed = wait_for_summaries(stack)
    figures = measure(stack, ["/health", "/ops"], rounds)
    paths = ["/health", "/ops", "/ops/charts/reasons?period=30d", *CHART_PATHS]
    drawn = measure(stack, paths, max(rounds // 4, 1), drawn=True)
    loaded = under_load(stack, seconds)
    plain = plain_aggregates(stack)
    results.figures["ops_page"] = {
        "rows": rows,
        "rounds": rounds,
        "summed_in_s": summed,
        "plain_aggregate_ms": plain,
        "under_load": {"seconds": seconds, "runs": LOAD_RUNS, "by_connections": loaded},
        "drawn_each_time": drawn,
        **figures,
    }
    health, page = figures["/health"], figures["/ops"]
    results.add(
        f"GET /ops, {rows['imports']:,} imports, {rows['import_minutes']:,} minute rollups (p50/p99 ms)",
        f"{page['p50_ms']:.1f}/{page['p99_ms']:.1f}",
        f"GET /health {health['p50_ms']:.1f}/{health['p99_ms']:.1f}",
        f"{page['p50_ms'] / health['p50_ms']:.2f}",
        f"p99 < 200 ms {verdict(page['p99_ms'] < 200)}",
    )
    health, page = drawn["/health"], drawn["/ops"]
    results.add(
        "GET /ops drawn by the request, none kept (p50/p99 ms)",
        f"{page['p50_ms']:.1f}/{page['p99_ms']:.1f}",
        f"GET /health {health['p50_ms']:.1f}/{health['p99_ms']:.1f}",
        f"{page['p50_ms'] / health['p50_ms']:.2f}",
        f"p99 < 200 ms {verdict(page['p99_ms'] < 200)}",
    )
    for connections, found in loaded.items():
        busy, alive = found["/ops"], found["/health"]
        results.add(
            f"GET /ops, {connections} clients at once {seconds:.0f} s, better of {LOAD_RUNS} "
            "(req/s; p50/p99 ms; errors)",
            f"{busy['requests_per_s']:,.0f}; {busy['p50_ms']:.1f}/{busy['p99_ms']:.1f}; {busy['errors']}",
            f"GET /health {alive['requests_per_s']:,.0f}; {alive['p50_ms']:.1f}/{alive['p99_ms']:.1f}",
            f"{busy['p99_ms'] / alive['p99_ms']:.2f}",
            f"p99 < 200 ms, 0 errors {verdict(busy['p99_ms'] < 200 and busy['errors'] == 0)}",
        )
    for path in ["/ops/charts/reasons?period=30d", *CHART_PATHS]:
        chart = drawn[path]
        results.add(
            f"GET {path}, drawn by the request (p50/p99 ms)",
            f"{chart['p50_ms']:.1f}/{chart['p99_ms']:.1f}",
            f"GET /health {health['p50_ms']:.1f}/{health['p99_ms']:.1f}",
            f"{chart['p50_ms'] / health['p50_ms']:.2f}",
        )
    for name, ms in plain.items():
        chart = drawn[f"/ops/charts/{name}"]
        results.add(
            f"plain aggregate over imports for {name}, SQL alone, best of 5 (ms)",
            f"{ms:.1f}",
            f"its chart drawn from rollups, whole request p50 {chart['p50_ms']:.1f}",
            f"{ms / chart['p50_ms']:.2f}",
        )
