"""GET /contacts, and what the import page says of the columns, warnings and merges."""

from __future__ import annotations

import io
import re
from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient
from rq import SimpleWorker
from sqlalchemy import func, select

from app.extensions import QUEUE_NAME, db, redis
from app.models import Import
from tests import exports
from tests.test_pages import HTML, start
from tests.test_pipeline import finished

TOKEN = "tok-" + "d" * 28


def test_contacts_come_with_every_field_and_attribute(client: FlaskClient, work: Callable[[], None]):
    job_id = start(client, exports.google_contacts_csv(), "google.csv", "google")
    start(client, "name,email\nOther,other@example.com\n", "other.csv", "elsewhere")
    work()
    finished(client, job_id)
    page = client.get("/contacts?source=google&per_page=4").get_json()
    assert (page["page"], page["pages"], page["total"]) == (1, 2, 6)
    ada = next(c for c in client.get("/contacts?source=google&page=2&per_page=4").get_json()["items"])
    assert set(ada) == {
        "id", "name", "email", "phone", "company", "title", "attributes",
        "source", "importId", "importedAt", "updatedAt",
    }  # fmt: skip
    everyone = client.get("/contacts?source=google").get_json()["items"]
    ada = next(c for c in everyone if c["email"] == "ada@example.com")
    assert ada["name"] == "Ada Lovelace" and ada["phone"] == "+442079460000"
    assert (ada["company"], ada["title"]) == ("Analytical Engines", "Mathematician")
    assert ada["attributes"]["First Name"] == "Ada" and ada["attributes"]["Labels"] == "* myContacts"
    assert ada["source"] == "google" and ada["importId"] == job_id
    assert ada["importedAt"].endswith("Z") and ada["updatedAt"] is None
    assert client.get("/contacts").get_json()["total"] == 7
    assert client.get(f"/contacts?importId={job_id}").get_json()["total"] == 6
    assert client.get("/contacts?source=%01").status_code == 400


def test_contacts_need_a_token_like_the_imports(make_app: Callable[..., Flask]):
    app = make_app(API_TOKENS=TOKEN, RATE_LIMITS_ENABLED="false")
    client = app.test_client()
    refused = client.get("/contacts", headers={"Accept": "application/json"})
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
    allowed = client.get("/contacts", headers={"Authorization": f"Bearer {TOKEN}"})
    assert allowed.status_code == 200 and allowed.get_json()["items"] == []


def test_the_import_page_says_where_columns_went_and_lists_warnings_apart(
    app: Flask, client: FlaskClient, work: Callable[[], None]
):
    rows = [*exports.PEOPLE[:2], {**exports.PEOPLE[5], "phone": "not a phone"}, {"first": "No", "email": "x"}]
    job_id = start(client, exports.google_contacts_csv(rows), "google.csv", "google")
    work()
    page = app.test_client().get(f"/imports/{job_id}", headers=HTML).get_data(as_text=True)
    assert re.search(r'data-count="warnings">1<', page)
    assert re.search(r'data-count="rejected">1<', page)
    assert "E-mail 1 - Value, E-mail 2 - Value → email (the first valid one)" in page
    assert "Organization Name → company" in page and "Organization Title → title" in page
    assert "25 other columns kept as extra fields" in page
    assert "Updated" not in page  # a skip import has nothing to update
    rejected, warnings = page.split('id="errors"')[1].split('id="warnings"')
    assert "Not a valid email address" in rejected and "not a phone" not in rejected
    assert "not a phone" in warnings and "Stored with a warning" in warnings


def test_the_page_shows_updated_and_unchanged_of_a_merge(app: Flask, client: FlaskClient, work):
    start(client, "name,email\nAda,ada@example.com\nBob,bob@example.com\n")
    work()
    response = client.post(
        "/import",
        data=b"name,email,phone\nAda,ada@example.com,+44 20 7946 0000\nBob,bob@example.com,\n",
        headers={"X-Source": "crm", "X-Merge-Mode": "fill"},
    )
    job_id = response.get_json()["jobId"]
    work()
    page = app.test_client().get(f"/imports/{job_id}", headers=HTML).get_data(as_text=True)
    assert re.search(r'data-count="updated">1<', page) and re.search(r'data-count="unchanged">1<', page)
    assert "Merge mode: fill" in page


def test_the_upload_page_no_longer_says_other_columns_are_ignored(app: Flask):
    page = app.test_client().get("/", headers=HTML).get_data(as_text=True)
    assert "ignored" not in page
    assert "kept with the contact" in page


def test_the_plain_form_takes_a_merge_mode(make_app: Callable[..., Flask]):
    app = make_app()
    with app.app_context():
        browser = app.test_client()
        page = browser.get("/", headers=HTML).get_data(as_text=True)
        assert 'value="fill"' in page and "Leave them as they are" in page
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
        form = {"csrf_token": token, "source": "fair", "mode": "update"}
        response = browser.post(
            "/", data={**form, "file": (io.BytesIO(b"name,email\nA,a@example.com\n"), "a.csv")}, headers=HTML
        )
        assert response.status_code == 303
        assert db.session.scalars(select(Import.mode)).all() == ["update"]
        wrong = browser.post(
            "/", data={**form, "mode": "merge", "file": (io.BytesIO(b"x"), "a.csv")}, headers=HTML
        )
        assert wrong.status_code == 400 and db.session.scalar(select(func.count()).select_from(Import)) == 1


def test_suggestions_show_on_the_page_and_in_rejected_csv(app: Flask, client: FlaskClient, work):
    job_id = start(client, "name,email\nAda,ada@gmail\nLinus,linus@gmial.com\n")
    work()
    status = client.get(f"/imports/{job_id}").get_json()
    assert (status["insertedRows"], status["rejectedRows"], status["warningRows"]) == (1, 1, 1)
    rejected = app.test_client().get(f"/imports/{job_id}/rejected.csv").get_data(as_text=True)
    assert "Did you mean ada@gmail.com?" in rejected and "linus" not in rejected
    page = app.test_client().get(f"/imports/{job_id}", headers=HTML).get_data(as_text=True)
    assert "Email may have a typo: did you mean linus@gmail.com?" in page


def test_national_numbers_take_the_default_phone_region(make_app: Callable[..., Flask]):
    app = make_app(DEFAULT_PHONE_REGION="GB", WTF_CSRF_ENABLED="false")
    with app.app_context():
        client = app.test_client()
        client.environ_base["HTTP_ACCEPT"] = "application/json"
        start(client, "name,email,phone\nAda,ada@example.com,020 7946 0000\nBob,bob@example.com,555\n")
        SimpleWorker([QUEUE_NAME], connection=redis()).work(burst=True, with_scheduler=False)
        items = {c["email"]: c for c in client.get("/contacts").get_json()["items"]}
        assert items["ada@example.com"]["phone"] == "+442079460000"
        assert items["bob@example.com"]["phone"] is None
        assert items["bob@example.com"]["attributes"] == {"phone": "555"}
