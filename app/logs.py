"""Structured logs: one JSON object per line, carrying the request id and the import id."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from flask import Flask, Response, request

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
import_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("import_id", default=None)

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON with its context and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, var in (("request_id", request_id), ("import_id", import_id)):
            value = var.get()
            if value:
                entry[name] = value
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str = "INFO") -> None:
    """Send every log line to stderr as JSON."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("rq.worker", "rq.scheduler", "rq.worker_pool"):
        logging.getLogger(noisy).handlers[:] = []
        logging.getLogger(noisy).propagate = True


@contextmanager
def import_context(value: str) -> Iterator[None]:
    """Tag every log line inside with the import's id."""
    token = import_id.set(value)
    try:
        yield
    finally:
        import_id.reset(token)


def init_app(app: Flask) -> None:
    """Log one line per request (the web process's access log), carrying its request id."""
    log = logging.getLogger("app.requests")

    @app.after_request
    def _log_request(response: Response) -> Response:
        log.info(
            "%s %s %s",
            request.method,
            request.path,
            response.status_code,
            extra={"method": request.method, "path": request.path, "status": response.status_code},
        )
        return response
