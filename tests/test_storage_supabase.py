"""The Supabase Storage backend against a server that speaks Supabase's REST and tus subset."""

from __future__ import annotations

import hashlib
import io
import os
import random
import tracemalloc

import pytest

from app.config import ConfigError, load_settings
from app.storage import StorageRefused, StorageUnavailable, StoredFileMissing, UploadTooLarge
from app.storage.supabase import SupabaseStorage
from app.storage.supabase_http import key_role
from tests.supabase_fake import ANON_KEY, CHUNK, FakeSupabase

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


def test_settings_take_only_6_mib_chunks_and_an_upload_limit_for_supabase(tmp_path):
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
    assert settings.supabase_upload_limit == 50 * MIB
    assert load_settings({**base, "SUPABASE_UPLOAD_LIMIT": "6MiB"}).supabase_upload_limit == 6 * MIB
    with pytest.raises(ConfigError, match="SUPABASE_UPLOAD_LIMIT"):
        load_settings({**base, "SUPABASE_UPLOAD_LIMIT": "lots"})
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
    data = random.Random(20).randbytes(20 * 1000 * 1000)  # seeded: random bytes may start with "["
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
        "contentType": "application/octet-stream",  # random bytes: no format to name
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


# --- what the bucket and the server refuse -----------------------------------------------------

XLSX_HEAD = b"PK\x03\x04" + b"\x00" * 200
VCARD = b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Ada Lovelace\r\nEMAIL:ada@example.com\r\nEND:VCARD\r\n"
SPREADSHEET = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def uploads_sent(fake: FakeSupabase) -> list[tuple[str, str]]:
    """The requests that carried a file (or began to): one-request POSTs, tus creations and PATCHes."""
    return [
        (method, path)
        for method, path in fake.requests
        if method == "PATCH" or (method == "POST" and ("/object/" in path or "/upload/" in path))
    ]


@pytest.mark.parametrize("use_resumable", [False, True])
def test_content_type_is_the_files_own(store, fake_supabase, use_resumable):
    files = {
        "text/csv": (b"name,email\nAda,ada@example.com\n", None),
        "application/json": (b'[{"name": "Ada", "email": "ada@example.com"}]', None),
        SPREADSHEET: (XLSX_HEAD, "people.xlsx"),
        "text/vcard": (VCARD, "people.vcf"),
        "text/tab-separated-values": (b"", "people.tsv"),  # nothing to sniff: the filename says
        "application/octet-stream": (b"\x00\x01\x02" * 50, None),
    }
    for expected, (data, filename) in files.items():
        stored = store.save(io.BytesIO(data or b"\x00"), MIB, use_resumable=use_resumable, filename=filename)
        assert fake_supabase.content_types[("imports", stored.key)] == expected, filename


def test_a_file_past_the_buckets_size_limit_is_refused_before_a_byte_is_sent(store, fake_supabase):
    fake_supabase.buckets["imports"].file_size_limit = 1000
    for use_resumable in (False, True):
        with pytest.raises(StorageRefused) as refused:
            store.save(io.BytesIO(b"a,b\n" * 500), MIB, use_resumable=use_resumable)
        assert refused.value.status == 413
        message = str(refused.value)
        assert "bucket 'imports'" in message and "file size limit is 1,000 bytes" in message, message
        assert "2,000 bytes" in message and "raise the bucket's file size limit" in message
    assert uploads_sent(fake_supabase) == []
    assert fake_supabase.objects["imports"] == {}


def test_a_type_the_bucket_refuses_is_415_naming_its_rule(store, fake_supabase):
    fake_supabase.buckets["imports"].allowed_mime_types = ["text/csv", "image/*"]
    stored = store.save(io.BytesIO(b"name,email\nAda,ada@example.com\n"), MIB)
    assert fake_supabase.content_types[("imports", stored.key)] == "text/csv"
    with pytest.raises(StorageRefused) as refused:
        store.save(io.BytesIO(b'[{"name": "Ada"}]'), MIB, use_resumable=True)
    assert refused.value.status == 415
    message = str(refused.value)
    assert "text/csv, image/*" in message and "this file is application/json" in message, message
    assert "allowed MIME types" in message
    assert list(fake_supabase.objects["imports"]) == [stored.key]
    assert fake_supabase.uploads == {}


def test_a_bucket_that_takes_only_octet_stream_still_gets_every_file(store, fake_supabase):
    fake_supabase.buckets["imports"].allowed_mime_types = ["application/octet-stream"]
    for use_resumable in (False, True):
        stored = store.save(
            io.BytesIO(b"name,email\nAda,ada@example.com\n"), MIB, use_resumable=use_resumable
        )
        assert fake_supabase.content_types[("imports", stored.key)] == "application/octet-stream"


@pytest.mark.parametrize("use_resumable", [False, True])
def test_rules_changed_since_they_were_read_are_named_from_the_server(store, fake_supabase, use_resumable):
    store.save(io.BytesIO(b"a,b\n"), MIB)  # the rules are read, and kept for a while
    fake_supabase.buckets["imports"].allowed_mime_types = ["image/png"]
    with pytest.raises(StorageRefused) as refused:
        store.save(io.BytesIO(b"a,b\n1,2\n"), MIB, use_resumable=use_resumable)
    assert refused.value.status == 415
    assert "image/png" in str(refused.value) and "text/csv" in str(refused.value)
    fake_supabase.buckets["imports"].allowed_mime_types = None
    fake_supabase.buckets["imports"].file_size_limit = 5
    with pytest.raises(StorageRefused) as refused:
        store.save(io.BytesIO(b"a,b\n1,2\n"), MIB, use_resumable=use_resumable)
    assert refused.value.status == 413
    assert "file size limit is 5 bytes" in str(refused.value)
    assert len(fake_supabase.objects["imports"]) == 1  # only the first file
    assert fake_supabase.uploads == {}


def test_a_file_past_the_servers_one_request_limit_goes_through_tus(store, fake_supabase):
    fake_supabase.upload_limit = MIB
    data = b"name,email,notes\n" + b"Ada,ada@example.com,xxxxxxxxxxxxxxxx\n" * 60_000  # ~2.2 MB
    stored = store.save(io.BytesIO(data), 10 * MIB)  # useResumable not asked for
    assert fake_supabase.objects["imports"][stored.key] == data
    sent = [method for method, _ in uploads_sent(fake_supabase)]
    assert sent == ["POST", "POST", "PATCH"]  # refused whole (413), then created and sent resumably
    assert store.upload_limit < len(data)
    # The process remembers: a file as large goes resumably at once.
    fake_supabase.requests.clear()
    again = store.save(io.BytesIO(data), 10 * MIB)
    assert [m for m, _ in uploads_sent(fake_supabase)] == ["POST", "PATCH"]
    assert all("/upload/resumable" in path for _, path in uploads_sent(fake_supabase))
    assert fake_supabase.objects["imports"][again.key] == data


def test_files_above_the_configured_upload_limit_go_resumably(fake_supabase):
    store = SupabaseStorage(fake_supabase.url, fake_supabase.key, "imports", CHUNK, upload_limit=CHUNK)
    big = os.urandom(CHUNK + 100)
    stored = store.save(io.BytesIO(big), 100 * MIB, use_resumable=False)
    assert [p.length for p in fake_supabase.patches] == [CHUNK, 100]
    assert not any(m == "POST" and "/object/" in p for m, p in fake_supabase.requests)
    assert fake_supabase.objects["imports"][stored.key] == big
    small = store.save(io.BytesIO(b"a,b\n"), 100 * MIB)
    assert fake_supabase.objects["imports"][small.key] == b"a,b\n"
    assert len(fake_supabase.patches) == 2  # the small file went in one request


def test_a_file_past_the_servers_own_limit_is_413_naming_it(store, fake_supabase):
    fake_supabase.global_limit = MIB
    with pytest.raises(StorageRefused) as refused:
        store.save(io.BytesIO(os.urandom(2 * MIB)), 10 * MIB)
    assert refused.value.status == 413
    message = str(refused.value)
    assert "upload size limit is 1,048,576 bytes (1 MiB)" in message, message
    assert "2,097,152 bytes (2 MiB)" in message and "Split the file" in message
    assert fake_supabase.objects["imports"] == {}
    assert fake_supabase.uploads == {}
    assert not any(m == "PATCH" for m, _ in fake_supabase.requests)


def test_refusals_are_not_retried(store, fake_supabase):
    fake_supabase.buckets["imports"].allowed_mime_types = ["text/csv"]
    store.save(io.BytesIO(b"a,b\n"), MIB)
    fake_supabase.buckets["imports"].allowed_mime_types = ["image/png"]
    fake_supabase.requests.clear()
    with pytest.raises(StorageRefused):
        store.save(io.BytesIO(b"a,b\n"), MIB)
    assert [m for m, _ in uploads_sent(fake_supabase)] == ["POST"]  # once, not once per retry


# --- reads: the authenticated route, and "not found" believed only for a working key -----------


def test_reads_take_the_authenticated_route(store, fake_supabase):
    stored = store.save(io.BytesIO(b"a,b\n"), MIB)
    assert read_back(store, stored.key) == b"a,b\n"
    assert ("GET", f"/storage/v1/object/authenticated/imports/{stored.key}") in fake_supabase.requests


def test_an_anon_key_is_an_outage_not_a_missing_file(fake_supabase):
    fake_supabase.put("imports", "k.upload", b"a,b\n")
    anon = SupabaseStorage(fake_supabase.url, ANON_KEY, "imports", CHUNK)
    with pytest.raises(StorageUnavailable, match="role 'anon'.*service role"):
        read_back(anon, "k.upload")
    with pytest.raises(StorageUnavailable, match="role 'anon'"):
        anon.check()
    # Its bulk delete answers 200 [] as for a missing object: not believed either.
    with pytest.raises(StorageUnavailable, match="role 'anon'"):
        anon.delete("k.upload")
    assert list(fake_supabase.objects["imports"]) == ["k.upload"]


def test_a_key_that_cannot_see_the_bucket_is_an_outage_not_a_missing_file():
    # A key whose role cannot be read from it: only asking the server tells it apart.
    with FakeSupabase(anon_key="opaque-publishable-key") as fake:
        fake.put("imports", "k.upload", b"a,b\n")
        anon = SupabaseStorage(fake.url, "opaque-publishable-key", "imports", CHUNK)
        with pytest.raises(StorageUnavailable, match="no bucket 'imports'"):
            read_back(anon, "k.upload")
        assert ("GET", "/storage/v1/bucket/imports") in fake.requests


def test_deleting_in_a_missing_bucket_is_an_outage_not_a_success(fake_supabase):
    store = SupabaseStorage(fake_supabase.url, fake_supabase.key, "gone-bucket", CHUNK)
    with pytest.raises(StorageUnavailable, match="no bucket 'gone-bucket'"):
        store.delete("k.upload")


def test_key_role_is_read_from_the_key():
    assert key_role(ANON_KEY) == "anon"
    assert key_role("sb_publishable_abc") == "anon"
    assert key_role("sb_secret_abc") == "service_role"
    assert key_role("test-service-role-key") is None
    assert key_role("a.!!!.c") is None


# --- what /health learns from the bucket ------------------------------------------------------


def test_check_warns_of_rules_that_refuse_dataflows_uploads(fake_supabase):
    store = SupabaseStorage(fake_supabase.url, fake_supabase.key, "imports", CHUNK, max_upload_size=100 * MIB)
    assert store.check() == []  # no bucket rules, and the server takes 500 MiB
    fake_supabase.buckets["imports"].file_size_limit = 10 * MIB
    fake_supabase.buckets["imports"].allowed_mime_types = ["text/csv", "application/json"]
    fake_supabase.global_limit = 50 * MIB
    store._store_limit_cache = None  # read again now, not after a minute
    size, server, types = store.check()
    assert "bucket 'imports' has a file size limit of 10,485,760 bytes (10 MiB)" in size
    assert "below MAX_UPLOAD_SIZE (104,857,600 bytes (100 MiB))" in size
    assert "Supabase Storage takes files up to 52,428,800 bytes (50 MiB)" in server
    refused = types.split("files sent as ")[1].split(" are refused")[0].split(", ")
    assert refused == [
        "text/tab-separated-values",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.ms-excel",
        "application/vnd.oasis.opendocument.spreadsheet",
        "application/x-ndjson",
        "text/vcard",
        "application/octet-stream",
    ]
    fake_supabase.buckets["imports"].allowed_mime_types = ["image/png"]
    with pytest.raises(StorageUnavailable, match="every upload is refused with 415"):
        store.check()


def test_check_size_refuses_before_the_bytes_exist(store, fake_supabase):
    store.check_size(10 * MIB)  # no rule, and the server takes 500 MiB
    fake_supabase.buckets["imports"].file_size_limit = MIB
    store._rules_cache = None  # read again now, not after a minute (saving checks again anyway)
    with pytest.raises(StorageRefused, match="file size limit is 1,048,576 bytes"):
        store.check_size(2 * MIB)
    fake_supabase.buckets["imports"].file_size_limit = None
    fake_supabase.global_limit = 5 * MIB
    store._store_limit_cache = None  # read again now, not after a minute
    with pytest.raises(StorageRefused, match="upload size limit is 5,242,880 bytes"):
        store.check_size(10 * MIB)
    fake_supabase.stop()
    store._rules_cache = store._store_limit_cache = None
    store.check_size(10 * MIB)  # storage cannot be asked: the complete file is checked when saved


def test_rules_that_cannot_be_read_refuse_nothing(store, fake_supabase):
    fake_supabase.fail("GET", "error", path="/bucket/")  # a passing fault of the bucket's read
    stored = store.save(io.BytesIO(b"a,b\n"), MIB)
    assert fake_supabase.objects["imports"][stored.key] == b"a,b\n"
    assert fake_supabase.content_types[("imports", stored.key)] == "text/csv"
