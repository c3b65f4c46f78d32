"""The measurements, run side by side with their baselines, and the one table they make."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import data
from bench import preview as bench_preview
from bench.ops import ops_page
from bench.rejected import rejected_lists
from bench.search import search_run
from bench.small import small_imports
from bench.stack import AUTHORIZATION, MemoryWatch, Stack, database_url, wait_for_turn
from bench.undo import undo_run
from bench.webhooks import webhooks

HERE = Path(__file__).resolve().parent
MB = 1024 * 1024


class Results:
    """The table's rows, and everything measured, for results.json."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, str]] = []
        self.figures: dict[str, Any] = {}

    def add(self, what: str, measured: str, baseline: str, ratio: str, target: str = "") -> None:
        self.rows.append((what, measured, baseline, ratio, target))
        print(f"  {what}: {measured} | {baseline} | {ratio} {target}", flush=True)

    def table(self) -> str:
        head = ("measure", "DataFlow", "baseline (same run)", "ratio", "target")
        widths = [max(len(r[i]) for r in [head, *self.rows]) for i in range(5)]
        line = "| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |"
        rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
        body = [
            "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in self.rows
        ]
        return "\n".join([line, rule, *body])


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        ram_kb = int(f.readline().split()[1])
    version = subprocess.run(
        ["psql", database_url(), "-tAc", "SHOW server_version"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "ram_gb": round(ram_kb / 1024 / 1024, 1),
        "postgresql": version,
        "python": platform.python_version(),
    }


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


# -- ingest ---------------------------------------------------------------------------------------


# The columns the pipeline's COPY writes, two-column files and wide ones (imported_at is the
# table's default for both).
STORED_COLUMNS = "id, name, email, source, import_id"
WIDE_STORED_COLUMNS = "id, name, email, phone, company, title, attributes, source, import_id"


def raw_copy(
    stack: Stack,
    path: Path | Sequence[Path],
    columns: str = "name, email",
    options: str = "FORMAT csv, HEADER true",
) -> float:
    """Seconds for ``psql \\copy`` of the file into a fresh table shaped like contacts; of several
    files, each by a ``psql`` of its own, all at once.

    Columns the file lacks take the table's defaults: ``gen_random_uuid()`` for a missing id.
    """
    paths = [path] if isinstance(path, Path) else list(path)
    stack.sql("DROP TABLE IF EXISTS raw_contacts")
    stack.sql("CREATE TABLE raw_contacts (LIKE contacts INCLUDING ALL)")
    stack.sql("ALTER TABLE raw_contacts ALTER source SET DEFAULT 'raw', ALTER imported_at SET DEFAULT now()")
    stack.sql("CHECKPOINT")
    started = time.perf_counter()
    loads = [
        subprocess.Popen(
            ["psql", database_url(), "-q", "-v", "ON_ERROR_STOP=1", "-c"]
            + [f"\\copy raw_contacts ({columns}) FROM '{one}' WITH ({options})"]
        )
        for one in paths
    ]
    if any(load.wait() for load in loads):
        raise RuntimeError(f"psql \\copy of {paths} failed")
    elapsed = time.perf_counter() - started
    stack.sql("DROP TABLE raw_contacts")
    return elapsed


def halves(path: Path) -> list[Path]:
    """The file's lines as two files, the first half and the second (COPY text has no header)."""
    with open(path, "rb") as whole:
        middle = sum(1 for _ in whole) // 2
    parts = [path.with_suffix(f".half{n}.txt") for n in (1, 2)]
    with open(path, "rb") as whole, open(parts[0], "wb") as first, open(parts[1], "wb") as second:
        for number, line in enumerate(whole):
            (first if number < middle else second).write(line)
    return parts


def export_stored(stack: Stack, path: Path, columns: str) -> int:
    """Write the contacts the last import stored to ``path`` as COPY text, in id order; their count.

    These are the valid, first-occurrence rows with the pipeline's own ids, source and import:
    ``\\copy`` of them is what PostgreSQL alone takes to store what the import stored.
    """
    subprocess.run(
        ["psql", database_url(), "-q", "-v", "ON_ERROR_STOP=1", "-c"]
        + [f"\\copy (SELECT {columns} FROM contacts ORDER BY id) TO '{path}'"],
        check=True,
    )
    return stack.sql("SELECT count(*) FROM contacts")[0][0]


def pipeline_import(stack: Stack, path: Path, rows: int) -> tuple[float, float, dict]:
    """Seconds from the stream POST to the import completed, the worker's peak RSS, and the import."""
    stack.wait_idle()
    stack.sql("TRUNCATE contacts, import_errors")
    stack.sql("CHECKPOINT")
    with MemoryWatch(stack.worker.pid, "VmHWM") as watch:
        started = time.perf_counter()
        import_id = stack.post_file(path, f"bench-{path.stem}")
        answer = stack.wait(import_id)
        elapsed = time.perf_counter() - started
        time.sleep(0.05)
    counted = answer["insertedRows"] + answer["duplicateRows"] + answer["rejectedRows"]
    if answer["status"] != "completed" or answer["processedRows"] != rows or counted != rows:
        raise RuntimeError(f"the import did not account for every row: {answer}")
    answer["timings"] = stack.timings(import_id)
    return elapsed, watch.peak_mb, answer


def _beside_copy(
    stack: Stack,
    results: Results,
    key: str,
    imported: Path,
    naive: tuple[Path, str],
    stored_columns: str,
    rows: int,
    repeats: int,
) -> dict[str, float]:
    """The pipeline's import of ``imported`` beside two ``\\copy`` loads, interleaved, best of ``repeats``.

    The limit is ``\\copy`` of the rows the import stored (exported after its first run) into a
    table made like contacts; the naive baseline is ``\\copy`` of the ``naive`` file (its path and
    columns) with ``gen_random_uuid()`` ids, whose scattered primary key inserts take about twice
    as long. Rates count the file's rows, so each ratio is one load's seconds over the other's.
    The pipeline stores with two connections at once, so the same rows are also loaded by two
    ``\\copy`` at once, each of half of them: PostgreSQL's limit on this machine's cores.
    Records the figures under ``key``; gives the rows/s of each and the ratios.
    """
    stored_path = imported.with_suffix(".stored.txt")
    parts: list[Path] = []
    runs, limits, pairs, naives, peaks, timings = [], [], [], [], [], []
    answer: dict = {}
    stored = 0
    try:
        for attempt in range(repeats):
            elapsed, peak, answer = pipeline_import(stack, imported, rows)
            runs.append(elapsed)
            peaks.append(peak)
            timings.append(answer.pop("timings"))
            if attempt == 0:
                stored = export_stored(stack, stored_path, stored_columns)
                parts = halves(stored_path)
            limits.append(raw_copy(stack, stored_path, stored_columns, "FORMAT text"))
            pairs.append(raw_copy(stack, parts, stored_columns, "FORMAT text"))
            naives.append(raw_copy(stack, *naive))
    finally:
        for path in (stored_path, *parts):
            path.unlink(missing_ok=True)
    rate = {
        "pipeline": rows / min(runs),
        "limit": rows / min(limits),
        "pair": rows / min(pairs),
        "naive": rows / min(naives),
    }
    rate["ratio"], rate["naive_ratio"] = rate["pipeline"] / rate["limit"], rate["pipeline"] / rate["naive"]
    rate["pair_ratio"] = rate["pipeline"] / rate["pair"]
    results.figures[key] = {
        "rows": rows,
        "stored_rows": stored,
        "pipeline_seconds": runs,
        "stored_copy_seconds": limits,
        "stored_copy_two_connections_seconds": pairs,
        "random_id_copy_seconds": naives,
        "pipeline_rows_per_s": round(rate["pipeline"]),
        "stored_copy_rows_per_s": round(rate["limit"]),
        "stored_copy_two_connections_rows_per_s": round(rate["pair"]),
        "random_id_copy_rows_per_s": round(rate["naive"]),
        "ratio": round(rate["ratio"], 3),
        "ratio_to_random_ids": round(rate["naive_ratio"], 3),
        "ratio_to_two_connections": round(rate["pair_ratio"], 3),
        "worker_peak_mb": max(peaks),
        "pipeline_timings": timings,
        "import": answer,
    }
    return rate


def _add_beside(results: Results, what: str, rate: dict[str, float], target: float) -> None:
    """Two rows of the table: the pipeline against the limit, and against the naive baseline."""
    results.add(
        what,
        f"{rate['pipeline']:,.0f}",
        f"psql \\copy of the rows stored {rate['limit']:,.0f}",
        f"{rate['ratio']:.2f}",
        f"≥ {target:.2f} {verdict(rate['ratio'] >= target)}",
    )
    results.add(
        f"{what.split(' (')[0]}, beside two \\copy at once, each of half the rows stored",
        f"{rate['pipeline']:,.0f}",
        f"2 × psql \\copy {rate['pair']:,.0f}",
        f"{rate['pair_ratio']:.2f}",
    )
    results.add(
        f"{what.split(' (')[0]}, beside \\copy with random ids",
        f"{rate['pipeline']:,.0f}",
        f"psql \\copy, random ids {rate['naive']:,.0f}",
        f"{rate['naive_ratio']:.2f}",
    )


def ingest(stack: Stack, results: Results, path: Path, rows: int, repeats: int) -> None:
    """The pipeline beside ``\\copy`` of the rows it stores and of the file with random ids."""
    rate = _beside_copy(
        stack, results, f"ingest_{rows}", path, (path, "name, email"), STORED_COLUMNS, rows, repeats
    )
    what = f"CSV {rows:,} rows, stream POST to completed (rows/s, best of {repeats})"
    _add_beside(results, what, rate, 0.85)


def wide_ingest(stack: Stack, results: Results, workdir: Path, rows: int, repeats: int) -> None:
    """A CSV with phone, company, job title and three extra columns beside ``\\copy`` of its rows.

    The limit is ``\\copy`` of the rows the import stored; the naive baseline loads every row of
    the file as stored (phones in E.164, the extra columns as the attributes' JSON) with random
    ids. The pipeline also parses every phone (each one distinct) and checks every row.
    """
    path, copy_path = data.write_wide_csv(
        workdir / f"wide-{rows}.csv", workdir / f"wide-{rows}-stored.csv", rows
    )
    naive = (copy_path, "name, email, phone, company, title, attributes")
    rate = _beside_copy(
        stack, results, f"wide_ingest_{rows}", path, naive, WIDE_STORED_COLUMNS, rows, repeats
    )
    what = f"CSV {rows:,} rows with phone, company, title and 3 more columns (rows/s, best of {repeats})"
    _add_beside(results, what, rate, 0.7)


def parallel_parts(stack: Stack, results: Results, workdir: Path, rows: int) -> None:
    """The file as two halves imported at once by two workers, beside the whole file by one."""
    half = data.write_csv(workdir / f"contacts-{rows // 2}.csv", rows // 2)
    stack.sql("TRUNCATE contacts, import_errors")
    whole, _peak, _answer = pipeline_import(stack, workdir / f"contacts-{rows}.csv", rows)
    stack.sql("TRUNCATE contacts, import_errors")
    second = stack.add_worker()
    try:
        started = time.perf_counter()
        ids = [stack.post_file(half, f"bench-part-{part}") for part in (1, 2)]
        for import_id in ids:
            stack.wait(import_id)
        parts = time.perf_counter() - started
    finally:
        stack.stop_process(second)
    ratio = whole / parts
    results.figures["parallel_parts"] = {"one_worker_seconds": whole, "two_workers_seconds": parts}
    results.add(
        f"CSV {rows:,} rows as 2 parts on 2 workers (rows/s)",
        f"{rows / parts:,.0f}",
        f"whole file, 1 worker {rows / whole:,.0f}",
        f"{ratio:.2f}",
    )


# -- memory ---------------------------------------------------------------------------------------


def memory(stack: Stack, results: Results, small: tuple[Path, int], large: tuple[Path, int]) -> None:
    """The worker's peak RSS for a small and a large import, beside its RSS when idle."""
    idle = max(data_mb(pid, "VmRSS") for pid in [stack.worker.pid, *descendants_of(stack)])
    peaks = {}
    for path, rows in (small, large):
        _elapsed, peak, _answer = pipeline_import(stack, path, rows)
        peaks[rows] = peak
    (s_rows, s_peak), (l_rows, l_peak) = sorted(peaks.items())
    growth = l_peak / s_peak
    results.figures["worker_memory"] = {"idle_mb": idle, "peak_mb": peaks, "growth": round(growth, 3)}
    results.add(
        f"worker peak RSS, {s_rows:,} rows (MB)",
        f"{s_peak:.0f}",
        f"idle worker {idle:.0f}",
        f"{s_peak / idle:.2f}",
        f"≤ 150 MB {verdict(s_peak <= 150)}",
    )
    results.add(
        f"worker peak RSS, {l_rows:,} rows (MB)",
        f"{l_peak:.0f}",
        f"{s_rows:,} rows {s_peak:.0f}",
        f"{growth:.2f}",
        f"≤ 150 MB, ≤ 1.25 {verdict(l_peak <= 150 and growth <= 1.25)}",
    )


def data_mb(pid: int, field: str) -> float:
    from bench.stack import status_kb

    return status_kb(pid, field) / 1024


def descendants_of(stack: Stack) -> list[int]:
    from bench.stack import descendants

    return descendants(stack.worker.pid)


# -- uploads --------------------------------------------------------------------------------------


def uploads(stack: Stack, results: Results, path: Path, workdir: Path) -> None:
    """A stream POST and tus PATCHes of the file, beside ``cp`` of it; the web RSS while it streams."""
    size = path.stat().st_size
    target = workdir / "copy.bin"
    started = time.perf_counter()
    subprocess.run(["cp", str(path), str(target)], check=True)
    cp_seconds = time.perf_counter() - started
    target.unlink()
    cp_rate = size / MB / cp_seconds

    from bench.stack import descendants, status_kb

    web_pids = descendants(stack.web.pid)
    idle = max(status_kb(pid, "VmRSS") for pid in web_pids) / 1024
    with MemoryWatch(stack.web.pid, "VmRSS") as watch:
        started = time.perf_counter()
        import_id = stack.post_file(path, "bench-upload")
        post_seconds = time.perf_counter() - started
    stack.wait(import_id)
    post_rate = size / MB / post_seconds
    results.add(
        f"stream POST of {size / MB:,.0f} MB (MB/s)",
        f"{post_rate:,.0f}",
        f"cp {cp_rate:,.0f}",
        f"{post_rate / cp_rate:.2f}",
    )
    growth = watch.peak_mb - idle
    results.add(
        f"web RSS while {size / MB:,.0f} MB streams in (MB)",
        f"peak {watch.peak_mb:.0f}",
        f"idle {idle:.0f}",
        f"{watch.peak_mb / idle:.2f}",
        f"flat {verdict(growth < 0.05 * size / MB + 10)}",
    )
    tus_rate = tus_upload(stack, path)
    results.figures["uploads"] = {
        "bytes": size,
        "cp_mb_per_s": cp_rate,
        "stream_post_mb_per_s": post_rate,
        "tus_mb_per_s": tus_rate,
        "web_idle_mb": idle,
        "web_peak_mb": watch.peak_mb,
    }
    if tus_rate is None:
        results.add("tus PATCHes of 6 MB (MB/s)", "n/a (no tus server)", f"cp {cp_rate:,.0f}", "n/a")
    else:
        results.add(
            "tus PATCHes of 6 MB (MB/s)",
            f"{tus_rate:,.0f}",
            f"cp {cp_rate:,.0f}",
            f"{tus_rate / cp_rate:.2f}",
        )


def tus_upload(stack: Stack, path: Path) -> float | None:
    """MB/s of a tus upload in 6 MB PATCHes, or None where the app has no tus server."""
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=60)
    try:
        conn.request("OPTIONS", "/uploads", headers={"Tus-Resumable": "1.0.0", **AUTHORIZATION})
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    if response.status == 404 or not response.getheader("Tus-Version"):
        return None
    from tusclient import client as tus

    uploader = tus.TusClient(f"http://127.0.0.1:{stack.port}/uploads", headers=AUTHORIZATION).uploader(
        str(path),
        chunk_size=6 * MB,
        metadata={"filename": path.name, "source": "bench-tus"},
    )
    started = time.perf_counter()
    uploader.upload()
    return path.stat().st_size / MB / (time.perf_counter() - started)


# -- spreadsheets ---------------------------------------------------------------------------------


def spreadsheets(stack: Stack, results: Results, workdir: Path, rows: int, repeats: int) -> None:
    """XLSX and ODS end to end, beside the CSV of the same rows through the same pipeline.

    Each import takes about a second, so one run says little on a shared machine: the four
    measures are interleaved ``repeats`` times and the best of each is kept.
    """
    paths = {
        "csv": data.write_csv(workdir / f"contacts-{rows}.csv", rows),
        "xlsx": data.write_xlsx(workdir / f"contacts-{rows}.xlsx", rows),
        "ods": data.write_ods(workdir / f"contacts-{rows}.ods", rows),
    }
    seconds: dict[str, list[float]] = {"csv": [], "xlsx": [], "ods": [], "copy": []}
    peaks: dict[str, float] = {"xlsx": 0.0, "ods": 0.0}
    for _ in range(repeats):
        for kind, path in paths.items():
            elapsed, peak, _ = pipeline_import(stack, path, rows)
            seconds[kind].append(elapsed)
            if kind in peaks:
                peaks[kind] = max(peaks[kind], peak)
        seconds["copy"].append(raw_copy(stack, paths["csv"]))
    rate = {kind: rows / min(times) for kind, times in seconds.items()}
    figures: dict[str, Any] = {
        "repeats": repeats,
        "seconds": seconds,
        "csv_rows_per_s": rate["csv"],
        "raw_copy_rows_per_s": rate["copy"],
    }
    best = f"best of {repeats}"
    for kind in ("xlsx", "ods"):
        figures[kind] = {"rows_per_s": rate[kind], "worker_peak_mb": peaks[kind]}
        target = f"≥ 100k {verdict(rate[kind] >= 100_000)}" if kind == "xlsx" else ""
        results.add(
            f"{kind.upper()} {rows:,} rows end to end (rows/s, {best})",
            f"{rate[kind]:,.0f}",
            f"same rows as CSV {rate['csv']:,.0f}",
            f"{rate[kind] / rate['csv']:.2f}",
            target,
        )
    # The limit any reader meets here: PostgreSQL taking the same rows with nothing to read.
    results.add(
        f"XLSX {rows:,} rows against psql \\copy of the same rows as CSV (rows/s, {best})",
        f"{rate['xlsx']:,.0f}",
        f"psql \\copy {rate['copy']:,.0f}",
        f"{rate['xlsx'] / rate['copy']:.2f}",
    )
    results.figures["spreadsheets"] = figures


# -- queue latency --------------------------------------------------------------------------------


def queue_latency(stack: Stack, results: Results, count: int) -> None:
    """Median time from POST /import to the worker starting the job, beside the POST's own round trip."""
    from datetime import datetime

    waits, posts, runs = [], [], []
    for i in range(count):
        body = json.dumps({"source": "bench-queue", "data": [{"name": "Ada", "email": f"q{i}@example.com"}]})
        started = time.perf_counter()
        status, answer = stack.request("POST", "/import", body, {"Content-Type": "application/json"})
        posts.append(time.perf_counter() - started)
        if status != 202:
            raise RuntimeError(f"POST /import answered {status}: {answer}")
        done = stack.wait(answer["jobId"], interval=0.02)
        created, began, finished = (
            datetime.fromisoformat(done[field].replace("Z", "+00:00"))
            for field in ("createdAt", "startedAt", "finishedAt")
        )
        waits.append((began - created).total_seconds())
        runs.append((finished - began).total_seconds())
    median, post = statistics.median(waits) * 1000, statistics.median(posts) * 1000
    run = statistics.median(runs) * 1000
    results.figures["queue_latency_ms"] = {"median": median, "all": [w * 1000 for w in waits], "post": post}
    results.figures["small_import_ms"] = {"median": run, "all": [r * 1000 for r in runs]}
    results.add(
        f"queue latency, median of {count} imports (ms)",
        f"{median:.0f}",
        f"POST round trip {post:.0f}",
        f"{median / post:.2f}",
        f"< 100 ms {verdict(median < 100)}",
    )
    # A one-row import from claim to finish: what each job costs the worker beyond its rows.
    results.add(
        f"one-row import, started to completed, median of {count} (ms)",
        f"{run:.0f}",
        f"POST round trip {post:.0f}",
        f"{run / post:.2f}",
    )


# -- API under load -------------------------------------------------------------------------------


def load(
    stack: Stack,
    method: str,
    path: str | Sequence[str],
    body: bytes | None,
    seconds: float,
    connections: int = 16,
    rate: float | None = None,
) -> dict[str, float]:
    """``connections`` clients for ``seconds``: wrk when installed, else a bounded client in threads.

    Given several paths, each connection asks for them in turn (a mix, such as the searches). Given
    a ``rate``, the connections send that many requests a second between them, on a schedule.
    """
    paths = [path] if isinstance(path, str) else list(path)
    if shutil.which("wrk") and rate is None:
        return _wrk(stack, method, paths, body, seconds, connections)
    return _threads(stack, method, paths, body, seconds, connections, rate)


def _wrk(
    stack: Stack, method: str, paths: list[str], body: bytes | None, seconds: float, connections: int
) -> dict[str, float]:
    script = stack.workdir / "wrk.lua"
    lines = [f'wrk.method = "{method}"', 'wrk.headers["Accept"] = "application/json"']
    lines += [f'wrk.headers["{name}"] = "{value}"' for name, value in AUTHORIZATION.items()]
    if body is not None:
        lines += [
            'wrk.headers["Content-Type"] = "application/json"',
            f"wrk.body = {json.dumps(body.decode())}",
        ]
    lines += [
        f"paths = {{{', '.join(json.dumps(p) for p in paths)}}}",
        "turn = 0",
        "request = function() turn = turn % #paths + 1 return wrk.format(nil, paths[turn]) end",
        "bad = 0",
        "response = function(status) if status >= 400 then bad = bad + 1 end end",
        'done = function(summary) io.write("non2xx ", bad, "\\n") end',
    ]
    script.write_text("\n".join(lines) + "\n")
    # The response counter lives per thread: one thread keeps it whole, and wrk is light enough.
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "-s", str(script)]
        + [f"http://127.0.0.1:{stack.port}{paths[0]}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def ms(label: str) -> float:
        value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)\b", out).groups()
        return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]

    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    errors += int(re.search(r"non2xx (\d+)", out).group(1))
    return {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": ms("50%"),
        "p99_ms": ms("99%"),
        "errors": errors,
        "tool": "wrk",
    }


def _threads(
    stack: Stack,
    method: str,
    paths: list[str],
    body: bytes | None,
    seconds: float,
    connections: int,
    rate: float | None = None,
) -> dict[str, float]:
    latencies: list[float] = []
    errors = [0]
    start = time.perf_counter()
    deadline = start + seconds
    headers = {"Accept": "application/json", **AUTHORIZATION}
    if body is not None:
        headers["Content-Type"] = "application/json"

    def client(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=30)
        mine = []
        turn = n
        while time.perf_counter() < deadline:
            if rate is not None:
                wait_for_turn(start, turn - n, n, connections, rate)
            turn += 1
            started = time.perf_counter()
            try:
                conn.request(method, paths[turn % len(paths)], body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                if response.status >= 400:
                    errors[0] += 1
            except (OSError, http.client.HTTPException):
                errors[0] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=30)
            mine.append(time.perf_counter() - started)
        conn.close()
        latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()
    return {
        "requests_per_s": len(latencies) / seconds,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "errors": errors[0],
        "tool": "python threads" + (f", {rate:g}/s on a schedule" if rate else ""),
    }


def _posted(stack: Stack, body: bytes) -> str:
    """The id of a small JSON import, once it has ended."""
    status, answer = stack.request("POST", "/import", body, {"Content-Type": "application/json"})
    if status != 202:
        raise RuntimeError(f"POST /import answered {status}: {answer}")
    return stack.wait(answer["jobId"])["jobId"]


def api_load(stack: Stack, results: Results, seconds: float) -> None:
    """GET /imports/<id> and POST /import under 16 connections, beside GET /health under the same load."""
    body = json.dumps(
        {"source": "bench-load", "data": [{"name": "Ada", "email": "ada@example.com"}]}
    ).encode()
    found = stack.sql("SELECT id FROM imports ORDER BY created_at LIMIT 1")
    # Run alone (`--only "API load"`) the database is empty: read an import made here.
    import_id = found[0][0] if found else _posted(stack, body)
    health = load(stack, "GET", "/health", None, seconds)
    status = load(stack, "GET", f"/imports/{import_id}", None, seconds)
    post = load(stack, "POST", "/import", body, seconds)
    results.figures["api_load"] = {"health": health, "status": status, "post": post, "seconds": seconds}
    for what, figures, target in (
        ("GET /imports/<id>", status, "p99 < 50 ms, 0 errors"),
        ("POST /import (small JSON)", post, "0 errors"),
    ):
        ok = figures["errors"] == 0 and (figures["p99_ms"] < 50 or "p99" not in target)
        results.add(
            f"{what}, 16 connections {seconds:.0f} s (req/s; p50/p99 ms; errors)",
            f"{figures['requests_per_s']:,.0f}; {figures['p50_ms']:.1f}/{figures['p99_ms']:.1f}; "
            f"{figures['errors']}",
            f"GET /health {health['requests_per_s']:,.0f}; {health['p50_ms']:.1f}/{health['p99_ms']:.1f}",
            f"{figures['requests_per_s'] / health['requests_per_s']:.2f}",
            f"{target} {verdict(ok)}",
        )


# -- the run --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """Run every measurement, print the table, write bench/results.json."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the benchmark still runs")
    parser.add_argument("--huge", action="store_true", help="also import a 10,000,000-row CSV")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved runs of the key comparison")
    parser.add_argument(
        "--search-rows", type=int, default=None, help="contacts the search step stores (default: the rows)"
    )
    parser.add_argument("--only", action="append", help="run only the named steps (ingest, memory, …)")
    parser.add_argument("--output", type=Path, default=HERE / "results.json")
    parser.add_argument("--workdir", type=Path, default=HERE / "data", help="where generated files go")
    args = parser.parse_args(argv)
    huge = args.huge or os.environ.get("BENCH_HUGE") == "1"
    if args.quick:
        rows, small, sheet, upload, queue, seconds, repeats = 2_000, 1_000, 1_000, 4 * MB, 5, 1.0, 1
        events, tiny_imports = 50, 20
        history, rounds = 500, 5
        preview_size = 8 * MB
    else:
        rows, small, sheet, upload, queue, seconds, repeats = (
            1_000_000,
            100_000,
            100_000,
            500 * MB,
            50,
            10.0,
            3,
        )
        events, tiny_imports = 1_000, 1_000
        history, rounds = 100_000, 200
        preview_size = 1024 * MB
    repeats = args.repeats or repeats
    workdir = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)

    print("generating files", flush=True)
    big = data.write_csv(workdir / f"contacts-{rows}.csv", rows)
    little = data.write_csv(workdir / f"contacts-{small}.csv", small)
    stack = Stack(workdir)
    results = Results()
    stack.reset()
    results.figures["machine"] = machine()
    stack.start()
    steps: list[tuple[str, Callable[[], None]]] = [
        ("ingest", lambda: ingest(stack, results, big, rows, repeats)),
        ("wide", lambda: wide_ingest(stack, results, workdir, rows, repeats)),
        ("memory", lambda: memory(stack, results, (little, small), (big, rows))),
        ("parallel", lambda: parallel_parts(stack, results, workdir, rows)),
        ("undo", lambda: undo_run(stack, results, big, rows, pipeline_import, verdict, workdir)),
        ("search", lambda: search_run(stack, results, args.search_rows or rows, seconds, load, verdict)),
        ("rejected", lambda: rejected_lists(stack, results, small, pipeline_import)),
    ]
    steps += [
        ("spreadsheets", lambda: spreadsheets(stack, results, workdir, sheet, repeats)),
        (
            "uploads",
            lambda: uploads(
                stack, results, data.write_binary(workdir / f"upload-{upload}.bin", upload), workdir
            ),
        ),
        ("queue latency", lambda: queue_latency(stack, results, queue)),
        ("small", lambda: small_imports(stack, results, tiny_imports, tiny_imports, repeats, verdict)),
        ("ops page", lambda: ops_page(stack, results, history, rounds, seconds)),
        ("preview", lambda: bench_preview.preview(stack, results, workdir, preview_size)),
        ("API load", lambda: api_load(stack, results, seconds)),
        ("webhooks", lambda: webhooks(stack, results, events)),
    ]
    if huge:
        # Last: the gigabytes it writes are still being flushed to disk for minutes after it ends,
        # and would slow whatever ran next.
        huge_rows = 10_000_000
        huge_path = data.write_csv(workdir / f"contacts-{huge_rows}.csv", huge_rows)
        steps.append(("huge", lambda: huge_run(stack, results, huge_path, huge_rows)))
    try:
        for name, step in steps:
            if args.only and name not in args.only:
                continue
            print(f"{name}…", flush=True)
            step()
    finally:
        stack.stop()
        stack.drop()
    table = results.table()
    info = results.figures["machine"]
    print()
    print(
        f"{info['cpus']} CPUs ({info['cpu']}), {info['ram_gb']} GB RAM, "
        f"PostgreSQL {info['postgresql']}, Python {info['python']}"
    )
    print(table)
    args.output.write_text(json.dumps({"table": results.rows, **results.figures}, indent=2, default=str))


def huge_run(stack: Stack, results: Results, path: Path, rows: int) -> None:
    """The 10M-row file once through the pipeline and once through each ``\\copy``, with the worker's peak."""
    rate = _beside_copy(
        stack, results, f"ingest_{rows}", path, (path, "name, email"), STORED_COLUMNS, rows, 1
    )
    peak = results.figures[f"ingest_{rows}"]["worker_peak_mb"]
    _add_beside(results, f"CSV {rows:,} rows (rows/s; worker peak {peak:.0f} MB)", rate, 0.85)
