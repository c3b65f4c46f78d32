"""How an import reads its file (mapping, header row, sheet), checked before anything is stored,
and the imports held in ``review`` until a person starts them."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update

from app.extensions import db, settings, storage
from app.fields import MappingError
from app.imports.cleanup import discard_file
from app.maintenance import TASKS
from app.mapping import columns_for, matches, parse_mapping, save_mapping, saved_mapping
from app.models import Import, utcnow
from app.preview import preview
from app.readers import UnusableFile, read_rows
from app.storage import StorageUnavailable, StoredFileMissing
from app.webhooks import record_event

log = logging.getLogger(__name__)

SHEET_MAX = 255
HEADER_ROW_MAX = 1_000_000
# Rows of the file offered as the header on the review page.
SHOWN_ROWS = 20
EXPIRED = "Nobody started this import within UPLOAD_EXPIRY of its upload, so its file was deleted."


class OptionRefused(ValueError):
    """An option that does not fit the request or the file: the message says what to change (a 400)."""


@dataclass(frozen=True)
class ImportOptions:
    """What a request says about reading its file, beyond the file itself."""

    mapping: dict[str, Any] | None = None
    header_row: int | None = None
    sheet: str | None = None
    review: bool = False

    @property
    def reads_file(self) -> bool:
        """Whether an option must be checked against the file before the import is accepted."""
        return self.mapping is not None or self.header_row is not None or self.sheet is not None


def _flag(value: object) -> bool:
    if isinstance(value, bool):
        return value
    return str(value or "").strip().lower() in ("1", "true", "yes", "on")


def parse_options(
    mapping: object = None, header_row: object = None, sheet: object = None, review: object = None
) -> ImportOptions:
    """Options as a request sent them (JSON values, or the text of form fields and headers)."""
    try:
        parsed = parse_mapping(mapping)
    except MappingError as exc:
        raise OptionRefused(str(exc)) from None
    row = None
    if header_row is not None and header_row != "":
        if isinstance(header_row, bool) or not isinstance(header_row, int | str):
            raise OptionRefused("headerRow must be a row number (0 for a file without a header row).")
        try:
            row = int(header_row)
        except ValueError:
            raise OptionRefused(
                "headerRow must be a row number (0 for a file without a header row)."
            ) from None
        if not 0 <= row <= HEADER_ROW_MAX:
            raise OptionRefused(f"headerRow must be between 0 and {HEADER_ROW_MAX:,}.")
    if sheet is not None and not isinstance(sheet, str):
        raise OptionRefused("sheet must be the name of one of the workbook's sheets.")
    if sheet is not None and len(sheet) > SHEET_MAX:
        raise OptionRefused(f"sheet must be at most {SHEET_MAX} characters long.")
    return ImportOptions(parsed, row, sheet or None, _flag(review))


def check_against_file(imp: Import, options: ImportOptions) -> None:
    """Refuse options that do not fit the stored file: a sheet it lacks, a header row, a mapping's column.

    Reads only the head of the file. Raises OptionRefused with the reason.
    """
    if not options.reads_file:
        return
    try:
        with storage().open(imp.storage_key) as stream:
            table = read_rows(
                stream, imp.size_bytes, header_row=options.header_row, sheet=options.sheet, head_only=True
            )
            headers = table.columns
            if not headers and options.mapping is not None:
                headers = _json_keys(table)
    except UnusableFile as exc:
        raise OptionRefused(str(exc)) from None
    if options.mapping is not None:
        try:
            columns_for(options.mapping, headers)
        except MappingError as exc:
            raise OptionRefused(str(exc)) from None


def _json_keys(table: Any) -> list[str]:
    """The keys of a JSON file's first items, which a mapping of a JSON file names."""
    keys: dict[str, None] = {}
    for count, (_, row) in enumerate(table.records()):
        if isinstance(row, dict):
            keys.update(dict.fromkeys(str(k) for k in row))
        if count >= 100:
            break
    return list(keys)


def apply_options(imp: Import, options: ImportOptions) -> None:
    """Record checked options on the import; a given mapping is the one it will use."""
    if options.mapping is not None:
        imp.mapping = options.mapping
        imp.mapping_from = "given"
    if options.header_row is not None:
        imp.header_row = options.header_row
    if options.sheet is not None:
        imp.sheet = options.sheet


def start_reviewed(
    imp: Import, options: ImportOptions, remember: bool = False, mode: str | None = None
) -> None:
    """Queue an import held in review, with the options chosen there; the caller commits, then enqueues.

    With ``remember``, the mapping is saved for the import's source.
    """
    from app.imports.body import mode_problem

    if imp.status != "review":
        raise OptionRefused(f"Only an import in review can be started; this one is {imp.status}.")
    problem = mode_problem(mode)
    if problem:
        raise OptionRefused(problem)
    check_against_file(imp, options)
    apply_options(imp, options)
    values: dict[str, Any] = {"status": "queued"}
    if mode and mode.strip():
        values["mode"] = mode.strip()
    if options.mapping is not None:
        values.update(mapping=options.mapping, mapping_from="given")
    for column in ("header_row", "sheet"):
        if getattr(options, column) is not None:
            values[column] = getattr(options, column)
    result = db.session.execute(
        update(Import).where(Import.id == imp.id, Import.status == "review").values(values)
    )
    if result.rowcount == 0:
        raise OptionRefused("This import changed in the meantime. Reload the page and try again.")
    if remember and options.mapping is not None:
        save_mapping(db.session, imp.source, options.mapping)


def reopen_for_review(imp: Import) -> None:
    """Put a failed import whose file could not be mapped back in review, to map it without a new upload.

    Only an import that stored no row and still has its file; the caller commits.
    """
    result = db.session.execute(
        update(Import)
        .where(
            Import.id == imp.id,
            Import.status == "failed",
            Import.processed_rows == 0,
            Import.storage_key.is_not(None),
        )
        # heartbeat_at marks when it went back to review, for its expiry (no run reads it outside running).
        .values(status="review", error=None, finished_at=None, heartbeat_at=utcnow())
    )
    if result.rowcount == 0:
        raise OptionRefused(
            "Only a failed import that stored no row and still has its file can be mapped again; "
            f"this one is {imp.status}."
        )
    record_event(db.session, imp.id, "import.review_needed")


def preview_import(imp: Import, options: ImportOptions) -> dict[str, object]:
    """The preview of an import's stored file with the given options (the review page's content)."""
    mapping = options.mapping
    if mapping is None and imp.mapping_from == "given":
        mapping = imp.mapping
    header_row = options.header_row if options.header_row is not None else imp.header_row
    with storage().open(imp.storage_key) as stream:
        return preview(
            db.session,
            stream,
            size=imp.size_bytes,
            source=imp.source,
            mapping=mapping,
            header_row=header_row,
            sheet=options.sheet or imp.sheet,
        )


def head_rows(imp: Import, sheet: str | None = None) -> list[tuple[int, list[str]]]:
    """The first rows of an import's stored file as text, blank ones left out: the header's choices."""
    from app.readers import cell_text

    with storage().open(imp.storage_key) as stream:
        table = read_rows(stream, imp.size_bytes, sheet=sheet or imp.sheet, head_only=True)
        if not table.columns:
            return []
        rows = [(n, [cell_text(c).strip() for c in cells]) for n, cells in table.sample[:SHOWN_ROWS]]
    return [(n, cells) for n, cells in rows if any(cells)]


def announce_review(imp: Import) -> None:
    """Tell the webhooks that an import waits for a person, in the caller's transaction (it commits)."""
    if imp.status == "review":
        db.session.flush()  # gives a new import its id
        record_event(db.session, imp, "import.review_needed")


def skip_review(imp: Import) -> bool:
    """Queue an import held for review at once when its source's saved mapping fits the file's columns.

    The import then uses that mapping (``mappingFrom: saved``). False, and nothing changed, otherwise.
    """
    saved = saved_mapping(db.session, imp.source)
    if saved is None:
        return False
    try:
        with storage().open(imp.storage_key) as stream:
            table = read_rows(stream, imp.size_bytes, head_only=True)
            headers = table.columns or _json_keys(table)
            columns_for(saved, headers)
    except (UnusableFile, MappingError):
        return False
    if not matches(saved, headers):
        return False
    imp.mapping, imp.mapping_from, imp.status = saved, "saved", "queued"
    return True


def expire_reviews() -> None:
    """Imports left in review past UPLOAD_EXPIRY (since upload or reopening) are cancelled, files deleted."""
    cutoff = utcnow() - timedelta(seconds=settings().upload_expiry)
    stale = db.session.execute(
        select(Import.id, Import.storage_key)
        .where(Import.status == "review", func.coalesce(Import.heartbeat_at, Import.created_at) < cutoff)
        .limit(100)
    ).all()
    db.session.rollback()
    for import_id, key in stale:
        ended = db.session.execute(
            update(Import)
            .where(Import.id == import_id, Import.status == "review")
            .values(status="cancelled", finished_at=utcnow(), error=EXPIRED)
        )
        db.session.commit()
        if ended.rowcount:
            try:
                discard_file(import_id, key)
            except (StorageUnavailable, StoredFileMissing, OSError):  # the sweep of ended imports retries
                log.warning("could not delete the file of an expired review", extra={"import_id": import_id})
    if stale:
        log.info("expired %d imports left in review", len(stale))


TASKS.append(expire_reviews)
