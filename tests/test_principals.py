"""Ownership and scopes: uploads and idempotency keys per principal, who started an import, token scopes."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable

import pytest
from flask import Flask
from rq import SimpleWorker

from app.config import ConfigError
from app.extensions import QUEUE_NAME, redis
from app.principals import fingerprint
from tests.test_auth import PASSWORD, csrf_token_of, sign_in

ADMIN = "adm-" + "a" * 28
ALICE = "ali-" + "b" * 28
BOB = "bob-" + "c" * 28
READER = "rdr-" + "d" * 28
CRM_ONLY = "crm-" + "e" * 28
BODY = {"source": "crm", "data": [{"name": "Ada", "email": "ada@example.com"}]}
TUS = {"Tus-Resumable": "1.0.0"}
CSV = b"name,email\nAda Lovelace,ada@example.com\n"


@pytest.fixture
def scoped(make_app: Callable[..., Flask]) -> Flask:
    """An app with a bare (full rights) token, two import tokens, a reader and a crm-only token."""
    tokens = f"{ADMIN}, {ALICE}:read+import, {BOB}:read+import, {READER}:read, {CRM_ONLY}:read+import:crm"
    return make_app(API_TOKENS=tokens, RATE_LIMITS_ENABLED="false")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept": "application/json"}


def metadata(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def test_an_upload_is_only_there_for_the_principal_that_created_it(scoped):
    client = scoped.test_client()
    creation = {"Upload-Length": str(len(CSV)), "Upload-Metadata": metadata(source="crm")}
    created = client.post("/uploads", headers=TUS | bearer(ALICE) | creation)
    assert created.status_code == 201
    path = "/uploads/" + created.headers["Location"].rsplit("/", 1)[1]
    chunk = {"Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"}
    assert client.head(path, headers=TUS | bearer(BOB)).status_code == 404
    assert client.patch(path, data=b"x" * 12, headers=TUS | bearer(BOB) | chunk).status_code == 404
    assert client.delete(path, headers=TUS | bearer(BOB)).status_code == 404
    assert client.delete(path, headers=TUS | bearer(ADMIN)).status_code == 404  # its owner's alone
    mine = client.head(path, headers=TUS | bearer(ALICE))
    assert mine.status_code == 200 and mine.headers["Upload-Offset"] == "0"  # nothing was written
    done = client.patch(path, data=CSV, headers=TUS | bearer(ALICE) | chunk)
    assert done.status_code == 204
    job = client.get(f"/imports/{done.headers['X-Import-Id']}", headers=bearer(ALICE)).get_json()
    assert job["createdBy"] == f"token:{fingerprint(ALICE)}"


def test_an_idempotency_key_belongs_to_its_principal(scoped):
    client = scoped.test_client()
    key = {"Idempotency-Key": "order-42"}
    first = client.post("/import", json=BODY, headers=bearer(ALICE) | key)
    again = client.post("/import", json=BODY, headers=bearer(ALICE) | key)
    other = client.post("/import", json=BODY, headers=bearer(BOB) | key)
    assert first.status_code == again.status_code == other.status_code == 202
    assert again.get_json() == first.get_json()
    assert other.get_json()["jobId"] != first.get_json()["jobId"]
    assert "Idempotent-Replayed" not in other.headers


def test_only_its_starter_or_an_admin_may_change_an_import(scoped):
    client = scoped.test_client()
    job = client.post("/import", json=BODY, headers=bearer(ALICE)).get_json()["jobId"]
    refused = client.post(f"/imports/{job}/cancel", headers=bearer(BOB))
    assert refused.status_code == 403
    assert "another client" in refused.get_json()["error"]
    assert client.get(f"/imports/{job}", headers=bearer(BOB)).get_json()["status"] == "queued"
    assert client.post(f"/imports/{job}/cancel", headers=bearer(ALICE)).get_json()["status"] == "cancelled"
    other = client.post("/import", json=BODY, headers=bearer(BOB)).get_json()["jobId"]
    assert client.post(f"/imports/{other}/cancel", headers=bearer(ADMIN)).status_code == 200


def test_scopes_and_sources_limit_a_token(scoped):
    client = scoped.test_client()
    crm = client.post("/import", json=BODY, headers=bearer(ADMIN)).get_json()["jobId"]
    shop = client.post("/import", json=BODY | {"source": "shop"}, headers=bearer(ADMIN)).get_json()["jobId"]

    assert client.get("/imports", headers=bearer(READER)).get_json()["total"] == 2
    assert client.get("/metrics", headers=bearer(READER)).status_code == 200
    refused = client.post("/import", json=BODY, headers=bearer(READER))
    assert refused.status_code == 403
    assert refused.get_json()["error"] == "This API token lacks the import scope that this request needs"
    assert client.post(f"/imports/{crm}/cancel", headers=bearer(READER)).status_code == 403
    assert client.post("/uploads", headers=TUS | bearer(READER) | {"Upload-Length": "5"}).status_code == 403

    listing = client.get("/imports", headers=bearer(CRM_ONLY)).get_json()
    assert [item["jobId"] for item in listing["items"]] == [crm]
    assert client.get(f"/imports/{shop}", headers=bearer(CRM_ONLY)).status_code == 404
    assert client.get(f"/imports/{shop}/errors", headers=bearer(CRM_ONLY)).status_code == 404
    elsewhere = client.post("/import", json=BODY | {"source": "shop"}, headers=bearer(CRM_ONLY))
    assert elsewhere.status_code == 403
    assert "source 'shop'" in elsewhere.get_json()["error"]
    assert client.post("/import", json=BODY, headers=bearer(CRM_ONLY)).status_code == 202


def test_a_token_limited_to_some_sources_reads_only_their_contacts(scoped):
    client = scoped.test_client()
    people = [
        {"name": "Ada Lovelace", "email": "ada@example.com"},
        {"name": "Ada Shopper", "email": "ada@shop.example"},
    ]
    crm = client.post("/import", json={"source": "crm", "data": people[:1]}, headers=bearer(ADMIN)).get_json()
    shop = client.post(
        "/import",
        json={"source": "shop", "data": people[1:]},
        headers=bearer(ADMIN),
    ).get_json()
    with scoped.app_context():
        SimpleWorker([QUEUE_NAME], connection=redis()).work(burst=True, with_scheduler=False)
    everyone = client.get("/contacts", headers=bearer(ADMIN)).get_json()["items"]
    assert sorted(c["source"] for c in everyone) == ["crm", "shop"]
    theirs = next(c for c in everyone if c["source"] == "shop")

    def emails(**args: str) -> list[str]:
        items = client.get("/contacts", query_string=args, headers=bearer(CRM_ONLY)).get_json()["items"]
        return [c["email"] for c in items]

    assert emails() == emails(after="") == emails(q="ada") == emails(q="Ad") == ["ada@example.com"]
    assert emails(source="shop") == emails(importId=shop["jobId"]) == emails(q="shop") == []
    assert emails(importId=crm["jobId"]) == ["ada@example.com"]
    assert client.get(f"/contacts/{theirs['id']}", headers=bearer(CRM_ONLY)).status_code == 404
    assert client.get(f"/contacts/{theirs['id']}", headers=bearer(READER)).status_code == 200
    exported = client.get("/contacts.csv", headers=bearer(CRM_ONLY)).get_data(as_text=True)
    assert "ada@example.com" in exported and "shop" not in exported
    assert "ada@shop.example" not in client.get(
        "/contacts.csv?source=shop", headers=bearer(CRM_ONLY)
    ).get_data(as_text=True)
    assert [s["source"] for s in client.get("/sources", headers=bearer(CRM_ONLY)).get_json()["items"]] == [
        "crm"
    ]
    html = bearer(CRM_ONLY) | {"Accept": "text/html"}
    page = client.get("/contacts", query_string={"importId": shop["jobId"]}, headers=html).get_data(
        as_text=True
    )
    assert "ada@example.com" not in page and "Inserted by" not in page and ">shop<" not in page
    admin = bearer(ADMIN) | {"Accept": "text/html"}
    shown = client.get("/contacts", query_string={"importId": shop["jobId"]}, headers=admin).get_data(
        as_text=True
    )
    assert "ada@shop.example" in shown and "Inserted by" in shown and ">shop<" in shown
    assert "shop" not in client.get("/sources", headers=html).get_data(as_text=True)


def test_the_pages_say_who_started_an_import(scoped, users):
    users()
    client = scoped.test_client()
    sign_in(client)
    token = csrf_token_of(client.get("/", headers={"Accept": "text/html"}).get_data(as_text=True))
    mine = client.post("/import", json=BODY, headers={"X-CSRFToken": token, "Accept": "application/json"})
    theirs = client.post("/import", json=BODY, headers=bearer(ALICE))
    assert (
        client.get(f"/imports/{mine.get_json()['jobId']}", headers=bearer(ADMIN)).get_json()["createdBy"]
        == "user:ops@example.com"
    )
    page = client.get(f"/imports/{theirs.get_json()['jobId']}", headers={"Accept": "text/html"})
    assert f"API token {fingerprint(ALICE)}" in page.get_data(as_text=True)
    listing = client.get("/imports", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert "ops@example.com" in listing and f"API token {fingerprint(ALICE)}" in listing
    assert PASSWORD not in listing


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        (ALICE + ":write", "scopes must be read, import, admin joined by '+'"),
        (ALICE + ":read:", "must name at least one source"),
        (ALICE + ":read:crm:more", "TOKEN, TOKEN:SCOPES or TOKEN:SCOPES:SOURCES"),
        ("short:read", "at least 16 characters"),
    ],
)
def test_a_wrong_token_grant_stops_the_start(make_app, tokens, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        make_app(API_TOKENS=tokens)


def test_only_its_starter_or_an_admin_may_start_or_reopen_an_import_in_review(scoped):
    client = scoped.test_client()
    job = client.post("/import", json=BODY | {"review": True}, headers=bearer(ALICE)).get_json()["jobId"]
    assert client.get(f"/imports/{job}", headers=bearer(ALICE)).get_json()["status"] == "review"
    for action in ("start", "reopen"):
        refused = client.post(f"/imports/{job}/{action}", json={}, headers=bearer(BOB))
        assert refused.status_code == 403
        assert "another client" in refused.get_json()["error"]
    assert client.get(f"/imports/{job}", headers=bearer(BOB)).get_json()["status"] == "review"
    started = client.post(f"/imports/{job}/start", json={}, headers=bearer(ALICE))
    assert started.status_code == 202 and started.get_json()["status"] == "queued"
