"""Operations: /metrics counts imports right across processes, /health names what is down."""

from __future__ import annotations

import math
import socket
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from app.extensions import db
from app.models import Import
from tests.test_pipeline import MIXED, finished, post_file


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of a Prometheus text page, keyed by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def import_figures(page: dict[tuple[str, tuple], float]) -> dict[tuple[str, tuple], float]:
    """The figures read from the database and Redis (not the per-process HTTP ones).

    A quantile of no observations is NaN, which equals nothing: it is kept as the text "NaN"."""
    return {
        key: "NaN" if math.isnan(value) else value
        for key, value in page.items()
        if not key[0].startswith("dataflow_http")
    }


def test_metrics_show_the_imports(client, work):
    completed = post_file(client, MIXED)
    failed = post_file(client, b"Name,Phone\nAda,1\n")
    work()
    waiting = post_file(client, b"Name,Email\nB,b@example.com\n")

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    page = samples(response.get_data(as_text=True))
    assert page[("dataflow_imports_finished_total", (("status", "completed"),))] == 1
    assert page[("dataflow_imports_finished_total", (("status", "failed"),))] == 1
    assert page[("dataflow_imports_finished_total", (("status", "cancelled"),))] == 0
    assert page[("dataflow_imports_active", (("status", "queued"),))] == 1
    assert page[("dataflow_rows_total", (("outcome", "inserted"),))] == 2
    assert page[("dataflow_rows_total", (("outcome", "duplicate"),))] == 1
    assert page[("dataflow_rows_total", (("outcome", "rejected"),))] == 3
    assert page[("dataflow_rows_total", (("outcome", "updated"),))] == 0
    assert page[("dataflow_row_warnings_total", ())] == 2  # MIXED's phones "123" and "789"
    sizes = db.session.scalar(select(func.sum(Import.size_bytes)))
    assert page[("dataflow_bytes_received_total", ())] == sizes == len(MIXED) + 17 + 27
    assert page[("dataflow_import_duration_seconds_count", ())] == 2
    assert page[("dataflow_import_duration_seconds_bucket", (("le", "+Inf"),))] == 2
    assert page[("dataflow_queue_depth", ())] == 1
    assert page[("dataflow_http_request_total", (("method", "POST"), ("status", "202")))] == 3
    assert {completed, failed, waiting} == set(db.session.scalars(select(Import.id)))


def test_metrics_can_be_turned_off(make_app):
    app = make_app(ENABLE_METRICS="false")
    with app.app_context():
        client = app.test_client()
        response = client.get("/metrics", headers={"Accept": "application/json"})
        assert response.status_code == 404
        assert response.get_json() == {"error": "Not found"}
        assert client.get("/health").status_code == 200


def test_health_names_the_database_when_it_is_down(make_app):
    make_app()  # the fixture empties the tables through its first app, which must reach them
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # a port nobody listens on
    port = closed.getsockname()[1]
    try:
        app = make_app(DATABASE_URL=f"postgresql://postgres@127.0.0.1:{port}/dataflow")
        with app.app_context():
            response = app.test_client().get("/health", headers={"Accept": "application/json"})
    finally:
        closed.close()
    assert response.status_code == 503
    payload = response.get_json()
    assert payload["status"] == "unhealthy"
    assert payload["error"].startswith("database: ")
    assert payload["checks"] == {"database": "failing", "redis": "ok", "storage": "ok"}


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def test_metrics_agree_across_gunicorn_workers(client, work, web_server):
    base = web_server(WEB_CONCURRENCY="2")
    for source in ("one", "two"):
        request = urllib.request.Request(
            f"{base}/import", data=MIXED, headers={"X-Source": source, "Content-Type": "text/csv"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 202
    work()
    for job_id in db.session.scalars(select(Import.id)).all():
        assert finished(client, job_id)["status"] == "completed"

    health_key = ("endpoint", "ops.health"), ("method", "GET"), ("status", "200")
    # The wait for the server made one call or more (one that timed out under load counts when it ends).
    waited = samples(_get(f"{base}/metrics"))[("dataflow_http_request_duration_seconds_count", health_key)]
    health_calls = 29
    for _ in range(health_calls):
        _get(f"{base}/health")
    health_calls += waited

    pages = [samples(_get(f"{base}/metrics")) for _ in range(6)]
    first = import_figures(pages[0])
    assert first[("dataflow_rows_total", (("outcome", "inserted"),))] == 4
    assert first[("dataflow_imports_finished_total", (("status", "completed"),))] == 2
    for page in pages:
        assert import_figures(page) == first
        # each worker counts its own requests; the page sums them
        assert page[("dataflow_http_request_duration_seconds_count", health_key)] == health_calls
        assert page[("dataflow_http_request_total", (("method", "POST"), ("status", "202")))] == 2


def test_http_metrics_are_labelled_by_endpoint_and_unknown_paths_share_one(client):
    import uuid

    ids = [uuid.uuid4().hex for _ in range(40)]
    for random_id in ids:
        assert client.get(f"/wp-admin/{random_id}").status_code == 404
        assert client.get(f"/imports/{random_id}").status_code == 404
    assert client.open("/health", method="FOOBAR").status_code == 501
    text = client.get("/metrics").get_data(as_text=True)
    assert not any(random_id in text for random_id in ids)
    assert "FOOBAR" not in text and "wp-admin" not in text
    page = samples(text)
    unknown = ("dataflow_http_request_duration_seconds_count", (("endpoint", "unknown"),) + GET_404)
    assert page[unknown] == 40
    detail = ("dataflow_http_request_duration_seconds_count", (("endpoint", "imports.detail"),) + GET_404)
    assert page[detail] == 40


GET_404 = (("method", "GET"), ("status", "404"))
