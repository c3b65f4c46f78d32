"""The Supabase Storage backend against a server that speaks Supabase's REST and tus subset."""

from __future__ import annotations

import hashlib
import io
import os
import tracemalloc

import httpx
import pytest

from app.config import ConfigError, load_settings
from app.storage import StorageUnavailable, StoredFileMissing, UploadTooLarge
from app.storage.supabase import SupabaseStorage
from tests.supabase_fake import CHUNK, FakeSupabase

MIB = 1024 * 1024


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SupabaseStorage, "retry_delays", (0.01, 0.01, 0.01))


@pytest.fixture
def store(fake_supabase: FakeSupabase) -> SupabaseStorage:
    return SupabaseStorage(fake_supabase.url, fake_supabase.key, "imports", CHUNK)


def read_back(store: SupabaseStorage, key: str) -> bytes:
    with store.open(key) as stream:
        return stream.read()


def test_settings_take_only_6_mib_chunks_for_supabase(tmp_path):
    base = {
        "INSTANCE_DIR": str(tmp_path),
        "SECRET_KEY": "k",
        "STORAGE_BACKEND": "supabase",
        "SUPABASE_URL": "https://project.supabase.co/",
        "SUPABASE_SERVICE_ROLE_KEY": "key",
    }
    settings = load_settings(base)
    assert settings.upload_chunk_size == 6 * MIB
    assert settings.supabase_url == "https://project.supabase.co"
    assert load_settings({**base, "UPLOAD_CHUNK_SIZE": "6291456"}).upload_chunk_size == 6 * MIB
    for wrong in ("6MB", "5MiB", "12MiB"):
        with pytest.raises(ConfigError) as refused:
            load_settings({**base, "UPLOAD_CHUNK_SIZE": wrong})
        assert "UPLOAD_CHUNK_SIZE must be 6MiB" in str(refused.value)
    # The local backend has no such rule.
    assert load_settings({**base, "STORAGE_BACKEND": "local", "UPLOAD_CHUNK_SIZE": "5MB"})
    with pytest.raises(ConfigError) as refused:
        load_settings({**base, "SUPABASE_URL": "project.supabase.co", "SUPABASE_BUCKET": "a/b"})
    assert "SUPABASE_URL must start with https://" in str(refused.value)
    assert "SUPABASE_BUCKET" in str(refused.value)


@pytest.mark.parametrize("use_resumable", [False, True])
def test_store_open_delete_round_trip(store, fake_supabase, use_resumable):
    data = b"name,email\nAda,ada@example.com\n" * 1000
    stored = store.save(io.BytesIO(data), 10 * MIB, use_resumable=use_resumable)
    assert stored.size == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert fake_supabase.objects["imports"][stored.key] == data
    used = {method for method, path in fake_supabase.requests}
    assert ("PATCH" in used) is use_resumable
    assert read_back(store, stored.key) == data
    store.delete(stored.key)
    assert stored.key not in fake_supabase.objects["imports"]
    store.delete(stored.key)  # a missing object is not an error


def test_resumable_20_mb_goes_in_6_mib_chunks_and_streams_back(store, fake_supabase):
    data = os.urandom(20 * 1000 * 1000)
    stored = store.save(io.BytesIO(data), 100 * MIB, use_resumable=True)
    assert [(p.offset, p.length, p.status) for p in fake_supabase.patches] == [
        (0, CHUNK, 204),
        (CHUNK, CHUNK, 204),
        (2 * CHUNK, CHUNK, 204),
        (3 * CHUNK, len(data) - 3 * CHUNK, 204),
    ]
    (upload,) = fake_supabase.uploads.values()
    assert upload.metadata == {
        "bucketName": "imports",
        "objectName": stored.key,
        "contentType": "application/octet-stream",
        "cacheControl": "3600",
    }
    digest = hashlib.sha256()
    with store.open(stored.key) as stream:
        while chunk := stream.read(MIB):
            digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest() == stored.sha256


def test_lost_answer_resumes_from_the_servers_offset(store, fake_supabase):
    data = os.urandom(3 * CHUNK + 1000)
    fake_supabase.fail("PATCH", "lost", skip=1)  # the 2nd chunk arrives; its answer does not
    stored = store.save(io.BytesIO(data), 100 * MIB, use_resumable=True)
    # The client asked where the server stood and went on from there: no chunk was sent twice.
    assert [p.offset for p in fake_supabase.patches] == [0, CHUNK, 2 * CHUNK, 3 * CHUNK]
    assert len(fake_supabase.heads) == 1
    assert fake_supabase.objects["imports"][stored.key] == data


def test_failed_chunk_is_sent_again_after_backoff(store, fake_supabase):
    data = os.urandom(2 * CHUNK + 10)
    fake_supabase.fail("PATCH", "error", skip=1, count=2)  # the 2nd chunk fails twice
    stored = store.save(io.BytesIO(data), 100 * MIB, use_resumable=True)
    assert [p.offset for p in fake_supabase.patches] == [0, CHUNK, 2 * CHUNK]
    patch_requests = [m for m, _ in fake_supabase.requests if m == "PATCH"]
    assert len(patch_requests) == 5  # three chunks, two of them refused first
    assert len(fake_supabase.heads) == 2
    assert read_back(store, stored.key) == data


def test_resumable_upload_gives_up_and_drops_the_partial_upload(store, fake_supabase):
    fake_supabase.fail("PATCH", "error", skip=1, count=100)
    with pytest.raises(StorageUnavailable, match="503"):
        store.save(io.BytesIO(os.urandom(CHUNK + 1)), 100 * MIB, use_resumable=True)
    assert fake_supabase.objects["imports"] == {}
    assert fake_supabase.uploads == {}  # terminated with a tus DELETE
    assert ("DELETE", "/storage/v1/upload/resumable") in [
        (m, p.rsplit("/", 1)[0]) for m, p in fake_supabase.requests
    ]


def test_rest_upload_is_retried_whole_after_a_server_error(store, fake_supabase):
    fake_supabase.fail("POST", "error")
    stored = store.save(io.BytesIO(b"a,b\n" * 10), MIB)
    assert [m for m, _ in fake_supabase.requests].count("POST") == 2
    assert fake_supabase.objects["imports"][stored.key] == b"a,b\n" * 10


def test_too_large_is_refused_before_anything_is_sent(store, fake_supabase):
    for use_resumable in (False, True):
        with pytest.raises(UploadTooLarge):
            store.save(io.BytesIO(b"x" * 5000), 1000, use_resumable=use_resumable)
    assert fake_supabase.requests == []


def test_wrong_key_is_refused_everywhere_with_a_clear_message(fake_supabase):
    fake_supabase.put("imports", "k.upload", b"data")
    wrong = SupabaseStorage(fake_supabase.url, "not-the-key", "imports", CHUNK)
    calls = [
        wrong.check,
        lambda: wrong.save(io.BytesIO(b"x"), 10),
        lambda: wrong.save(io.BytesIO(b"x"), 10, use_resumable=True),
        lambda: wrong.delete("k.upload"),
        lambda: read_back(wrong, "k.upload"),
    ]
    for call in calls:
        with pytest.raises(StorageUnavailable, match="refused the service role key.*_SERVICE_ROLE_KEY"):
            call()
    assert list(fake_supabase.objects["imports"]) == ["k.upload"]


def test_missing_bucket_is_named(fake_supabase):
    store = SupabaseStorage(fake_supabase.url, fake_supabase.key, "contacts-files", CHUNK)
    with pytest.raises(StorageUnavailable, match="no bucket 'contacts-files'.*create it"):
        store.check()


def test_unreachable_server(store, fake_supabase):
    fake_supabase.stop()
    with pytest.raises(StorageUnavailable, match="cannot be reached"):
        store.check()
    for use_resumable in (False, True):
        with pytest.raises(StorageUnavailable, match="cannot be reached"):
            store.save(io.BytesIO(b"x"), 10, use_resumable=use_resumable)
    with pytest.raises(StorageUnavailable, match="cannot be reached"):
        read_back(store, "k.upload")


def test_missing_object_is_a_clear_error(store):
    with pytest.raises(StoredFileMissing, match="no longer in storage"):
        read_back(store, "gone.upload")


def test_connection_cut_while_reading_is_transient(store, fake_supabase):
    fake_supabase.put("imports", "k.upload", os.urandom(4 * MIB))
    fake_supabase.fail("GET", "cut", path="/object/")
    with pytest.raises(StorageUnavailable, match="reading k.upload"):
        read_back(store, "k.upload")


def test_open_streams_without_holding_the_object(store, fake_supabase):
    size = 48 * MIB
    fake_supabase.put("imports", "big.upload", os.urandom(size))
    with store.open("big.upload") as stream:
        assert not isinstance(stream, io.BytesIO)
        stream.read(64 * 1024)
        # Whatever the socket buffers hold, the server has not had to send the whole object.
        assert fake_supabase.served["big.upload"] < size
        tracemalloc.start()
        try:
            total = 64 * 1024
            while chunk := stream.read(MIB):
                total += len(chunk)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert total == size
    assert peak < 8 * MIB, f"reading {size} bytes peaked at {peak} bytes"


# --- the fake holds to Supabase's rules, so the tests above mean something -------------------


def test_fake_requires_the_bearer_key_and_answers_like_supabase(fake_supabase):
    url = f"{fake_supabase.url}/storage/v1/bucket/imports"
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = httpx.get(url, headers=headers)
        assert response.status_code == 400
        body = response.json()
        assert body["statusCode"] == "403" and body["error"] == "Unauthorized" and body["message"]
    tus = httpx.request("OPTIONS", f"{fake_supabase.url}/storage/v1/upload/resumable")
    assert tus.status_code == 204 and tus.headers["Tus-Version"] == "1.0.0"


def test_fake_refuses_an_existing_object_without_upsert(fake_supabase):
    auth = {"Authorization": f"Bearer {fake_supabase.key}"}
    url = f"{fake_supabase.url}/storage/v1/object/imports/a.csv"
    assert httpx.post(url, content=b"1", headers=auth).status_code == 200
    again = httpx.post(url, content=b"2", headers=auth)
    assert again.status_code == 400
    assert again.json() == {
        "statusCode": "409",
        "error": "Duplicate",
        "message": "The resource already exists",
    }
    assert httpx.post(url, content=b"2", headers={**auth, "x-upsert": "true"}).status_code == 200
    assert fake_supabase.objects["imports"]["a.csv"] == b"2"

    metadata = "bucketName aW1wb3J0cw==,objectName YS5jc3Y="  # imports, a.csv
    create = {**auth, "Tus-Resumable": "1.0.0", "Upload-Length": "1", "Upload-Metadata": metadata}
    response = httpx.post(f"{fake_supabase.url}/storage/v1/upload/resumable", headers=create)
    assert response.status_code == 409
    assert response.headers["Content-Type"] == "text/plain"
    assert response.text == "The resource already exists"


def test_fake_refuses_chunks_other_than_6_mib_but_the_last(fake_supabase):
    auth = {"Authorization": f"Bearer {fake_supabase.key}", "Tus-Resumable": "1.0.0"}
    metadata = "bucketName aW1wb3J0cw==,objectName Yi5jc3Y="  # imports, b.csv
    created = httpx.post(
        f"{fake_supabase.url}/storage/v1/upload/resumable",
        headers={**auth, "Upload-Length": str(CHUNK + 10), "Upload-Metadata": metadata},
    )
    assert created.status_code == 201
    patch = {**auth, "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"}
    refused = httpx.patch(created.headers["Location"], content=b"x" * (5 * MIB), headers=patch)
    assert refused.status_code == 400
    assert "6291456" in refused.text
    taken = httpx.patch(created.headers["Location"], content=b"x" * CHUNK, headers=patch)
    assert taken.status_code == 204 and taken.headers["Upload-Offset"] == str(CHUNK)
    last = httpx.patch(
        created.headers["Location"], content=b"y" * 10, headers={**patch, "Upload-Offset": str(CHUNK)}
    )
    assert last.status_code == 204
    assert fake_supabase.objects["imports"]["b.csv"] == b"x" * CHUNK + b"y" * 10
