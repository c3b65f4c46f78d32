"""Gunicorn settings for the web process (``gunicorn -c python:app.gunicorn_conf wsgi:app``)."""

import os
import sys
import tempfile

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# gevent: a connection waiting on a slow client holds a greenlet, not one of a few threads, so a
# hundred slow clients cannot starve /health (see app.web_worker and deploy/ for production).
worker_class = "app.web_worker.Worker"
worker_connections = int(os.environ.get("WEB_CONNECTIONS", "1000"))
# Also the time a client has to send a request's headers: the worker reads them under this timeout.
keepalive = int(os.environ.get("WEB_HEADER_TIMEOUT", "5"))
timeout = 120
# gunicorn believes X-Forwarded-Proto from these addresses only; the app does the rest (app.proxies).
forwarded_allow_ips = os.environ.get("TRUSTED_PROXIES", "")
graceful_timeout = 30
accesslog = None
# HTTP metrics are kept per process; multiprocess mode sums them for /metrics.
if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="dataflow-metrics-")


def child_exit(server, worker):  # noqa: ARG001 - gunicorn's hook signature
    """Drop a dead worker's live gauges from the multiprocess metrics."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_starting(server):  # noqa: ARG001 - gunicorn's hook signature
    """Check the settings once in the master, so a mistake stops gunicorn before any worker boots."""
    from app.config import ConfigError, load_settings

    try:
        load_settings()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(3) from None
