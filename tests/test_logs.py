"""Structured logs: one JSON object per line, with the request id and the import id."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from app.logs import JsonFormatter
from tests.test_pipeline import finished, post_file


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Every log line of this process, formatted as production formats it."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(handler)
    yield out
    logging.getLogger().removeHandler(handler)


def test_a_requests_log_line_is_json_with_its_request_id(client, log_lines):
    response = client.get("/imports", headers={"X-Request-ID": "req-42"})
    assert response.headers["X-Request-ID"] == "req-42"
    entries = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    access = [e for e in entries if e.get("path") == "/imports"]
    assert access and access[0]["request_id"] == "req-42"
    assert (access[0]["method"], access[0]["status"], access[0]["level"]) == ("GET", 200, "info")


def test_a_request_without_an_id_gets_one(client, log_lines):
    response = client.get("/health")
    generated = response.headers["X-Request-ID"]
    assert len(generated) == 32
    entries = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    assert any(e.get("path") == "/health" and e["request_id"] == generated for e in entries)


def test_a_jobs_lines_carry_its_import_id(client, worker_process):
    worker = worker_process("--concurrency", "1")
    job_id = post_file(client, b"Name,Phone\nAda,1\n")
    assert finished(client, job_id)["status"] == "failed"
    lines = worker.log_path.read_text().splitlines()
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    # The worker's own upkeep (summing closed hours for the ops page) logs between jobs, for no import.
    ours = [e for e in entries if e["logger"].startswith("app.") and e["logger"] != "app.dashboard.hours"]
    assert ours and all(e["import_id"] == job_id for e in ours)
    assert any("No email column" in e["message"] for e in ours)
