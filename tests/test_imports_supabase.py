"""Imports with STORAGE_BACKEND=supabase: upload, worker, health, failures and the clean-up."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

import httpx
import pytest
from flask import Flask
from sqlalchemy import func, select, update
from tusclient.client import TusClient
from tusclient.exceptions import TusCommunicationError

from app.extensions import db, queue
from app.filenames import clean_filename
from app.maintenance import run_once
from app.models import Contact, Import, Upload
from app.storage.supabase import SupabaseStorage
from tests.conftest import served_in_thread, wait_for
from tests.supabase_fake import ANON_KEY, CHUNK, MIB, FakeSupabase

CSV = b"name,email\nAda Lovelace,ada@example.com\nGrace Hopper,grace@example.com\n"


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SupabaseStorage, "retry_delays", (0.01, 0.01))


def supabase_settings(fake: FakeSupabase, **extra: str) -> dict[str, str]:
    return {
        "STORAGE_BACKEND": "supabase",
        "SUPABASE_URL": fake.url,
        "SUPABASE_SERVICE_ROLE_KEY": fake.key,
        **extra,
    }


@pytest.fixture
def supabase_app(app, make_app, fake_supabase):
    """An app storing in the fake Supabase, its context pushed over the default app's."""
    sb_app = make_app(**supabase_settings(fake_supabase))
    with sb_app.app_context():
        yield sb_app


@pytest.fixture
def sb_client(supabase_app):
    client = supabase_app.test_client()
    client.environ_base["HTTP_ACCEPT"] = "application/json"
    return client


def big_csv(rows: int, pad: int) -> bytes:
    """A CSV whose size comes mostly from a notes column, so it passes 6 MiB with few rows."""
    lines = [b"name,email,notes"]
    lines += [f"Person {i},p{i}@example.com,{'n' * pad}".encode() for i in range(rows)]
    return b"\n".join(lines) + b"\n"


def post_each_kind(client, use_resumable: bool) -> dict[str, object]:
    """POST /import as JSON, multipart and raw stream; the answers by kind."""
    flag = "true" if use_resumable else "false"
    json_body = {
        "source": "json-src",
        "useResumable": use_resumable,
        "data": [{"name": "Ada", "email": "ada@example.com"}, {"name": "Bob", "email": "bob@example.com"}],
        # A mapping, so that the body is stored: a small JSON request without one never is.
        "mapping": {"name": "name", "email": "email"},
    }
    return {
        "json": client.post("/import", json=json_body),
        "multipart": client.post(
            "/import",
            data={"file": (io.BytesIO(CSV), "c.csv"), "source": "form-src", "useResumable": flag},
            content_type="multipart/form-data",
        ),
        "stream": client.post(
            "/import", data=CSV, headers={"X-Source": "stream-src", "X-Use-Resumable": flag}
        ),
    }


@pytest.mark.parametrize("use_resumable", [False, True])
def test_every_kind_of_request_imports_through_supabase(sb_client, fake_supabase, work, use_resumable):
    answers = post_each_kind(sb_client, use_resumable)
    ids = {}
    for kind, response in answers.items():
        assert response.status_code == 202, (kind, response.get_json())
        ids[kind] = response.get_json()["jobId"]
    keys = {db.session.get(Import, job_id).storage_key for job_id in ids.values()}
    assert keys == set(fake_supabase.objects["imports"])  # stored in the bucket before the job ran
    assert any(m == "PATCH" for m, _ in fake_supabase.requests) is use_resumable

    work()
    for kind, job_id in ids.items():
        status = sb_client.get(f"/imports/{job_id}").get_json()
        assert status["status"] == "completed", (kind, status)
        assert status["insertedRows"] == 2
        assert status["useResumable"] is use_resumable
        assert db.session.get(Import, job_id).storage_key is None
    assert fake_supabase.objects["imports"] == {}  # each file deleted once imported
    assert db.session.scalar(select(func.count()).select_from(Contact)) == 6


def test_large_resumable_upload_imported_by_a_worker_process(sb_client, fake_supabase, worker_process, env):
    body = big_csv(rows=1500, pad=5000)  # ~7.5 MB: two chunks
    response = sb_client.post("/import", data=body, headers={"X-Source": "big", "X-Use-Resumable": "true"})
    assert response.status_code == 202
    assert [p.length for p in fake_supabase.patches] == [CHUNK, len(body) - CHUNK]
    job_id = response.get_json()["jobId"]
    key = db.session.get(Import, job_id).storage_key
    worker_process("--concurrency", "1", **supabase_settings(fake_supabase))

    def finished() -> dict | None:
        db.session.remove()
        status = sb_client.get(f"/imports/{job_id}").get_json()
        return status if status["status"] in ("completed", "failed") else None

    status = wait_for(finished, timeout=120)
    assert status["status"] == "completed", status
    assert status["insertedRows"] == 1500
    # The stored file is deleted just after the import is marked completed.
    wait_for(lambda: fake_supabase.objects["imports"] == {}, timeout=30)
    assert ("GET", f"/storage/v1/object/authenticated/imports/{key}") in fake_supabase.requests


def test_health_names_storage_when_the_key_is_wrong(make_app, fake_supabase):
    app = make_app(**supabase_settings(fake_supabase, SUPABASE_SERVICE_ROLE_KEY="wrong-key"))
    with app.app_context():
        response = app.test_client().get("/health")
    assert response.status_code == 503
    payload = response.get_json()
    assert payload["status"] == "unhealthy"
    assert payload["checks"] == {"database": "ok", "redis": "ok", "storage": "failing"}
    assert payload["error"].startswith("storage: ")
    assert "SUPABASE_SERVICE_ROLE_KEY" in payload["error"]


def test_health_names_storage_when_supabase_is_down(make_app, fake_supabase):
    app = make_app(**supabase_settings(fake_supabase))
    with app.app_context():
        client = app.test_client()
        assert client.get("/health").status_code == 200
        fake_supabase.stop()
        response = client.get("/health")
    assert response.status_code == 503
    assert response.get_json()["checks"]["storage"] == "failing"
    assert "storage: " in response.get_json()["error"]
    assert "cannot be reached" in response.get_json()["error"]


@pytest.mark.parametrize("failure", ["wrong key", "down"])
@pytest.mark.parametrize("use_resumable", [False, True])
def test_import_is_503_and_leaves_no_row_when_storage_fails(make_app, fake_supabase, failure, use_resumable):
    extra = {"SUPABASE_SERVICE_ROLE_KEY": "wrong-key"} if failure == "wrong key" else {}
    app = make_app(**supabase_settings(fake_supabase, **extra))
    if failure == "down":
        fake_supabase.stop()
    with app.app_context():
        client = app.test_client()
        client.environ_base["HTTP_ACCEPT"] = "application/json"
        for kind, response in post_each_kind(client, use_resumable).items():
            assert response.status_code == 503, kind
            assert response.headers["Retry-After"]
            error = response.get_json()["error"]
            assert "could not be stored" in error and "nothing was imported" in error, error
        assert db.session.scalar(select(func.count()).select_from(Import)) == 0
        assert queue().count == 0
    assert fake_supabase.objects["imports"] == {}


def test_a_small_json_request_is_kept_in_the_database_and_imported_while_storage_is_down(
    make_app, fake_supabase, work
):
    app = make_app(**supabase_settings(fake_supabase))
    fake_supabase.stop()
    with app.app_context():
        client = app.test_client()
        client.environ_base["HTTP_ACCEPT"] = "application/json"
        data = [{"name": "Ada", "email": "ada@example.com"}]
        response = client.post("/import", json={"source": "crm", "data": data})
        assert response.status_code == 202, response.get_json()
        work()
        job_id = response.get_json()["jobId"]
        assert client.get(f"/imports/{job_id}").get_json()["status"] == "completed"
        assert db.session.get(Import, job_id).storage_key is None
    assert fake_supabase.objects["imports"] == {} and fake_supabase.requests == []


def test_upload_page_says_storage_failed(make_app, fake_supabase):
    app = make_app(**supabase_settings(fake_supabase))
    app.config["WTF_CSRF_ENABLED"] = False
    fake_supabase.stop()
    with app.app_context():
        page = app.test_client().post(
            "/",
            data={"file": (io.BytesIO(CSV), "c.csv"), "source": "crm"},
            content_type="multipart/form-data",
            headers={"Accept": "text/html"},
        )
        assert page.status_code == 503
        assert b"could not be stored" in page.data
        assert db.session.scalar(select(func.count()).select_from(Import)) == 0


def test_storage_failure_while_reading_is_retried(sb_client, fake_supabase, work):
    job_id = sb_client.post("/import", data=CSV, headers={"X-Source": "s"}).get_json()["jobId"]
    fake_supabase.fail("GET", "error", path="/object/")
    work()
    imp = db.session.get(Import, job_id)
    assert imp.status == "queued"  # released, waiting for its retry
    assert "StorageUnavailable" in imp.error
    assert imp.storage_key in fake_supabase.objects["imports"]


def test_missing_stored_file_fails_the_import_with_a_reason(sb_client, fake_supabase, work):
    job_id = sb_client.post("/import", data=CSV, headers={"X-Source": "s"}).get_json()["jobId"]
    fake_supabase.objects["imports"].clear()
    work()
    status = sb_client.get(f"/imports/{job_id}").get_json()
    assert status["status"] == "failed"
    assert "no longer in storage" in status["error"]


def test_failed_delete_is_kept_and_retried_by_the_clean_up(supabase_app, sb_client, fake_supabase, work):
    fake_supabase.fail("DELETE", "error", path="/object/", count=2)
    job_id = sb_client.post("/import", data=CSV, headers={"X-Source": "s"}).get_json()["jobId"]
    work()
    imp = db.session.get(Import, job_id)
    assert imp.status == "completed" and imp.inserted_rows == 2  # the import itself succeeded
    key = imp.storage_key
    assert key is not None and key in fake_supabase.objects["imports"]

    # A cancelled import whose file is still there is cleaned up too; a failed one keeps its file.
    kept = {}
    for status in ("cancelled", "failed"):
        other = sb_client.post("/import", data=CSV, headers={"X-Source": status}).get_json()["jobId"]
        db.session.execute(update(Import).where(Import.id == other).values(status=status))
        kept[status] = other
    db.session.commit()

    run_once(supabase_app)  # storage still refuses this once: nothing is lost
    db.session.expire_all()
    assert db.session.get(Import, job_id).storage_key == key
    assert key in fake_supabase.objects["imports"]

    run_once(supabase_app)
    db.session.expire_all()
    assert db.session.get(Import, job_id).storage_key is None
    assert db.session.get(Import, kept["cancelled"]).storage_key is None
    failed_key = db.session.get(Import, kept["failed"]).storage_key
    assert list(fake_supabase.objects["imports"]) == [failed_key]


def test_app_with_supabase_needs_no_local_folder(supabase_app: Flask, sb_client, tmp_path):
    sb_client.post("/import", data=CSV, headers={"X-Source": "s"})
    uploads = tmp_path / "instance" / "uploads"
    assert not uploads.exists() or not any(uploads.iterdir())


@pytest.fixture
def served(supabase_app: Flask) -> Iterator[str]:
    """The Supabase-backed app in a real threaded HTTP server, for a real tus client."""
    with served_in_thread(supabase_app) as url:
        yield url


def test_browser_upload_moves_to_supabase_once_complete(served, fake_supabase, work, sb_client):
    body = big_csv(rows=1300, pad=5000)  # past one Supabase chunk
    uploader = TusClient(f"{served}/uploads").uploader(
        file_stream=io.BytesIO(body),
        chunk_size=1024 * 1024,
        metadata={"source": "browser", "filename": "people.csv", "useResumable": "true"},
    )
    uploader.upload()
    job_id = uploader.request.response_headers["x-import-id"]
    key = db.session.get(Import, job_id).storage_key
    assert fake_supabase.objects["imports"][key] == body
    assert [p.length for p in fake_supabase.patches] == [CHUNK, len(body) - CHUNK]
    work()
    status = sb_client.get(f"/imports/{job_id}").get_json()
    assert (status["status"], status["insertedRows"], status["useResumable"]) == ("completed", 1300, True)
    assert fake_supabase.objects["imports"] == {}


def test_browser_upload_waits_while_supabase_is_down(served, fake_supabase):
    fake_supabase.stop()
    uploader = TusClient(f"{served}/uploads").uploader(
        file_stream=io.BytesIO(CSV), chunk_size=1024, metadata={"source": "browser"}
    )
    with pytest.raises(TusCommunicationError) as refused:
        uploader.upload()
    assert refused.value.status_code == 503
    assert db.session.scalar(select(func.count()).select_from(Import)) == 0


# --- refusals by the store's own rules are permanent -------------------------------------------


@pytest.mark.parametrize("rule", ["bucket size limit", "bucket types"])
@pytest.mark.parametrize("use_resumable", [False, True])
def test_a_bucket_rule_is_a_4xx_naming_it_and_records_nothing(sb_client, fake_supabase, rule, use_resumable):
    if rule == "bucket size limit":
        fake_supabase.buckets["imports"].file_size_limit = 20
        status, words = 413, "file size limit is 20 bytes"
    else:
        fake_supabase.buckets["imports"].allowed_mime_types = ["image/png"]
        status, words = 415, "accepts only these content types: image/png"
    for kind, response in post_each_kind(sb_client, use_resumable).items():
        assert response.status_code == status, (kind, response.get_json())
        assert "Retry-After" not in response.headers
        error = response.get_json()["error"]
        assert words in error and "Nothing was imported" in error and "ask an administrator" in error, error
    assert db.session.scalar(select(func.count()).select_from(Import)) == 0
    assert queue().count == 0
    assert fake_supabase.objects["imports"] == {}
    assert fake_supabase.uploads == {}


def test_the_servers_own_size_limit_is_413_naming_it(sb_client, fake_supabase):
    fake_supabase.global_limit = MIB
    body = big_csv(rows=300, pad=5000)  # ~1.5 MB
    for use_resumable in ("false", "true"):
        response = sb_client.post(
            "/import", data=body, headers={"X-Source": "s", "X-Use-Resumable": use_resumable}
        )
        assert response.status_code == 413
        assert "upload size limit is 1,048,576 bytes (1 MiB)" in response.get_json()["error"]
    assert db.session.scalar(select(func.count()).select_from(Import)) == 0
    assert fake_supabase.objects["imports"] == {} and fake_supabase.uploads == {}


def test_a_file_past_the_servers_one_request_limit_is_imported_through_tus(sb_client, fake_supabase, work):
    fake_supabase.upload_limit = MIB
    body = big_csv(rows=300, pad=5000)
    response = sb_client.post("/import", data=body, headers={"X-Source": "big"})  # no useResumable
    assert response.status_code == 202, response.get_json()
    assert [p.length for p in fake_supabase.patches] == [len(body)]
    work()
    status = sb_client.get(f"/imports/{response.get_json()['jobId']}").get_json()
    assert (status["status"], status["insertedRows"], status["useResumable"]) == ("completed", 300, False)


def test_files_above_supabase_upload_limit_go_resumably(make_app, fake_supabase):
    app = make_app(**supabase_settings(fake_supabase, SUPABASE_UPLOAD_LIMIT="1MiB"))
    with app.app_context():
        body = big_csv(rows=300, pad=5000)
        response = app.test_client().post("/import", data=body, headers={"X-Source": "big"})
        assert response.status_code == 202
    assert [p.length for p in fake_supabase.patches] == [len(body)]
    assert not any(m == "POST" and "/object/" in p for m, p in fake_supabase.requests)


def test_the_upload_page_names_the_bucket_rule(make_app, fake_supabase):
    app = make_app(**supabase_settings(fake_supabase))
    app.config["WTF_CSRF_ENABLED"] = False
    fake_supabase.buckets["imports"].allowed_mime_types = ["image/png"]
    with app.app_context():
        page = app.test_client().post(
            "/",
            data={"file": (io.BytesIO(CSV), "c.csv"), "source": "crm"},
            content_type="multipart/form-data",
            headers={"Accept": "text/html"},
        )
        assert page.status_code == 415
        assert b"allowed MIME types" in page.data and b"text/csv" in page.data
        assert db.session.scalar(select(func.count()).select_from(Import)) == 0


def test_a_browser_upload_too_large_for_the_bucket_is_413_at_creation(served, fake_supabase):
    fake_supabase.buckets["imports"].file_size_limit = 20
    uploader = TusClient(f"{served}/uploads").uploader(
        file_stream=io.BytesIO(CSV), chunk_size=1024, metadata={"source": "browser", "filename": "c.csv"}
    )
    with pytest.raises(TusCommunicationError) as refused:
        uploader.upload()
    assert refused.value.status_code == 413
    assert b"file size limit is 20 bytes" in refused.value.response_content
    assert uploader.url is None  # refused before a byte was sent
    assert db.session.scalar(select(func.count()).select_from(Upload)) == 0


def test_a_browser_upload_the_bucket_refuses_when_complete_is_415_and_dropped(served, fake_supabase):
    fake_supabase.buckets["imports"].allowed_mime_types = ["image/png"]
    uploader = TusClient(f"{served}/uploads").uploader(
        file_stream=io.BytesIO(CSV), chunk_size=1024, metadata={"source": "browser", "filename": "c.csv"}
    )
    with pytest.raises(TusCommunicationError) as refused:
        uploader.upload()
    assert refused.value.status_code == 415  # the type is known only once the bytes are there
    assert b"accepts only these content types: image/png" in refused.value.response_content
    # Nothing waits for a retry that would be refused again: the upload and its bytes are gone.
    head = httpx.head(uploader.url, headers={"Tus-Resumable": "1.0.0"})
    assert head.status_code == 404
    assert db.session.scalar(select(func.count()).select_from(Import)) == 0
    assert fake_supabase.objects["imports"] == {}


# --- /health reads the bucket's rules -----------------------------------------------------------


def test_health_reports_bucket_rules_that_refuse_uploads(make_app, fake_supabase):
    app = make_app(**supabase_settings(fake_supabase, MAX_UPLOAD_SIZE="100MiB"))
    with app.app_context():
        client = app.test_client()
        healthy = client.get("/health")
        assert healthy.status_code == 200 and "warnings" not in healthy.get_json()
        assert healthy.get_json()["checks"]["storage"] == "ok"
        fake_supabase.buckets["imports"].file_size_limit = 10 * MIB
        fake_supabase.buckets["imports"].allowed_mime_types = ["text/csv"]
        degraded = client.get("/health")
        assert degraded.status_code == 200
        payload = degraded.get_json()
        assert payload["status"] == "healthy" and payload["checks"]["storage"] == "degraded"
        size, types = payload["warnings"]
        assert size.startswith("storage: bucket 'imports' has a file size limit of 10,485,760 bytes")
        assert "MAX_UPLOAD_SIZE (104,857,600 bytes (100 MiB))" in size
        assert "application/json" in types and "refused with 415" in types
        fake_supabase.buckets["imports"].allowed_mime_types = ["image/png"]
        failing = client.get("/health")
    assert failing.status_code == 503
    assert failing.get_json()["checks"]["storage"] == "failing"
    assert "every upload is refused with 415" in failing.get_json()["error"]


# --- a key that cannot see the file is an outage, never a missing file -------------------------


def test_a_key_that_cannot_see_the_file_is_retried_not_failed(sb_client, fake_supabase, make_app, work):
    job_id = sb_client.post("/import", data=CSV, headers={"X-Source": "s"}).get_json()["jobId"]
    anon_app = make_app(**supabase_settings(fake_supabase, SUPABASE_SERVICE_ROLE_KEY=ANON_KEY))
    with anon_app.app_context():
        work()
    imp = db.session.get(Import, job_id)
    db.session.refresh(imp)
    assert imp.status == "queued"  # released, waiting for its retry: the file is still there
    assert "StorageUnavailable" in imp.error
    assert imp.storage_key in fake_supabase.objects["imports"]


# --- user filenames never reach object keys ---------------------------------------------------

UNSAFE_NAME = 'Zoë\'s #1 "list"\t%2F.csv'
# A browser's multipart form escapes a double quote in a filename; Werkzeug's test client does not.
FORM_NAME = "Zoë's #1 list\t%2F.csv"
KEY = re.compile(r"^[0-9a-f]{32}\.upload$")


def test_unsafe_filenames_never_reach_object_keys(sb_client, fake_supabase, served):
    answers = [
        sb_client.post(
            "/import",
            data={"file": (io.BytesIO(CSV), FORM_NAME), "source": "form"},
            content_type="multipart/form-data",
        ),
        # Headers travel as Latin-1; clients send the UTF-8 bytes.
        sb_client.post(
            "/import",
            data=CSV,
            headers={"X-Source": "stream", "X-Filename": UNSAFE_NAME.encode().decode("latin-1")},
        ),
    ]
    uploader = TusClient(f"{served}/uploads").uploader(
        file_stream=io.BytesIO(CSV), chunk_size=1024, metadata={"source": "browser", "filename": UNSAFE_NAME}
    )
    uploader.upload()
    ids = [answer.get_json()["jobId"] for answer in answers]
    ids.append(uploader.request.response_headers["x-import-id"])
    for answer in answers:
        assert answer.status_code == 202, answer.get_json()
    db.session.expire_all()
    assert clean_filename(UNSAFE_NAME) == 'Zoë\'s #1 "list" %2F.csv'
    for job_id, name in zip(ids, [FORM_NAME, UNSAFE_NAME, UNSAFE_NAME], strict=True):
        imp = db.session.get(Import, job_id)
        assert imp.filename == clean_filename(name)  # shown as the user named it, control characters aside
        assert KEY.match(imp.storage_key), imp.storage_key
    assert len(fake_supabase.objects["imports"]) == 3  # the fake refuses unsafe names (InvalidKey)


def test_a_creation_with_upload_the_bucket_refuses_keeps_nothing(sb_client, fake_supabase):
    fake_supabase.buckets["imports"].allowed_mime_types = ["image/png"]
    response = sb_client.post(
        "/uploads",
        data=CSV,
        headers={
            "Tus-Resumable": "1.0.0",
            "Upload-Length": str(len(CSV)),
            "Upload-Metadata": "source Y3Jt,filename Yy5jc3Y=",  # crm, c.csv
            "Content-Type": "application/offset+octet-stream",
        },
    )
    assert response.status_code == 415
    assert "image/png" in response.get_json()["error"]
    assert db.session.scalar(select(func.count()).select_from(Upload)) == 0
    assert db.session.scalar(select(func.count()).select_from(Import)) == 0


def test_a_refused_request_does_not_use_up_its_idempotency_key(sb_client, fake_supabase):
    fake_supabase.buckets["imports"].file_size_limit = 20
    headers = {"X-Source": "s", "Idempotency-Key": "refused-once"}
    assert sb_client.post("/import", data=CSV, headers=headers).status_code == 413
    fake_supabase.buckets["imports"].file_size_limit = None
    # The rule was read a moment ago, but is read again before it refuses: the change is seen at once.
    assert sb_client.post("/import", data=CSV, headers=headers).status_code == 202
