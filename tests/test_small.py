"""Small JSON imports: kept with their import, run several to a transaction by the worker itself."""

from __future__ import annotations

from sqlalchemy import func, select

from app.extensions import db
from app.models import Contact, Import, RowError


def post(client, data, source="crm", **fields):
    response = client.post("/import", json={"source": source, "data": data, **fields})
    assert response.status_code == 202, response.get_data(as_text=True)
    return response.get_json()["jobId"]


def people(first: int, count: int) -> list[dict[str, str]]:
    return [{"name": f"Person {n}", "email": f"p{n}@example.com"} for n in range(first, first + count)]


def test_a_small_import_keeps_its_body_with_the_import_and_completes(client, work, app):
    job_id = post(client, people(1, 3))
    imp = db.session.get(Import, job_id)
    assert imp.storage_key is None and imp.body is not None and imp.status == "queued"
    work()
    answer = client.get(f"/imports/{job_id}").get_json()
    assert answer["status"] == "completed", answer
    assert (answer["processedRows"], answer["insertedRows"], answer["totalRows"]) == (3, 3, 3)
    assert answer["format"] == "json" and answer["attempts"] == 1
    db.session.expire_all()
    assert db.session.get(Import, job_id).body is None
    assert db.session.scalar(select(func.count()).select_from(Contact)) == 3
    assert db.session.scalar(select(func.count()).select_from(RowError)) == 0


def test_small_imports_of_one_batch_are_counted_each_and_the_first_email_wins(client, work, caplog):
    first = post(client, people(1, 3))
    again = post(client, [*people(3, 2), {"name": "Same Again", "email": "p4@example.com"}])
    other = post(client, people(1, 2), source="other")
    work()
    assert not [r for r in caplog.records if r.name == "app.imports.small"]
    answers = [client.get(f"/imports/{job_id}").get_json() for job_id in (first, again, other)]
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
