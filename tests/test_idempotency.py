"""Idempotency-Key on POST /import, against a real threaded HTTP server, and the SHA-256 lookup."""

from __future__ import annotations

import hashlib
import http.client
import io
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from app.extensions import db
from app.imports.idempotency import expire_keys
from app.models import Contact, IdempotencyKey, Import, utcnow
from tests.conftest import served_in_thread

CSV = b"name,email\nAda Lovelace,ada@example.com\nGrace Hopper,grace@example.com\n"


@pytest.fixture
def server(app) -> Iterator[str]:
    """The app served over real HTTP by a threaded server on a free port; yields host:port."""
    with served_in_thread(app) as url:
        yield url.removeprefix("http://")


def post(address: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict, dict[str, str]]:
    """One POST /import over its own connection."""
    host, port = address.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("POST", "/import", body=body, headers={"Accept": "application/json", **headers})
        response = connection.getresponse()
        return response.status, json.loads(response.read()), dict(response.getheaders())
    finally:
        connection.close()


def imports() -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(Import))


def test_twenty_concurrent_requests_with_one_key_start_one_import(server):
    headers = {"Content-Type": "text/csv", "X-Source": "crm", "Idempotency-Key": "order-42"}
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda _: post(server, CSV, headers), range(20)))

    assert imports() == 1
    job_id = db.session.scalar(select(Import.id))
    statuses = sorted(status for status, _, _ in answers)
    assert set(statuses) <= {202, 409}
    assert statuses.count(202) >= 1
    for status, body, _ in answers:
        if status == 202:
            assert body == {"jobId": job_id}
        else:
            assert "in progress" in body["error"]

    # Once the first has finished, a retry gets the same answer, marked as a replay.
    status, body, response_headers = post(server, CSV, headers)
    assert (status, body) == (202, {"jobId": job_id})
    assert response_headers["Location"] == f"/imports/{job_id}"
    assert response_headers["Idempotent-Replayed"] == "true"
    assert imports() == 1


def test_same_key_with_another_request_is_422(server):
    headers = {"Content-Type": "text/csv", "X-Source": "crm", "Idempotency-Key": "k-1"}
    first, body, _ = post(server, CSV, headers)
    assert first == 202
    other_file = CSV + b"Alan Turing,alan@example.com\n"
    for changed_body, changed_headers in (
        (other_file, headers),
        (CSV, {**headers, "X-Source": "events"}),
        (CSV, {**headers, "X-Use-Resumable": "true"}),
        (CSV, {**headers, "Content-Type": "application/octet-stream"}),
    ):
        status, answer, _ = post(server, changed_body, changed_headers)
        assert status == 422, changed_headers
        assert "different request" in answer["error"]
    assert imports() == 1
    assert post(server, CSV, headers)[1] == body


def test_json_and_multipart_requests_replay_too(client, work):
    payload = {"source": "crm", "data": [{"name": "Ada", "email": "ada@example.com"}]}
    first = client.post("/import", json=payload, headers={"Idempotency-Key": "json-1"})
    again = client.post("/import", json=payload, headers={"Idempotency-Key": "json-1"})
    assert first.status_code == again.status_code == 202
    assert first.get_json() == again.get_json()
    changed = client.post(
        "/import", json={**payload, "useResumable": True}, headers={"Idempotency-Key": "json-1"}
    )
    assert changed.status_code == 422

    def form() -> dict:
        return {"file": (io.BytesIO(CSV), "c.csv"), "source": "fair"}

    one = client.post("/import", data=form(), headers={"Idempotency-Key": "mp-1"})
    two = client.post("/import", data=form(), headers={"Idempotency-Key": "mp-1"})
    assert one.status_code == two.status_code == 202
    assert one.get_json() == two.get_json()
    assert imports() == 2
    work()
    assert db.session.scalar(select(func.count()).select_from(Contact)) == 3


def test_a_refused_request_does_not_use_up_its_key(client):
    bad = client.post("/import", data=CSV, headers={"Idempotency-Key": "fix-me"})  # no source
    assert bad.status_code == 400
    good = client.post("/import", data=CSV, headers={"Idempotency-Key": "fix-me", "X-Source": "crm"})
    assert good.status_code == 202
    assert imports() == 1


def test_bad_keys_are_refused(client):
    for key in ("", "   ", "x" * 256, "naïve"):
        response = client.post(
            "/import", data=CSV, headers={"Idempotency-Key": key.encode().decode("latin-1"), "X-Source": "s"}
        )
        assert response.status_code == 400, key
        assert "Idempotency-Key" in response.get_json()["error"]
    assert imports() == 0


def test_keys_expire_after_24_hours(client):
    headers = {"Idempotency-Key": "old", "X-Source": "crm"}
    first = client.post("/import", data=CSV, headers=headers).get_json()["jobId"]
    db.session.execute(update(IdempotencyKey).values(created_at=utcnow() - timedelta(hours=24, minutes=1)))
    db.session.commit()
    second = client.post("/import", data=CSV, headers=headers).get_json()["jobId"]
    assert second != first  # an expired key is a new key
    assert imports() == 2

    db.session.execute(update(IdempotencyKey).values(created_at=utcnow() - timedelta(hours=25)))
    db.session.commit()
    client.post("/import", data=CSV, headers={"Idempotency-Key": "fresh", "X-Source": "crm"})
    expire_keys()
    assert db.session.scalars(select(IdempotencyKey.key)).all() == ["fresh"]


def test_lookup_by_sha256_finds_an_earlier_import_of_the_file(client):
    job_id = client.post("/import", data=CSV, headers={"X-Source": "crm"}).get_json()["jobId"]
    digest = hashlib.sha256(CSV).hexdigest()
    assert client.get(f"/imports/{job_id}").get_json()["sha256"] == digest

    found = client.get(f"/imports?source=crm&sha256={digest.upper()}").get_json()
    assert [item["jobId"] for item in found["items"]] == [job_id]
    assert client.get(f"/imports?source=other&sha256={digest}").get_json()["total"] == 0
    missing = hashlib.sha256(b"something else").hexdigest()
    assert client.get(f"/imports?source=crm&sha256={missing}").get_json()["total"] == 0
    assert client.get("/imports?sha256=not-a-hash").status_code == 400


def test_a_replay_that_reads_the_file_otherwise_is_another_request(server):
    mapping = {"name": "name", "email": "email"}
    headers = {
        "Content-Type": "text/csv",
        "X-Source": "crm",
        "Idempotency-Key": "read-1",
        "X-Mapping": json.dumps(mapping),
    }
    first, body, _ = post(server, CSV, headers)
    assert first == 202
    for changed in (
        {"X-Mapping": json.dumps({"name": "email", "email": "email"})},
        {"X-Mapping": ""},
        {"X-Header-Row": "1"},
        {"X-Sheet": "Contacts"},
        {"X-Review": "true"},
    ):
        status, answer, _ = post(server, CSV, {**headers, **changed})
        assert status == 422, changed
        assert "different request" in answer["error"] and "mapping" in answer["error"]
    # The same mapping written in another order and spacing is the same request.
    reordered = json.dumps({"email": "email", "name": "name"}, indent=2).replace("\n", " ")
    status, again, replayed = post(server, CSV, {**headers, "X-Mapping": reordered})
    assert (status, again, replayed["Idempotent-Replayed"]) == (202, body, "true")
    assert imports() == 1


def test_a_multipart_replay_with_another_mapping_is_422(client):
    def form(**fields: str) -> dict:
        return {"file": (io.BytesIO(CSV), "c.csv"), "source": "fair", **fields}

    mapping = json.dumps({"name": "name", "email": "email"})
    first = client.post("/import", data=form(mapping=mapping), headers={"Idempotency-Key": "mp-map"})
    assert first.status_code == 202
    same = client.post("/import", data=form(mapping=mapping), headers={"Idempotency-Key": "mp-map"})
    assert same.status_code == 202 and same.get_json() == first.get_json()
    for fields in (
        {"mapping": json.dumps({"name": "email", "email": "email"})},
        {},
        {"mapping": mapping, "headerRow": "2"},
        {"mapping": mapping, "review": "true"},
    ):
        other = client.post("/import", data=form(**fields), headers={"Idempotency-Key": "mp-map"})
        assert other.status_code == 422, fields
    assert imports() == 1


def test_requests_without_reading_options_keep_their_earlier_fingerprints():
    from app.imports.idempotency import fingerprint
    from app.imports.review import ImportOptions

    asked = {
        "method": "POST",
        "path": "/import",
        "content_type": "text/csv",
        "source": "crm",
        "use_resumable": False,
        "sha256": "0" * 64,
    }
    earlier = hashlib.sha256("\n".join(["POST", "/import", "text/csv", "crm", "false", "0" * 64]).encode())
    assert fingerprint(**asked) == fingerprint(**asked, options=ImportOptions()) == earlier.hexdigest()
    assert fingerprint(**asked, options=ImportOptions(review=True)) != earlier.hexdigest()
