"""Storing validated contacts and rejected rows in batches, at COPY speed on PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from psycopg import errors
from sqlalchemy import insert
from sqlalchemy.orm import Session

from app.models import RowError
from app.validation import Contact, Problem

_STAGING = (
    "CREATE TEMP TABLE IF NOT EXISTS contact_staging (pos integer, name text, email text, "
    "phone text, company text, title text, attributes jsonb) ON COMMIT DELETE ROWS"
)
# Rows go in file order, so an email repeated within the batch conflicts with its first row, which
# wins; ON CONFLICT also skips emails the source already has. Ids are time-ordered (see batch_id_head):
# random ids scatter primary key inserts over the whole index and halve the insert rate.
_MERGE = (
    "INSERT INTO contacts "
    "(id, name, email, phone, company, title, attributes, source, imported_at, import_id) "
    "SELECT (%(id_head)s || lpad(to_hex(pos), 8, '0'))::uuid, name, email, phone, company, title, "
    "attributes, %(source)s, now(), %(import_id)s "
    "FROM contact_staging ORDER BY pos ON CONFLICT (source, email) DO NOTHING"
)
_COPY = "COPY contacts (id, name, email, source, import_id) FROM STDIN"
_WIDE_COPY = (
    "COPY contacts (id, name, email, phone, company, title, attributes, source, import_id) FROM STDIN"
)
_NULL = "\\N"  # COPY's NULL
_STAGED = 6  # contact_staging's columns after pos


class Stored(NamedTuple):
    """What a batch did to the source's contacts; its other valid rows were duplicates."""

    inserted: int
    updated: int = 0
    unchanged: int = 0

    @property
    def total(self) -> int:
        """The rows that found their contact: new, changed or met unchanged."""
        return self.inserted + self.updated + self.unchanged


# JSON's quoting of a string, in C: what json.dumps(..., ensure_ascii=False) writes for one.
_json_string = json.encoder.encode_basestring


def attributes_json(attributes: dict[str, Any] | None) -> str | None:
    """Attributes as the JSON text the database stores, or None when there are none.

    Written as ``json.dumps(attributes, ensure_ascii=False)`` writes them; the text values that
    nearly all are go without the encoder json.dumps makes at every call (a third of the cost).
    """
    if not attributes:
        return None
    return (
        "{"
        + ", ".join(
            [
                f"{_json_string(key)}: "
                f"{_json_string(value) if type(value) is str else json.dumps(value, ensure_ascii=False)}"
                for key, value in attributes.items()
            ]
        )
        + "}"
    )


def copy_text(value: str) -> str:
    """A value as a field of COPY's text format, where backslash, tab, newline and return mean something.

    Emails never need this: the email pattern allows none of those characters.
    """
    if value.isprintable() and "\\" not in value:  # most names, checked at C speed
        return value
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


# The last 8 hex digits of a contact id, its position in the batch, made once.
# (For batches up to 16,384 rows, a megabyte; rows past that format their own.)
_POSITIONS = [f"{position:08x}" for position in range(1 << 14)]


def batch_id_head() -> str:
    """The first 24 hex digits of a batch's contact ids, in the UUIDv7 layout.

    48 bits of Unix milliseconds, the version 7, 12 random bits, the RFC 4122 variant and 30 more
    random bits (2 beside the variant, 28 after); the last 32 bits are the row's position in the
    batch. Ids of one batch are consecutive, later batches sort after earlier ones, and 42 random
    bits keep concurrent batches apart (a collision would fail the batch on the primary key, never overwrite).
    """
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(6), "big") >> 6  # 42 random bits
    return f"{ms & 0xFFFFFFFFFFFF:012x}7{rand >> 30:03x}{0x8 | (rand >> 28) & 0x3:x}{rand & 0xFFFFFFF:07x}"


class SeenEmails:
    """The emails an import has read so far, as a Bloom filter of three bits per email.

    It never forgets an email it was given, and takes a new one for a seen one now and then: about
    1 in 90,000 after a million rows, 1 in 120 after ten million (with one bit per email, as before:
    1 in 135 and 1 in 14). A new email can go straight into contacts by COPY; a seen one (or a
    mistaken one) goes through ON CONFLICT, which knows for certain, and costs more. The three bits
    come from the one hash Python keeps with each string, so the check stays cheap in Python, this
    import's other limit. The filter is sized by the file, 16 bits for each of its bytes, up to
    16 MB: memory does not grow with the rows.
    """

    MAX_BITS = 1 << 27

    def __init__(self, file_size: int) -> None:
        bits = 64
        while bits < 16 * file_size and bits < self.MAX_BITS:
            bits <<= 1
        bits = min(bits, self.MAX_BITS)
        self.mask = bits - 1
        self.bits = bytearray((bits + 7) >> 3)
        # Set by the committer when a COPY met an email already stored (an import of the same
        # source, or rows an earlier run of this import committed): later batches take ON CONFLICT.
        self.clashed = False

    def saw(self, email: str) -> bool:
        """Whether ``email`` may have been read before (certainly, if it was); it is marked read."""
        spot = hash(email)
        step = (spot >> 32) | 1  # double hashing: the bits of spot, spot + step and spot + 2 step
        bits, mask = self.bits, self.mask
        one, two, three = spot & mask, (spot + step) & mask, (spot + 2 * step) & mask
        if (
            bits[one >> 3] & (1 << (one & 7))
            and bits[two >> 3] & (1 << (two & 7))
            and bits[three >> 3] & (1 << (three & 7))
        ):
            return True
        bits[one >> 3] |= 1 << (one & 7)
        bits[two >> 3] |= 1 << (two & 7)
        bits[three >> 3] |= 1 << (three & 7)
        return False


class ContactBatch(list[Contact]):
    """A batch's valid contacts in file order; on PostgreSQL, also the COPY text of the new ones.

    Each contact appended whose email the import has not read yet gets its COPY line at once, so
    the thread that stores the batch only sends it, and is kept as that line alone (None in the
    list): a batch holds each row once while it waits to be stored. A list, so that counting it
    costs nothing. This one copies the name and email only (a file of just those), and leaves a
    contact with more to the merge; see WideContactBatch.
    """

    copy = _COPY

    def __init__(self, seen: SeenEmails | None, source: str, import_id: str) -> None:
        super().__init__()
        self.seen = seen if seen is None or not seen.clashed else None
        self.id_head = batch_id_head()
        self.lines: list[str] = []  # COPY rows of contacts whose email the import had not read yet
        self.repeated: list[int] = []  # positions of the others, which take ON CONFLICT
        self._tail = f"\t{copy_text(source)}\t{import_id}\n"

    def append(self, contact: Contact) -> None:
        position = len(self)
        if self.seen is None:
            list.append(self, contact)
            return
        name, email = contact[0], contact[1]
        if self.seen.saw(email) or contact.attributes or contact.phone or contact.company or contact.title:
            # Read before, or more than this COPY carries (a second address of the email cell, kept
            # in attributes): the merge stores it with every field, in file order with the others.
            list.append(self, contact)
            self.repeated.append(position)
            return
        list.append(self, None)
        hex_position = _POSITIONS[position] if position < len(_POSITIONS) else f"{position:08x}"
        self.lines.append(f"{self.id_head}{hex_position}\t{copy_text(name)}\t{email}{self._tail}")

    def staging_lines(self, positions: Sequence[int]) -> Iterator[str]:
        """The contacts at ``positions`` as COPY text of contact_staging, those kept as lines from them."""
        from_lines: dict[int, list[str]] = {}
        if len(positions) > len(self.repeated):  # copied ones among them: the copy was undone
            from_lines = {int(line[24:32], 16): line.split("\t")[1:-2] for line in self.lines}
        for position in positions:
            contact = self[position]
            if contact is None:
                fields = from_lines[position]  # the contact's fields, without the id, source and import
                yield "\t".join((str(position), *fields, *[_NULL] * (_STAGED - len(fields)))) + "\n"
            else:
                yield f"{position}\t{_fields_text(contact)}\n"


def _copy_field(value: str | None) -> str:
    return _NULL if value is None else copy_text(value)


def _fields_text(contact: Contact) -> str:
    """A contact's name, email, phone, company, title and attributes as fields of COPY text."""
    return (
        f"{copy_text(contact.name)}\t{contact.email}\t{_copy_field(contact.phone)}\t"
        f"{_copy_field(contact.company)}\t{_copy_field(contact.title)}\t"
        f"{_copy_field(attributes_json(contact.attributes))}"
    )


class WideContactBatch(ContactBatch):
    """A batch of contacts with phone, company, title and attributes besides the name and email."""

    copy = _WIDE_COPY

    def append(self, contact: Contact) -> None:
        position = len(self)
        if self.seen is None:
            list.append(self, contact)
            return
        if self.seen.saw(contact.email):
            list.append(self, contact)
            self.repeated.append(position)
            return
        list.append(self, None)
        hex_position = _POSITIONS[position] if position < len(_POSITIONS) else f"{position:08x}"
        self.lines.append(f"{self.id_head}{hex_position}\t{_fields_text(contact)}{self._tail}")


def store_contacts(
    session: Session, import_id: str, source: str, batch: ContactBatch, copied: Copied | None = None
) -> Stored:
    """Insert the contacts whose email the source does not have yet (merge mode ``skip``).

    On PostgreSQL the contacts whose email the import had not read before are copied straight into
    contacts, the fastest way in; the rest, and every contact of a batch whose COPY met an email
    already stored, are merged with ON CONFLICT, so the first row of an email wins either way.
    ``copied`` is what ``copy_new_contacts`` already did in this transaction. (``fill`` and
    ``update`` look the source's contacts up instead: ``app.merge``.)
    """
    if not batch:
        return Stored(0)
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        cursor = connection.exec_driver_sql(
            "INSERT OR IGNORE INTO contacts "
            "(id, name, email, phone, company, title, attributes, source, imported_at, import_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, CURRENT_TIMESTAMP, ?)",
            [
                (
                    uuid.uuid4().hex,
                    c.name,
                    c.email,
                    c.phone,
                    c.company,
                    c.title,
                    attributes_json(c.attributes),
                    source,
                    import_id,
                )
                for c in batch
            ],
        )
        return Stored(cursor.rowcount)
    merged, count = copied or copy_new_contacts(session, batch)
    if not merged:
        return Stored(count)
    with connection.connection.driver_connection.cursor() as cursor:
        cursor.execute(_STAGING)
        columns = "(pos, name, email, phone, company, title, attributes)"
        with cursor.copy(f"COPY contact_staging {columns} FROM STDIN") as copy:
            copy.write("".join(batch.staging_lines(merged)))
        cursor.execute(_MERGE, {"source": source, "import_id": import_id, "id_head": batch.id_head})
        return Stored(count + cursor.rowcount)


class Copied(NamedTuple):
    """What ``copy_new_contacts`` did: the positions of the contacts left to merge, and how many it copied."""

    merged: Sequence[int]
    count: int


def copy_new_contacts(session: Session, batch: ContactBatch) -> Copied:
    """COPY the batch's contacts whose email the import had not read before (PostgreSQL only).

    None of them is in an earlier batch of the import, so the COPY can run while that batch is
    still being stored. If it meets an email already stored, it is undone and every contact is left
    to merge, as are those of a batch read after such a meeting.
    """
    merged: Sequence[int] = range(len(batch))
    if batch.seen is None or batch.seen.clashed:
        return Copied(merged, 0)
    with session.connection().connection.driver_connection.cursor() as cursor:
        try:
            # Left to end with the transaction: releasing it would cost a round trip per batch.
            cursor.execute("SAVEPOINT contacts_copy")
            with cursor.copy(batch.copy) as copy:
                copy.write("".join(batch.lines))
        except (errors.UniqueViolation, errors.DeadlockDetected):
            cursor.execute("ROLLBACK TO SAVEPOINT contacts_copy")
            batch.seen.clashed = True
            return Copied(merged, 0)
    return Copied(batch.repeated, len(batch.lines))


def _storable(value: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL: show it as the replacement character instead."""
    return value.replace("\x00", "\ufffd") if value else value


# What a rejected row keeps: enough to see and fix it, never megabytes per row in import_errors.
RAW_LIMIT = 32 * 1024  # characters of all the row's cells together
VALUE_LIMIT = 1000  # characters of the one value a problem is about
CELL_MIN = 200  # characters every cell keeps, however long the cells before it


def cut(text: str, keep: int) -> str:
    """The text, or its first ``keep`` characters and a note that says how long it was."""
    if len(text) <= keep:
        return text
    return f"{text[:keep]}… [cut: {len(text):,} characters in all]"


_CUT_NOTE = re.compile(r"… \[cut: [\d,]+ characters in all\]\Z")


def was_cut(raw: Mapping[str, Any]) -> bool:
    """Whether a stored rejected row lost the end of a cell or a header to ``cut``."""
    return any(_CUT_NOTE.search(str(key)) or _CUT_NOTE.search(str(value)) for key, value in raw.items())


def cut_row(raw: dict) -> dict:
    """A rejected row's cells as stored: each kept from its start until RAW_LIMIT characters are used.

    Every cell keeps at least CELL_MIN characters, so the small one that needs fixing stays whole.
    """
    room = RAW_LIMIT
    kept = {}
    for key, value in raw.items():
        text = "" if value is None else str(value)
        kept[cut(str(key), CELL_MIN)] = cut(text, max(room, CELL_MIN))
        room -= len(text)
    return kept


def store_row_errors(
    session: Session,
    import_id: str,
    rejected: Sequence[tuple[int, Problem, dict | None]],
    level: str = "error",
) -> None:
    """Keep every problem of every rejected row (or, with level "warning", of a row stored anyway)."""
    if not rejected:
        return
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        copy_row_errors(session, [row_error_line(import_id, row, level, p, raw) for row, p, raw in rejected])
        return
    session.execute(
        insert(RowError),
        [
            {
                "import_id": import_id,
                "row": row,
                "level": level,
                "field": p.field,
                "message": p.message,
                "value": p.value and cut(p.value, VALUE_LIMIT),
                "raw": None if raw is None else cut_row(raw),
            }
            for row, p, raw in rejected
        ],
    )


def row_error_line(import_id: str, row: int, level: str, problem: Problem, raw: dict | None) -> str:
    """One problem of a row as a line of COPY text for import_errors (see ``copy_row_errors``).

    The reading thread makes these as it reads, so the thread that commits the batch only sends them.
    """
    value = _storable(problem.value and cut(problem.value, VALUE_LIMIT))
    kept = None if raw is None else _storable(json.dumps(cut_row(raw), default=str))
    return (
        f"{import_id}\t{row}\t{level}\t{_copy_field(problem.field)}\t{copy_text(problem.message)}\t"
        f"{_copy_field(value)}\t{_copy_field(kept)}\n"
    )


def copy_row_errors(session: Session, lines: Sequence[str]) -> None:
    """Store problems made into COPY lines by ``row_error_line``, in one COPY (PostgreSQL only)."""
    if not lines:
        return
    with session.connection().connection.driver_connection.cursor() as cursor:
        columns = "(import_id, row, level, field, message, value, raw)"
        with cursor.copy(f"COPY import_errors {columns} FROM STDIN") as copy:
            copy.write("".join(lines))
