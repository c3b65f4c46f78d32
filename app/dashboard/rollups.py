"""Rollups kept with each committed batch: row outcomes per minute and rejection reasons per hour.

An import's counters say how many rows it inserted, not when: a two-hour import would land in
one minute of a throughput chart. So each batch adds its outcomes to the minute it committed
in, inside the batch's own transaction; a batch rolled back (a crash, a cancel, a newer run)
takes its rollup with it, and the charts never count a row twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, String, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from app.extensions import db
from app.models import Import, utcnow

# Every outcome a row can have; a branch that does not count one yet simply leaves it at 0.
OUTCOMES = ("inserted", "updated", "unchanged", "duplicate", "rejected")
MESSAGE_MAX = 300

# The ops page asks when imports started (the queue's past) and ended (imports per hour).
Index("imports_started_at_idx", Import.started_at)
Index("imports_finished_at_idx", Import.finished_at)


def _import_id() -> Mapped[str]:
    return mapped_column(String(36), ForeignKey("imports.id", ondelete="CASCADE"), primary_key=True)


class ImportMinute(db.Model):
    """Rows of one import by outcome, committed within one minute."""

    __tablename__ = "import_minutes"

    minute: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    import_id: Mapped[str] = _import_id()
    inserted: Mapped[int] = mapped_column(BigInteger, default=0)
    updated: Mapped[int] = mapped_column(BigInteger, default=0)
    unchanged: Mapped[int] = mapped_column(BigInteger, default=0)
    duplicate: Mapped[int] = mapped_column(BigInteger, default=0)
    rejected: Mapped[int] = mapped_column(BigInteger, default=0)


class ImportReason(db.Model):
    """Rows of one import rejected for one reason (field and message), and when it last happened."""

    __tablename__ = "import_reasons"
    __table_args__ = (Index("import_reasons_reason_idx", "field", "message", "last_at"),)

    import_id: Mapped[str] = _import_id()
    # "" when the reason belongs to no field (a row the reader could not parse).
    field: Mapped[str] = mapped_column(String(64), primary_key=True)
    message: Mapped[str] = mapped_column(String(MESSAGE_MAX), primary_key=True)
    rows: Mapped[int] = mapped_column(BigInteger, default=0)
    last_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ReasonHour(db.Model):
    """Rows rejected for one reason within one hour, and the imports that first had it then."""

    __tablename__ = "reason_hours"

    hour: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    field: Mapped[str] = mapped_column(String(64), primary_key=True)
    message: Mapped[str] = mapped_column(String(MESSAGE_MAX), primary_key=True)
    rows: Mapped[int] = mapped_column(BigInteger, default=0)
    imports: Mapped[int] = mapped_column(BigInteger, default=0)


def _upsert(session: Session, model: type[db.Model], rows: list[dict[str, Any]], added: Iterable[str]) -> Any:
    """Insert the rows, or add their counts to the rows already there; one statement, returning each row."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(model).values(rows)
    table = model.__table__
    kept = {c.name: statement.excluded[c.name] for c in table.c if c.name.endswith("_at")}
    statement = statement.on_conflict_do_update(
        index_elements=[column.name for column in table.primary_key],
        set_={**{name: table.c[name] + statement.excluded[name] for name in added}, **kept},
    )
    return session.execute(statement.returning(*table.primary_key, *[table.c[name] for name in added]))


def reasons_of(rejected: Iterable[tuple[int, Any, Any]]) -> Counter[tuple[str, str]]:
    """Rows per (field, message) among a batch's rejected rows; a row with two problems counts for both."""
    counts: Counter[tuple[str, str]] = Counter()
    last: tuple[int, str, str] | None = None
    for row, problem, _raw in rejected:
        if getattr(problem, "level", "error") != "error":  # warnings keep the row: not a rejection
            continue
        key = (row, (problem.field or "")[:64], problem.message[:MESSAGE_MAX])
        if key != last:  # one row stating the same problem twice counts once
            counts[key[1:]] += 1
        last = key
    return counts


def record_batch(
    session: Session,
    import_id: str,
    outcomes: Mapping[str, int],
    rejected: Iterable[tuple[int, Any, Any]] = (),
    now: datetime | None = None,
) -> None:
    """Add a batch's outcome counts and rejection reasons to the rollups, in the caller's transaction."""
    now = now or utcnow()
    counts = {outcome: int(outcomes.get(outcome, 0)) for outcome in OUTCOMES}
    unknown = set(outcomes) - set(OUTCOMES)
    if unknown:
        raise ValueError(f"unknown outcomes: {', '.join(sorted(unknown))}")
    minute = now.replace(second=0, microsecond=0)
    # In key order: two imports' batches then lock the same hourly rows in the same order and
    # wait for each other rather than deadlock.
    reasons = dict(sorted(reasons_of(rejected).items()))
    if session.get_bind().dialect.name == "postgresql":
        if reasons or any(counts.values()):
            _record_in_one_statement(session, import_id, counts, reasons, now)
        return
    if any(counts.values()):
        _upsert(session, ImportMinute, [{"minute": minute, "import_id": import_id, **counts}], OUTCOMES)
    if reasons:
        per_import = [
            {"import_id": import_id, "field": field, "message": message, "rows": n, "last_at": now}
            for (field, message), n in reasons.items()
        ]
        # A reason is new to the import when its total is just this batch's rows.
        first = {
            (field, message)
            for _id, field, message, total in _upsert(session, ImportReason, per_import, ("rows",))
            if total == reasons[(field, message)]
        }
        hour = now.replace(minute=0, second=0, microsecond=0)
        hourly = [
            {"hour": hour, "field": f, "message": m, "rows": n, "imports": int((f, m) in first)}
            for (f, m), n in reasons.items()
        ]
        _upsert(session, ReasonHour, hourly, ("rows", "imports"))


# A batch's three upserts in one round trip on PostgreSQL, which runs every data-modifying part
# of a WITH once, in the same transaction (a batch without rejections needs only the first).
_MINUTE = """
  INSERT INTO import_minutes (minute, import_id, inserted, updated, duplicate, rejected)
  VALUES (:minute, :import_id, :inserted, :updated, :duplicate, :rejected)
  ON CONFLICT (minute, import_id) DO UPDATE SET
    inserted = import_minutes.inserted + excluded.inserted,
    updated = import_minutes.updated + excluded.updated,
    duplicate = import_minutes.duplicate + excluded.duplicate,
    rejected = import_minutes.rejected + excluded.rejected
"""
_ONE_STATEMENT = """
WITH batch(field, message, n) AS (VALUES {values}),
minute AS ({minute}),
per_import AS (
  INSERT INTO import_reasons (import_id, field, message, rows, last_at)
  SELECT :import_id, field, message, n, :now FROM batch ORDER BY field, message
  ON CONFLICT (import_id, field, message)
  DO UPDATE SET rows = import_reasons.rows + excluded.rows, last_at = excluded.last_at
  RETURNING field, message, rows
)
INSERT INTO reason_hours (hour, field, message, rows, imports)
SELECT :hour, b.field, b.message, b.n, CASE WHEN p.rows = b.n THEN 1 ELSE 0 END
FROM batch AS b JOIN per_import AS p USING (field, message)
ORDER BY b.field, b.message
ON CONFLICT (hour, field, message) DO UPDATE SET
  rows = reason_hours.rows + excluded.rows, imports = reason_hours.imports + excluded.imports
"""


def _record_in_one_statement(
    session: Session,
    import_id: str,
    counts: dict[str, int],
    reasons: dict[tuple[str, str], int],
    now: datetime,
) -> None:
    values = ", ".join(
        f"(CAST(:f{i} AS varchar), CAST(:m{i} AS varchar), CAST(:n{i} AS bigint))"
        for i in range(len(reasons))
    )
    params: dict[str, Any] = {
        "import_id": import_id,
        "now": now,
        "minute": now.replace(second=0, microsecond=0),
        "hour": now.replace(minute=0, second=0, microsecond=0),
        **counts,
    }
    for i, ((field, message), n) in enumerate(reasons.items()):
        params |= {f"f{i}": field, f"m{i}": message, f"n{i}": n}
    statement = _ONE_STATEMENT.format(values=values, minute=_MINUTE) if reasons else _MINUTE
    session.execute(text(statement), params)
