"""Periodic upkeep run by the worker: each task is idempotent, so several workers may run it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from flask import Flask

log = logging.getLogger(__name__)

Task = Callable[[], None]

# Each task takes no arguments and runs inside an app context; other modules append theirs.
TASKS: list[Task] = []
# Tasks with a pace of their own: seconds between runs, or the name of the setting that holds them.
# The others run every MAINTENANCE_INTERVAL.
PACES: dict[Task, str | float] = {}


def every(setting: str | float) -> Callable[[Task], Task]:
    """Register a task that runs every ``setting`` seconds (a number, or a field of the settings)."""

    def register(task: Task) -> Task:
        TASKS.append(task)
        PACES[task] = setting
        return task

    return register


def run_task(app: Flask, task: Task) -> None:
    """Run one task in its own app context; a failure is logged and tried again next time."""
    from app.extensions import db

    with app.app_context():
        try:
            task()
        except Exception:  # logged and tried again at the next interval
            log.exception("maintenance task %s failed", task.__name__)
        finally:
            # Ending the session rolls back what the task left open. Where the database dropped the
            # connection (a restart), that fails once and discards the connection: the worker
            # pool's loop, which runs every task, must not end with it.
            try:
                db.session.remove()
            except Exception as exc:
                log.warning("maintenance task %s: its connection was lost: %s", task.__name__, exc)
                db.session.remove()


def run_once(app: Flask) -> None:
    """Run every task once; one failing task does not stop the others."""
    for task in TASKS:
        run_task(app, task)


class Ticker:
    """Runs each task when its interval has passed, when ticked (by the worker pool's loop)."""

    def __init__(self, app: Flask, interval: float) -> None:
        self.app = app
        self.interval = interval
        self.last: dict[Task, float] = {}

    def _interval(self, task: Task) -> float:
        setting = PACES.get(task)
        if setting is None:
            return self.interval
        return setting if isinstance(setting, int | float) else getattr(self.app.config["SETTINGS"], setting)

    def tick(self) -> None:
        """Run the tasks whose interval has passed since their last run."""
        now = time.monotonic()
        for task in list(TASKS):
            if now - self.last.get(task, float("-inf")) >= self._interval(task):
                self.last[task] = now
                run_task(self.app, task)
