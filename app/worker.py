"""The worker processes: RQ's pool and forking worker, taught upkeep and a graceful handback."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import time
from types import FrameType
from typing import Any

from flask import has_app_context
from rq import Worker
from rq.worker import WorkerStatus
from rq.worker_pool import WorkerPool

from app import (
    recovery,  # noqa: F401  (registers its maintenance task)
    search_sample,  # noqa: F401  (registers its maintenance task)
)
from app.extensions import settings
from app.imports import idempotency, pipeline, runs, small  # noqa: F401  (idempotency registers a task)
from app.maintenance import Ticker
from app.webhooks import retention  # noqa: F401  (registers its maintenance task)

log = logging.getLogger(__name__)


def _hand_back(signum: int, frame: FrameType | None) -> None:
    """In a work horse: stop the import after its current batch (it goes back to the queue)."""
    runs.handback_requested.set()


class ImportWorker(Worker):
    """RQ's forking worker; on a warm shutdown its import stops after the current batch.

    RQ's warm shutdown waits for the whole job, which for a large file may be longer than a
    deploy allows. The worker passes the request on to its work horse as SIGTERM; the horse
    commits its batch, puts the import back to queued and asks RQ to requeue the job.

    The small imports' job runs in the worker itself, as RQ's SimpleWorker runs every job: a
    fork costs more than a batch of small imports (app.imports.small), and the batch, committed
    at once or not at all, needs no horse to be killed or abandoned.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The horse last seen LEFT_BEHIND by maintain_heartbeats, and since when.
        self._left_behind: tuple[int, float] | None = None
        if has_app_context():
            # How often maintain_heartbeats runs while a horse works: at least once per heartbeat timeout.
            timeout = int(settings().job_heartbeat_timeout)
            self.job_monitoring_interval = max(1, min(self.job_monitoring_interval, timeout))

    def execute_job(self, job: Any, queue: Any) -> None:
        """Run the small imports' job here, any other in a forked work horse."""
        if job.func_name != small.JOB:
            super().execute_job(job, queue)
            return
        execution = self.prepare_execution(job)
        self.perform_job(job, queue, execution)
        self.set_state(WorkerStatus.IDLE)

    def maintain_heartbeats(self, job: Any, execution: Any) -> None:
        """RQ's heartbeats while the horse works, then a look at PostgreSQL: a horse whose import a
        newer run took over, or whose own heartbeat stopped, is stuck past its heartbeat thread's
        reach (stopped whole, or holding the GIL), and is killed. Its connection goes with it, so
        row locks it held no longer keep the reconciler from the import. So is one still alive twice
        JOB_HEARTBEAT_TIMEOUT after its import went back to waiting or ended (a claim, a handback
        or a finish takes moments): with one worker, the import's next run would otherwise wait
        behind it until RQ's job timeout."""
        super().maintain_heartbeats(job, execution)
        horse = self.horse_pid
        if not horse:
            return
        try:
            why = runs.lost_by(job.id, runs.run_by(horse))
        except Exception as exc:  # the database is away: look again at the next beat
            log.warning("could not check the import's owner: %s", exc, extra={"import_id": job.id})
            return
        if why != runs.LEFT_BEHIND:
            self._left_behind = None
        elif self._left_behind is None or self._left_behind[0] != horse:
            self._left_behind = (horse, time.monotonic())
            return
        elif time.monotonic() - self._left_behind[1] < 2 * settings().job_heartbeat_timeout:
            return
        if why:
            log.error("killing a stuck work horse: %s", why, extra={"import_id": job.id})
            self.kill_horse()

    def handle_warm_shutdown_request(self) -> None:
        """Ask the work horse, if one is busy, to hand its import back."""
        super().handle_warm_shutdown_request()
        if self.horse_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.horse_pid, signal.SIGTERM)

    def fork_work_horse(self, job: Any, queue: Any) -> None:
        """Fork the horse with this process's objects frozen out of the garbage collector's sight.

        A collection in the horse would otherwise write to every object it inherited, and the
        kernel would copy each page of the worker's memory on the way: tens of milliseconds per
        job, and the whole heap duplicated in every horse. Small imports ran three times faster
        (100 to 33 ms from claim to finish).
        """
        gc.freeze()
        try:
            super().fork_work_horse(job, queue)  # the horse never returns from this
        finally:
            gc.unfreeze()  # the worker collects its own garbage as before

    def setup_work_horse_signals(self) -> None:
        """In the horse, SIGTERM (from this worker or from the platform) means: hand back."""
        super().setup_work_horse_signals()
        signal.signal(signal.SIGTERM, _hand_back)
        runs.in_work_horse.set()

    def handle_work_horse_killed(self, job: Any, retpid: int, ret_val: int, rusage: Any) -> None:
        """The horse died mid-import: its heartbeat is over, so the reconciler may resume it now."""
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)
        try:
            runs.abandon(job.id, runs.run_by(retpid))
        except Exception as exc:  # the reconciler finds the import once its heartbeat is stale
            log.warning("could not mark the import abandoned: %s", exc, extra={"import_id": job.id})


class ImportWorkerPool(WorkerPool):
    """RQ's pool of ImportWorkers, whose supervisor loop also runs the maintenance tasks."""

    def __init__(self, *args: Any, ticker: Ticker, **kwargs: Any) -> None:
        super().__init__(*args, worker_class=ImportWorker, **kwargs)
        self.ticker = ticker

    def check_workers(self, respawn: bool = True) -> None:
        """RQ's check that every worker lives, then any maintenance task that is due."""
        super().check_workers(respawn)
        self.ticker.tick()
