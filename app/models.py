"""The tables: contacts and their changes, imports, row problems, uploads and idempotency keys."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Row,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db

# JSONB on PostgreSQL (indexable, compact), JSON text on SQLite.
# Python's None is SQL NULL in them, not JSON's null.
JSON_DOCUMENT = JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
MERGE_MODES = ("skip", "fill", "update")
# "review": the file is stored and waits for a person to check its mapping before it is queued.
# "undoing", "undone": app.undo takes back what a finished import stored.
IMPORT_STATUSES = ("review", "queued", "running", "completed", "failed", "cancelled", "undoing", "undone")
FINAL_STATUSES = ("completed", "failed", "cancelled", "undone")
# The small imports waiting to run (app.imports.small), as the partial index and their claim say it.
SMALL_WAITING = "status = 'queued' AND body IS NOT NULL"


def utcnow() -> datetime:
    """The current time, timezone-aware."""
    return datetime.now(UTC)


def aware(moment: datetime) -> datetime:
    """A time read from the database, timezone-aware: SQLite hands back naive datetimes, in UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Contact(db.Model):
    """One person; an email is stored once per source."""

    __tablename__ = "contacts"
    __table_args__ = (
        UniqueConstraint("source", "email", name="contacts_source_email_key"),
        # An import's contacts in id order: the undo's batches and the contacts page of an import.
        Index("ix_contacts_import_id", "import_id", "id"),
        # A source's contacts in id order: the contacts page of a source (migration 0020).
        Index("contacts_source_id_idx", "source", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(255))
    email: Mapped[str] = mapped_column(String(254))
    source: Mapped[str] = mapped_column(String(100))
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    import_id: Mapped[str | None] = mapped_column(String(36))
    phone: Mapped[str | None] = mapped_column(String(64))
    company: Mapped[str | None] = mapped_column(Text)
    title: Mapped[str | None] = mapped_column(Text)
    # Every column of the file that maps to no field, by its header, as text.
    attributes: Mapped[dict | None] = mapped_column(JSON_DOCUMENT)
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ContactChange(db.Model):
    """A contact's values before an import updated it, so that undoing the import can restore them."""

    __tablename__ = "contact_changes"
    __table_args__ = (
        UniqueConstraint("import_id", "contact_id", name="contact_changes_import_contact_key"),
        Index("contact_changes_contact_idx", "contact_id"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    import_id: Mapped[str] = mapped_column(ForeignKey("imports.id", ondelete="CASCADE"))
    contact_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    # {"name", "phone", "company", "title", "attributes", "updated_at"} as they were; NULL when the
    # import met the contact and found nothing new (so a later row of its email is a repeat).
    previous: Mapped[dict | None] = mapped_column(JSON_DOCUMENT)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Import(db.Model):
    """One file being imported: PostgreSQL is the truth about its status and progress."""

    __tablename__ = "imports"
    __table_args__ = (
        Index("imports_created_at_idx", "created_at"),
        Index("imports_status_idx", "status"),
        Index("imports_source_sha256_idx", "source", "sha256"),
        Index("imports_status_retry_at_idx", "status", "retry_at"),
        # The small imports waiting to run, oldest first: what the small imports' claim reads.
        Index(
            "imports_small_queued_idx",
            "created_at",
            postgresql_where=text(SMALL_WAITING),
            sqlite_where=text(SMALL_WAITING),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    source: Mapped[str] = mapped_column(String(100))
    format: Mapped[str | None] = mapped_column(String(16))
    filename: Mapped[str | None] = mapped_column(String(255))
    storage_key: Mapped[str | None] = mapped_column(String(255))
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    # A small JSON request's body, kept here instead of in storage until the import completes
    # (app.imports.small); None for an import whose file is in storage.
    body: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    # Of the stored file (for JSON requests, of the body): finds an earlier import of the same file.
    sha256: Mapped[str | None] = mapped_column(String(64))
    use_resumable: Mapped[bool] = mapped_column(default=False)
    total_rows: Mapped[int | None] = mapped_column(Integer)
    processed_rows: Mapped[int] = mapped_column(Integer, default=0)
    inserted_rows: Mapped[int] = mapped_column(Integer, default=0)
    duplicate_rows: Mapped[int] = mapped_column(Integer, default=0)
    rejected_rows: Mapped[int] = mapped_column(Integer, default=0)
    # Rows read that are no contact and no mistake: lines above the table, a report's footer.
    skipped_rows: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The header's row number and the sheet, when given (detected otherwise); where the mapping came from.
    header_row: Mapped[int | None] = mapped_column(Integer)
    sheet: Mapped[str | None] = mapped_column(String(255))
    mapping_from: Mapped[str | None] = mapped_column(String(16))
    updated_rows: Mapped[int] = mapped_column(Integer, default=0)
    unchanged_rows: Mapped[int] = mapped_column(Integer, default=0)
    warning_rows: Mapped[int] = mapped_column(Integer, default=0)
    # What a row does to a contact the source already has: one of MERGE_MODES.
    mode: Mapped[str] = mapped_column(String(8), default="skip")
    # Which column went to which field (``Mapping.to_dict``), recorded once the header is read.
    mapping: Mapped[dict | None] = mapped_column(JSON)
    # The last row number whose outcome is committed: a rerun skips up to here.
    checkpoint: Mapped[int] = mapped_column(Integer, default=0)
    # Runs that claimed the import; each claim's number fences off the runs before it.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The principal that started it (app.principals): "user:<email>", "token:<fingerprint>", or None.
    created_by: Mapped[str | None] = mapped_column(String(320))
    # When a queued import waiting after a transient failure may run again; its transient retries.
    retry_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    retries: Mapped[int] = mapped_column(Integer, default=0)
    # When the rows or the stage last moved: a run alive but stuck is taken over after STALL_TIMEOUT.
    progress_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # "host:pid" of the work horse that claimed the import.
    run_by: Mapped[str | None] = mapped_column(String(255))
    # Undo (app.undo): contacts removed or restored, of them those removed, contacts kept because a
    # later import changed them, and the undo's checkpoint {"from": status before, "phase", "after",
    # "keptBy": {id: n}}. A source holds its imports' inserted_rows less their removed_rows.
    undone_rows: Mapped[int] = mapped_column(Integer, default=0)
    removed_rows: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    kept_rows: Mapped[int] = mapped_column(Integer, default=0)
    undo_state: Mapped[dict | None] = mapped_column(JSON)
    undo_requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    undone_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A follow-up import of an import's fixed rejected rows (app.fixes) names the import it fixes.
    fixes_of: Mapped[str | None] = mapped_column(String(36), index=True)

    @property
    def is_final(self) -> bool:
        """Whether the import has ended, one way or another."""
        return self.status in FINAL_STATUSES

    def to_dict(self) -> dict[str, object]:
        """The import as the JSON API shows it."""
        return import_json(self)


def iso(value: datetime | None) -> str | None:
    """A time as the JSON API shows it: ISO 8601 in UTC, with a Z."""
    if value is None:
        return None
    return aware(value).isoformat().replace("+00:00", "Z")


# Each column the JSON API shows, and its name there: a status read selects just these columns.
_JSON_NAMES = {
    "id": "jobId",
    "status": "status",
    "source": "source",
    "format": "format",
    "filename": "filename",
    "use_resumable": "useResumable",
    "size_bytes": "sizeBytes",
    "sha256": "sha256",
    "total_rows": "totalRows",
    "processed_rows": "processedRows",
    "inserted_rows": "insertedRows",
    "duplicate_rows": "duplicateRows",
    "rejected_rows": "rejectedRows",
    "skipped_rows": "skippedRows",
    "updated_rows": "updatedRows",
    "unchanged_rows": "unchangedRows",
    "warning_rows": "warningRows",
    "mode": "mode",
    "mapping": "mapping",
    "mapping_from": "mappingFrom",
    "header_row": "headerRow",
    "sheet": "sheet",
    "attempts": "attempts",
    "undone_rows": "undoneRows",
    "removed_rows": "removedRows",
    "kept_rows": "keptRows",
    "error": "error",
    "created_by": "createdBy",
    "created_at": "createdAt",
    "started_at": "startedAt",
    "finished_at": "finishedAt",
    "undone_at": "undoneAt",
    "fixes_of": "fixes",
}
_JSON_TIMES = frozenset({"created_at", "started_at", "finished_at", "undone_at"})
IMPORT_JSON_COLUMNS = tuple(Import.__table__.c[column] for column in (*_JSON_NAMES, "undo_state"))


def import_json(imp: Import | Row) -> dict[str, object]:
    """An import as the JSON API shows it, from the loaded object or a row of ``IMPORT_JSON_COLUMNS``.

    ``keptBy`` says which imports changed the contacts an undo kept: {jobId: contacts}, with "" for
    a change no import recorded.
    """
    shown = {
        name: iso(getattr(imp, column)) if column in _JSON_TIMES else getattr(imp, column)
        for column, name in _JSON_NAMES.items()
    }
    shown["keptBy"] = dict((imp.undo_state or {}).get("keptBy") or {})
    return shown


class RowError(db.Model):
    """A rejected row: where it was, what was wrong, and the row as it came."""

    __tablename__ = "import_errors"
    __table_args__ = (Index("import_errors_import_row_idx", "import_id", "row"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    # No foreign key (migration 0017): PostgreSQL would check it on every rejected row stored.
    import_id: Mapped[str] = mapped_column(String(36))
    row: Mapped[int] = mapped_column(Integer)
    field: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    value: Mapped[str | None] = mapped_column(Text)
    raw: Mapped[dict | None] = mapped_column(JSON)
    # "error": the row was rejected; "warning": it was stored, without the value this is about.
    level: Mapped[str] = mapped_column(String(8), default="error")

    def to_dict(self) -> dict[str, object]:
        """The row's problem as the JSON API shows it."""
        return {
            "row": self.row,
            "level": self.level,
            "field": self.field,
            "message": self.message,
            "value": self.value,
        }


class Upload(db.Model):
    """A resumable (tus) upload: how far it has come, and the import it became once complete."""

    __tablename__ = "uploads"
    __table_args__ = (Index("uploads_expires_at_idx", "expires_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: uuid.uuid4().hex)
    length: Mapped[int] = mapped_column(BigInteger)
    offset: Mapped[int] = mapped_column(BigInteger, default=0)
    # The Upload-Metadata header as the client sent it, echoed back on HEAD.
    metadata_header: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(100))
    filename: Mapped[str | None] = mapped_column(String(255))
    use_resumable: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    import_id: Mapped[str | None] = mapped_column(String(36))
    # The principal that created it; only it may see or change the upload (app.principals).
    owner: Mapped[str | None] = mapped_column(String(320))

    @property
    def is_complete(self) -> bool:
        """Whether every byte has arrived."""
        return self.offset >= self.length


class IdempotencyKey(db.Model):
    """A client's Idempotency-Key on ``POST /import``, and the import its first request started."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("idempotency_keys_created_at_idx", "created_at"),)

    # Keys are scoped per principal: another client's key is another key (app.principals).
    principal: Mapped[str] = mapped_column(String(320), primary_key=True, default="")
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    # "in_flight" while the first request runs, "done" once its import is committed.
    status: Mapped[str] = mapped_column(String(16), default="in_flight")
    # SHA-256 of the request's method, path, content type, source, useResumable and file.
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    import_id: Mapped[str | None] = mapped_column(ForeignKey("imports.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class User(db.Model):
    """Someone who may sign in to the pages; created with ``flask create-user``."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    # Raised by sign-out, a new password and `flask revoke-sessions`: sessions of older ones are over.
    session_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
