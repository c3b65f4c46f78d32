"""Which column fills which field: a mapping given with the import, saved for its source, or detected."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, String
from sqlalchemy.orm import Mapped, Session, mapped_column

from app.detection import detect_columns, missing_columns_message
from app.extensions import db
from app.fields import FIELDS, Columns, MappingError
from app.models import aware, utcnow
from app.readers import UnusableFile

MAPPING_FROM = ("given", "saved", "detected")
# A mapping is small: a field or two per column of a file at most MAX_COLUMNS wide.
MAPPING_MAX_BYTES = 256 * 1024


class SourceMapping(db.Model):
    """The mapping a person chose for a source, reused for its next files whose columns match."""

    __tablename__ = "source_mappings"

    source: Mapped[str] = mapped_column(String(100), primary_key=True)
    mapping: Mapped[dict] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    def to_dict(self) -> dict[str, object]:
        """The saved mapping as the JSON API shows it."""
        updated = aware(self.updated_at)
        return {
            "source": self.source,
            "mapping": self.mapping,
            "updatedAt": updated.isoformat().replace("+00:00", "Z"),
        }


def parse_mapping(value: object) -> dict[str, Any] | None:
    """A mapping from a request (an object, or JSON text of one); None when none was given."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        if len(value) > MAPPING_MAX_BYTES:
            raise MappingError("The mapping is too long to be one.")
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise MappingError(f"The mapping is not valid JSON ({exc.args[0]}).") from None
    if not isinstance(value, dict):
        raise MappingError(
            'The mapping must be a JSON object of field to column, such as {"name": "Full name", '
            '"email": "E-mail 1 - Value"}.'
        )
    return value


def named_columns(mapping: Mapping[str, Any]) -> list[str]:
    """Every column a mapping names, fields first, then the attributes it keeps."""
    names: list[str] = []
    for key in (*FIELDS, "attributes"):
        value = mapping.get(key)
        for header in [value] if isinstance(value, str) else value if isinstance(value, list) else []:
            if isinstance(header, str) and header not in names:
                names.append(header)
    return names


def _field_columns(mapping: Mapping[str, Any]) -> list[str]:
    return named_columns({k: v for k, v in mapping.items() if k != "attributes"})


def check_shape(mapping: Mapping[str, Any]) -> None:
    """Refuse a mapping that could fit no file: an unknown field, a bad value, no name or email."""
    columns_for(mapping, named_columns(mapping))


def columns_for(mapping: Mapping[str, Any], headers: Sequence[str]) -> Columns:
    """The columns a mapping gives for a file with these headers; MappingError names what does not fit.

    ``attributes``, when the mapping lists it, names the other columns to keep; the rest are ignored.
    Without it every column no field takes is kept.
    """
    columns = Columns.from_dict({k: v for k, v in mapping.items() if k != "attributes"}, headers)
    keep = mapping.get("attributes")
    if keep is None:
        return columns
    if not isinstance(keep, list) or not all(isinstance(h, str) for h in keep):
        raise MappingError("The mapping's attributes must be a list of column headers.")
    missing = [h for h in keep if h not in headers]
    if missing:
        raise MappingError(
            f"The file has no column {missing[0]!r} (kept as an attribute). "
            f"Its columns are: {', '.join(headers)}."
        )
    taken = set(columns.mapped)
    return replace(columns, extra=tuple(h for h in headers if h in keep and h not in taken))


def matches(mapping: Mapping[str, Any], headers: Sequence[str]) -> bool:
    """Whether a saved mapping fits a file: every column it maps to a field is among the file's."""
    present = set(headers)
    return all(header in present for header in _field_columns(mapping))


def saved_mapping(session: Session, source: str) -> dict[str, Any] | None:
    """The mapping saved for a source, if any."""
    saved = session.get(SourceMapping, source)
    return None if saved is None else saved.mapping


def save_mapping(session: Session, source: str, mapping: Mapping[str, Any]) -> SourceMapping:
    """Save (or replace) a source's mapping; the caller commits."""
    saved = session.get(SourceMapping, source)
    if saved is None:
        saved = SourceMapping(source=source, mapping=dict(mapping))
        session.add(saved)
    else:
        saved.mapping = dict(mapping)
        saved.updated_at = utcnow()
    return saved


def delete_mapping(session: Session, source: str) -> bool:
    """Forget a source's mapping; False if it had none. The caller commits."""
    saved = session.get(SourceMapping, source)
    if saved is None:
        return False
    session.delete(saved)
    return True


def choose_columns(
    session: Session,
    source: str | None,
    given: Mapping[str, Any] | None,
    headers: list[str],
    sample: Sequence[Any],
    headerless: bool,
    strict: bool = True,
) -> tuple[Columns, str]:
    """The columns to import with and where they came from: ``given``, ``saved`` or ``detected``.

    A given mapping must fit the file (MappingError otherwise); a saved one is used when it
    fits; else the columns are detected by header and content. With ``strict``, detected
    columns without an email or a name raise UnusableFile with the message that lists them all.
    """
    if given is not None:
        return columns_for(given, headers), "given"
    saved = saved_mapping(session, source) if source else None
    if saved is not None and matches(saved, headers):
        try:
            return columns_for(saved, headers), "saved"
        except MappingError:
            pass  # a saved mapping that no longer fits this file is ignored, not an error
    found = detect_columns(headers, sample, headerless=headerless)
    problem = missing_columns_message(found)
    if problem and strict:
        raise UnusableFile(problem)
    return found.columns, "detected"
