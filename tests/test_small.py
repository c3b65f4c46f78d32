"""Small JSON imports: kept with their import, run several to a transaction by the worker itself."""

from __future__ import annotations

import logging
from pathlib import Path

import redis as redis_lib
from rq import SimpleWorker
from sqlalchemy import func, select, update

from app import create_app
from app.cli import upgrade_database
from app.extensions import QUEUE_NAME, db
from app.extensions import redis as app_redis
from app.maintenance import run_task
from app.models import Contact, Import, RowError, utcnow
from app.recovery import queue_due_retries
from tests.conftest import stored_files


def post(client, data, source="crm", **fields) -> str:
    response = client.post("/import", json={"source": source, "data": data, **fields})
    assert response.status_code == 202, response.get_data(as_text=True)
    return response.get_json()["jobId"]


def people(first: int, count: int) -> list[dict[str, str]]:
    return [{"name": f"Person {n}", "email": f"p{n}@example.com"} for n in range(first, first + count)]


def answer(client, job_id: str) -> dict:
    return client.get(f"/imports/{job_id}").get_json()


def lane_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "app.imports.small"]


def test_a_small_import_keeps_its_body_with_the_import_and_completes(client, work, app, caplog):
    response = client.post("/import", json={"source": "crm", "data": people(1, 3)})
    assert response.status_code == 202
    job_id = response.get_json()["jobId"]
    assert response.get_data(as_text=True) == f'{{"jobId":"{job_id}"}}'
    assert response.headers["Location"] == f"/imports/{job_id}"
    imp = db.session.get(Import, job_id)
    assert imp.storage_key is None and imp.body is not None and imp.status == "queued"
    assert stored_files(app) == []
    work()
    done = answer(client, job_id)
    assert done["status"] == "completed", done
    assert (done["processedRows"], done["insertedRows"], done["totalRows"]) == (3, 3, 3)
    assert (done["format"], done["attempts"], done["mappingFrom"]) == ("json", 1, "detected")
    assert done["startedAt"] and done["finishedAt"] >= done["startedAt"]
    db.session.expire_all()
    assert db.session.get(Import, job_id).body is None
    assert db.session.scalar(select(func.count()).select_from(Contact)) == 3
    assert db.session.scalar(select(func.count()).select_from(RowError)) == 0
    assert lane_warnings(caplog) == []


def test_small_imports_of_one_batch_are_counted_each_and_the_first_email_wins(client, work, caplog):
    first = post(client, people(1, 3))
    again = post(client, [*people(3, 2), {"name": "Same Again", "email": "p4@example.com"}])
    other = post(client, people(1, 2), source="other")
    work()
    assert lane_warnings(caplog) == []
    answers = [answer(client, job_id) for job_id in (first, again, other)]
    assert [a["status"] for a in answers] == ["completed"] * 3
    assert [(a["insertedRows"], a["duplicateRows"]) for a in answers] == [(3, 0), (1, 2), (2, 0)]
    owners = dict(
        db.session.execute(select(Contact.email, Contact.import_id).where(Contact.source == "crm")).all()
    )
    assert owners == {
        "p1@example.com": first,
        "p2@example.com": first,
        "p3@example.com": first,
        "p4@example.com": again,
    }


def test_a_small_import_merges_keeps_attributes_and_warnings(client, work, caplog):
    post(client, [{"name": "Ada", "email": "ada@example.com", "company": "Engines"}])
    work()
    job_id = post(
        client,
        [
            {"name": "Ada Lovelace", "email": "ada@example.com", "title": "Countess"},
            {"name": "Grace", "email": "grace@example.com", "phone": "12", "team": "navy"},
        ],
        mode="update",
    )
    work()
    assert lane_warnings(caplog) == []
    done = answer(client, job_id)
    assert (done["status"], done["mode"]) == ("completed", "update")
    assert (done["insertedRows"], done["updatedRows"], done["warningRows"]) == (1, 1, 1)
    # Each item is read by its own keys; the import records where all of them went.
    assert done["mapping"] == {
        "name": "name",
        "email": "email",
        "phone": "phone",
        "company": None,
        "title": "title",
        "attributes": ["team"],
    }
    ada = db.session.scalar(select(Contact).where(Contact.email == "ada@example.com"))
    assert (ada.name, ada.company, ada.title) == ("Ada Lovelace", "Engines", "Countess")
    grace = db.session.scalar(select(Contact).where(Contact.email == "grace@example.com"))
    assert grace.attributes == {"team": "navy", "phone": "12"}
    (warning,) = db.session.scalars(select(RowError).where(RowError.import_id == job_id)).all()
    assert (warning.level, warning.row, warning.field) == ("warning", 2, "phone")


def test_requests_that_are_not_small_go_through_storage(client, work, app):
    big = post(client, people(1, 101))
    mapped = post(client, people(200, 2), mapping={"name": "name", "email": "email"})
    for job_id in (big, mapped):
        imp = db.session.get(Import, job_id)
        assert imp.storage_key is not None and imp.body is None
    assert len(stored_files(app)) == 2
    work()
    assert [answer(client, job_id)["status"] for job_id in (big, mapped)] == ["completed"] * 2


def test_an_item_wider_than_max_columns_is_left_to_the_regular_pipeline(make_app, caplog):
    app = make_app(MAX_COLUMNS="3")
    with app.app_context():
        client = app.test_client()
        client.environ_base["HTTP_ACCEPT"] = "application/json"
        wide = {"name": "Wide", "email": "wide@example.com", "a": "1", "b": "2"}
        before, odd, after = post(client, people(1, 1)), post(client, [wide]), post(client, people(2, 1))

        def work() -> None:
            SimpleWorker([QUEUE_NAME], connection=app_redis()).work(burst=True, with_scheduler=False)
            db.session.remove()

        work()
        assert [answer(client, job_id)["status"] for job_id in (before, odd, after)] == [
            "completed",
            "queued",
            "completed",
        ]
        run_task(app, queue_due_retries)  # handed over: due at once for a run of its own
        work()
        done = answer(client, odd)
        assert (done["status"], done["rejectedRows"], done["attempts"]) == ("completed", 1, 1)
        (error,) = db.session.scalars(select(RowError.message).where(RowError.import_id == odd)).all()
        assert error == "This item has 4 fields; at most 3 are read"
        assert lane_warnings(caplog) == []


def test_a_cancelled_small_import_never_runs_and_forgets_its_body(client, work):
    job_id = post(client, people(1, 2))
    assert client.post(f"/imports/{job_id}/cancel").get_json()["status"] == "cancelled"
    work()
    assert answer(client, job_id)["status"] == "cancelled"
    assert db.session.get(Import, job_id, populate_existing=True).body is None
    assert db.session.scalar(select(func.count()).select_from(Contact)) == 0


def test_a_failed_small_import_is_retried_from_its_kept_body(client, work):
    job_id = post(client, people(1, 2))
    # As if its run had failed for good before storing anything: its body is kept for the retry.
    db.session.execute(
        update(Import)
        .where(Import.id == job_id)
        .values(status="failed", attempts=1, error="kept failing", finished_at=utcnow())
    )
    db.session.commit()
    work()  # the small imports' job takes only imports no run has claimed
    assert answer(client, job_id)["status"] == "failed"
    assert client.post(f"/imports/{job_id}/retry").status_code == 200
    work()
    done = answer(client, job_id)
    assert (done["status"], done["insertedRows"], done["attempts"]) == ("completed", 2, 2)
    assert db.session.get(Import, job_id, populate_existing=True).body is None


def test_small_imports_run_on_sqlite(tmp_path: Path, redis_url: str, caplog):
    caplog.set_level(logging.WARNING)
    app = create_app(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
            "REDIS_URL": redis_url,
            "INSTANCE_DIR": str(tmp_path / "instance"),
            "SECRET_KEY": "test",
        }
    )
    upgrade_database(app)
    try:
        with app.app_context():
            client = app.test_client()
            client.environ_base["HTTP_ACCEPT"] = "application/json"
            first = post(client, people(1, 2))
            again = post(client, people(2, 2), mode="fill")
            SimpleWorker([QUEUE_NAME], connection=app_redis()).work(burst=True, with_scheduler=False)
            db.session.remove()
            answers = [answer(client, job_id) for job_id in (first, again)]
            assert [a["status"] for a in answers] == ["completed"] * 2
            assert [(a["insertedRows"], a["unchangedRows"]) for a in answers] == [(2, 0), (1, 1)]
            assert db.session.scalar(select(func.count()).select_from(Contact)) == 3
            assert lane_warnings(caplog) == []
            db.engine.dispose()
    finally:
        redis_lib.Redis.from_url(redis_url).flushdb()
