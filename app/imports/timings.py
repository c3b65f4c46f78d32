"""Where one run of an import spends its seconds, logged once per run when IMPORT_TIMINGS is on."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

# What the committer does with a batch, in the order it does it; "previous" is the wait of a batch
# whose COPY overlapped the one before for that one's commit.
STAGES = ("contacts", "previous", "row_errors", "counters", "commit")


@dataclass
class Timings:
    """Seconds per stage of a run: the reading thread's, the committer's, and PostgreSQL's gaps.

    The reading thread reads and validates; it waits when the committer still holds the batch
    before. The committer's stages are its statements, each from sending to the answer:
    ``contacts`` (COPY into contacts, and the merge of repeated emails), ``row_errors`` (COPY into
    import_errors), ``counters`` (the import's counters and checkpoint, and the rollups) and
    ``commit``. Whatever of the run's wall time no committer is in a statement, PostgreSQL has
    nothing of this import to do: ``database_idle``. With two committers a stage adds up both
    connections' seconds. CPU seconds are each thread's own.
    """

    started: float = field(default_factory=time.perf_counter)
    # Made by the reading thread, so this is its clock.
    reader_started: float = field(default_factory=time.thread_time)
    batches: int = 0
    waiting: float = 0.0
    committer_cpu: float = 0.0
    stages: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    idle: float = 0.0
    _busy: int = 0  # committers in a statement
    _idle_since: float = field(default_factory=time.perf_counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Add the seconds the block takes to the stage ``name``."""
        started = time.perf_counter()
        working = name != "previous"
        if working:
            with self._lock:
                if not self._busy:
                    self.idle += started - self._idle_since
                self._busy += 1
        try:
            yield
        finally:
            ended = time.perf_counter()
            with self._lock:
                self.stages[name] += ended - started
                if working:
                    self._busy -= 1
                    if not self._busy:
                        self._idle_since = ended

    @contextmanager
    def waited(self) -> Iterator[None]:
        """Add the seconds the block takes to the reading thread's wait for the committer."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.waiting += time.perf_counter() - started

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Count a batch the committer stores, and the CPU time of the thread storing it."""
        started = time.thread_time()
        try:
            yield
        finally:
            cpu = time.thread_time() - started
            with self._lock:
                self.batches += 1
                self.committer_cpu += cpu

    def report(self, import_id: str) -> dict[str, float | int]:
        """Log the run's seconds per stage in one line, and give them (called by the reading thread)."""
        reader_cpu = time.thread_time() - self.reader_started
        ended = time.perf_counter()
        wall = ended - self.started
        with self._lock:
            idle = self.idle + (0.0 if self._busy else ended - self._idle_since)
        figures: dict[str, float | int] = {
            "batches": self.batches,
            "wall": wall,
            "reading": wall - self.waiting,
            "reading_waited": self.waiting,
            **self.stages,
            "database_idle": idle,
            "reader_cpu": reader_cpu,
            "committer_cpu": self.committer_cpu,
        }
        figures = {k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}
        log.info(
            "import timings: %s",
            ", ".join(f"{k} {v}" for k, v in figures.items()),
            extra={"import_id": import_id, "seconds": figures},
        )
        return figures
