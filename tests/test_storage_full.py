"""Uploads when the storage disk is full: a real, small tmpfs as STORAGE_DIR. Each form of POST
/import and tus get 507 saying so, nothing half-stored stays, and once space is freed the next
upload (and the same tus upload, resumed) works."""

from __future__ import annotations

import base64
import io
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from app.extensions import db
from app.models import Contact, Import, Upload

DISK = 8 * 1024 * 1024
ROWS = 30_000  # about 1.1 MB of CSV


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs, mounted for the test (root only)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK}", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def contacts_csv(rows: int, prefix: str) -> bytes:
    lines = ["name,email"] + [f"Person {i},{prefix}{i}@example.com" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def fill(disk: Path, leave: int) -> Path:
    """Fill the disk until ``leave`` bytes are free; return the filler file."""
    filler = disk / "filler"
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    filler.write_bytes(b"\0" * (free - leave))
    return filler


def files_on(disk: Path) -> list[str]:
    """Every file on the disk but the filler."""
    return sorted(str(p.relative_to(disk)) for p in disk.rglob("*") if p.is_file() and p.name != "filler")


def test_uploads_to_a_full_disk_are_refused_with_507_and_work_once_space_is_freed(make_app, small_disk, work):
    app = make_app(STORAGE_DIR=str(small_disk), WTF_CSRF_ENABLED="false")
    with app.app_context():
        client = app.test_client()
        client.environ_base["HTTP_ACCEPT"] = "application/json"
        body = contacts_csv(ROWS, "stream")
        json_body = {
            "source": "json",
            "data": [{"name": f"P {i}", "email": f"json{i}@example.com"} for i in range(ROWS)],
        }
        # Encoded here: the test client spools a large form to a file it never closes.
        boundary, form = encode_multipart(
            {"source": "multipart", "file": FileStorage(io.BytesIO(contacts_csv(ROWS, "multi")), "m.csv")}
        )
        filler = fill(small_disk, leave=256 * 1024)

        def post_all() -> list:
            return [
                client.post("/import", data=body, headers={"X-Source": "stream"}),
                client.post("/import", data=form, content_type=f"multipart/form-data; boundary={boundary}"),
                client.post("/import", json=json_body),
            ]

        for response in post_all():
            assert response.status_code == 507, response.get_data(as_text=True)
            assert response.get_json()["error"].startswith("Storage is full, so the file could not be stored")
            assert "Retry-After" not in response.headers

        tus = {"Tus-Resumable": "1.0.0"}
        meta = f"source {base64.b64encode(b'tus').decode()}"
        tus_body = contacts_csv(ROWS, "tus")
        created = client.post(
            "/uploads", headers=tus | {"Upload-Length": str(len(tus_body)), "Upload-Metadata": meta}
        )
        assert created.status_code == 201
        path = created.headers["Location"].split("://", 1)[-1].split("/", 1)[1]
        half = len(tus_body) // 8
        chunk = {"Content-Type": "application/offset+octet-stream"}
        first = client.patch(f"/{path}", data=tus_body[:half], headers=tus | chunk | {"Upload-Offset": "0"})
        assert first.status_code == 204  # a small first chunk still fits
        rest = client.patch(
            f"/{path}", data=tus_body[half:], headers=tus | chunk | {"Upload-Offset": str(half)}
        )
        assert rest.status_code == 507
        assert "Storage is full, so this chunk was not kept" in rest.get_json()["error"]
        assert client.head(f"/{path}", headers=tus).headers["Upload-Offset"] == str(half)

        # Nothing half-stored: no import, no stored file, and only the tus upload's kept bytes.
        assert db.session.scalar(select(func.count()).select_from(Import)) == 0
        assert files_on(small_disk) == [f"tus/{path.rsplit('/', 1)[1]}.part"]
        assert (small_disk / files_on(small_disk)[0]).stat().st_size == half

        filler.unlink()
        for response in post_all():
            assert response.status_code == 202, response.get_data(as_text=True)
        resumed = client.patch(
            f"/{path}", data=tus_body[half:], headers=tus | chunk | {"Upload-Offset": str(half)}
        )
        assert resumed.status_code == 204
        assert resumed.headers["X-Import-Id"]
        work()
        for source in ("stream", "multipart", "json", "tus"):
            imp = db.session.scalars(select(Import).where(Import.source == source)).one()
            assert (imp.status, imp.inserted_rows) == ("completed", ROWS), imp.error
            assert db.session.scalar(select(func.count()).where(Contact.source == source)) == ROWS
        assert db.session.scalar(select(func.count()).select_from(Upload)) == 1


def test_a_complete_tus_upload_whose_copy_does_not_fit_is_kept_until_there_is_room(
    make_app, small_disk, work
):
    app = make_app(STORAGE_DIR=str(small_disk))
    with app.app_context():
        client = app.test_client()
        client.environ_base["HTTP_ACCEPT"] = "application/json"
        body = contacts_csv(ROWS, "tus")
        tus = {"Tus-Resumable": "1.0.0"}
        meta = f"source {base64.b64encode(b'tus').decode()}"
        created = client.post(
            "/uploads", headers=tus | {"Upload-Length": str(len(body)), "Upload-Metadata": meta}
        )
        path = "/" + created.headers["Location"].split("://", 1)[-1].split("/", 1)[1]
        # Room for the upload's bytes, but not for the stored copy its import needs as well.
        filler = fill(small_disk, leave=len(body) + 64 * 1024)
        chunk = {"Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"}
        answer = client.patch(path, data=body, headers=tus | chunk)
        assert answer.status_code == 507
        assert "its import could not start. The upload is kept" in answer.get_json()["error"]
        assert db.session.scalar(select(func.count()).select_from(Import)) == 0
        assert [name for name in files_on(small_disk) if not name.startswith("tus/")] == []

        filler.unlink()
        head = client.head(path, headers=tus)
        assert head.headers["Upload-Offset"] == str(len(body))
        job_id = head.headers["X-Import-Id"]
        work()
        assert db.session.get(Import, job_id).status == "completed"
        assert db.session.scalar(select(func.count()).where(Contact.source == "tus")) == ROWS
