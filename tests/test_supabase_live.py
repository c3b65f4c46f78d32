"""A smoke test against a real Supabase project; it runs only where one is configured.

Set SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY (and SUPABASE_BUCKET, default ``imports``, an
existing private bucket) in the environment to run it. It stores, reads back and deletes files,
and checks the refusals DataFlow relies on: it creates short-lived private buckets with a file
size limit and with allowed MIME types (the service role key may), and deletes them after.
"""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import quote

import httpx
import pytest

from app.config import SUPABASE_CHUNK_SIZE
from app.storage import StorageRefused, StorageUnavailable, StoredFileMissing
from app.storage.supabase import SupabaseStorage

URL = os.environ.get("SUPABASE_URL")
KEY = os.environ.get("SUPABASE_SERVICE_ROLE_KEY")
CSV = b"name,email\nAda Lovelace,ada@example.com\n"

pytestmark = pytest.mark.skipif(
    not (URL and KEY),
    reason="no Supabase project: set SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY to run this smoke test",
)


@pytest.fixture
def live() -> SupabaseStorage:
    assert URL and KEY
    return SupabaseStorage(URL, KEY, os.environ.get("SUPABASE_BUCKET", "imports"), SUPABASE_CHUNK_SIZE)


@pytest.fixture
def ruled_bucket(live: SupabaseStorage) -> Iterator[Callable[..., SupabaseStorage]]:
    """Make short-lived private buckets with rules of their own; each is emptied and deleted after."""
    _, client = live.clients()
    made: list[str] = []

    def make(**rules: object) -> SupabaseStorage:
        name = f"dataflow-test-{uuid.uuid4().hex[:12]}"
        client.create_bucket(name, options={"public": False, **rules})
        made.append(name)
        return SupabaseStorage(live.url, live.key, name, SUPABASE_CHUNK_SIZE, max_upload_size=10_000_000)

    yield make
    for name in made:
        names = [item["name"] for item in client.from_(name).list()]
        if names:
            client.from_(name).remove(names)
        client.delete_bucket(name)


def objects_in(store: SupabaseStorage) -> list[str]:
    _, client = store.clients()
    return [item["name"] for item in client.from_(store.bucket).list()]


@pytest.mark.parametrize("use_resumable", [False, True])
def test_round_trip_against_a_real_project(live, use_resumable):
    live.check()
    # Past one chunk when resumable, so the 6 MiB rule and the last short chunk are both exercised.
    data = os.urandom(SUPABASE_CHUNK_SIZE + 12345 if use_resumable else 200_000)
    stored = live.save(io.BytesIO(data), len(data), use_resumable=use_resumable)
    try:
        digest = hashlib.sha256()
        with live.open(stored.key) as stream:
            while chunk := stream.read(1024 * 1024):
                digest.update(chunk)
        assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
    finally:
        live.delete(stored.key)
    with pytest.raises(StoredFileMissing), live.open(stored.key):
        pass


def test_a_file_above_the_upload_limit_goes_resumably(live):
    store = SupabaseStorage(live.url, live.key, live.bucket, SUPABASE_CHUNK_SIZE, upload_limit=100_000)
    data = os.urandom(SUPABASE_CHUNK_SIZE + 100)
    stored = store.save(io.BytesIO(data), len(data), use_resumable=False)
    try:
        with store.open(stored.key) as stream:
            assert stream.read() == data
    finally:
        store.delete(stored.key)


@pytest.mark.parametrize("use_resumable", [False, True])
def test_a_buckets_file_size_limit_is_a_413_naming_it(ruled_bucket, use_resumable):
    store = ruled_bucket(file_size_limit=1000)
    with pytest.raises(StorageRefused) as refused:
        store.save(io.BytesIO(CSV * 200), 10_000_000, use_resumable=use_resumable)
    assert refused.value.status == 413
    assert "file size limit is 1,000 bytes" in str(refused.value)
    assert objects_in(store) == []
    assert any("file size limit of 1,000 bytes" in warning for warning in store.check())


@pytest.mark.parametrize("use_resumable", [False, True])
def test_a_buckets_allowed_types_take_the_files_own_type_and_refuse_others(ruled_bucket, use_resumable):
    store = ruled_bucket(allowed_mime_types=["text/csv"])
    stored = store.save(io.BytesIO(CSV), 10_000_000, use_resumable=use_resumable)
    with store.open(stored.key) as stream:
        assert stream.read() == CSV
    with pytest.raises(StorageRefused) as refused:
        store.save(io.BytesIO(b'[{"name": "Ada", "email": "ada@example.com"}]'), 10_000_000)
    assert refused.value.status == 415
    assert "text/csv" in str(refused.value) and "application/json" in str(refused.value)
    assert objects_in(store) == [stored.key]
    # What the bucket would refuse is caught before a byte is sent; the server agrees when asked.
    headers = {"Authorization": f"Bearer {KEY}", "apikey": KEY, "Content-Type": "application/json"}
    answer = httpx.post(f"{URL}/storage/v1/object/{store.bucket}/direct.json", content=b"[]", headers=headers)
    assert answer.json()["statusCode"] == "415"


def test_a_wrong_key_is_an_outage_even_for_a_stored_file(live):
    stored = live.save(io.BytesIO(CSV), 10_000)
    try:
        wrong = SupabaseStorage(live.url, "not-the-key", live.bucket, SUPABASE_CHUNK_SIZE)
        with pytest.raises(StorageUnavailable), wrong.open(stored.key):
            pass
    finally:
        live.delete(stored.key)


def test_the_servers_answers_are_the_ones_the_test_server_gives(live):
    """The dialect the suite's fake speaks, checked against the real server."""
    auth = {"Authorization": f"Bearer {KEY}", "apikey": KEY}
    base = f"{URL}/storage/v1"
    wrong = httpx.get(f"{base}/bucket/{live.bucket}", headers={"Authorization": "Bearer not-the-key"})
    assert (wrong.status_code, wrong.json()["statusCode"]) == (400, "403")
    plain = httpx.get(
        f"{base}/object/{live.bucket}/none.csv", headers={"Authorization": "Bearer not-the-key"}
    )
    assert plain.json()["statusCode"] == "404"
    missing = httpx.get(f"{base}/object/authenticated/{live.bucket}/none.csv", headers=auth)
    assert (missing.json()["statusCode"], missing.json()["code"]) == ("404", "NoSuchKey")
    invalid = httpx.post(
        f"{base}/object/{live.bucket}/{quote('Zoë#.csv', safe='')}", content=b"x", headers=auth
    )
    assert invalid.json()["code"] == "InvalidKey"
    nobucket = httpx.request(
        "DELETE",
        f"{base}/object/no-such-bucket-{uuid.uuid4().hex[:8]}",
        json={"prefixes": ["a"]},
        headers=auth,
    )
    assert (nobucket.status_code, nobucket.json()) == (200, [])
