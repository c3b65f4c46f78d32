"""Finding contacts: search by email or name, filters by source and import, keyset pages, CSV export."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, String, literal_column, select
from sqlalchemy.orm import Session

from app.imports.body import has_control_characters
from app.imports.rejected import neutralise
from app.models import Contact
from app.search_sample import rare_parts

QUERY_MAX = 200
SEPARATOR = "\x1f"  # the unit separator
EXPORT_BATCH = 5000
EXPORT_COLUMNS = (
    "name",
    "email",
    "phone",
    "company",
    "title",
    "attributes",
    "source",
    "import_id",
    "imported_at",
    "updated_at",
)


def searched_text() -> ColumnElement[str]:
    """The email and the name as one text, the expression of the search's trigram index (migration 0013).

    One index of one expression answers what an OR of two columns asked of two indexes. The two are
    joined by a control character, which a search cannot hold (ContactFilter.from_args refuses it),
    so a match is always inside the email or inside the name, never across the two.
    """
    return Contact.email + literal_column(f"'{SEPARATOR}'", String) + Contact.name


def _containing(term: str) -> str:
    """The LIKE pattern of text holding ``term``, its wildcards taken as themselves."""
    return "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class BadFilter(ValueError):
    """A filter that cannot be used as given: a 400 saying what is wrong."""


@dataclass(frozen=True)
class ContactFilter:
    """What the contacts page and API were asked for: a search, a source, an import, a page after an id."""

    q: str | None = None
    source: str | None = None
    import_id: str | None = None
    after: uuid.UUID | None = None

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> ContactFilter:
        """The filter of a request's query string; BadFilter for a value that cannot be searched."""
        q = (args.get("q") or "").strip() or None
        source = args.get("source") or None
        import_id = args.get("importId") or None
        for name, value in (("q", q), ("source", source), ("importId", import_id)):
            if value and has_control_characters(value):
                raise BadFilter(f"{name} must not contain control characters")
        if q and len(q) > QUERY_MAX:
            raise BadFilter(f"q is longer than {QUERY_MAX} characters")
        after = None
        if args.get("after"):
            try:
                after = uuid.UUID(args["after"])
            except ValueError:
                raise BadFilter("after must be the id of a contact, as the previous page gave it") from None
        return cls(q, source, import_id, after)

    def where(self, session: Session, planned: bool = True) -> list[ColumnElement[bool]]:
        """The conditions of this filter (the page's position aside); ``planned=False`` for the plain search.

        The search is for a substring (a prefix is one) of the email or the name, in either case.
        A term the search sample finds rare asks the index for its rarest parts and is checked
        whole on what they find, as a condition the index cannot answer (app.search_sample).
        """
        where: list[ColumnElement[bool]] = []
        if self.source:
            where.append(Contact.source == self.source)
        if self.import_id:
            where.append(Contact.import_id == self.import_id)
        if self.q:
            parts = rare_parts(session, self.q) if planned and not (self.source or self.import_id) else None
            if parts is None:
                where.append(searched_text().ilike(_containing(self.q), escape="\\"))
            else:
                where += [searched_text().ilike(_containing(part), escape="\\") for part in parts]
                unindexed = searched_text() + literal_column("''", String)
                where.append(unindexed.ilike(_containing(self.q), escape="\\"))
        return where

    def args(self) -> dict[str, str]:
        """The filter as query arguments, for the next page's and the export's links."""
        named = {"q": self.q, "source": self.source, "importId": self.import_id}
        return {k: v for k, v in named.items() if v}


def keyset_page(session: Session, wanted: ContactFilter, size: int) -> tuple[list[Contact], str | None]:
    """The contacts after ``wanted.after`` in id order (ids are time-ordered); the next page's ``after``."""
    query: Select = select(Contact).where(*wanted.where(session))
    if wanted.after is not None:
        query = query.where(Contact.id > wanted.after)
    contacts = list(session.scalars(query.order_by(Contact.id).limit(size + 1)))
    more = len(contacts) > size
    contacts = contacts[:size]
    return contacts, str(contacts[-1].id) if more else None


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False) if value else ""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def export_csv(session: Session, wanted: ContactFilter) -> Iterator[str]:
    """The contacts of the filter as CSV, a keyset batch at a time: UTF-8 with a BOM, formula-safe."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    yield "\ufeff" + buffer.getvalue()
    after = wanted.after
    where = wanted.where(session)
    while True:
        buffer.seek(0)
        buffer.truncate()
        query = select(Contact).where(*where)
        if after is not None:
            query = query.where(Contact.id > after)
        batch = list(session.scalars(query.order_by(Contact.id).limit(EXPORT_BATCH)))
        for contact in batch:
            writer.writerow([neutralise(_cell(getattr(contact, column))) for column in EXPORT_COLUMNS])
        if buffer.tell():
            yield buffer.getvalue()
        session.expunge_all()  # memory stays flat however many contacts there are
        if len(batch) < EXPORT_BATCH:
            return
        after = batch[-1].id
