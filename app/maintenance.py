"""Periodic upkeep run by the worker: each task is idempotent, so several workers may run it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from flask import Flask

log = logging.getLogger(__name__)

# Each task takes no arguments and runs inside an app context; other modules append theirs.
TASKS: list[Callable[[], None]] = []


def run_once(app: Flask) -> None:
    """Run every task once; one failing task does not stop the others."""
    from app.extensions import db

    for task in TASKS:
        with app.app_context():
            try:
                task()
            except Exception:  # logged and tried again at the next interval
                log.exception("maintenance task %s failed", task.__name__)
                db.session.rollback()
            finally:
                db.session.remove()


class Ticker:
    """Runs the tasks at most every ``interval`` seconds when ticked (by the worker pool's loop)."""

    def __init__(self, app: Flask, interval: float) -> None:
        self.app = app
        self.interval = interval
        self.last = 0.0

    def tick(self) -> None:
        """Run the tasks if the interval has passed since the last run."""
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            run_once(self.app)
