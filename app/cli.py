"""Flask CLI commands: migrate, worker, and serve (web and worker together)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from app.extensions import QUEUE_NAME, db, embedded_redis_url, redis, settings

ROOT = Path(__file__).resolve().parent.parent


def upgrade_database(app: Flask) -> None:
    """Bring the database schema to the newest migration."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["flask_app"] = app
    with app.app_context():
        command.upgrade(config, "head")


@click.command("migrate")
@with_appcontext
def migrate_command() -> None:
    """Apply the database migrations."""
    upgrade_database(current_app._get_current_object())
    click.echo("database is up to date")


@click.command("worker")
@with_appcontext
@click.option("--concurrency", type=int, default=None, help="Worker processes (WORKER_CONCURRENCY).")
@click.option("--burst", is_flag=True, help="Stop once the queue is empty.")
def worker_command(concurrency: int | None, burst: bool) -> None:
    """Run import workers until SIGTERM, and the periodic upkeep in their supervisor."""
    from app.maintenance import Ticker
    from app.webhooks.delivery import QUEUE_NAME as WEBHOOK_QUEUE
    from app.worker import ImportWorkerPool

    app = current_app._get_current_object()
    ticker = Ticker(app, settings().maintenance_interval)
    _preload_job_code()
    count = concurrency or settings().worker_concurrency
    # Deliveries first: each takes moments, and an import waits for a free worker either way.
    queues = [WEBHOOK_QUEUE, QUEUE_NAME]
    ImportWorkerPool(queues, connection=redis(), num_workers=count, ticker=ticker).start(burst=burst)


def _preload_job_code() -> None:
    """Import the job's modules and set up the database dialect once, before RQ forks a work horse
    per job that then inherits them."""
    # Importing them in each horse was most of the time between POST /import and the job starting.
    import importlib

    for module in (
        "app.jobs",
        "app.imports.pipeline",
        "app.readers.text",
        "app.readers.json",
        "app.readers.spreadsheet",
        "app.webhooks.delivery",
    ):
        importlib.import_module(module)
    # The engine's first connection asks the server for its version and type ids: once here,
    # not in every horse. No connection is handed down: each process opens its own.
    with db.engine.connect():
        pass
    db.engine.dispose()


@click.command("serve")
@with_appcontext
@click.option("--port", type=int, default=None, help="Port for the web process (PORT).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the web process listens on.")
def serve_command(port: int | None, host: str) -> None:
    """Set up and run everything: migrations, Redis (embedded if none is set), web and worker."""
    app = current_app._get_current_object()
    config = settings()
    upgrade_database(app)
    env = dict(os.environ)
    if not config.redis_url:
        env["REDIS_URL"] = embedded_redis_url(config.instance_dir)
    env.setdefault("INSTANCE_DIR", str(config.instance_dir))
    port = port or config.port
    workers = str(min(config.worker_concurrency, 4))
    commands = {
        "web": [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "python:app.gunicorn_conf",
            "--bind",
            f"{host}:{port}",
            "wsgi:app",
        ],
        "worker": [
            sys.executable,
            "-m",
            "flask",
            "--app",
            "wsgi",
            "worker",
            "--concurrency",
            workers,
        ],
    }
    children = {name: subprocess.Popen(cmd, env=env, cwd=ROOT) for name, cmd in commands.items()}
    click.echo(f"DataFlow is running on http://localhost:{port} (Ctrl+C stops it)")

    def stop(signum: int, _frame: object) -> None:
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while all(child.poll() is None for child in children.values()):
        time.sleep(0.5)
    stop(signal.SIGTERM, None)
    for child in children.values():
        child.wait(timeout=60)
    failed = [n for n, c in children.items() if c.returncode not in (0, -signal.SIGTERM)]
    if failed:
        raise SystemExit(f"stopped because {', '.join(failed)} exited")


def init_app(app: Flask) -> None:
    """Register the commands."""
    for command in (migrate_command, worker_command, serve_command):
        app.cli.add_command(command)
