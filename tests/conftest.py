"""Fixtures: the real PostgreSQL and Redis, an app bound to them, and a way to run the queue."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest
import redis as redis_lib
from flask import Flask
from flask.testing import FlaskClient
from rq import SimpleWorker
from sqlalchemy import delete, func, select, text
from werkzeug.serving import make_server

from app import create_app
from app.auth import hash_password
from app.cli import upgrade_database
from app.extensions import QUEUE_NAME, db
from app.models import User

if TYPE_CHECKING:
    from tests.servers import PostgresCluster, RedisServer
    from tests.supabase_fake import FakeSupabase

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
ADMIN_URL = os.environ.get("TEST_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
DATABASE_NAME = os.environ.get("TEST_DATABASE_NAME", "dataflow_test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
USER_PASSWORD = "correct horse battery"


def _database_url() -> str:
    base = ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{DATABASE_NAME}"


def shared_file(name: str) -> Path:
    """A sample file from the project's shared data, or skip where this checkout has none."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{name} is only in the shared sample data, which this machine does not have")
    return path


@pytest.fixture(scope="session")
def database_url() -> str:
    """A fresh database for the test run, migrated to the newest schema."""
    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.exit(f"PostgreSQL is needed for the tests ({ADMIN_URL}): {exc}", returncode=3)
    with admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE_NAME}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
    return _database_url()


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis database; the run stops if Redis is not there."""
    try:
        redis_lib.Redis.from_url(REDIS_URL, socket_connect_timeout=5).ping()
    except redis_lib.exceptions.ConnectionError as exc:
        pytest.exit(f"Redis is needed for the tests ({REDIS_URL}): {exc}", returncode=3)
    return REDIS_URL


@pytest.fixture(scope="session")
def _migrated(database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    app = create_app(_env(database_url, redis_url, tmp_path_factory.mktemp("migrate")))
    upgrade_database(app)
    with app.app_context():
        db.engine.dispose()


def _env(database_url: str, redis_url: str, instance: Path, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "INSTANCE_DIR": str(instance),
        "STORAGE_DIR": str(instance / "uploads"),
        "SECRET_KEY": "test-secret",
        "BATCH_SIZE": "500",
        **extra,
    }


@pytest.fixture
def env(database_url: str, redis_url: str, tmp_path: Path, _migrated: None) -> dict[str, str]:
    """The environment a test app (or a worker process it starts) runs with."""
    return _env(database_url, redis_url, tmp_path / "instance")


@pytest.fixture
def make_app(env: dict[str, str]) -> Iterator[Callable[..., Flask]]:
    """Build apps on the test database with extra settings; tables are emptied after the test."""
    apps: list[Flask] = []

    def make(**extra: str) -> Flask:
        app = create_app({**env, **extra})
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield make
    if apps:
        with apps[0].app_context():
            tables = (
                "contacts, import_errors, imports, uploads, webhook_endpoints, webhook_events, "
                "reason_hours, import_hours, source_mappings, search_samples"
            )
            db.session.execute(text(f"TRUNCATE {tables} CASCADE"))
            db.session.commit()
        redis_lib.Redis.from_url(env["REDIS_URL"]).flushdb()
    for app in apps:
        with app.app_context():
            db.engine.dispose()
        # Closed here, not by the collector, which may reach a socket before its connection.
        client = app.extensions["dataflow"].get("redis")
        if client is not None:
            client.close()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Iterator[Flask]:
    """An app on the real PostgreSQL and Redis, with an app context pushed."""
    app = make_app(WTF_CSRF_ENABLED="false")
    with app.app_context():
        yield app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client that asks for JSON, as API clients do."""
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT"] = "application/json"
    return client


@pytest.fixture
def users(make_app: Callable[..., Flask]) -> Iterator[Callable[..., int]]:
    """Create users who may sign in (which turns authentication on); removed after the test."""
    app = make_app()

    def add(email: str = "ops@example.com", password: str = USER_PASSWORD) -> int:
        with app.app_context():
            user = User(email=email, password_hash=hash_password(password))
            db.session.add(user)
            db.session.commit()
            return user.id

    yield add
    with app.app_context():
        db.session.execute(delete(User))
        db.session.commit()


@pytest.fixture
def work(app: Flask) -> Callable[[], None]:
    """Run every queued job in this process, as a worker would, until the queue is empty."""
    from app.extensions import redis

    def run() -> None:
        SimpleWorker([QUEUE_NAME], connection=redis()).work(burst=True, with_scheduler=False)
        db.session.remove()

    return run


@pytest.fixture
def worker_process(env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start real ``flask worker`` processes on the test database and Redis.

    Each one logs to ``worker-N.log`` in the test's folder (a pipe nobody reads would fill up
    and stall the worker); the path is the process's ``log_path``.
    """
    started: list[subprocess.Popen] = []

    def start(*args: str, **extra: str) -> subprocess.Popen:
        log_path = tmp_path / f"worker-{len(started) + 1}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "flask", "--app", "wsgi", "worker", *args],
                cwd=ROOT,
                # faulthandler: a process sent SIGABRT prints its threads' stacks into the log.
                env={**os.environ, **env, "PYTHONFAULTHANDLER": "1", **extra},
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        process.log_path = log_path
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.terminate()
    for process in started:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            # Its whole tree: a worker left behind waits for its horse and keeps its row locks.
            from tests.servers import kill_process_tree

            kill_process_tree(process.pid)
            process.wait()


@pytest.fixture
def fake_supabase() -> Iterator[FakeSupabase]:
    """A Supabase Storage server (REST and tus subset, strict, hosted 6 MiB chunks) on a free port."""
    from tests.supabase_fake import FakeSupabase

    with FakeSupabase(six_mib_chunks=True) as fake:
        yield fake


@pytest.fixture(scope="session")
def throwaway_redis() -> Iterator[RedisServer]:
    """A redis-server of the run's own (own port, no persistence) that tests may kill and restart.

    Shared by the tests that use it; each leaves it running, possibly emptied.
    """
    from tests.servers import RedisServer

    server = RedisServer()
    try:
        server.start()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    yield server
    server.close()


@pytest.fixture(scope="session")
def throwaway_postgres() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster of the run's own (initdb, own port and data directory) that tests may
    stop and restart; its database ``dataflow`` is migrated. Each test leaves it running."""
    from tests.servers import PostgresCluster

    try:
        cluster = PostgresCluster()
        cluster.start()
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"no throwaway PostgreSQL cluster: {exc}")
    url = cluster.create_database("dataflow")
    instance = Path(cluster.dir) / "migrate"
    app = create_app(_env(url, REDIS_URL, instance))
    upgrade_database(app)
    with app.app_context():
        db.engine.dispose()
    cluster.database_url = url
    yield cluster
    cluster.close()


class ServerURL(str):
    """A server's base URL that also knows its process."""

    process: subprocess.Popen


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def web_server(env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Start the production web process (gunicorn, as the Procfile does); return its base URL."""
    started: list[tuple[subprocess.Popen, Path]] = []

    def start(**extra: str) -> str:
        port = free_port()
        server_env = {**os.environ, **env, **extra}
        server_env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # gunicorn's settings make one per run
        log_path = tmp_path / f"web-{len(started)}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "python:app.gunicorn_conf"]
                + ["--bind", f"127.0.0.1:{port}", "wsgi:app"],
                cwd=ROOT,
                env=server_env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started.append((process, log_path))
        base = ServerURL(f"http://127.0.0.1:{port}")
        base.process = process

        def answers() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"gunicorn stopped: {log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5) as response:
                    return response.status == 200
            except OSError:
                return False

        wait_for(answers, timeout=60, interval=0.3)
        return base

    yield start
    for process, log_path in started:
        if process.poll() == -signal.SIGKILL:  # killed on purpose by the test
            continue
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        assert code == 0, f"gunicorn did not stop cleanly: {log_path.read_text()[-3000:]}"


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def chromium() -> Iterator[object]:
    """Debian's Chromium, driven by Playwright (its own browser download does not work here)."""
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed (make test installs it with apt-get)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@contextmanager
def served_in_thread(app: Flask) -> Iterator[str]:
    """The app over real HTTP from a threaded server on a free loopback port; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def stored_files(app: Flask) -> list[Path]:
    """Every file under the app's STORAGE_DIR (tus partial files included)."""
    root = app.config["SETTINGS"].storage_dir
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def count(app: Flask, model: type) -> int:
    """How many rows a table holds, read through the app's database."""
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


def wait_for(check: Callable[[], object], timeout: float = 60, interval: float = 0.1) -> object:
    """Poll until ``check`` returns something truthy, or fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"gave up waiting after {timeout}s")
