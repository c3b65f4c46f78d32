"""Preview, explicit mappings, imports held in review, and mappings saved per source, through the API."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, update

from app.extensions import db
from app.imports.review import expire_reviews
from app.models import Contact, Import
from tests.conftest import stored_files
from tests.exports import google_contacts_csv, linkedin_connections_csv

PEOPLE = [
    {"first": "Ada", "last": "Lovelace", "email": "ada@example.com", "phone": "+44 20 7946 0000"},
    {"first": "Grace", "last": "Hopper", "email": "grace@example.com"},
    {"first": "Zoë", "last": "Brown", "email": "not-an-address"},
]
ODD = (
    "Nom complet;Adresse électronique;Téléphone\n"
    "Ada Lovelace;ada@example.com;1\n"
    "Grace Hopper;grace@example.com;2\n"
)


def stream(client: FlaskClient, path: str, data: bytes, **headers: str):  # type: ignore[no-untyped-def]
    return client.post(path, data=data, headers={"X-Source": "crm", **headers}, content_type="text/csv")


def stored(source: str = "crm") -> list[tuple[str, str]]:
    db.session.rollback()
    rows = db.session.execute(select(Contact.name, Contact.email).where(Contact.source == source))
    return sorted(tuple(row) for row in rows)  # type: ignore[misc]


# -- preview ----------------------------------------------------------------------------------------


def test_preview_of_a_google_export_answers_what_an_import_would_do_and_stores_nothing(client, app):
    response = stream(client, "/imports/preview", google_contacts_csv(PEOPLE))
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert set(body) == {
        "format", "encoding", "delimiter", "sheets", "sheet", "headerRow", "columns",
        "mapping", "mappingFrom", "sample", "unmapped",
    }  # fmt: skip
    assert (body["format"], body["encoding"], body["delimiter"], body["headerRow"]) == (
        "csv",
        "utf-8",
        ",",
        1,
    )
    assert body["columns"][18] == "E-mail 1 - Value" and len(body["columns"]) > 30
    assert body["mapping"]["email"] in ("E-mail 1 - Value", ["E-mail 1 - Value", "E-mail 2 - Value"])
    assert body["mapping"]["name"] == ["First Name", "Middle Name", "Last Name"] or body["mapping"]["name"]
    assert body["mappingFrom"] == "detected"
    assert "Notes" in body["unmapped"] and "E-mail 1 - Value" not in body["unmapped"]
    sample = body["sample"]
    assert [item["row"] for item in sample] == [2, 3, 4]
    assert sample[0]["values"]["email"] == "ada@example.com" and sample[0]["values"]["name"] == "Ada Lovelace"
    assert sample[0]["problems"] == []
    assert sample[2]["values"] is None
    assert sample[2]["problems"][0]["field"] == "email" and sample[2]["problems"][0]["level"] == "error"
    assert db.session.scalar(select(Import.id)) is None and stored_files(app) == []


def test_preview_of_a_linkedin_export_in_each_body_form(client):
    data = linkedin_connections_csv(PEOPLE)
    multipart = client.post(
        "/imports/preview",
        data={"file": (io.BytesIO(data), "Connections.csv"), "source": "linkedin"},
        content_type="multipart/form-data",
    ).get_json()
    raw = stream(client, "/imports/preview", data).get_json()
    for body in (multipart, raw):
        assert body["headerRow"] == 4 and body["sample"][0]["row"] == 5
        assert body["mapping"]["email"] == "Email Address"
    as_json = client.post(
        "/imports/preview",
        json={"source": "crm", "data": [{"name": "Ada", "email": "ada@example.com", "x": 1}]},
    ).get_json()
    assert as_json["format"] == "json" and sorted(as_json["columns"]) == ["email", "name", "x"]
    assert as_json["sample"][0]["values"]["email"] == "ada@example.com"


def test_preview_with_a_mapping_for_headers_no_synonym_knows(client):
    mapping = {"name": "Nom complet", "email": "Adresse électronique"}
    body = stream(client, "/imports/preview", ODD.encode(), **{"X-Mapping": json.dumps(mapping)}).get_json()
    assert body["mappingFrom"] == "given"
    assert body["mapping"]["name"] == "Nom complet" and body["mapping"]["email"] == "Adresse électronique"
    assert body["unmapped"] == ["Téléphone"]
    assert body["sample"][1]["values"]["name"] == "Grace Hopper"


def test_preview_of_a_file_it_cannot_map_still_shows_its_columns(client):
    body = stream(client, "/imports/preview", b"Alpha,Beta\nx,y\n").get_json()
    assert body["columns"] == ["Alpha", "Beta"] and body["mapping"]["email"] is None
    assert {p["field"] for p in body["sample"][0]["problems"]} == {"name", "email"}


class GigabyteCsv(io.RawIOBase):
    """A 1 GB CSV whose bytes past its first 2 MB must never be read: reading there fails."""

    SIZE = 10**9

    def __init__(self) -> None:
        self.head = b"Name,Email\n" + b"".join(b"Person %d,p%d@example.com\n" % (i, i) for i in range(80_000))
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self.position = (
            offset if whence == 0 else self.SIZE + offset if whence == 2 else self.position + offset
        )
        return self.position

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        if self.position >= len(self.head):
            raise AssertionError("the preview read past the first 2 MB of the file")
        n = min(len(buffer), len(self.head) - self.position)
        buffer[:n] = self.head[self.position : self.position + n]
        self.position += n
        return n


def test_preview_reads_only_the_head_of_a_large_file(client):
    response = client.post(
        "/imports/preview", input_stream=GigabyteCsv(), headers={"X-Source": "crm"}, content_type="text/csv"
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert len(body["sample"]) == 20 and body["sample"][-1]["values"]["email"] == "p19@example.com"


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"name": "Nom complet", "email": "Courriel"}, "The file has no column 'Courriel' (mapped to email)"),
        ({"name": "Nom complet", "email": "Adresse électronique", "shoe": "x"}, "no field shoe"),
        ({"name": "Nom complet"}, "must name the email column"),
        ({"name": "Nom complet", "email": "Adresse électronique", "attributes": ["Fax"]}, "no column 'Fax'"),
    ],
    ids=["missing-column", "unknown-field", "no-email", "missing-attribute"],
)
def test_a_bad_mapping_is_400_naming_it_before_anything_is_stored(client, app, mapping, message):
    for path in ("/imports/preview", "/import"):
        response = stream(client, path, ODD.encode(), **{"X-Mapping": json.dumps(mapping)})
        assert response.status_code == 400, path
        assert message in response.get_json()["error"]
    multipart = client.post(
        "/import",
        data={"file": (io.BytesIO(ODD.encode()), "x.csv"), "source": "crm", "mapping": json.dumps(mapping)},
        content_type="multipart/form-data",
    )
    assert multipart.status_code == 400 and message in multipart.get_json()["error"]
    assert db.session.scalar(select(Import.id)) is None and stored_files(app) == []


def test_options_that_are_no_options_are_400(client):
    assert "not valid JSON" in stream(client, "/import", b"a", **{"X-Mapping": "{"}).get_json()["error"]
    assert (
        "must be a JSON object" in stream(client, "/import", b"a", **{"X-Mapping": "[1]"}).get_json()["error"]
    )
    assert (
        "headerRow must be" in stream(client, "/import", b"a", **{"X-Header-Row": "two"}).get_json()["error"]
    )
    response = stream(client, "/import", ODD.encode(), **{"X-Header-Row": "9"})
    assert response.status_code == 400 and "Row 9 cannot be the header" in response.get_json()["error"]


# -- imports with options ---------------------------------------------------------------------------


def test_an_explicit_mapping_imports_headers_no_synonym_knows(client, work):
    mapping = {"name": "Nom complet", "email": "Adresse électronique"}
    response = stream(client, "/import", ODD.encode(), **{"X-Mapping": json.dumps(mapping)})
    assert response.status_code == 202
    work()
    status = client.get(response.headers["Location"]).get_json()
    assert status["status"] == "completed", status["error"]
    assert status["mappingFrom"] == "given" and status["mapping"]["email"] == "Adresse électronique"
    assert stored() == [("Ada Lovelace", "ada@example.com"), ("Grace Hopper", "grace@example.com")]


def test_a_json_body_carries_review_and_a_mapping_for_its_items(client, work):
    response = client.post(
        "/import",
        json={"source": "crm", "data": [{"name": "Ada", "email": "ada@example.com"}], "review": True},
    )
    assert response.status_code == 202
    assert client.get(response.headers["Location"]).get_json()["status"] == "review"
    items = [{"name": "Ada", "email": "ada@example.com", "nom": "Ada Lovelace"}]
    mapped = client.post(
        "/import", json={"source": "fr", "data": items, "mapping": {"name": "nom", "email": "email"}}
    )
    assert mapped.status_code == 202
    work()
    assert stored("fr") == [("Ada Lovelace", "ada@example.com")]


def test_a_header_row_given_for_a_stream_is_used(client, work):
    data = b"Report,2026\nName,Email\nAda,ada@example.com\n"
    response = stream(client, "/import", data, **{"X-Header-Row": "2"})
    work()
    status = client.get(response.headers["Location"]).get_json()
    assert (status["status"], status["headerRow"], status["insertedRows"]) == ("completed", 2, 1)


# -- review -----------------------------------------------------------------------------------------


def test_an_import_held_in_review_starts_with_the_mapping_chosen_and_remembers_it(client, work):
    response = stream(client, "/import", ODD.encode(), **{"X-Review": "true"})
    assert response.status_code == 202
    job = response.headers["Location"]
    work()  # nothing runs: the import waits for its review
    status = client.get(job).get_json()
    assert (status["status"], status["processedRows"]) == ("review", 0)
    preview = client.get(f"{job}/preview").get_json()
    assert preview["mapping"]["email"] == "Adresse électronique"  # its addresses give it away
    assert preview["mapping"]["name"] is None

    mapping = {"name": "Nom complet", "email": "Adresse électronique", "phone": "Téléphone"}
    bad = client.post(f"{job}/start", json={"mapping": {"name": "Nope", "email": "Adresse électronique"}})
    assert bad.status_code == 400 and "no column 'Nope'" in bad.get_json()["error"]
    started = client.post(f"{job}/start", json={"mapping": mapping, "remember": True})
    assert started.status_code == 202 and started.get_json()["status"] == "queued"
    work()
    status = client.get(job).get_json()
    assert (status["status"], status["insertedRows"], status["mappingFrom"]) == ("completed", 2, "given")
    assert client.post(f"{job}/start", json={}).status_code == 409

    # the source's next file with these columns uses the saved mapping, by the API too
    saved = client.get("/sources/crm/mapping").get_json()
    assert saved["mapping"] == mapping and saved["source"] == "crm"
    again = stream(client, "/import", ODD.replace("Ada Lovelace", "Ada King").encode(), **{"X-Source": "crm"})
    assert stream(client, "/imports/preview", ODD.encode()).get_json()["mappingFrom"] == "saved"
    work()
    status = client.get(again.headers["Location"]).get_json()
    assert (status["status"], status["mappingFrom"]) == ("completed", "saved")


def test_saved_mappings_can_be_put_read_and_deleted(client, work):
    assert client.get("/sources/shop/mapping").status_code == 404
    bad = client.put("/sources/shop/mapping", json={"name": "Nom complet", "eMail": "x"})
    assert bad.status_code == 400 and "eMail" in bad.get_json()["error"]
    mapping = {"name": "Nom complet", "email": "Adresse électronique"}
    assert client.put("/sources/shop/mapping", json=mapping).get_json()["mapping"] == mapping
    response = stream(client, "/import", ODD.encode(), **{"X-Source": "shop"})
    work()
    status = client.get(response.headers["Location"]).get_json()
    assert (status["status"], status["mappingFrom"], status["insertedRows"]) == ("completed", "saved", 2)
    # a file whose columns do not match the saved mapping is detected as usual
    other = stream(client, "/import", b"Name,Email\nBo,bo@example.com\n", **{"X-Source": "shop"})
    work()
    assert client.get(other.headers["Location"]).get_json()["mappingFrom"] == "detected"
    assert client.delete("/sources/shop/mapping").status_code == 204
    assert client.delete("/sources/shop/mapping").status_code == 404


def test_an_import_left_in_review_expires_and_its_file_is_deleted(client, app):
    response = stream(client, "/import", ODD.encode(), **{"X-Review": "true"})
    job_id = response.get_json()["jobId"]
    assert len(stored_files(app)) == 1
    db.session.execute(
        update(Import).where(Import.id == job_id).values(created_at=Import.created_at - timedelta(days=2))
    )
    db.session.commit()
    expire_reviews()
    status = client.get(f"/imports/{job_id}").get_json()
    assert status["status"] == "cancelled" and "UPLOAD_EXPIRY" in status["error"]
    assert stored_files(app) == []


def test_a_file_it_could_not_map_is_mapped_and_run_again_without_a_new_upload(client, work):
    response = stream(client, "/import", b"Nom complet;Adresse\nAda Lovelace;pas d'adresse\n")
    job = response.headers["Location"]
    work()
    failed = client.get(job).get_json()
    assert failed["status"] == "failed" and "The columns are: Nom complet, Adresse." in failed["error"]
    assert client.post(f"{job}/start", json={}).status_code == 409  # not in review
    reopened = client.post(f"{job}/reopen")
    assert reopened.status_code == 200 and reopened.get_json()["status"] == "review"
    mapping = {"name": "Nom complet", "email": "Adresse"}
    assert client.post(f"{job}/start", json={"mapping": mapping}).status_code == 202
    work()
    status = client.get(job).get_json()
    assert (status["status"], status["rejectedRows"], status["mappingFrom"]) == ("completed", 1, "given")
    assert client.post(f"{job}/reopen").status_code == 409


def test_review_saved_mappings_and_skipped_rows_on_sqlite(tmp_path, redis_url):
    from rq import SimpleWorker

    from app import create_app
    from app.cli import upgrade_database
    from app.extensions import QUEUE_NAME
    from app.extensions import redis as app_redis

    app = create_app(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'review.db'}",
            "REDIS_URL": redis_url,
            "INSTANCE_DIR": str(tmp_path / "instance"),
            "SECRET_KEY": "test",
        }
    )
    upgrade_database(app)
    with app.app_context():
        client = app.test_client()
        job = stream(client, "/import", b"Fair 2026\n\n" + ODD.encode(), **{"X-Review": "true"}).headers[
            "Location"
        ]
        mapping = {"name": "Nom complet", "email": "Adresse électronique"}
        started = client.post(f"{job}/start", json={"mapping": mapping, "remember": True})
        assert started.status_code == 202, started.get_data(as_text=True)
        SimpleWorker([QUEUE_NAME], connection=app_redis()).work(burst=True, with_scheduler=False)
        db.session.remove()
        status = client.get(job).get_json()
        assert (status["status"], status["insertedRows"], status["skippedRows"]) == ("completed", 2, 1)
        assert client.get("/sources/crm/mapping").get_json()["mapping"] == mapping
        preview = stream(client, "/imports/preview", ODD.encode()).get_json()
        assert preview["mappingFrom"] == "saved"
        db.session.remove()
