"""``python -m bench.soak``: about 200 imports of every form and size while a chaos loop kills and
restarts the parts; then counts what was lost, doubled or left behind, and how long recovery took.

Not part of the test suite: it runs for up to ``--minutes`` (15 by default) on its own database,
its own redis-server (which it restarts) and its own gunicorn and worker (which it kills -9).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench.stack import ADMIN_URL, ROOT
from tests.servers import RedisServer, free_port, kill_process_tree
from tests.spreadsheets import ods_bytes, xlsx_bytes

DATABASE = os.environ.get("SOAK_DATABASE_NAME", "dataflow_soak")
TOKEN = "soak-token-not-a-secret"
FINAL = ("completed", "failed", "cancelled")
# Rows per import and how many of each, about 200 in all.
SIZES = ((1, 60), (10, 40), (100, 40), (1_000, 30), (10_000, 20), (100_000, 8), (1_000_000, 2))
FORMS = ("json", "stream", "multipart", "tus")
TUS_CHUNK = 2 * 1024 * 1024


@dataclass
class Planned:
    """One import a client will start, and what it must store."""

    number: int
    rows: int
    form: str
    kind: str
    job_id: str | None = None
    gave_up: str | None = None

    @property
    def source(self) -> str:
        return f"soak-{self.number:04d}"


def plan(count: int, rng: random.Random) -> list[Planned]:
    """The imports, scaled to ``count`` and shuffled: JSON bodies stay small, 1M rows go as CSV."""
    # Each import has a source of its own, so what each stored is counted apart.
    total = sum(n for _, n in SIZES)
    planned: list[Planned] = []
    for rows, share in SIZES:
        for _ in range(max(1, round(share * count / total))):
            form = rng.choice(FORMS if rows <= 10_000 else ("stream", "multipart", "tus"))
            kind = "json" if form == "json" else rng.choice(("csv", "xlsx", "ods", "json", "ndjson"))
            # Spreadsheets are built here with openpyxl, which is slow past tens of thousands of rows.
            if rows >= 1_000_000 or (rows >= 100_000 and kind in ("xlsx", "ods")):
                kind = "csv"
            planned.append(Planned(len(planned) + 1, rows, form, kind))
    rng.shuffle(planned)
    return planned


def body_of(item: Planned) -> bytes:
    """The file (or JSON request) of an import: distinct valid contacts, ``rows`` of them."""
    people = [(f"Person {i}", f"p{i}@soak.example.com") for i in range(item.rows)]
    if item.form == "json":
        data = [{"name": n, "email": e} for n, e in people]
        return json.dumps({"source": item.source, "data": data}).encode()
    if item.kind == "csv":
        return ("name,email\n" + "".join(f"{n},{e}\n" for n, e in people)).encode()
    if item.kind == "xlsx":
        return xlsx_bytes([("name", "email"), *people])
    if item.kind == "ods":
        return ods_bytes([("name", "email"), *people])
    if item.kind == "ndjson":
        return "".join(json.dumps({"name": n, "email": e}) + "\n" for n, e in people).encode()
    return json.dumps([{"name": n, "email": e} for n, e in people]).encode()


class Stack:
    """The soak's database, redis-server, gunicorn and worker; the web and worker restart when killed."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.redis = RedisServer()
        self.port = free_port()
        self.database_url = f"{ADMIN_URL.rsplit('/', 1)[0]}/{DATABASE}"
        self.log = open(workdir / "soak.log", "ab")  # noqa: SIM115 - closed in stop()
        self.env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis.url,
            "INSTANCE_DIR": str(workdir / "instance"),
            "STORAGE_DIR": str(workdir / "uploads"),
            "SECRET_KEY": "soak",
            "API_TOKENS": TOKEN,
            "RATE_LIMIT": "1000000/minute",
            "IMPORT_RATE_LIMIT": "1000000/minute",
            "WEB_CONCURRENCY": "2",
            "RECONCILE_INTERVAL": "5",
            "JOB_HEARTBEAT_TIMEOUT": "10",
            "MAINTENANCE_INTERVAL": "10",
            "RETRY_BACKOFF": "2,5,10,20,30,60,60,60",
            "PYTHONUNBUFFERED": "1",
        }
        self.web: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None

    def start(self) -> None:
        """A fresh database and Redis, then the web and worker processes."""
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{DATABASE}"')
        self.redis.start()
        self.env["REDIS_URL"] = self.redis.url
        flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
        subprocess.run([*flask, "migrate"], cwd=ROOT, env=self.env, check=True, capture_output=True)
        self.start_web()
        self.start_worker()

    def _spawn(self, command: list[str]) -> subprocess.Popen:
        return subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=self.log, stderr=self.log)

    def start_web(self) -> None:
        """gunicorn on the soak's port, as the Procfile's web line runs it."""
        gunicorn = [sys.executable, "-m", "gunicorn", "-c", "python:app.gunicorn_conf"]
        self.web = self._spawn([*gunicorn, "--bind", f"127.0.0.1:{self.port}", "wsgi:app"])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if request(self.port, "GET", "/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("the web process did not start; see soak.log")

    def start_worker(self) -> None:
        """The Procfile's worker line, with two worker processes."""
        self.worker = self._spawn(
            [sys.executable, "-m", "flask", "--app", "wsgi", "worker", "--concurrency", "2"]
        )

    def kill(self, which: str) -> None:
        """kill -9 of the web or worker process tree, then start it again, as a platform would."""
        process = self.web if which == "web" else self.worker
        kill_process_tree(process.pid)
        process.wait(timeout=30)
        time.sleep(1)
        (self.start_web if which == "web" else self.start_worker)()

    def drop_database_connections(self) -> int:
        """pg_terminate_backend of every connection to the soak's database but this one."""
        with psycopg.connect(self.database_url, autocommit=True) as admin:
            return len(
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ).fetchall()
            )

    def sql(self, query: str, *args: object) -> list[tuple]:
        """Run SQL on the soak's database."""
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            cursor = conn.execute(query, args or None)
            return cursor.fetchall() if cursor.description else []

    def stop(self) -> None:
        """Stop every process; the database stays for a look until the next run."""
        for process in (self.worker, self.web):
            if process and process.poll() is None:
                kill_process_tree(process.pid)
                process.wait(timeout=30)
        self.redis.close()
        self.log.close()


def request(
    port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request to the web process, with the API token."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        sent = {"Accept": "application/json", "Authorization": f"Bearer {TOKEN}", **(headers or {})}
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        return response.status, dict(response.headers), response.read()
    finally:
        conn.close()


def patiently(call: Callable[[], tuple[int, dict, bytes]], deadline: float) -> tuple[int, dict, bytes]:
    """Repeat a request through refused connections, 5xx and 409 (in progress), as a good client does."""
    while True:
        try:
            status, headers, body = call()
            if status < 500 and status != 409:
                return status, headers, body
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("the server did not answer in time")
        time.sleep(1)


def submit(port: int, item: Planned, deadline: float) -> None:
    """Start the import through its form, retrying with the same Idempotency-Key until it is accepted."""
    body = body_of(item)
    if item.form == "tus":
        item.job_id = tus_upload(port, item, body, deadline)
        return
    headers = {"Idempotency-Key": f"soak-{item.number}"}
    if item.form == "json":
        headers["Content-Type"] = "application/json"
    elif item.form == "stream":
        headers |= {"Content-Type": "application/octet-stream", "X-Source": item.source}
        headers["X-Filename"] = f"{item.source}.{item.kind}"
    else:
        boundary = uuid.uuid4().hex
        filename = f"{item.source}.{item.kind}"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="source"\r\n\r\n{item.source}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"'
            "\r\nContent-Type: application/octet-stream\r\n\r\n"
        ).encode()
        body = head + body + f"\r\n--{boundary}--\r\n".encode()
        headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
    status, _, answer = patiently(lambda: request(port, "POST", "/import", body, headers), deadline)
    if status != 202:
        item.gave_up = f"{status} {answer[:200]!r}"
        return
    item.job_id = json.loads(answer)["jobId"]


def tus_upload(port: int, item: Planned, body: bytes, deadline: float) -> str | None:
    """A resumable upload in chunks that resumes from the server's offset after any failure."""
    tus = {"Tus-Resumable": "1.0.0"}
    meta = ",".join(
        f"{k} {base64.b64encode(v.encode()).decode()}"
        for k, v in {"source": item.source, "filename": f"{item.source}.{item.kind}"}.items()
    )
    create = tus | {"Upload-Length": str(len(body)), "Upload-Metadata": meta}
    status, headers, answer = patiently(lambda: request(port, "POST", "/uploads", None, create), deadline)
    if status != 201:
        item.gave_up = f"tus create {status} {answer[:200]!r}"
        return None
    path = "/uploads/" + headers["Location"].rsplit("/", 1)[1]
    offset = 0
    while time.monotonic() < deadline:
        try:
            chunk = body[offset : offset + TUS_CHUNK]
            patch = tus | {"Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"}
            status, headers, answer = request(port, "PATCH", path, chunk, patch)
            if status == 204:
                offset = int(headers["Upload-Offset"])
                if headers.get("X-Import-Id"):
                    return headers["X-Import-Id"]
                continue
        except OSError:
            pass
        time.sleep(1)
        try:  # ask where the upload stands, then go on from there
            status, headers, _ = request(port, "HEAD", path, None, tus)
            if status == 200:
                offset = int(headers["Upload-Offset"])
                if headers.get("X-Import-Id"):
                    return headers["X-Import-Id"]
        except OSError:
            pass
    item.gave_up = f"tus upload stopped at {offset} of {len(body)} bytes"
    return None


class Chaos:
    """Faults at random: kill -9 of a worker or web tree every 20-60 s, one Redis restart, two
    rounds of dropped database connections; each fault's recovery is timed from PostgreSQL."""

    def __init__(self, stack: Stack, until: float, rng: random.Random) -> None:
        self.stack, self.until, self.rng = stack, until, rng
        self.faults: list[dict] = []
        self._watchers: list[threading.Thread] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        span = self.until - start
        once = {
            0.2 * span: "drop database connections",
            0.4 * span: "restart redis",
            0.6 * span: "drop database connections",
        }
        while True:
            wait = self.rng.uniform(20, 60)
            if time.monotonic() + wait > self.until:
                break
            time.sleep(wait)
            elapsed = time.monotonic() - start
            due = [at for at in once if at <= elapsed]
            kind = once.pop(min(due)) if due else self.rng.choice(("kill -9 worker", "kill -9 web"))
            self.fault(kind)

    def fault(self, kind: str) -> None:
        """Cause one fault, then time (in a thread) until every import running at that moment moves.

        It waits up to 15 s for an import to be running, so the fault lands on work in progress.
        """
        deadline = time.monotonic() + 15
        while True:
            running = dict(self.stack.sql("SELECT id, processed_rows FROM imports WHERE status = 'running'"))
            if running or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        at = time.monotonic()
        if kind == "kill -9 worker":
            self.stack.kill("worker")
        elif kind == "kill -9 web":
            self.stack.kill("web")
        elif kind == "restart redis":
            self.stack.redis.restart()
        else:
            self.stack.drop_database_connections()
        record = {"fault": kind, "at": round(at - T0, 1), "running": len(running), "recovered_after": None}
        self.faults.append(record)
        print(f"  {record['at']:7.1f}s  {kind} ({len(running)} imports running)", flush=True)
        watcher = threading.Thread(target=self._watch, args=(record, running, at), daemon=True)
        watcher.start()
        self._watchers.append(watcher)

    def _watch(self, record: dict, running: dict[str, int], at: float) -> None:
        waiting = dict(running)
        while waiting and time.monotonic() - at < 600:
            time.sleep(0.5)
            try:
                rows = self.stack.sql(
                    "SELECT id, status, processed_rows FROM imports WHERE id = ANY(%s)", list(waiting)
                )
            except psycopg.Error:
                continue
            for import_id, status, processed in rows:
                if status in FINAL or processed > waiting[import_id]:
                    del waiting[import_id]
        record["recovered_after"] = None if waiting else round(time.monotonic() - at, 1)

    def join(self) -> None:
        self.thread.join()
        for watcher in self._watchers:
            watcher.join()


def stored_orphans(stack: Stack) -> int:
    """Files in storage that no import still needs (failed imports keep theirs) and no upload holds."""
    root = Path(stack.env["STORAGE_DIR"])
    kept = {
        k
        for (k,) in stack.sql(
            "SELECT storage_key FROM imports WHERE storage_key IS NOT NULL AND status = 'failed'"
        )
    }
    live = {u for (u,) in stack.sql("SELECT id FROM uploads WHERE import_id IS NULL")}
    orphans = [p for p in root.glob("*") if p.is_file() and p.name not in kept]
    orphans += [p for p in (root / "tus").glob("*.part") if p.stem not in live]
    return len(orphans)


T0 = time.monotonic()


def main(argv: list[str] | None = None) -> None:
    """Run the soak and print its figures."""
    global T0
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=15, help="the whole run's bound (default 15)")
    parser.add_argument("--imports", type=int, default=200, help="how many imports (default 200)")
    parser.add_argument("--clients", type=int, default=4, help="clients sending at once (default 4)")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench" / ".soak")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    args.workdir.mkdir(parents=True, exist_ok=True)
    stack = Stack(args.workdir)
    planned = plan(args.imports, rng)
    print(
        f"soak: {len(planned)} imports, {sum(p.rows for p in planned):,} rows, {args.minutes:g} minutes",
        flush=True,
    )
    stack.start()
    T0 = time.monotonic()
    end = T0 + args.minutes * 60
    # Clients send over the first two thirds, faults come until three quarters, the rest drains.
    sending_until, chaos_until = T0 + 0.67 * (end - T0), T0 + 0.75 * (end - T0)
    chaos = Chaos(stack, chaos_until, rng)
    chaos.thread.start()
    todo = list(planned)
    lock = threading.Lock()

    def client() -> None:
        while True:
            with lock:
                if not todo:
                    return
                item = todo.pop()
                share = (len(planned) - len(todo)) / len(planned)
            pause = T0 + share * (sending_until - T0) - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            try:
                submit(stack.port, item, end - 30)
            except TimeoutError as exc:
                item.gave_up = str(exc)

    clients = [threading.Thread(target=client, daemon=True) for _ in range(args.clients)]
    for thread in clients:
        thread.start()
    try:
        for thread in clients:
            thread.join()
        chaos.join()
        while time.monotonic() < end:
            if not stack.sql(
                "SELECT count(*) FROM imports WHERE status NOT IN ('completed', 'failed', 'cancelled')"
            )[0][0]:
                break
            time.sleep(1)
        report(stack, planned, chaos, time.monotonic() - T0)
    finally:
        stack.stop()


def report(stack: Stack, planned: list[Planned], chaos: Chaos, elapsed: float) -> None:
    """Print the figures."""
    statuses = Counter(dict(stack.sql("SELECT status, count(*) FROM imports GROUP BY status")))
    found = dict(stack.sql("SELECT source, count(*) FROM contacts GROUP BY source"))
    per_source = Counter(s for (s,) in stack.sql("SELECT source FROM imports"))
    accepted = [p for p in planned if p.job_id]
    expected = sum(p.rows for p in accepted)
    stored = sum(found.get(p.source, 0) for p in accepted)
    lost = sum(max(0, p.rows - found.get(p.source, 0)) for p in accepted)
    doubled = sum(max(0, found.get(p.source, 0) - p.rows) for p in accepted)
    duplicate_imports = sum(n - 1 for n in per_source.values() if n > 1)
    unfinished = stack.sql("SELECT count(*) FROM uploads WHERE import_id IS NULL")[0][0]
    waits = [f["recovered_after"] for f in chaos.faults if f["fault"] == "kill -9 worker" and f["running"]]
    print(f"\nsoak finished after {elapsed / 60:.1f} minutes")
    gave_up = sum(1 for p in planned if p.gave_up)
    print(f"imports planned {len(planned)}, accepted {len(accepted)}, given up by clients {gave_up}")
    print("imports by final status: " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())))
    print(f"contacts expected {expected:,}, found {stored:,}; lost {lost:,}, doubled {doubled:,}")
    print(f"duplicate imports (one client request, two imports): {duplicate_imports}")
    print(f"orphan files in storage: {stored_orphans(stack)}")
    print(f"uploads left unfinished: {unfinished}")
    print("faults: " + ", ".join(f"{k} x{v}" for k, v in Counter(f["fault"] for f in chaos.faults).items()))
    for fault in chaos.faults:
        after = fault["recovered_after"]
        print(
            f"  {fault['at']:7.1f}s {fault['fault']:<26} running {fault['running']:>2}, all moving again "
            + ("after -" if not fault["running"] else f"after {after}s" if after is not None else "NEVER")
        )
    longest = max((w for w in waits if w is not None), default=None)
    print(f"longest wait of an import after its worker died: {longest if longest is not None else '-'} s")
    for item in planned:
        if item.gave_up:
            print(f"  client gave up on {item.source} ({item.form}, {item.rows} rows): {item.gave_up}")


if __name__ == "__main__":
    main()
