"""Crash safety with real faults: killed workers, a flushed Redis, dropped database connections,
SIGTERM mid-import, Redis unreachable at enqueue. Each ends by counting rows in PostgreSQL."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis as redis_lib
from sqlalchemy import func, select, text

from app.extensions import db
from app.models import Contact, Import, RowError
from tests.conftest import wait_for

# Small intervals, so recovery happens in seconds rather than minutes.
FAST = {
    "BATCH_SIZE": "1000",
    "JOB_HEARTBEAT_TIMEOUT": "2",
    "RECONCILE_INTERVAL": "1",
    "RETRY_BACKOFF": "1,1,2",
}
# Large enough that a fault lands mid-import even on a fast machine.
ROWS = 60_000


@pytest.fixture
def client(make_app):
    """An API client whose app queues jobs with the short retry backoff."""
    app = make_app(**FAST)
    with app.app_context():
        client = app.test_client()
        client.environ_base["HTTP_ACCEPT"] = "application/json"
        yield client


@dataclass
class ContactFile:
    """A generated CSV and what importing it must store."""

    path: Path
    rows: int
    emails: set[str]
    rejected: int


def contact_file(tmp_path: Path, rows: int = ROWS, first: int = 1) -> ContactFile:
    """Rows with an invalid email every 97th and a repeated email every 101st, numbered from ``first``."""
    path = tmp_path / f"contacts-{first}.csv"
    emails: set[str] = set()
    rejected = 0
    with path.open("w") as out:
        out.write("name,email\n")
        for n in range(first, first + rows):
            if n % 97 == 0:
                out.write(f"Broken {n},not-an-email-{n}\n")
                rejected += 1
            elif n % 101 == 0:
                email = f"person{n - 1}@example.com"  # new when row n - 1 was a broken one
                emails.add(email)
                out.write(f"Again {n},{email}\n")
            else:
                email = f"person{n}@example.com"
                emails.add(email)
                out.write(f"Person {n},{email}\n")
    return ContactFile(path, rows, emails, rejected)


def post_file(client, file: ContactFile, source: str = "crm") -> str:
    """Start an import of the file through the API; return its job id."""
    with file.path.open("rb") as body:
        response = client.post("/import", data=body, headers={"X-Source": source, "X-Filename": "c.csv"})
    assert response.status_code == 202, response.get_data(as_text=True)
    return response.get_json()["jobId"]


def status(job_id: str) -> Import:
    """The import as PostgreSQL has it now."""
    db.session.rollback()
    return db.session.get(Import, job_id, populate_existing=True)


def assert_stored_exactly_once(job_id: str, file: ContactFile, source: str = "crm") -> Import:
    """Every valid row is in contacts once, every bad row in import_errors once, counters agree."""
    imp = status(job_id)
    assert imp.status == "completed", imp.error
    emails = db.session.scalars(select(Contact.email).where(Contact.source == source)).all()
    assert len(emails) == len(file.emails)
    assert len(set(emails)) == len(emails)
    assert set(emails) == file.emails
    errors = db.session.scalar(select(func.count()).where(RowError.import_id == job_id))
    assert errors == file.rejected
    assert imp.processed_rows == file.rows
    assert imp.inserted_rows == len(file.emails)
    assert imp.rejected_rows == file.rejected
    assert imp.duplicate_rows == file.rows - len(file.emails) - file.rejected
    return imp


def wait_until_ended(job_id: str, timeout: float = 120) -> None:
    """Wait for the import to complete or fail; on a timeout, fail with what held it up."""
    try:
        wait_for(lambda: status(job_id).status in ("completed", "failed"), timeout=timeout, interval=0.2)
    except AssertionError:
        raise AssertionError(f"the import did not end in {timeout:g}s\n{stuck_report(job_id)}") from None


def stuck_report(job_id: str) -> str:
    """The import's row, every other session of the database and what it waits on, and its RQ job."""
    from app.extensions import queue

    imp = status(job_id)
    lines = [
        f"import: status={imp.status} attempts={imp.attempts} retries={imp.retries} "
        f"retry_at={imp.retry_at} run_by={imp.run_by} heartbeat_at={imp.heartbeat_at} error={imp.error!r}"
    ]
    sessions = db.session.execute(
        text(
            "SELECT pid, application_name, state, now() - xact_start, wait_event_type, wait_event, "
            "left(query, 120) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    )
    lines += [f"session: {tuple(row)}" for row in sessions]
    locks = db.session.execute(
        text(
            "SELECT pid, mode, granted FROM pg_locks "
            "WHERE relation = 'imports'::regclass AND pid <> pg_backend_pid()"
        )
    )
    lines += [f"lock on imports: {tuple(row)}" for row in locks]
    jobs = queue()
    lines.append(f"queued jobs: {jobs.get_job_ids()}; started: {jobs.started_job_registry.get_job_ids()}")
    db.session.rollback()
    return "\n".join(lines)


def progress(job_id: str, at_least: int) -> bool:
    imp = status(job_id)
    return imp.status == "running" and imp.processed_rows >= at_least


def process_tree(root: int) -> list[int]:
    """The process and all its descendants, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def test_kill_9_of_every_worker_process_mid_import_then_a_new_worker_completes_it_once(
    client, worker_process, tmp_path
):
    file = contact_file(tmp_path, rows=200_000)
    job_id = post_file(client, file)
    first = worker_process("--concurrency", "2", **FAST)
    wait_for(lambda: progress(job_id, 5_000), timeout=60, interval=0.05)

    tree = process_tree(first.pid)
    assert len(tree) >= 4  # supervisor, two workers, and the horse running the import
    for pid in tree:
        os.kill(pid, signal.SIGKILL)
    first.wait(timeout=10)
    killed_at = time.monotonic()
    stopped = status(job_id)
    assert stopped.status == "running"
    assert 0 < stopped.processed_rows < file.rows
    checkpoint = stopped.checkpoint

    worker_process("--concurrency", "1", **FAST)
    wait_for(lambda: status(job_id).attempts == 2 and status(job_id).status == "running", timeout=60)
    resumed_after = time.monotonic() - killed_at
    wait_until_ended(job_id)
    imp = assert_stored_exactly_once(job_id, file)
    assert imp.attempts == 2
    print(f"resumed {resumed_after:.1f}s after kill -9, from row {checkpoint:,}")


def test_a_killed_work_horse_is_retried_at_once(client, worker_process, tmp_path):
    file = contact_file(tmp_path)
    job_id = post_file(client, file)
    worker = worker_process("--concurrency", "1", **{**FAST, "JOB_HEARTBEAT_TIMEOUT": "600"})
    wait_for(lambda: progress(job_id, 5_000), timeout=60, interval=0.05)

    # supervisor -> worker -> work horse and scheduler; only the horse leads its own process group
    horses = [pid for pid in process_tree(worker.pid)[1:] if _process_group(pid) == pid]
    assert len(horses) == 1
    os.kill(horses[0], signal.SIGKILL)

    # With a heartbeat timeout of ten minutes, only the worker's report of the dead horse (it
    # clears the heartbeat, so the job's retry or the reconciler may resume at once) finishes it.
    wait_until_ended(job_id)
    imp = assert_stored_exactly_once(job_id, file)
    assert imp.attempts == 2


def _process_group(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[2])


def test_a_flushed_redis_loses_nothing(client, worker_process, tmp_path, redis_url):
    file = contact_file(tmp_path, rows=5_000)
    job_id = post_file(client, file)
    redis_lib.Redis.from_url(redis_url).flushdb()
    assert status(job_id).status == "queued"

    worker_process("--concurrency", "1", **FAST)
    wait_until_ended(job_id, timeout=60)
    imp = assert_stored_exactly_once(job_id, file)
    assert imp.attempts == 1


def test_dropped_database_connections_are_retried_and_counted(client, worker_process, tmp_path, database_url):
    file = contact_file(tmp_path)
    job_id = post_file(client, file)
    worker_url = f"{database_url}?application_name=dataflow-worker-under-test"
    worker_process("--concurrency", "1", DATABASE_URL=worker_url, **FAST)
    wait_for(lambda: progress(job_id, 5_000), timeout=60, interval=0.05)

    # A connection dropped while idle in the pool is replaced unnoticed (pre-ping), so drop them
    # until one is dropped in the middle of a batch and the import is retried.
    with psycopg.connect(database_url, autocommit=True) as admin:

        def drop_worker_connections() -> bool:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'dataflow-worker-under-test' AND datname = current_database()"
            )
            imp = status(job_id)
            return imp.attempts > 1 or imp.status != "running"

        wait_for(drop_worker_connections, timeout=60, interval=0.2)

    wait_until_ended(job_id)
    imp = assert_stored_exactly_once(job_id, file)
    assert imp.attempts > 1
    assert client.get(f"/imports/{job_id}").get_json()["attempts"] == imp.attempts
    page = client.get(f"/imports/{job_id}", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert f"<dt>Attempts</dt><dd>{imp.attempts}</dd>" in page


def test_redis_connections_killed_mid_import(client, worker_process, tmp_path, redis_url):
    file = contact_file(tmp_path)
    job_id = post_file(client, file)
    worker_process("--concurrency", "1", **FAST)
    wait_for(lambda: progress(job_id, 5_000), timeout=60, interval=0.05)

    server = redis_lib.Redis.from_url(redis_url)
    number = server.connection_pool.connection_kwargs.get("db", 0)
    mine = server.client_id()
    ours = [c for c in server.client_list() if int(c["db"]) == number and int(c["id"]) != mine]
    assert ours
    for client_info in ours:  # only this test database's clients: other databases are not ours
        server.client_kill_filter(_id=client_info["id"])

    wait_until_ended(job_id)
    assert_stored_exactly_once(job_id, file)


def test_sigterm_hands_the_import_back_after_a_batch(client, worker_process, tmp_path, redis_url):
    file = contact_file(tmp_path)
    job_id = post_file(client, file)
    first = worker_process("--concurrency", "1", **FAST)
    wait_for(lambda: progress(job_id, 5_000), timeout=60, interval=0.05)

    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 0
    handed_back = status(job_id)
    assert handed_back.status == "queued"
    assert 0 < handed_back.processed_rows < file.rows
    assert handed_back.error is None
    contacts = db.session.scalar(select(func.count()).where(Contact.source == "crm"))
    assert contacts == handed_back.inserted_rows  # nothing half-done: the last batch is committed
    queued = redis_lib.Redis.from_url(redis_url).lrange("rq:queue:imports", 0, -1)
    assert queued == [job_id.encode()]

    worker_process("--concurrency", "1", **FAST)
    wait_until_ended(job_id)
    imp = assert_stored_exactly_once(job_id, file)
    assert imp.attempts == 2


def test_import_is_accepted_when_redis_is_down_and_queued_later(make_app, worker_process, tmp_path):
    file = contact_file(tmp_path, rows=2_000)
    down = make_app(REDIS_URL="redis://127.0.0.1:1/0")
    with down.app_context():
        client = down.test_client()
        client.environ_base["HTTP_ACCEPT"] = "application/json"
        job_id = post_file(client, file)
        assert status(job_id).status == "queued"

        worker_process("--concurrency", "1", **FAST)
        wait_until_ended(job_id, timeout=60)
        assert_stored_exactly_once(job_id, file)


def test_storage_errors_are_retried_then_the_import_completes(make_app, work, monkeypatch, tmp_path):
    from app.storage import StorageUnavailable
    from app.storage.local import LocalStorage

    app = make_app(RETRY_BACKOFF="0,0,0")
    with app.app_context():
        client = app.test_client()
        client.environ_base["HTTP_ACCEPT"] = "application/json"
        file = contact_file(tmp_path, rows=3_000)
        job_id = post_file(client, file)
        real_open = LocalStorage.open
        answers = iter([StorageUnavailable("503 from storage"), StorageUnavailable("503 again")])

        def flaky_open(self, key):
            failure = next(answers, None)
            if failure is not None:
                raise failure
            return real_open(self, key)

        monkeypatch.setattr(LocalStorage, "open", flaky_open)
        for _ in range(3):  # each failure leaves the retry's due time in PostgreSQL, and no job
            work()
            run_once_due(app)
        imp = assert_stored_exactly_once(job_id, file)
        assert imp.attempts == 3


def run_once_due(app) -> None:
    """Queue the retries that are due, as the worker's loop does each second."""
    from app.maintenance import run_task
    from app.recovery import queue_due_retries

    run_task(app, queue_due_retries)


def test_bad_data_fails_without_retries(client, work):
    response = client.post("/import", data=b"\x00\x01\x02 garbage \xff" * 100, headers={"X-Source": "s"})
    job_id = response.get_json()["jobId"]
    work()
    imp = status(job_id)
    assert imp.status == "failed"
    assert imp.attempts == 1
    assert imp.error


def test_reconciler_leaves_a_live_import_alone(app, client):
    from app.recovery import reconcile

    job_id = client.post(
        "/import", json={"source": "s", "data": [{"name": "A", "email": "a@example.com"}]}
    ).get_json()["jobId"]
    db.session.execute(
        text("UPDATE imports SET status = 'running', heartbeat_at = now() WHERE id = :id"), {"id": job_id}
    )
    db.session.commit()
    reconcile()
    assert status(job_id).status == "running"
    db.session.execute(
        text("UPDATE imports SET heartbeat_at = now() - interval '1 hour' WHERE id = :id"), {"id": job_id}
    )
    db.session.commit()
    reconcile()
    assert status(job_id).status == "queued"


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("RECONCILE_INTERVAL", "0"),
        ("JOB_HEARTBEAT_TIMEOUT", "1"),
        ("RETRY_BACKOFF", "5,x"),
        ("RETRY_BACKOFF", "-1"),
    ],
)
def test_recovery_settings_are_checked(setting, value):
    from app.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match=setting):
        load_settings({"SECRET_KEY": "k", setting: value}, instance=Path("/nonexistent-instance"))


# ---- Small JSON imports: claimed, run and completed in one transaction by the worker itself --------

HELD = "held@example.com"  # the email another transaction holds, so that a batch waits mid-way
WORKER_APP = "dataflow-small-worker-under-test"


@dataclass
class SmallImports:
    """Small JSON imports posted through the API, and the emails they must store between them."""

    ids: list[str]
    rows: int
    emails: set[str]


def post_small_imports(client, count: int = 12, first: int = 1, source: str = "crm") -> SmallImports:
    """``count`` JSON imports of 1 to 5 rows, each but the first repeating an email of the one before;
    the middle one also has HELD."""
    ids, rows, emails = [], 0, set()
    for n in range(first, first + count):
        data = [{"name": f"Person {n}-{k}", "email": f"small{n}-{k}@example.com"} for k in range(n % 5 + 1)]
        if n > first:
            data.append({"name": "Again", "email": f"small{n - 1}-0@example.com"})
        if n == first + count // 2:
            data.append({"name": "Held", "email": HELD})
        response = client.post("/import", json={"source": source, "data": data})
        assert response.status_code == 202, response.get_data(as_text=True)
        ids.append(response.get_json()["jobId"])
        rows += len(data)
        emails |= {item["email"] for item in data}
    return SmallImports(ids, rows, emails)


def assert_small_imports_stored_once(small: SmallImports, source: str = "crm") -> list[Import]:
    """Each small import completed with every row counted; the source holds each email once."""
    imports = [status(job_id) for job_id in small.ids]
    assert [imp.status for imp in imports] == ["completed"] * len(imports), [imp.error for imp in imports]
    assert all(imp.body is None for imp in imports)
    emails = db.session.scalars(select(Contact.email).where(Contact.source == source)).all()
    assert len(emails) == len(set(emails))
    assert set(emails) == small.emails
    assert sum(imp.processed_rows for imp in imports) == small.rows
    assert sum(imp.inserted_rows for imp in imports) == len(small.emails)
    assert sum(imp.duplicate_rows for imp in imports) == small.rows - len(small.emails)
    return imports


@contextmanager
def email_held(database_url: str, source: str = "crm", email: str = HELD) -> Iterator[psycopg.Connection]:
    """Another transaction inserts the email and neither commits nor ends: a batch storing it waits."""
    holder = psycopg.connect(database_url)
    try:
        holder.execute(
            "INSERT INTO contacts (id, name, email, source, imported_at) "
            "VALUES (gen_random_uuid(), 'Holder', %s, %s, now())",
            (email, source),
        )
        yield holder
    finally:
        with suppress(psycopg.OperationalError):  # a restarted server took the transaction with it
            holder.rollback()
        holder.close()


def waiting_on_the_held_email(database_url: str) -> int | None:
    """The backend of the worker's batch, once it waits for the held email; None before."""
    with psycopg.connect(database_url, autocommit=True) as probe:
        row = probe.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock' "
            "AND datname = current_database()",
            (WORKER_APP,),
        ).fetchone()
    return row[0] if row else None


def test_kill_9_of_the_worker_mid_batch_of_small_imports_leaves_them_queued_then_each_completes_once(
    client, worker_process, database_url
):
    small = post_small_imports(client)
    with email_held(database_url):
        first = worker_process(
            "--concurrency", "1", DATABASE_URL=f"{database_url}?application_name={WORKER_APP}", **FAST
        )
        wait_for(lambda: waiting_on_the_held_email(database_url), timeout=60, interval=0.05)
        for pid in process_tree(first.pid):
            os.kill(pid, signal.SIGKILL)
        first.wait(timeout=10)
    # The claim and the outcome were one transaction: nothing of the batch is left.
    assert {(status(job_id).status, status(job_id).attempts) for job_id in small.ids} == {("queued", 0)}
    assert db.session.scalar(select(func.count()).select_from(Contact)) == 0

    worker_process("--concurrency", "1", **FAST)
    wait_for(lambda: all(status(job_id).is_final for job_id in small.ids), timeout=60, interval=0.2)
    imports = assert_small_imports_stored_once(small)
    assert {imp.attempts for imp in imports} == {1}


def test_a_database_connection_dropped_mid_batch_hands_each_small_import_to_a_job_of_its_own(
    client, worker_process, database_url
):
    small = post_small_imports(client)
    with email_held(database_url):
        worker = worker_process(
            "--concurrency", "1", DATABASE_URL=f"{database_url}?application_name={WORKER_APP}", **FAST
        )
        backend = wait_for(lambda: waiting_on_the_held_email(database_url), timeout=60, interval=0.05)
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
        # The batch is rolled back; each import then runs as a job of its own, in a work horse.
        wait_for(lambda: "each will run alone" in worker.log_path.read_text(), timeout=30, interval=0.1)
    wait_for(lambda: all(status(job_id).is_final for job_id in small.ids), timeout=60, interval=0.2)
    imports = assert_small_imports_stored_once(small)
    assert {imp.attempts for imp in imports} == {1}  # the batch's claim went with its transaction


def test_a_flushed_redis_loses_no_small_import(client, worker_process, redis_url):
    small = post_small_imports(client)
    redis_lib.Redis.from_url(redis_url).flushdb()  # the job of the small imports, and its wake-up
    worker_process("--concurrency", "1", **FAST)
    wait_for(lambda: all(status(job_id).is_final for job_id in small.ids), timeout=60, interval=0.2)
    assert_small_imports_stored_once(small)


def test_a_small_import_is_accepted_when_redis_is_down_and_run_later(make_app, worker_process):
    down = make_app(REDIS_URL="redis://127.0.0.1:1/0")
    with down.app_context():
        client = down.test_client()
        client.environ_base["HTTP_ACCEPT"] = "application/json"
        small = post_small_imports(client, count=3)
        assert {status(job_id).status for job_id in small.ids} == {"queued"}
        worker_process("--concurrency", "1", **FAST)
        wait_for(lambda: all(status(job_id).is_final for job_id in small.ids), timeout=60, interval=0.2)
        assert_small_imports_stored_once(small)


def test_a_forked_process_opens_its_own_database_connections(app):
    """A horse (or a respawned worker) never talks over its parent's pooled connection's socket."""

    def backend() -> int:
        with db.engine.connect() as connection:
            return connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()

    parent = backend()  # now pooled, as a worker's is after checking its horse's run
    read, write = os.pipe()
    child_pid = os.fork()
    if child_pid == 0:  # the child: report the backend it talks to, whatever happens
        try:
            os.write(write, str(backend()).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(child_pid, 0)
    child = int(os.read(read, 32) or 0)
    assert child and child != parent
    assert backend() == parent  # and the parent's connection is still its own, and works
