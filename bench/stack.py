"""The system under test: its own database and Redis, gunicorn and a worker as real processes."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import redis

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get("BENCH_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
DATABASE_NAME = os.environ.get("BENCH_DATABASE_NAME", "dataflow_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
FINAL = ("completed", "failed", "cancelled", "undone")
# The stack runs as production should, with authentication on; every request carries the token.
API_TOKEN = "bench-token-not-a-secret"
AUTHORIZATION = {"Authorization": f"Bearer {API_TOKEN}"}


def database_url() -> str:
    """The benchmark's own database, next to the admin one."""
    return f"{ADMIN_URL.rsplit('/', 1)[0]}/{DATABASE_NAME}"


def wait_for_turn(start: float, sent: int, client: int, clients: int, rate: float) -> None:
    """Sleep until ``client``'s next request is due, when ``clients`` send ``rate`` a second between
    them from ``start`` on, in turn: after ``sent`` of its own, at (sent * clients + client) / rate."""
    time.sleep(max(0.0, start + (sent * clients + client) / rate - time.perf_counter()))


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (RQ forks a work horse per job, below its worker)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            with open(f"/proc/{parent}/task/{parent}/children") as f:
                kids = [int(k) for k in f.read().split()]
        except OSError:
            continue
        found.extend(kids)
        todo.extend(kids)
    return found


def status_kb(pid: int, field: str) -> int:
    """A size from /proc/<pid>/status in KiB (VmRSS now, VmHWM the peak), 0 if the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class MemoryWatch:
    """Samples the processes below a parent every few milliseconds and keeps the largest figure."""

    def __init__(self, parent: int, field: str, interval: float = 0.01) -> None:
        self.parent, self.field, self.interval = parent, field, interval
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in descendants(self.parent):
                self.peak_kb = max(self.peak_kb, status_kb(pid, self.field))
            time.sleep(self.interval)

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mb(self) -> float:
        return self.peak_kb / 1024


class Stack:
    """A fresh database, gunicorn on a loopback port chosen by the kernel, and one worker."""

    def __init__(self, workdir: Path, batch_size: int | None = None) -> None:
        self.workdir = workdir
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "REDIS_URL": REDIS_URL,
            "INSTANCE_DIR": str(workdir / "instance"),
            "STORAGE_DIR": str(workdir / "uploads"),
            "SECRET_KEY": "bench",
            "MAX_UPLOAD_SIZE": "2GB",
            "WEB_CONCURRENCY": os.environ.get("WEB_CONCURRENCY", "2"),
            # One client sends every request here: limits still count each one in Redis, as in
            # production, but sit far above what the load steps send.
            "RATE_LIMIT": "1000000/minute",
            "IMPORT_RATE_LIMIT": "1000000/minute",
            "PYTHONUNBUFFERED": "1",
            "API_TOKENS": API_TOKEN,
            # The webhook step's receiver listens on loopback over plain http.
            "WEBHOOK_ALLOW_PRIVATE": "true",
            "WEBHOOK_ALLOW_HTTP": "true",
            # Each import logs where its seconds went; the ingest steps keep those figures.
            "IMPORT_TIMINGS": "true",
        }
        if batch_size:
            self.env["BATCH_SIZE"] = str(batch_size)
        self.web: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self.port = 0
        self.log = open(workdir / "stack.log", "ab")  # noqa: SIM115 - closed in stop()

    def reset(self) -> None:
        """Recreate the database with the project's migrations and empty the Redis database."""
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE_NAME}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
        redis.Redis.from_url(REDIS_URL).flushdb()
        subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", "migrate"],
            cwd=ROOT,
            env=self.env,
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def drop(self) -> None:
        """Remove the benchmark's database; the figures are in results.json."""
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE_NAME}" WITH (FORCE)')
        redis.Redis.from_url(REDIS_URL).flushdb()

    def start(self) -> None:
        """Start gunicorn on a socket bound here (port 0) and a one-process worker pool."""
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        fd = listener.fileno()
        self.web = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "python:app.gunicorn_conf", "--bind", f"fd://{fd}"]
            + ["wsgi:app"],
            cwd=ROOT,
            env=self.env,
            pass_fds=(fd,),
            stdout=self.log,
            stderr=self.log,
        )
        listener.close()
        self.start_worker()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if self.request("GET", "/health")[0] == 200 and descendants(self.worker.pid):
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("the web process or the worker did not start; see stack.log")

    def start_worker(self) -> None:
        """One worker process, so one job at a time uses the second core."""
        self.worker = self.add_worker()

    def add_worker(self) -> subprocess.Popen:
        """A second worker pool of one process, for imports that run side by side."""
        return subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "wsgi", "worker", "--concurrency", "1"],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=self.log,
        )

    @staticmethod
    def stop_process(process: subprocess.Popen) -> None:
        """SIGTERM a process started here and wait for it."""
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop(self) -> None:
        """SIGTERM both and wait; a worker still busy is killed."""
        for process in (self.worker, self.web):
            if process and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in (self.worker, self.web):
            if process:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    for pid in descendants(process.pid):
                        os.kill(pid, signal.SIGKILL)
                    process.kill()
                    process.wait()
        self.log.close()

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict]:
        """One request; the JSON answer, decoded."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        try:
            conn.request(
                method,
                path,
                body=body,
                headers={"Accept": "application/json", **AUTHORIZATION, **(headers or {})},
            )
            response = conn.getresponse()
            data = response.read()
            return response.status, json.loads(data) if data.startswith((b"{", b"[")) else {}
        finally:
            conn.close()

    def post_file(self, path: Path, source: str, mode: str = "skip") -> str:
        """POST the file as a raw stream, in the merge mode; the import's id."""
        with open(path, "rb") as f:
            status, answer = self.request(
                "POST",
                "/import",
                body=f,
                headers={
                    "X-Source": source,
                    "X-Filename": path.name,
                    "X-Merge-Mode": mode,
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(path.stat().st_size),
                },
            )
        if status != 202:
            raise RuntimeError(f"POST /import answered {status}: {answer}")
        return answer["jobId"]

    def wait(self, import_id: str, timeout: float = 3600, interval: float = 0.05) -> dict:
        """Poll the import until it ends; its JSON."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, answer = self.request("GET", f"/imports/{import_id}")
            if status == 200 and answer["status"] in FINAL:
                return answer
            time.sleep(interval)
        raise TimeoutError(f"import {import_id} did not finish in {timeout}s")

    def wait_idle(self, timeout: float = 900) -> None:
        """Wait until no import is queued or running (the API load step leaves thousands queued)."""
        deadline = time.monotonic() + timeout
        while self.sql("SELECT count(*) FROM imports WHERE status IN ('queued', 'running', 'undoing')")[0][0]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"imports still queued or running after {timeout}s")
            time.sleep(0.2)

    def timings(self, import_id: str) -> dict[str, float] | None:
        """The seconds per stage the worker logged for the import's last run (IMPORT_TIMINGS)."""
        self.log.flush()
        found = None
        with open(self.log.name, "rb") as log:
            for line in log:
                if b"import timings" in line and import_id.encode() in line:
                    found = json.loads(line).get("seconds")
        return found

    def sql(self, query: str, *args: Any) -> list[tuple]:
        """Run SQL on the benchmark database."""
        with psycopg.connect(database_url(), autocommit=True) as conn:
            cursor = conn.execute(query, args or None)
            return cursor.fetchall() if cursor.description else []
