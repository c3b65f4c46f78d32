"""How contacts reach PostgreSQL: COPY for emails the import has not read before, ON CONFLICT for the rest."""

from __future__ import annotations

import csv
import io
import json
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from app.contacts import (
    ContactBatch,
    SeenEmails,
    WideContactBatch,
    attributes_json,
    copy_text,
    store_contacts,
)
from app.extensions import db
from app.imports import pipeline, runs
from app.models import Contact
from app.validation import Contact as Valid
from tests.test_pipeline import contacts, finished, post_file


def _csv(rows: list[tuple[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["Name", "Email"])
    writer.writerows(rows)
    return out.getvalue().encode()


def _counts(status: dict) -> tuple[str, int, int, int]:
    return status["status"], status["insertedRows"], status["duplicateRows"], status["rejectedRows"]


def test_copy_text_escapes_what_copy_gives_a_meaning_to():
    assert copy_text("Ada Lovelace") == "Ada Lovelace"
    assert copy_text("a\\b\tc\nd\re") == "a\\\\b\\tc\\nd\\re"
    assert copy_text("Zoë \u200b😀") == "Zoë \u200b😀"  # not printable, nothing to escape


@given(
    st.dictionaries(
        st.text(max_size=12),
        st.one_of(st.text(max_size=30), st.lists(st.text(max_size=12), max_size=3)),
        max_size=6,
    )
)
def test_attributes_are_the_json_that_json_dumps_writes(attributes: dict) -> None:
    expected = json.dumps(attributes, ensure_ascii=False) if attributes else None
    assert attributes_json(attributes) == expected


def test_a_batch_sends_an_email_it_has_read_before_to_on_conflict():
    seen = SeenEmails(1000)
    first = ContactBatch(seen, "crm", "job")
    for contact in [
        Valid("Ada", "ada@example.com"),
        Valid("Bob", "bob@example.com"),
        Valid("A2", "ada@example.com"),
    ]:
        first.append(contact)
    second = ContactBatch(seen, "crm", "job")
    second.append(Valid("Bob again", "bob@example.com"))

    assert len(first) == 3 and first.repeated == [2] and len(first.lines) == 2
    # A contact that goes in by COPY is kept as its line alone, until the batch is stored.
    assert list(first) == [None, None, Valid("A2", "ada@example.com")]
    assert first.lines[0].split("\t")[1:] == ["Ada", "ada@example.com", "crm", "job\n"]
    assert first.lines[0][:36] != first.lines[1][:36]  # ids of one batch differ by position
    assert second.repeated == [0] and second.lines == []


def test_the_filter_of_emails_read_never_forgets_and_seldom_mistakes_a_new_one():
    seen = SeenEmails(1 << 17)  # 2 million bits: a tenth of a bit's worth of load per email below
    read = [f"person.{n}@example.com" for n in range(200_000)]
    for email in read:
        seen.saw(email)
    assert all(seen.saw(email) for email in read)
    mistaken = sum(seen.saw(f"someone.new.{n}@example.org") for n in range(20_000))
    # Three bits an email: about 1.5% taken for read at this load, where one bit took 9%.
    assert mistaken < 20_000 * 0.03


def test_ids_stay_unique_past_the_positions_made_in_advance():
    batch = ContactBatch(SeenEmails(10**7), "crm", "job")
    for i in range(20_000):
        batch.append(Valid(f"P{i}", f"p{i}@example.com"))

    positions = [int(line[24:32], 16) for line in batch.lines]
    assert {line[:24] for line in batch.lines} == {batch.id_head}
    assert sorted(positions + batch.repeated) == list(range(20_000))


NAMES = [
    "Tab\there",
    "Back\\slash",
    "Line\nbreak",
    "Carriage\rreturn",
    "\\N",
    "\\.",
    "Zero\u200bwidth and vertical\x0btab",
    "Émilie Noël 😀",
]


def test_names_with_copy_special_characters_are_stored_as_written(client, work):
    rows = [(name, f"person{i}@example.com") for i, name in enumerate(NAMES)]
    job_id = post_file(client, _csv(rows), source="back\\slash")
    work()

    assert _counts(finished(client, job_id)) == ("completed", len(NAMES), 0, 0)
    assert sorted(contacts("back\\slash")) == sorted((name, email) for name, email in rows)


def _with_repeats(count: int) -> tuple[list[tuple[str, str]], int]:
    """Rows where every fifth repeats an earlier email in another case; and how many emails are unique."""
    rows = []
    for i in range(count):
        if i % 5 == 4:
            rows.append((f"Repeat {i}", f"PERSON{i // 2}@EXAMPLE.COM"))
        else:
            rows.append((f"Person {i}", f"person{i}@example.com"))
    unique = len({email.lower() for _, email in rows})
    return rows, unique


def _first_rows(rows: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Each email with the name of its first row, as stored."""
    first: dict[str, str] = {}
    for name, email in rows:
        first.setdefault(email.lower(), name)
    return sorted((name, email) for email, name in first.items())


def _import_in_process(app, data: bytes, source: str) -> dict:
    """Post the file and run its import in this process; return the import's JSON status."""
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT"] = "application/json"
    job_id = post_file(client, data, source=source)
    pipeline.run(runs.claim(job_id))
    return finished(client, job_id)


@pytest.mark.parametrize("filter_bits", [SeenEmails.MAX_BITS, 8], ids=["roomy-filter", "filter-always-full"])
def test_the_first_row_of_each_email_wins_across_batches(make_app, monkeypatch, filter_bits):
    # A full filter takes every email for a seen one, so every row goes through ON CONFLICT.
    monkeypatch.setattr(SeenEmails, "MAX_BITS", filter_bits)
    rows, unique = _with_repeats(60)
    app = make_app(BATCH_SIZE="7")
    with app.app_context():
        status = _import_in_process(app, _csv(rows), "fair")

        assert _counts(status) == ("completed", unique, len(rows) - unique, 0)
        assert sorted(contacts("fair")) == _first_rows(rows)


def test_an_import_meeting_emails_the_source_has_merges_from_then_on(make_app):
    rows, unique = _with_repeats(60)
    earlier = [("Kept Name", "person31@example.com"), ("Also Kept", "person57@example.com")]
    app = make_app(BATCH_SIZE="7")
    with app.app_context():
        assert _counts(_import_in_process(app, _csv(earlier), "fair")) == ("completed", 2, 0, 0)
        status = _import_in_process(app, _csv(rows), "fair")

        # the batch holding row 31 met the stored email: it and every later batch merged instead
        assert _counts(status) == ("completed", unique - 2, len(rows) - unique + 2, 0)
        stored = dict((email, name) for name, email in contacts("fair"))
        assert stored["person31@example.com"] == "Kept Name" and stored["person57@example.com"] == "Also Kept"
        assert len(stored) == unique


def test_two_imports_into_one_source_at_once_store_each_email_once(client, worker_process):
    # Two workers COPY into the same source at the same time; where their emails meet, the
    # later COPY fails on the unique index and its batch merges instead.
    worker_process("--concurrency", "2", BATCH_SIZE="200")
    first = [(f"First {i}", f"shared{i}@example.com") for i in range(3000)]
    second = [(f"Second {i}", f"shared{i}@example.com") for i in range(1500, 4500)]
    jobs = [post_file(client, _csv(first), source="expo"), post_file(client, _csv(second), source="expo")]
    statuses = [finished(client, job_id, timeout=120) for job_id in jobs]

    assert [s["status"] for s in statuses] == ["completed", "completed"]
    assert sum(s["insertedRows"] for s in statuses) == 4500
    assert sum(s["duplicateRows"] for s in statuses) == 1500
    stored = contacts("expo")
    assert len(stored) == 4500 == len({email for _, email in stored})
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Contact)) == 4500


_values = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)


@given(
    fields=st.lists(
        st.tuples(
            _values.map(str.strip).filter(bool),  # name
            st.one_of(st.none(), st.from_regex(r"\+44207946\d{4}", fullmatch=True)),
            st.one_of(st.none(), _values),
            st.one_of(st.none(), _values),
            st.dictionaries(_values.filter(bool), _values.filter(bool), max_size=4),
        ),
        min_size=1,
        max_size=6,
    ),
    repeat=st.booleans(),
    copied=st.booleans(),
    clash=st.booleans(),
)
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_new_fields_round_trip_through_copy_and_on_conflict(
    app, fields: list, repeat: bool, copied: bool, clash: bool
):
    """Whatever the text, a wide contact is stored as given, by COPY or ON CONFLICT (which a repeated
    email takes, and every contact of a batch without the filter of emails read, or whose COPY met
    an email the source has: those it copied are then merged from their COPY lines)."""
    source = f"round-trip-{uuid.uuid4().hex}"
    seen = SeenEmails(10_000) if copied else None
    made = [
        Valid(name, f"p{i}@example.com", phone, company, title, attributes or None)
        for i, (name, phone, company, title, attributes) in enumerate(fields)
    ]
    taken = Valid("Taken", "taken@example.com", "+442079460000", "Old Co", None, {"kept": "yes"})
    if clash:
        earlier = WideContactBatch(None, source, "before")
        earlier.append(taken)
        store_contacts(db.session, "before", source, earlier)
        db.session.commit()
    # The same email again in a later batch takes ON CONFLICT, and changes nothing.
    first = [*made, taken._replace(name="Taken again")] if clash else made
    batches = [first, [made[0]._replace(name="Someone else")]] if repeat else [first]
    for contacts_of_batch in batches:
        batch = WideContactBatch(seen, source, "job")
        for contact in contacts_of_batch:
            batch.append(contact)
        store_contacts(db.session, "job", source, batch)
    db.session.commit()
    stored = db.session.execute(
        select(Contact.name, Contact.email, Contact.phone, Contact.company, Contact.title, Contact.attributes)
        .where(Contact.source == source)
        .order_by(Contact.email)
    ).all()
    expected = sorted((tuple(c[:6]) for c in [*made, *([taken] if clash else [])]), key=lambda c: c[1])
    assert [tuple(row) for row in stored] == expected
