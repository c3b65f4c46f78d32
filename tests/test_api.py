"""POST /import and the JSON API: the original's contract, every error it promises."""

from __future__ import annotations

import io
import json
import subprocess

import psycopg
from sqlalchemy import func, select

from app.extensions import db
from app.models import Contact, Import
from tests.spreadsheets import xlsx_bytes

CSV = b"name,email\nAda Lovelace,ada@example.com\nGrace Hopper,grace@example.com\n"


def body(source: str = "crm", data: object = None, **extra: object) -> dict:
    data = data if data is not None else [{"name": "Ada", "email": "ada@example.com"}]
    return {"source": source, "data": data, **extra}


def test_json_import_answers_compact_job_id_and_location(client, work):
    response = client.post("/import", json=body())
    assert response.status_code == 202
    job_id = response.get_json()["jobId"]
    assert response.get_data(as_text=True) == json.dumps({"jobId": job_id}, separators=(",", ":"))
    assert response.headers["Location"] == f"/imports/{job_id}"
    work()
    status = client.get(f"/imports/{job_id}").get_json()
    assert status["status"] == "completed"
    assert status["insertedRows"] == 1
    assert db.session.scalar(select(Contact.email).where(Contact.source == "crm")) == "ada@example.com"


def test_json_body_issues_name_path_and_message(client):
    response = client.post(
        "/import",
        json=body(data=[{"name": "Ada", "email": "ada@example.com"}, {"name": "", "email": "nope"}]),
    )
    assert response.status_code == 400
    payload = response.get_json()
    assert payload["error"]
    paths = [issue["path"] for issue in payload["issues"]]
    assert ["data", 1, "name"] in paths
    assert ["data", 1, "email"] in paths
    assert db.session.scalar(select(func.count()).select_from(Import)) == 0


def test_json_body_rules(client):
    cases = [
        (body(source=""), ["source"]),
        (body(source="x" * 101), ["source"]),
        (body(data=[]), ["data"]),
        ({"data": [{"name": "A", "email": "a@b.co"}]}, ["source"]),
        (body(data=[{"name": "n" * 256, "email": "a@b.co"}]), ["data", 0, "name"]),
        (body(data=[{"email": "a@b.co"}]), ["data", 0, "name"]),
        (body(data=["not an object"]), ["data", 0]),
        (body(useResumable="yes"), ["useResumable"]),
        ({"source": "crm", "data": {"name": "A"}}, ["data"]),
    ]
    for payload, path in cases:
        response = client.post("/import", json=payload)
        assert response.status_code == 400, payload
        assert path in [i["path"] for i in response.get_json()["issues"]], payload
    assert db.session.scalar(select(func.count()).select_from(Import)) == 0


def test_malformed_json_is_400_not_500(client):
    for raw in (b"{", b"", b"[1,2", b'{"source": "x", "data": [}', b"\xff\xfe garbage"):
        response = client.post("/import", data=raw, content_type="application/json")
        assert response.status_code == 400, raw
        assert "error" in response.get_json()


def test_multipart_missing_fields(client):
    response = client.post("/import", data={"source": "crm"}, content_type="multipart/form-data")
    assert response.status_code == 400
    assert response.get_json()["error"] == "Missing required field: file"
    response = client.post(
        "/import", data={"file": (io.BytesIO(CSV), "c.csv")}, content_type="multipart/form-data"
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == "Missing required field: source"


def test_multipart_import(client, work):
    response = client.post(
        "/import",
        data={"file": (io.BytesIO(CSV), "contacts.csv"), "source": "fair", "useResumable": "true"},
        content_type="multipart/form-data",
    )
    assert response.status_code == 202
    work()
    status = client.get(response.headers["Location"]).get_json()
    assert status["status"] == "completed"
    assert status["filename"] == "contacts.csv"
    assert status["format"] == "csv"
    assert status["useResumable"] is True
    assert status["insertedRows"] == 2


def test_stream_missing_source(client):
    response = client.post("/import", data=CSV, content_type="text/csv")
    assert response.status_code == 400
    assert response.get_json() == {
        "error": "Missing required parameters for stream upload: Missing required field: source"
    }


def test_stream_import_and_request_source_wins(client, work):
    file = json.dumps({"source": "inside-the-file", "data": [{"name": "B", "email": "b@example.com"}]})
    response = client.post(
        "/import", data=file, content_type="application/octet-stream", headers={"X-Source": "header"}
    )
    assert response.status_code == 202
    work()
    assert db.session.scalar(select(Contact.source)) == "header"


def test_empty_stream_is_refused(client):
    response = client.post("/import", data=b"", headers={"X-Source": "s"})
    assert response.status_code == 400
    assert db.session.scalar(select(func.count()).select_from(Import)) == 0


def test_oversize_stream_is_413_and_nothing_is_kept(make_app, env, tmp_path):
    app = make_app(MAX_UPLOAD_SIZE="1000")
    with app.app_context():
        client = app.test_client()
        response = client.post("/import", data=b"x" * 5000, headers={"X-Source": "s"})
        assert response.status_code == 413
        assert "limit" in response.get_json()["error"]
        assert db.session.scalar(select(func.count()).select_from(Import)) == 0
    uploads = tmp_path / "instance" / "uploads"
    assert not uploads.exists() or not any(uploads.iterdir())


def test_status_list_and_errors_pages(client, work):
    csv = b"name,email\nA,a@example.com\nB,not-an-email\nC,\n"
    job_id = client.post("/import", data=csv, headers={"X-Source": "s"}).get_json()["jobId"]
    work()
    status = client.get(f"/imports/{job_id}").get_json()
    for key in (
        "jobId",
        "status",
        "source",
        "format",
        "filename",
        "totalRows",
        "processedRows",
        "insertedRows",
        "duplicateRows",
        "rejectedRows",
        "error",
        "createdAt",
        "startedAt",
        "finishedAt",
    ):
        assert key in status
    assert (status["insertedRows"], status["rejectedRows"], status["totalRows"]) == (1, 2, 3)
    errors = client.get(f"/imports/{job_id}/errors?page=1").get_json()
    assert errors["total"] == 2 and errors["page"] == 1 and errors["pages"] == 1
    assert errors["items"][0] == {
        "row": 3,
        "level": "error",
        "field": "email",
        "message": "Not a valid email address: it has no @",
        "value": "not-an-email",
    }
    assert errors["items"][1]["row"] == 4 and errors["items"][1]["message"] == "Email is missing"
    listing = client.get("/imports?status=completed&source=s").get_json()
    assert [i["jobId"] for i in listing["items"]] == [job_id]
    assert listing["items"][0] == status  # the status read and the listing show an import alike
    assert client.get("/imports?status=failed").get_json()["total"] == 0
    assert client.get("/imports?status=bogus").status_code == 400


def test_status_read_survives_dropped_database_connections(make_app, database_url):
    # As after a database restart: the pooled connections are gone, the next poll still answers.
    app = make_app(DATABASE_URL=f"{database_url}?application_name=dataflow-status-under-test")
    client = app.test_client()
    job_id = client.post("/import", json=body(), headers={"Accept": "application/json"}).get_json()["jobId"]
    assert client.get(f"/imports/{job_id}", headers={"Accept": "application/json"}).status_code == 200
    with psycopg.connect(database_url, autocommit=True) as admin:
        dropped = admin.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'dataflow-status-under-test' AND datname = current_database()"
        ).fetchone()[0]
    assert dropped >= 1
    again = client.get(f"/imports/{job_id}", headers={"Accept": "application/json"})
    assert again.status_code == 200 and again.get_json()["jobId"] == job_id


def test_unknown_paths(client):
    response = client.get("/no/such/thing")
    assert response.status_code == 404
    assert response.get_json() == {"error": "Not found"}
    page = client.get("/no/such/thing", headers={"Accept": "text/html"})
    assert page.status_code == 404
    assert b"<html" in page.data and b"Page not found" in page.data
    assert client.get("/imports/nope").status_code == 404


def test_health(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "healthy",
        "checks": {"database": "ok", "redis": "ok", "storage": "ok"},
    }


def test_health_names_redis_when_it_is_down(make_app):
    app = make_app(REDIS_URL="redis://127.0.0.1:1/0")
    with app.app_context():
        response = app.test_client().get("/health")
    assert response.status_code == 503
    payload = response.get_json()
    assert payload["status"] == "unhealthy"
    assert "redis" in payload["error"]


def _nothing_stored(tmp_path) -> bool:
    uploads = tmp_path / "instance" / "uploads"
    stored = list(uploads.iterdir()) if uploads.exists() else []
    return stored == [] and db.session.scalar(select(func.count()).select_from(Import)) == 0


def test_any_other_content_type_is_a_raw_stream(client, work):
    for number, content_type in enumerate(("text/plain", "text/csv; charset=utf-8", None)):
        source = f"s{number}"
        kwargs = {"content_type": content_type} if content_type else {}
        response = client.post("/import", data=CSV, headers={"X-Source": source}, **kwargs)
        assert response.status_code == 202, content_type
        work()
        assert client.get(response.headers["Location"]).get_json()["insertedRows"] == 2
    assert db.session.scalar(select(func.count()).select_from(Contact)) == 6


def test_stream_source_sent_as_utf8_and_use_resumable_header(client, work):
    source = "Messe München – Café"
    raw_header = source.encode("utf-8").decode("latin-1")  # what a WSGI server hands over
    response = client.post("/import", data=CSV, headers={"X-Source": raw_header, "X-Use-Resumable": "true"})
    assert response.status_code == 202
    work()
    status = client.get(response.headers["Location"]).get_json()
    assert (status["source"], status["useResumable"], status["insertedRows"]) == (source, True, 2)


def test_stream_source_longer_than_100_characters(client):
    response = client.post("/import", data=CSV, headers={"X-Source": "s" * 101})
    assert response.status_code == 400
    assert response.get_json()["error"].startswith("Missing required parameters for stream upload:")


def test_multipart_without_boundary_is_400(client, tmp_path):
    response = client.post("/import", data=b"--x\r\n", content_type="multipart/form-data")
    assert response.status_code == 400
    assert "boundary" in response.get_json()["error"]
    assert _nothing_stored(tmp_path)


def test_oversize_json_body_is_413_and_nothing_is_kept(make_app, tmp_path):
    app = make_app(MAX_UPLOAD_SIZE="2KB")
    with app.app_context():
        data = [{"name": f"Person {i}", "email": f"p{i}@example.com"} for i in range(100)]
        response = app.test_client().post("/import", json=body(data=data))
        assert response.status_code == 413
        assert "limit" in response.get_json()["error"]
        assert _nothing_stored(tmp_path)


def test_oversize_multipart_is_413_and_nothing_is_kept(make_app, tmp_path):
    app = make_app(MAX_UPLOAD_SIZE="2KB")
    with app.app_context():
        big = b"name,email\n" + b"Person,p@example.com\n" * 10_000
        response = app.test_client().post(
            "/import",
            data={"file": (io.BytesIO(big), "big.csv"), "source": "s"},
            content_type="multipart/form-data",
            headers={"Accept": "application/json"},
        )
        assert response.status_code == 413
        assert "limit" in response.get_json()["error"]
        assert _nothing_stored(tmp_path)


def test_json_body_that_is_not_an_object(client):
    for raw, kind in ((b"[]", "array"), (b'"text"', "string"), (b"42", "number"), (b"null", "null")):
        response = client.post("/import", data=raw, content_type="application/json")
        assert response.status_code == 400
        assert response.get_json()["issues"] == [{"path": [], "message": f"Expected object, received {kind}"}]


def test_deeply_nested_json_body_is_400(client, tmp_path):
    raw = b'{"source": "s", "data": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    response = client.post("/import", data=raw, content_type="application/json")
    assert response.status_code == 400
    assert "nested more than" in response.get_json()["error"]
    assert _nothing_stored(tmp_path)


def test_malformed_json_message_is_one_readable_line(client):
    response = client.post("/import", data=b'{"source": "s", "data": [', content_type="application/json")
    assert response.status_code == 400
    message = response.get_json()["error"]
    assert message.startswith("Malformed JSON in request body:") and "\n" not in message


def test_issues_for_json_body_email_and_whitespace_name(client):
    response = client.post(
        "/import",
        json=body(data=[{"name": "   ", "email": "a@b.co"}, {"name": "B", "email": "x" * 250 + "@b.co"}]),
    )
    assert response.status_code == 400
    issues = {tuple(i["path"]): i["message"] for i in response.get_json()["issues"]}
    assert issues == {
        ("data", 0, "name"): "Name must be 1 to 255 characters long",
        ("data", 1, "email"): "Not a valid email address: the part before the @ is longer than 64 characters",
    }


def test_real_clients_over_http(client, work, web_server, tmp_path):
    """curl against gunicorn: a chunked stream with a UTF-8 source, a multipart file, a JSON body."""
    base = web_server()
    xlsx = tmp_path / "contacts.xlsx"
    xlsx.write_bytes(xlsx_bytes([["E-mail", "Full Name"], ["cy@example.com", "Cy"]]))
    csv = tmp_path / "contacts.csv"
    csv.write_bytes(CSV)
    requests = {
        "Messe München": ["-H", "X-Source: Messe München", "-H", "Transfer-Encoding: chunked"]
        + ["-H", "Content-Type: text/csv", "--data-binary", f"@{csv}"],
        "xlsx": ["-F", f"file=@{xlsx}", "-F", "source=xlsx", "-F", "useResumable=true"],
        "json": ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body(source="json"))],
    }
    jobs = {}
    for source, arguments in requests.items():
        result = subprocess.run(
            ["curl", "-sS", "-D", "-", f"{base}/import", *arguments], capture_output=True, check=True
        )
        head, _, payload = result.stdout.decode("utf-8").partition("\r\n\r\n")
        assert head.startswith("HTTP/1.1 202"), result.stdout
        jobs[source] = json.loads(payload)["jobId"]
        assert f"location: /imports/{jobs[source]}" in head.lower()
    work()
    for source, job_id in jobs.items():
        status = client.get(f"/imports/{job_id}").get_json()
        assert (status["status"], status["source"]) == ("completed", source)
    assert db.session.scalar(select(func.count()).select_from(Contact)) == 4


def test_multipart_empty_file_part_long_source_and_empty_file(client, tmp_path):
    empty_part = client.post(
        "/import", data={"file": (io.BytesIO(b""), ""), "source": "s"}, content_type="multipart/form-data"
    )
    assert (empty_part.status_code, empty_part.get_json()) == (400, {"error": "Missing required field: file"})
    long_source = client.post(
        "/import",
        data={"file": (io.BytesIO(CSV), "c.csv"), "source": "s" * 101},
        content_type="multipart/form-data",
    )
    assert long_source.status_code == 400 and "source" in long_source.get_json()["error"]
    empty_file = client.post(
        "/import",
        data={"file": (io.BytesIO(b""), "c.csv"), "source": "s"},
        content_type="multipart/form-data",
    )
    assert (empty_file.status_code, empty_file.get_json()) == (400, {"error": "The file is empty"})
    assert _nothing_stored(tmp_path)
