"""Merge modes against contacts already stored, on PostgreSQL and on SQLite, with counts that add up."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from rq import SimpleWorker
from sqlalchemy import select

from app import create_app
from app.cli import upgrade_database
from app.extensions import QUEUE_NAME, db, redis
from app.models import Contact, ContactChange, Import

HEADERS = ["Name", "Email", "Phone", "Company", "Job Title", "City"]


def csv_bytes(rows: list[list[str]], headers: list[str] = HEADERS) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(headers)
    writer.writerows(rows)
    return out.getvalue().encode()


class Imports:
    """Posts files to an app, runs their jobs in this process and reads what they stored."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.client = app.test_client()
        self.client.environ_base["HTTP_ACCEPT"] = "application/json"

    def run(self, data: bytes, mode: str | None = None, source: str = "crm") -> dict[str, Any]:
        headers = {"X-Source": source, **({"X-Merge-Mode": mode} if mode else {})}
        answer = self.client.post("/import", data=data, headers=headers, content_type="text/csv")
        assert answer.status_code == 202, answer.get_data(as_text=True)
        SimpleWorker([QUEUE_NAME], connection=redis()).work(burst=True, with_scheduler=False)
        db.session.remove()
        status = self.client.get(f"/imports/{answer.get_json()['jobId']}").get_json()
        assert status["status"] == "completed", status
        counted = sum(
            status[k]
            for k in ("insertedRows", "updatedRows", "unchangedRows", "duplicateRows", "rejectedRows")
        )
        assert counted == status["processedRows"], status
        return status

    def contacts(self, source: str = "crm") -> dict[str, tuple]:
        db.session.remove()
        rows = db.session.scalars(select(Contact).where(Contact.source == source)).all()
        return {c.email: (c.name, c.phone, c.company, c.title, c.attributes) for c in rows}


@pytest.fixture(params=["postgresql", "sqlite"])
def imports(
    request: pytest.FixtureRequest, make_app: Callable[..., Flask], tmp_path: Path, redis_url: str
) -> Iterator[Imports]:
    """An app on PostgreSQL (the test database) or on a fresh SQLite file, with its context pushed."""
    if request.param == "postgresql":
        app = make_app(WTF_CSRF_ENABLED="false")
    else:
        app = create_app(
            {
                "DATABASE_URL": f"sqlite:///{tmp_path / 'merge.db'}",
                "REDIS_URL": redis_url,
                "INSTANCE_DIR": str(tmp_path / "instance"),
                "SECRET_KEY": "test",
                "BATCH_SIZE": "2",
            }
        )
        upgrade_database(app)
    with app.app_context():
        yield Imports(app)
        db.session.remove()
        if request.param == "sqlite":
            redis().flushdb()
            db.engine.dispose()


@pytest.fixture
def imports_on_postgresql(make_app: Callable[..., Flask]) -> Iterator[Imports]:
    """The same on PostgreSQL alone, for what only it does (row locks, its transactions)."""
    app = make_app(WTF_CSRF_ENABLED="false")
    with app.app_context():
        yield Imports(app)
        db.session.remove()


STORED = [
    ["Ada Lovelace", "ada@example.com", "", "Analytical Engines", "", "London"],
    ["Grace Hopper", "grace@example.com", "+1 202 555 0123", "", "Rear Admiral", ""],
    ["Alan Turing", "alan@example.com", "+44 20 7946 0000", "Bletchley", "Cryptanalyst", "Wilmslow"],
]
# Ada gains a phone and a new company; Grace a company, a city and a blank title; Alan is the same;
# Edsger is new; Ada's second row repeats her; a row without an email is rejected.
AGAIN = [
    ["Ada King", "ADA@example.com", "+44 20 7946 0001", "Difference Engines", "Countess", "Marylebone"],
    ["Grace Hopper", "grace@example.com", "", "US Navy", "", "Arlington"],
    ["Alan Turing", "alan@example.com", "+44 20 7946 0000", "Bletchley", "Cryptanalyst", "Wilmslow"],
    ["Edsger Dijkstra", "edsger@example.nl", "", "", "", ""],
    ["Ada Again", "ada@example.com", "+44 20 7946 0002", "Elsewhere", "", ""],
    ["No Email", "", "", "", "", ""],
]


def _counts(status: dict) -> tuple[int, ...]:
    keys = ("insertedRows", "updatedRows", "unchangedRows", "duplicateRows", "rejectedRows")
    return tuple(status[k] for k in keys)


def test_skip_leaves_stored_contacts_alone(imports: Imports):
    imports.run(csv_bytes(STORED))
    before = imports.contacts()
    status = imports.run(csv_bytes(AGAIN))
    assert status["mode"] == "skip"
    assert _counts(status) == (1, 0, 0, 4, 1)
    after = imports.contacts()
    assert {k: v for k, v in after.items() if k in before} == before
    assert after["edsger@example.nl"] == ("Edsger Dijkstra", None, None, None, None)


def test_fill_fills_only_what_a_stored_contact_lacks(imports: Imports):
    imports.run(csv_bytes(STORED))
    status = imports.run(csv_bytes(AGAIN), mode="fill")
    assert _counts(status) == (1, 2, 1, 1, 1)
    after = imports.contacts()
    assert after["ada@example.com"] == (
        "Ada Lovelace",
        "+442079460001",
        "Analytical Engines",
        "Countess",
        {"City": "London"},
    )
    assert after["grace@example.com"] == (
        "Grace Hopper",
        "+12025550123",
        "US Navy",
        "Rear Admiral",
        {"City": "Arlington"},
    )


def test_update_takes_the_files_values_but_never_blanks_a_field(imports: Imports):
    imports.run(csv_bytes(STORED))
    status = imports.run(csv_bytes(AGAIN), mode="update")
    assert _counts(status) == (1, 2, 1, 1, 1)
    after = imports.contacts()
    assert after["ada@example.com"] == (
        "Ada King",
        "+442079460001",
        "Difference Engines",
        "Countess",
        {"City": "Marylebone"},
    )
    # The blank title and phone of Grace's row leave hers as they were.
    assert after["grace@example.com"] == (
        "Grace Hopper",
        "+12025550123",
        "US Navy",
        "Rear Admiral",
        {"City": "Arlington"},
    )
    assert after["alan@example.com"][0] == "Alan Turing"


def test_an_update_records_each_changed_contacts_previous_values(imports: Imports):
    imports.run(csv_bytes(STORED))
    status = imports.run(csv_bytes(AGAIN), mode="update")
    db.session.remove()
    changes = db.session.execute(
        select(Contact.email, ContactChange.previous)
        .join(Contact, Contact.id == ContactChange.contact_id)
        .where(ContactChange.import_id == status["jobId"])
        .order_by(Contact.email)
    ).all()
    assert [(email, previous) for email, previous in changes] == [
        ("ada@example.com", {
            "name": "Ada Lovelace", "phone": None, "company": "Analytical Engines", "title": None,
            "attributes": {"City": "London"}, "updated_at": None,
        }),
        ("alan@example.com", None),  # met, and nothing new: no values to restore
        ("grace@example.com", {
            "name": "Grace Hopper", "phone": "+12025550123", "company": None, "title": "Rear Admiral",
            "attributes": None, "updated_at": None,
        }),
    ]  # fmt: skip
    ada = db.session.scalars(select(Contact).where(Contact.email == "ada@example.com")).one()
    assert ada.updated_at is not None


def test_the_first_row_of_an_email_wins_across_batches_and_runs(imports: Imports):
    """With two-row batches on SQLite, Ada's repeat lands in a later batch than her first row."""
    imports.run(csv_bytes(STORED))
    rows = [AGAIN[0], AGAIN[3], ["X", "x@example.com", "", "", "", ""], AGAIN[4]]
    status = imports.run(csv_bytes(rows), mode="update")
    assert _counts(status) == (2, 1, 0, 1, 0)
    assert imports.contacts()["ada@example.com"][2] == "Difference Engines"


def test_a_second_update_with_the_same_file_changes_nothing(imports: Imports):
    imports.run(csv_bytes(STORED))
    imports.run(csv_bytes(AGAIN), mode="update")
    again = imports.run(csv_bytes(AGAIN), mode="update")
    assert _counts(again) == (0, 0, 4, 1, 1)


@pytest.mark.parametrize("how", ["json", "multipart", "stream"])
def test_an_unknown_mode_is_400_naming_the_modes_and_stores_nothing(imports: Imports, how: str):
    client = imports.client
    if how == "json":
        body = {"source": "crm", "mode": "merge", "data": [{"name": "Ada", "email": "ada@example.com"}]}
        answer = client.post("/import", json=body)
        message = answer.get_json()["issues"][0]["message"]
    elif how == "multipart":
        form = {"source": "crm", "mode": "merge", "file": (io.BytesIO(csv_bytes(STORED)), "a.csv")}
        answer = client.post("/import", data=form, content_type="multipart/form-data")
        message = answer.get_json()["error"]
    else:
        answer = client.post(
            "/import", data=csv_bytes(STORED), headers={"X-Source": "crm", "X-Merge-Mode": "merge"}
        )
        message = answer.get_json()["error"]
    assert answer.status_code == 400
    assert "skip, fill, update" in message and "'merge'" in message
    assert db.session.scalars(select(Import)).all() == []


def test_json_and_multipart_imports_take_a_mode(imports: Imports):
    imports.run(csv_bytes(STORED))
    body = {
        "source": "crm",
        "mode": "fill",
        "data": [{"name": "Ada", "email": "ada@example.com", "title": "Countess", "twitter": "@ada"}],
    }
    answer = imports.client.post("/import", json=body)
    assert answer.status_code == 202
    SimpleWorker([QUEUE_NAME], connection=redis()).work(burst=True, with_scheduler=False)
    status = imports.client.get(f"/imports/{answer.get_json()['jobId']}").get_json()
    assert (status["mode"], status["updatedRows"]) == ("fill", 1)
    assert imports.contacts()["ada@example.com"][3:] == ("Countess", {"City": "London", "twitter": "@ada"})

    form = {"source": "crm", "mode": "update", "file": (io.BytesIO(csv_bytes([AGAIN[0]])), "a.csv")}
    answer = imports.client.post("/import", data=form, content_type="multipart/form-data")
    assert answer.status_code == 202
    SimpleWorker([QUEUE_NAME], connection=redis()).work(burst=True, with_scheduler=False)
    db.session.remove()
    status = imports.client.get(f"/imports/{answer.get_json()['jobId']}").get_json()
    assert (status["mode"], status["updatedRows"]) == ("update", 1)
    assert imports.contacts()["ada@example.com"][0] == "Ada King"


def test_a_vcard_and_an_outlook_export_keep_their_fields(imports: Imports):
    from tests import exports

    imports.run(exports.iphone_vcard(), source="phone")
    imports.run(exports.outlook_desktop_csv(), source="outlook")
    card = imports.contacts("phone")["zoe.obrien@example.ie"]
    assert card[:4] == (
        "Dr. Zoë Anne O'Brien PhD",
        "+35312345678;ext=12",
        "Trinity Labs, Ltd.",
        "Research Lead",
    )
    assert card[4]["BDAY"] == "1985-04-12" and card[4]["Name Prefix"] == "Dr."
    outlook = imports.contacts("outlook")["juergen.mueller@example.de"]
    assert outlook[:4] == ("Jürgen Müller", "+49891234567", "Müller & Söhne GmbH", "Geschäftsführer")
    assert outlook[4]["emails"] == ["jürgen@münchen.de"] and outlook[4]["Gender"] == "Unspecified"
