"""Where one run of an import spends its seconds, logged once per run when IMPORT_TIMINGS is on."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

# What the committer does with a batch, in the order it does it.
STAGES = ("contacts", "row_errors", "counters", "commit")


@dataclass
class Timings:
    """Seconds per stage of a run: the reading thread's, the committer's, and PostgreSQL's gaps.

    The reading thread reads and validates; it waits when the committer still holds the batch
    before. The committer's stages are its statements, each from sending to the answer:
    ``contacts`` (COPY into contacts, and the merge of repeated emails), ``row_errors`` (COPY into
    import_errors), ``counters`` (the import's counters and checkpoint, and the rollups) and
    ``commit``. Whatever of the run's wall time the committer is not in a statement, PostgreSQL
    has nothing of this import to do: ``database_idle``. CPU seconds are each thread's own.
    """

    started: float = field(default_factory=time.perf_counter)
    # Made by the reading thread, so this is its clock.
    reader_started: float = field(default_factory=time.thread_time)
    batches: int = 0
    waiting: float = 0.0
    committer_cpu: float = 0.0
    stages: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Add the seconds the block takes to the stage ``name``."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] += time.perf_counter() - started

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
            self.batches += 1
            self.committer_cpu += time.thread_time() - started

    def report(self, import_id: str) -> dict[str, float | int]:
        """Log the run's seconds per stage in one line, and give them (called by the reading thread)."""
        reader_cpu = time.thread_time() - self.reader_started
        wall = time.perf_counter() - self.started
        busy = sum(self.stages.values())
        figures: dict[str, float | int] = {
            "batches": self.batches,
            "wall": wall,
            "reading": wall - self.waiting,
            "reading_waited": self.waiting,
            **self.stages,
            "database_idle": max(wall - busy, 0.0),
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
