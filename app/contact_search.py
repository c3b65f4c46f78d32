"""Finding contacts: search by email or name, filters by source and import, keyset pages, CSV export."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, String, func, literal_column, or_, select
from sqlalchemy.orm import Session, aliased

from app.imports.body import has_control_characters
from app.imports.rejected import neutralise
from app.models import Contact
from app.search_sample import CJK, PAIR_ENDS, PAIR_RESIDUE, PLAIN, Plan, cjk_letters, plan

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


def searched_text(of: Any = Contact) -> ColumnElement[str]:
    """The email and the name as one text, the expression of the search's trigram index (migration 0013).

    One index of one expression answers what an OR of two columns asked of two indexes. The two are
    joined by a control character, which a search cannot hold (ContactFilter.from_args refuses it),
    so a match is always inside the email or inside the name, never across the two.
    """
    return of.email + _sql(SEPARATOR) + of.name


def cjk_text() -> ColumnElement[str]:
    """The CJK letters of the searched text, each written three times, the rest blanked: the
    expression of the CJK index (migration 0018), in which one or two letters make a trigram."""
    letters = func.regexp_replace(searched_text(), _sql(f"[^{CJK}]+"), _sql(" "), _sql("g"))
    return func.regexp_replace(letters, _sql("([^ ])"), _sql(r"\1\1\1"), _sql("g"), type_=String)


def holds_cjk() -> ColumnElement[bool]:
    """The condition of the CJK index: contacts whose searched text holds a CJK letter."""
    return searched_text().op("~", is_comparison=True)(_sql(f"[{CJK}]"))


def pair_conditions(pair: str) -> list[ColumnElement[bool]]:
    """Where two lower-cased ASCII letters or digits can stand, each a condition an index answers.

    The trigram index holds the pair with what comes before it (a letter, a digit, a word's end or
    the text's start), after it, or at the text's end; the index of migration 0019 holds the rest.
    A contact holding the pair meets one of them; the caller checks the pair itself.
    """
    beside = f"[a-z0-9{PAIR_ENDS}]"
    return [
        searched_text().op("~*", is_comparison=True)(_sql(f"(^|{beside}){pair}")),
        searched_text().op("~*", is_comparison=True)(_sql(f"{pair}{beside}")),
        searched_text().ilike(_sql(f"%{pair}")),
        searched_text().op("~", is_comparison=True)(_sql(PAIR_RESIDUE)),
    ]


def _sql(constant: str) -> ColumnElement[str]:
    """A constant written into the statement, as an index's expression is, not sent beside it."""
    return literal_column("'" + constant.replace("'", "''") + "'", String)


def _unindexed(of: Any = Contact) -> ColumnElement[str]:
    """The same text as an expression the trigram index is not of, so that it is checked, not asked."""
    return searched_text(of) + _sql("")


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
    # The sources its reader may see (a token limited to some sources); None for every source.
    readable: frozenset[str] | None = None

    @classmethod
    def from_args(cls, args: Mapping[str, str], readable: frozenset[str] | None = None) -> ContactFilter:
        """The filter of a request's query string, within the ``readable`` sources; BadFilter for a
        value that cannot be searched."""
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
        return cls(q, source, import_id, after, readable)

    def plan(self, session: Session, page: int = 50) -> Plan:
        """How to look for this filter's term (app.search_sample); beside a source, an import or a
        reader's sources, as PostgreSQL plans it, a term of a few CJK letters offered the CJK index."""
        if not self.q:
            return PLAIN
        if self.source or self.import_id or self.readable is not None:
            postgresql = session.get_bind().dialect.name == "postgresql"
            cjk = cjk_letters(self.q) if postgresql else []
            return Plan(cjk=cjk) if cjk else PLAIN
        return plan(session, self.q, page)

    def where(self, session: Session, search: Plan | None = None) -> list[ColumnElement[bool]]:
        """The conditions of this filter (the page's position aside), looking for its term by ``search``.

        The search is for a substring (a prefix is one) of the email or the name, in either case.
        A term planned by its parts asks the index for them and is checked whole on what they find.
        """
        where: list[ColumnElement[bool]] = []
        if self.readable is not None:
            where.append(Contact.source.in_(sorted(self.readable)))
        if self.source:
            where.append(Contact.source == self.source)
        if self.import_id:
            where.append(Contact.import_id == self.import_id)
        if self.q:
            search = search or self.plan(session)
            parts = search.parts
            # The whole term, checked on what the index is asked for.
            checked = _unindexed().ilike(_containing(self.q), escape="\\")
            if search.cjk:
                where += [cjk_text().like(_containing("".join(c * 3 for c in run))) for run in search.cjk]
                where += [holds_cjk(), checked]
            elif search.pair:
                where += [or_(*pair_conditions(search.pair)), checked]
            elif parts is None:
                where.append(searched_text().ilike(_containing(self.q), escape="\\"))
            else:
                where += [searched_text().ilike(_containing(part), escape="\\") for part in parts]
                where.append(checked)
        return where

    def args(self) -> dict[str, str]:
        """The filter as query arguments, for the next page's and the export's links."""
        named = {"q": self.q, "source": self.source, "importId": self.import_id}
        return {k: v for k, v in named.items() if v}


def keyset_page(session: Session, wanted: ContactFilter, size: int) -> tuple[list[Contact], str | None]:
    """The contacts after ``wanted.after`` in id order (ids are time-ordered); the next page's ``after``."""
    search = wanted.plan(session, size + 1)
    contacts = _read_in_order(session, wanted, search, size + 1) if search.share else []
    if len(contacts) <= size:
        # Read in order, every match before the last contact read is in hand: go on after it.
        after = wanted.after
        if search.share:
            after = _last_read(session, wanted.after, search.contacts_to_read(size + 1)) or after
        rest = search.past_reading() if search.share else search
        query: Select = select(Contact).where(*wanted.where(session, rest))
        if after is not None:
            query = query.where(Contact.id > after)
        contacts += session.scalars(query.order_by(Contact.id).limit(size + 1 - len(contacts)))
    more = len(contacts) > size
    contacts = contacts[:size]
    return contacts, str(contacts[-1].id) if more else None


def _read_in_order(session: Session, wanted: ContactFilter, search: Plan, wanted_rows: int) -> list[Contact]:
    """The first ``wanted_rows`` holding the term among the next contacts the plan reads in id order."""
    window = select(Contact)
    if wanted.after is not None:
        window = window.where(Contact.id > wanted.after)
    window = window.order_by(Contact.id).limit(search.contacts_to_read(wanted_rows))
    read = aliased(Contact, window.subquery())
    found = select(read).where(_unindexed(read).ilike(_containing(wanted.q), escape="\\"))
    return list(session.scalars(found.order_by(read.id).limit(wanted_rows)))


def _last_read(session: Session, after: uuid.UUID | None, count: int) -> uuid.UUID | None:
    """The id of the last of the ``count`` contacts after ``after``: where a search read up to."""
    ids = select(Contact.id)
    if after is not None:
        ids = ids.where(Contact.id > after)
    window = ids.order_by(Contact.id).limit(count).subquery()
    return session.scalar(select(window.c.id).order_by(window.c.id.desc()).limit(1))


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
        # Each batch is a transaction of its own, ended before the client reads it: memory stays flat,
        # and a download of millions, however slowly it is read, holds no connection or snapshot.
        session.close()
        if buffer.tell():
            yield buffer.getvalue()
        if len(batch) < EXPORT_BATCH:
            return
        after = batch[-1].id
