"""The test server answers as the real Supabase Storage server does, so tests against it mean something."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.supabase_fake import ANON_KEY, CHUNK, GLOBAL_LIMIT, MIB, FakeSupabase

TUS = "/storage/v1/upload/resumable"


@pytest.fixture
def fake():
    """The open-source server's behaviour: no 6 MiB chunk rule."""
    with FakeSupabase() as fake:
        yield fake


def auth(fake: FakeSupabase, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {fake.key}", **extra}


def metadata(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def create_upload(fake: FakeSupabase, name: str, length: int, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{fake.url}{TUS}",
        headers=auth(
            fake,
            **{
                "Tus-Resumable": "1.0.0",
                "Upload-Length": str(length),
                "Upload-Metadata": metadata(bucketName="imports", objectName=name, contentType="text/csv"),
                **headers,
            },
        ),
    )


def patch(location: str, fake: FakeSupabase, data: bytes, offset: int = 0, **headers: str) -> httpx.Response:
    chunk = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}
    return httpx.patch(
        location, content=data, headers=auth(fake, **{**chunk, "Upload-Offset": str(offset), **headers})
    )


def test_errors_carry_status_code_as_a_string_and_a_code(fake):
    missing = httpx.get(f"{fake.url}/storage/v1/object/authenticated/imports/none.csv", headers=auth(fake))
    assert missing.status_code == 400
    assert missing.json() == {
        "statusCode": "404",
        "code": "NoSuchKey",
        "error": "not_found",
        "message": "Object not found",
    }
    url = f"{fake.url}/storage/v1/object/imports/a.csv"
    assert httpx.post(url, content=b"1", headers=auth(fake)).status_code == 200
    again = httpx.post(url, content=b"2", headers=auth(fake))
    assert again.status_code == 400
    assert again.json() == {
        "statusCode": "409",
        "code": "KeyAlreadyExists",
        "error": "Duplicate",
        "message": "The resource already exists",
    }
    assert httpx.post(url, content=b"2", headers=auth(fake, **{"x-upsert": "true"})).status_code == 200
    assert fake.objects["imports"]["a.csv"] == b"2"


def test_a_wrong_key_is_403_but_404_on_the_plain_object_get_and_no_key_is_400(fake):
    fake.put("imports", "a.csv", b"1")
    wrong = {"Authorization": "Bearer not-the-key"}
    for method, path in [
        ("GET", "/storage/v1/bucket/imports"),
        ("GET", "/storage/v1/object/authenticated/imports/a.csv"),
        ("POST", "/storage/v1/object/imports/b.csv"),
        ("DELETE", "/storage/v1/object/imports/a.csv"),
    ]:
        body = httpx.request(method, f"{fake.url}{path}", headers=wrong).json()
        assert (body["statusCode"], body["code"]) == ("403", "AccessDenied"), path
    for headers in (wrong, {}):
        plain = httpx.get(f"{fake.url}/storage/v1/object/imports/a.csv", headers=headers)
        assert plain.json()["statusCode"] == "404" and plain.json()["message"] == "Bucket not found"
    no_key = httpx.get(f"{fake.url}/storage/v1/bucket/imports")
    assert no_key.status_code == 400
    assert (no_key.json()["statusCode"], no_key.json()["code"]) == ("400", "InvalidRequest")
    assert fake.objects["imports"] == {"a.csv": b"1"}


def test_the_anon_key_sees_nothing_of_a_private_bucket(fake):
    fake.put("imports", "a.csv", b"1")
    anon = {"Authorization": f"Bearer {ANON_KEY}"}
    assert httpx.get(f"{fake.url}/storage/v1/bucket/imports", headers=anon).json()["statusCode"] == "404"
    read = httpx.get(f"{fake.url}/storage/v1/object/authenticated/imports/a.csv", headers=anon).json()
    assert read["message"] == "Object not found"  # as if the object were missing
    deleted = httpx.request(
        "DELETE", f"{fake.url}/storage/v1/object/imports", json={"prefixes": ["a.csv"]}, headers=anon
    )
    assert (deleted.status_code, deleted.json()) == (200, [])
    assert fake.objects["imports"] == {"a.csv": b"1"}


def test_put_creates_a_missing_object_and_bulk_delete_in_a_missing_bucket_is_empty(fake):
    put = httpx.put(f"{fake.url}/storage/v1/object/imports/new.csv", content=b"x", headers=auth(fake))
    assert put.status_code == 200
    assert fake.objects["imports"]["new.csv"] == b"x"
    gone = httpx.request(
        "DELETE", f"{fake.url}/storage/v1/object/nobucket", json={"prefixes": ["a"]}, headers=auth(fake)
    )
    assert (gone.status_code, gone.json()) == (200, [])


@pytest.mark.parametrize("name", ["Zoë.csv", "a#b.csv", "a\tb.csv", 'a"b.csv', "a%2Fb.csv", "a%b.csv"])
def test_unsafe_object_names_are_invalid_keys(fake, name):
    encoded = name if "%2F" in name else quote(name, safe="")  # "%2F" sent as it is: an encoded slash
    rest = httpx.post(f"{fake.url}/storage/v1/object/imports/{encoded}", content=b"x", headers=auth(fake))
    assert rest.json()["code"] == "InvalidKey", name
    tus = create_upload(fake, name, 1)
    assert tus.status_code == 400 and tus.text.startswith("Invalid key: "), name
    assert fake.objects["imports"] == {}


def test_one_request_uploads_are_capped_by_the_upload_limit_and_the_buckets(fake):
    fake.upload_limit = MIB
    url = f"{fake.url}/storage/v1/object/imports/big.csv"
    big = httpx.post(url, content=b"x" * (MIB + 1), headers=auth(fake))
    assert big.json() == {
        "statusCode": "413",
        "code": "EntityTooLarge",
        "error": "Payload too large",
        "message": "The object exceeded the maximum allowed size",
    }
    # tus takes what one request may not, up to the global limit that OPTIONS announces.
    options = httpx.options(f"{fake.url}{TUS}")
    assert options.headers["Tus-Max-Size"] == str(GLOBAL_LIMIT)
    created = create_upload(fake, "big.csv", MIB + 1)
    assert created.status_code == 201
    fake.buckets["imports"].file_size_limit = 100
    assert httpx.post(url, content=b"x" * 101, headers=auth(fake)).json()["code"] == "EntityTooLarge"
    refused = create_upload(fake, "other.csv", 101)
    assert (refused.status_code, refused.text) == (413, "Maximum size exceeded\n")
    assert fake.objects["imports"] == {}


def test_allowed_mime_types_refuse_other_types_with_415(fake):
    fake.buckets["imports"].allowed_mime_types = ["text/csv", "image/*"]
    url = f"{fake.url}/storage/v1/object/imports/a"
    for content_type, ok in [
        ("text/csv", True),
        ("image/png", True),
        ("text/csv; charset=utf-8", False),  # compared whole, as the server does
        ("application/octet-stream", False),
    ]:
        answer = httpx.post(
            url, content=b"x", headers=auth(fake, **{"Content-Type": content_type, "x-upsert": "true"})
        )
        assert (answer.status_code == 200) is ok, content_type
        if not ok:
            assert (answer.json()["statusCode"], answer.json()["code"]) == ("415", "InvalidMimeType")
    refused = httpx.post(
        f"{fake.url}{TUS}",
        headers=auth(
            fake,
            **{
                "Tus-Resumable": "1.0.0",
                "Upload-Length": "1",
                "Upload-Metadata": metadata(
                    bucketName="imports", objectName="j", contentType="application/json"
                ),
            },
        ),
    )
    assert (refused.status_code, refused.text) == (415, "mime type application/json is not supported")


def test_tus_reads_x_upsert_on_every_request(fake):
    fake.put("imports", "a.csv", b"old")
    refused = create_upload(fake, "a.csv", 3)
    assert (refused.status_code, refused.text) == (409, "The resource already exists")
    created = create_upload(fake, "a.csv", 3, **{"x-upsert": "true"})
    assert created.status_code == 201
    # Upsert said at creation is not kept: the PATCH that completes the upload must say it again.
    assert patch(created.headers["Location"], fake, b"new").status_code == 409
    assert fake.objects["imports"]["a.csv"] == b"old"
    done = patch(created.headers["Location"], fake, b"new", **{"x-upsert": "true"})
    assert done.status_code == 204
    assert fake.objects["imports"]["a.csv"] == b"new"


def test_tus_patch_content_type_and_deleting_a_finished_upload(fake):
    created = create_upload(fake, "b.csv", 2)
    location = created.headers["Location"]
    wrong = patch(location, fake, b"ab", **{"Content-Type": "text/plain"})
    assert (wrong.status_code, wrong.text) == (400, "Invalid content-type")
    assert patch(location, fake, b"ab").status_code == 204
    finished = httpx.delete(location, headers=auth(fake, **{"Tus-Resumable": "1.0.0"}))
    assert finished.status_code == 409
    assert fake.objects["imports"]["b.csv"] == b"ab"
    unfinished = create_upload(fake, "c.csv", 2).headers["Location"]
    assert httpx.delete(unfinished, headers=auth(fake, **{"Tus-Resumable": "1.0.0"})).status_code == 204


@pytest.mark.parametrize("six_mib_chunks", [False, True])
def test_the_hosted_6_mib_chunk_rule_is_an_option(six_mib_chunks):
    with FakeSupabase(six_mib_chunks=six_mib_chunks) as fake:
        location = create_upload(fake, "b.csv", CHUNK + 10).headers["Location"]
        small = patch(location, fake, b"x" * (5 * MIB))
        if six_mib_chunks:
            assert small.status_code == 400 and "6291456" in small.text
            assert patch(location, fake, b"x" * CHUNK).status_code == 204
            assert patch(location, fake, b"y" * 10, offset=CHUNK).status_code == 204
            assert fake.objects["imports"]["b.csv"] == b"x" * CHUNK + b"y" * 10
        else:
            assert small.status_code == 204
            rest = patch(location, fake, b"y" * (CHUNK + 10 - 5 * MIB), offset=5 * MIB)
            assert rest.status_code == 204
            assert len(fake.objects["imports"]["b.csv"]) == CHUNK + 10


def test_the_live_smoke_test_passes_against_this_server(fake_supabase):
    """The smoke test runs only with a real project; here it runs against the fake, so it stays working."""
    env = {**os.environ, "SUPABASE_URL": fake_supabase.url, "SUPABASE_SERVICE_ROLE_KEY": fake_supabase.key}
    env.pop("SUPABASE_BUCKET", None)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_supabase_live.py"],
        env=env,
        cwd=Path(__file__).parent.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:]
    assert "9 passed" in run.stdout
