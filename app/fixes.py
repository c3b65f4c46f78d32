"""Fixing rejected rows in place: edits checked at once, dismissals, a follow-up import of the fixed rows."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Boolean, ColumnElement, ForeignKey, Integer, String, Text, exists, func, not_, select
from sqlalchemy.orm import Mapped, mapped_column

from app.contacts import RAW_LIMIT, was_cut
from app.extensions import db, settings
from app.fields import FIELDS, Columns, MappingError, find_columns, mapping_headers
from app.imports.service import ActionRefused, create_import
from app.models import JSON_DOCUMENT, Import, RowError
from app.principals import current_principal
from app.rows import ContactReader
from app.validation import Contact

# An import whose rejected rows can be fixed: it has ended and was not undone.
FIXABLE = ("completed", "failed", "cancelled")
# A follow-up import that ended so gives its rows back: they can be edited and sent again.
GIVES_BACK = ("failed", "cancelled", "undone")
ROWS_PER_PAGE = 50
CUT_ROW = (
    f"Row {{row}} was longer than {RAW_LIMIT // 1024} KB, so only the start of its cells was kept: "
    "dismiss it, or fix it in the file and import that again."
)
# The problem filter lists this many kinds at most (a file has a few dozen at the very most).
PROBLEM_KINDS = 200


class RowFix(db.Model):
    """A rejected row as its owner edited it: ready or not, dismissed, or sent to a follow-up import."""

    __tablename__ = "row_fixes"

    import_id: Mapped[str] = mapped_column(ForeignKey("imports.id", ondelete="CASCADE"), primary_key=True)
    row: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The row's cells by header, with the edits made; None for a row only dismissed.
    cells: Mapped[dict | None] = mapped_column(JSON_DOCUMENT)
    # Why the edited row would still be rejected; None when it is ready to import.
    problem: Mapped[str | None] = mapped_column(Text)
    dismissed: Mapped[bool] = mapped_column(Boolean, default=False)
    # The follow-up import the row went into.
    fixed_in: Mapped[str | None] = mapped_column(String(36), index=True)


class FixRefused(ValueError):
    """A fix that names a row or a column the import does not have: a 400 saying which."""


@dataclass(frozen=True)
class FixSummary:
    """What became of an import's rejected rows: "23 fixed in import X, 4 dismissed, 13 left"."""

    fixed_in: list[tuple[str, int]]
    dismissed: int
    left: int


def _raw_rows(import_id: str, rows: Iterable[int]) -> dict[int, dict[str, str] | None]:
    """The rejected rows as they came, by row number (None for a line that could not be read)."""
    found: dict[int, dict[str, str] | None] = {}
    wanted = sorted(set(rows))
    for start in range(0, len(wanted), 500):
        for row, raw in db.session.execute(
            select(RowError.row, RowError.raw)
            .where(
                RowError.import_id == import_id,
                RowError.level == "error",
                RowError.row.in_(wanted[start : start + 500]),
            )
            .order_by(RowError.row, RowError.id)
        ):
            found.setdefault(
                row, None if raw is None else {str(k): "" if v is None else str(v) for k, v in raw.items()}
            )
    return found


def _with_fields(imp: Import, cells: Mapping[str, str] | None) -> dict[str, str] | None:
    """A row's cells, and each column the import fills a field from that the row lacks, empty.

    A JSON item or a vCard has only the keys it was written with: one without an email gets the
    email's column here, so the email can be given.
    """
    if not cells:
        return None
    missing = [h for h in mapping_headers(imp.mapping, attributes=False) if h not in cells]
    return {**cells, **dict.fromkeys(missing, "")}


def check_row(imp: Import, cells: Mapping[str, str]) -> str | None:
    """Why the row would be rejected by the import's mapping, or None when it is ready."""
    headers = list(dict.fromkeys([*mapping_headers(imp.mapping), *cells]))
    try:
        columns = Columns.from_dict(imp.mapping, headers) if imp.mapping else find_columns(headers)
    except MappingError as exc:
        return str(exc)
    if columns.email is None or not columns.has_name:
        return "The row has no name or no email column."
    outcome = ContactReader(columns, headers, settings().default_phone_region).read(
        [cells.get(header, "") for header in headers]
    )
    if isinstance(outcome, Contact):
        return None
    return "; ".join(problem.message for problem in outcome) or "The row is blank."


def _fix_of(imp: Import, row: int) -> RowFix | None:
    return db.session.get(RowFix, (imp.id, row))


def _check_fixable(imp: Import) -> None:
    """Lock the import for this transaction, then refuse if its rows cannot be fixed now.

    The lock makes the fixes of one import take turns: two "Import the fixed rows" at once send
    each ready row once, and two first edits of one row do not both insert it.
    """
    db.session.execute(
        select(Import).where(Import.id == imp.id).with_for_update().execution_options(populate_existing=True)
    ).scalar_one()  # read, so that ``imp`` holds the status as the lock found it
    if imp.status not in FIXABLE:
        raise ActionRefused(f"The rejected rows of an import that is {imp.status} cannot be fixed.")


def _given_back() -> ColumnElement[bool]:
    """SQL: the row's follow-up import failed, was cancelled or was undone."""
    return exists().where(Import.id == RowFix.fixed_in, Import.status.in_(GIVES_BACK))


def _sent() -> ColumnElement[bool]:
    """SQL: the row is in a follow-up import that has not given it back."""
    return RowFix.fixed_in.is_not(None) & not_(_given_back())


def _sent_to(import_id: str, rows: Iterable[int]) -> dict[int, str]:
    """Of these rows of the import, those in a follow-up import that has not given them back: row ->
    that import."""
    found = select(RowFix.row, RowFix.fixed_in).where(
        RowFix.import_id == import_id, RowFix.row.in_(list(rows)), _sent()
    )
    return {row: fixed_in for row, fixed_in in db.session.execute(found)}


def _open_for_change(fix: RowFix) -> None:
    """Refuse a row already sent to a follow-up import; free one its follow-up gave back."""
    if fix.fixed_in and _sent_to(fix.import_id, [fix.row]):
        raise FixRefused(f"Row {fix.row} was already imported again, in import {fix.fixed_in}.")
    fix.fixed_in = None


def edit_row(imp: Import, row: int, values: Mapping[str, Any]) -> RowFix:
    """Apply edits to one rejected row and check it; the caller commits.

    Raises FixRefused for a row that is not a rejected row of the import, a column it lacks, a
    value that is not text, or a row already sent to a follow-up import.
    """
    _check_fixable(imp)
    raw = _raw_rows(imp.id, [row])
    if row not in raw:
        raise FixRefused(f"Row {row} is not a rejected row of this import.")
    fix = _fix_of(imp, row) or RowFix(import_id=imp.id, row=row, dismissed=False)
    _open_for_change(fix)
    if fix.cells is None and raw[row] and was_cut(raw[row]):
        raise FixRefused(CUT_ROW.format(row=row))
    cells = _with_fields(imp, fix.cells or raw[row]) or {}
    if not cells:
        raise FixRefused(
            f"Row {row} could not be read as cells; dismiss it, or fix the file and upload it again."
        )
    for key, value in values.items():
        header = _column_of(imp, cells, row, key)
        if value is not None and not isinstance(value, str):
            raise FixRefused(f"The value of {key!r} in row {row} must be text.")
        cells[header] = value or ""
    fix.cells, fix.problem, fix.dismissed = cells, check_row(imp, cells), False
    db.session.add(fix)
    return fix


def _column_of(imp: Import, cells: Mapping[str, str], row: int, key: str) -> str:
    """The row's column an edit names: one of its headers, or a field the import fills from one column
    ("email" for a file whose column is "E-mail Address")."""
    if key in cells:
        return key
    mapped = (imp.mapping or {}).get(key) if key in FIELDS else None
    headers = [mapped] if isinstance(mapped, str) else list(mapped or [])
    if len(headers) == 1 and headers[0] in cells:
        return headers[0]
    if len(headers) > 1:
        raise FixRefused(
            f"The {key} of row {row} is read from the columns {', '.join(headers)}: give each by its header."
        )
    raise FixRefused(f"Row {row} has no column {key!r}. Its columns are: {', '.join(cells)}.")


def dismiss_row(imp: Import, row: int) -> RowFix:
    """Set a rejected row aside: it is not imported, and no longer counted as left; the caller commits."""
    _check_fixable(imp)
    if row not in _raw_rows(imp.id, [row]):
        raise FixRefused(f"Row {row} is not a rejected row of this import.")
    fix = _fix_of(imp, row) or RowFix(import_id=imp.id, row=row)
    _open_for_change(fix)
    fix.dismissed = True
    db.session.add(fix)
    return fix


def import_fixes(imp: Import) -> Import | None:
    """Start the follow-up import of every ready row (edited, with no problem left, not dismissed, not
    sent); the caller commits and queues it. None when no row is ready.

    A row whose edit still has a problem stays in the list with it: it is not imported to be
    rejected again, and counts as left.
    """
    _check_fixable(imp)
    ready = set(
        db.session.scalars(
            select(RowFix.row).where(
                RowFix.import_id == imp.id,
                RowFix.problem.is_(None),
                RowFix.dismissed.is_(False),
                not_(_sent()),
                RowFix.cells.is_not(None),
            )
        )
    )
    chosen = sorted(ready)
    if not chosen:
        return None
    fixes = {
        f.row: f
        for f in db.session.scalars(select(RowFix).where(RowFix.import_id == imp.id, RowFix.row.in_(chosen)))
    }
    headers = mapping_headers(imp.mapping)
    for row in chosen:
        headers.extend(h for h in fixes[row].cells or {} if h not in headers)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(headers)
    for row in chosen:
        cells = fixes[row].cells or {}
        writer.writerow([cells.get(header, "") for header in headers])
    stem = (imp.filename or "import").rsplit(".", 1)[0]
    follow_up = create_import(
        io.BytesIO(out.getvalue().encode()),
        source=imp.source,
        filename=f"{stem}-fixes.csv",
        mode=imp.mode,
        created_by=current_principal().id or None,  # who fixed the rows, which may not be who imported them
    )
    # The original's mapping decides, as a mapping given with the file would: the rows were checked by it.
    follow_up.mapping, follow_up.mapping_from = imp.mapping, "given" if imp.mapping else None
    follow_up.fixes_of = imp.id
    db.session.flush()
    for row in chosen:
        fixes[row].fixed_in = follow_up.id
    return follow_up


def summary(imp: Import) -> FixSummary:
    """How many of the import's rejected rows were fixed (by follow-up import), dismissed, and are left."""
    fixed = db.session.execute(
        select(RowFix.fixed_in, func.count())
        .where(RowFix.import_id == imp.id, _sent())
        .group_by(RowFix.fixed_in)
        .order_by(RowFix.fixed_in)
    ).all()
    dismissed = db.session.scalar(
        select(func.count()).where(RowFix.import_id == imp.id, RowFix.dismissed.is_(True), not_(_sent()))
    )
    done = sum(count for _, count in fixed) + dismissed
    return FixSummary([(str(i), n) for i, n in fixed], dismissed, max(0, imp.rejected_rows - done))


def problem_kind() -> ColumnElement[str]:
    """SQL for a problem's kind, its message before the specifics: "Not a valid email address"
    of "Not a valid email address: the domain “example” has no dot. Did you mean …?"."""
    message = RowError.message
    if db.session.get_bind().dialect.name == "postgresql":
        before = func.split_part(message, ": ", 1)
    else:
        before = func.substr(message, 1, func.instr(message + ": ", ": ") - 1)
    return func.rtrim(before, ".")


def problems(imp: Import) -> list[tuple[str, int]]:
    """The kinds of problem of the rejected rows, with how many rows each, most first: for the filter.

    Counted in PostgreSQL by kind, so that a message's specifics (each row's own domain) neither
    split a kind nor make so many groups that some are left out.
    """
    kind = problem_kind().label("kind")
    rows = func.count(func.distinct(RowError.row))
    return [
        (str(name), int(count))
        for name, count in db.session.execute(
            select(kind, rows)
            .where(RowError.import_id == imp.id, RowError.level == "error")
            .group_by(kind)
            .order_by(rows.desc(), kind)
            .limit(PROBLEM_KINDS)
        )
    ]


@dataclass
class ShownRow:
    """A rejected row as the page shows it: its cells (edited), its problem now, its state."""

    row: int
    cells: dict[str, str] | None
    problem: str | None
    dismissed: bool
    fixed_in: str | None
    edited: bool
    # Too long to have been kept whole (app.contacts.cut_row): shown, not editable.
    cut: bool = False


def page_of_rows(imp: Import, problem: str | None, after: int) -> tuple[list[ShownRow], int | None]:
    """A page of rejected rows after row ``after`` (keyset), of one problem if asked; the next ``after``."""
    query = select(RowError.row).where(
        RowError.import_id == imp.id, RowError.level == "error", RowError.row > after
    )
    if problem:
        query = query.where(problem_kind() == problem)
    numbers = db.session.scalars(query.distinct().order_by(RowError.row).limit(ROWS_PER_PAGE + 1)).all()
    more = len(numbers) > ROWS_PER_PAGE
    numbers = numbers[:ROWS_PER_PAGE]
    raw = _raw_rows(imp.id, numbers)
    messages: dict[int, list[str]] = {}
    for row, message in db.session.execute(
        select(RowError.row, RowError.message)
        .where(RowError.import_id == imp.id, RowError.level == "error", RowError.row.in_(numbers))
        .order_by(RowError.row, RowError.id)
    ):
        messages.setdefault(row, []).append(message)
    fixes = {
        f.row: f
        for f in db.session.scalars(select(RowFix).where(RowFix.import_id == imp.id, RowFix.row.in_(numbers)))
    }
    sent = _sent_to(imp.id, numbers)
    shown = []
    for row in numbers:
        fix = fixes.get(row)
        edited = fix is not None and fix.cells is not None
        shown.append(
            ShownRow(
                row=row,
                cells=fix.cells if edited else _with_fields(imp, raw.get(row)),
                problem=fix.problem if edited else "; ".join(messages.get(row, [])),
                dismissed=bool(fix and fix.dismissed),
                fixed_in=sent.get(row),
                edited=edited,
                cut=not edited and was_cut(raw.get(row) or {}),
            )
        )
    return shown, numbers[-1] if more else None


def shown_row(imp: Import, fix: RowFix) -> ShownRow:
    """One row as the page shows it after an edit or a dismissal."""
    page, _ = page_of_rows(imp, None, fix.row - 1)
    return page[0]


def list_context(imp: Import, problem: str | None, after: int) -> dict[str, Any]:
    """What the list of rows to fix shows: a page of rows, the filter, the summary."""
    rows, next_after = page_of_rows(imp, problem, after)
    return {
        "imp": imp,
        "rows": rows,
        "next_after": next_after,
        "problem": problem,
        "problems": problems(imp),
        "summary": summary(imp),
        "fixable": imp.status in FIXABLE,
    }
