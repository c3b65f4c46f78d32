"""The commands: the embedded default runs an import on SQLite, and ``serve`` runs with nothing set."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import redis as redis_lib
from rq import SimpleWorker
from sqlalchemy import func, select

from app import create_app
from app.cli import upgrade_database
from app.extensions import QUEUE_NAME, db
from app.extensions import redis as app_redis
from app.models import Contact, Import
from tests.conftest import ROOT, free_port, wait_for

CSV = b"Name;Email\nAda Lovelace;ada@example.com\nGrace Hopper;GRACE@x.com\nBad;nope\nAda;ADA@example.com\n"
CONFIGURATION = (
    "DATABASE_URL",
    "REDIS_URL",
    "STORAGE_BACKEND",
    "STORAGE_DIR",
    "SECRET_KEY",
    "PORT",
    "ENABLE_METRICS",
    "WORKER_CONCURRENCY",
    "MAX_UPLOAD_SIZE",
    "BATCH_SIZE",
    "PROMETHEUS_MULTIPROC_DIR",
    "FLASK_APP",
)


def test_an_import_runs_to_completion_on_sqlite(tmp_path: Path, redis_url: str):
    instance = tmp_path / "instance"
    app = create_app(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
            "REDIS_URL": redis_url,
            "INSTANCE_DIR": str(instance),
            "SECRET_KEY": "test",
            "BATCH_SIZE": "2",
        }
    )
    upgrade_database(app)
    try:
        with app.app_context():
            client = app.test_client()
            response = client.post(
                "/import", data=CSV, headers={"X-Source": "crm", "Accept": "application/json"}
            )
            assert response.status_code == 202
            job_id = response.get_json()["jobId"]
            SimpleWorker([QUEUE_NAME], connection=app_redis()).work(burst=True, with_scheduler=False)
            db.session.remove()
            status = client.get(f"/imports/{job_id}", headers={"Accept": "application/json"}).get_json()
            assert status["status"] == "completed", status
            assert (status["insertedRows"], status["duplicateRows"], status["rejectedRows"]) == (2, 1, 1)
            assert status["finishedAt"].endswith("Z")
            errors = client.get(
                f"/imports/{job_id}/errors", headers={"Accept": "application/json"}
            ).get_json()
            assert errors["items"] == [
                {
                    "row": 4,
                    "level": "error",
                    "field": "email",
                    "message": "Not a valid email address: it has no @",
                    "value": "nope",
                }
            ]
            emails = db.session.scalars(select(Contact.email).order_by(Contact.email)).all()
            assert emails == ["ada@example.com", "grace@x.com"]
            assert db.session.get(Import, job_id).storage_key is None
            assert not any((instance / "uploads").iterdir())
            assert db.session.scalar(select(func.count()).select_from(Import)) == 1
            db.engine.dispose()
    finally:
        redis_lib.Redis.from_url(redis_url).flushdb()


def _get_json(url: str) -> dict:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


def _answers(url: str) -> bool:
    try:
        return _get_json(url)["status"] == "healthy"
    except (OSError, urllib.error.URLError, ValueError, KeyError):
        return False


def test_serve_starts_with_nothing_configured_imports_and_stops_on_sigterm(tmp_path: Path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in CONFIGURATION}
    env["INSTANCE_DIR"] = str(tmp_path / "instance")
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        serve = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "wsgi", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its web, worker and redis-server children are its own
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: serve.poll() is not None or _answers(f"{base}/health"), timeout=90, interval=0.5)
        assert serve.poll() is None, log_path.read_text()

        request = urllib.request.Request(
            f"{base}/import",
            data=CSV,
            headers={"X-Source": "fair", "Content-Type": "text/csv", "Accept": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 202
            job_id = json.load(response)["jobId"]

        def completed() -> dict | None:
            status = _get_json(f"{base}/imports/{job_id}")
            return status if status["status"] in ("completed", "failed") else None

        status = wait_for(completed, timeout=60, interval=0.3)
        assert status["status"] == "completed", status
        assert (status["insertedRows"], status["duplicateRows"], status["rejectedRows"]) == (2, 1, 1)
        assert (tmp_path / "instance" / "dataflow.db").exists()
    finally:
        if serve.poll() is None:
            serve.send_signal(signal.SIGTERM)
        try:
            code = serve.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            raise
    assert code == 0, log_path.read_text()[-3000:]
    # every process it started has ended with it, the embedded redis-server too
    leftovers = subprocess.run(["pgrep", "-s", str(serve.pid)], capture_output=True, text=True).stdout.split()
    assert leftovers == [], log_path.read_text()[-3000:]
