"""How numbers, sizes, durations and times read on the pages, and an import's pace."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from app.imports.display import duration, file_size, moment, number
from app.imports.pace import pace_of
from app.models import Import


def test_numbers_sizes_and_durations_read_as_people_write_them():
    assert [number(None), number(0), number(1234567), number(2.6)] == ["–", "0", "1,234,567", "3"]
    assert [file_size(512), file_size(1_000), file_size(196_608), file_size(1_000_000_000)] == [
        "512 B",
        "1 KB",
        "196.6 KB",
        "1 GB",
    ]
    assert [duration(None), duration(0.42), duration(42), duration(184), duration(7_500)] == [
        "–",
        "0.4 s",
        "42 s",
        "3 min 4 s",
        "2 h 5 min",
    ]


def test_times_are_shown_in_utc_whatever_their_zone():
    evening = datetime(2026, 11, 28, 23, 40, tzinfo=timezone(timedelta(hours=2)))
    assert moment(evening) == "28 Nov 2026, 21:40 UTC"
    assert moment(evening, short=True) == "28 Nov, 21:40"
    assert moment(datetime(2026, 1, 5, 7, 3)) == "5 Jan 2026, 07:03 UTC"  # SQLite: naive is UTC


def test_pace_of_a_running_and_a_finished_import():
    start = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    running = Import(status="running", started_at=start, processed_rows=500, total_rows=2_000)
    pace = pace_of(running, now=start + timedelta(seconds=10))
    assert (pace.elapsed, pace.rows_per_second, pace.seconds_left, pace.percent) == (10, 50, 30, 25)
    done = Import(
        status="completed",
        started_at=start,
        finished_at=start + timedelta(seconds=4),
        processed_rows=2_000,
        total_rows=None,
    )
    pace = pace_of(done, now=start + timedelta(hours=1))
    assert (pace.elapsed, pace.rows_per_second, pace.seconds_left, pace.percent) == (4, 500, None, 100)
    waiting = pace_of(Import(status="queued", processed_rows=0))
    assert (waiting.elapsed, waiting.rows_per_second, waiting.seconds_left) == (None, None, None)
