"""Undo of an import: the table exactly as before, later changes kept, refusals, and the page."""

from __future__ import annotations

import re
from typing import Any

from rq import SimpleWorker
from sqlalchemy import func, select

from app.extensions import QUEUE_NAME, db, redis
from app.models import Contact
from tests import test_merge
from tests.test_merge import AGAIN, STORED, Imports, csv_bytes

# The merge tests' app, on PostgreSQL and on SQLite.
imports = test_merge.imports


def snapshot(source: str = "crm") -> list[tuple]:
    """Every column of every contact of the source, in a stable order.

    With whether the attributes are SQL NULL, which reads back as None just as JSON null does.
    """
    db.session.remove()
    columns = select(Contact.__table__, Contact.attributes.is_(None).label("no_attributes"))
    rows = db.session.execute(columns.where(Contact.source == source)).all()
    return sorted((tuple(row) for row in rows), key=lambda row: str(row))


def undo(imports: Imports, job_id: str) -> dict[str, Any]:
    """Undo an import through the API and run its job; return the import as the API shows it."""
    answer = imports.client.post(f"/imports/{job_id}/undo")
    assert answer.status_code == 202, answer.get_data(as_text=True)
    assert answer.get_json()["status"] == "undoing"
    SimpleWorker([QUEUE_NAME], connection=redis()).work(burst=True, with_scheduler=False)
    db.session.remove()
    status = imports.client.get(f"/imports/{job_id}").get_json()
    assert status["status"] == "undone", status
    return status


def test_undo_of_update_and_fill_imports_restores_every_row_exactly(imports: Imports):
    imports.run(csv_bytes(STORED))
    before = snapshot()
    for mode in ("update", "fill"):
        status = imports.run(csv_bytes(AGAIN), mode=mode)
        assert snapshot() != before
        undone = undo(imports, status["jobId"])
        assert undone["undoneRows"] == status["insertedRows"] + status["updatedRows"]
        assert (undone["removedRows"], undone["keptRows"]) == (status["insertedRows"], 0)
        assert snapshot() == before
    # Two merging imports, undone newest first, give the table back as it was before both.
    first = imports.run(csv_bytes(AGAIN), mode="update")
    # Edsger, whom the first inserted, gets a title; a contact new to both comes in.
    changed = [
        ["E. W. Dijkstra", "edsger@example.nl", "", "", "Professor", ""],
        ["New One", "new@example.com", "", "", "", ""],
    ]
    second = imports.run(csv_bytes(changed), mode="fill")
    assert second["updatedRows"] == 1
    undo(imports, second["jobId"])
    undo(imports, first["jobId"])
    assert snapshot() == before


def test_contacts_a_later_import_changed_keep_the_change_and_the_undo_names_it(imports: Imports):
    first = imports.run(csv_bytes(STORED))
    later = imports.run(csv_bytes(AGAIN), mode="update")
    assert later["updatedRows"] == 2  # Ada and Grace; Alan is unchanged
    after_later = {email: values for email, values in imports.contacts().items() if "example.com" in email}
    undone = undo(imports, first["jobId"])
    # Alan removed; Ada and Grace kept
    assert (undone["undoneRows"], undone["removedRows"], undone["keptRows"]) == (1, 1, 2)
    assert undone["keptBy"] == {later["jobId"]: 2}
    contacts = imports.contacts()
    assert set(contacts) == {"ada@example.com", "grace@example.com", "edsger@example.nl"}
    assert contacts["ada@example.com"] == after_later["ada@example.com"]
    page = imports.client.get(f"/imports/{first['jobId']}", headers={"Accept": "text/html"})
    html = page.get_data(as_text=True)
    assert "kept, because a later import changed them" in html
    assert "<span data-removed>1</span> removed, <span data-restored>0</span> restored" in html
    assert f"/imports/{later['jobId']}" in html and "(2)" in html


def test_refusals_say_why(imports: Imports):
    done = imports.run(csv_bytes(STORED))
    undo(imports, done["jobId"])
    again = imports.client.post(f"/imports/{done['jobId']}/undo")
    assert again.status_code == 409
    assert again.get_json()["error"].startswith("This import is already undone.")
    retry = imports.client.post(f"/imports/{done['jobId']}/retry")
    assert retry.status_code == 409
    assert "undone" in retry.get_json()["error"]
    queued = imports.client.post("/import", data=csv_bytes(STORED), headers={"X-Source": "crm"})
    job_id = queued.get_json()["jobId"]
    refused = imports.client.post(f"/imports/{job_id}/undo")
    assert refused.status_code == 409
    assert refused.get_json()["error"].startswith("This import is queued")
    assert imports.client.post("/imports/nope/undo").status_code == 404
    SimpleWorker([QUEUE_NAME], connection=redis()).work(burst=True, with_scheduler=False)
    assert imports.client.post(f"/imports/{job_id}/undo").get_json()["status"] == "undoing"
    twice = imports.client.post(f"/imports/{job_id}/undo")
    assert twice.status_code == 409 and twice.get_json()["error"] == "This import is already being undone."


def test_the_page_asks_before_undoing_and_works_as_a_plain_form(imports: Imports):
    done = imports.run(csv_bytes(STORED))
    html = {"Accept": "text/html"}
    page = imports.client.get(f"/imports/{done['jobId']}", headers=html).get_data(as_text=True)
    assert f"/imports/{done['jobId']}/undo" in page
    confirm = imports.client.get(f"/imports/{done['jobId']}/undo", headers=html)
    text = confirm.get_data(as_text=True)
    assert confirm.status_code == 200 and "removes the <strong>3</strong> contacts it inserted" in text
    refused = imports.client.post(f"/imports/{done['jobId']}/undo", headers=html)
    assert refused.status_code == 400  # a browser's post needs the form's CSRF token
    token = re.search(r'name="csrf_token" value="([^"]+)"', text).group(1)
    posted = imports.client.post(f"/imports/{done['jobId']}/undo", headers=html, data={"csrf_token": token})
    assert posted.status_code == 303
    SimpleWorker([QUEUE_NAME], connection=redis()).work(burst=True, with_scheduler=False)
    db.session.remove()
    assert imports.contacts() == {}
    shown = imports.client.get(f"/imports/{done['jobId']}", headers=html).get_data(as_text=True)
    assert 'data-status="undone"' in shown and "Undo import" not in shown


def test_a_cancelled_undo_is_consistent_and_a_second_undo_finishes_it(make_app, monkeypatch):
    from app import undo as undo_module
    from app.imports import runs
    from app.jobs import run_undo

    app = make_app(WTF_CSRF_ENABLED="false", BATCH_SIZE="2")
    with app.app_context():
        imports = Imports(app)
        done = imports.run(csv_bytes([[f"P {n}", f"p{n}@example.com", "", "", "", ""] for n in range(5)]))
        assert imports.client.post(f"/imports/{done['jobId']}/undo").status_code == 202
        # The worker is asked to stop after the first batch of removals (the first commit ends the
        # restore phase, which has nothing to do here): the undo waits again, two contacts removed.
        batches, commits = undo_module._commit_batch, []

        def one_batch_then_stop(*args: Any, **named: Any) -> None:
            batches(*args, **named)
            commits.append(args)
            if len(commits) == 2:
                runs.handback_requested.set()

        monkeypatch.setattr(undo_module, "_commit_batch", one_batch_then_stop)
        try:
            run_undo(done["jobId"])
        finally:
            runs.handback_requested.clear()
        monkeypatch.undo()
        halfway = imports.client.get(f"/imports/{done['jobId']}").get_json()
        assert (halfway["status"], halfway["undoneRows"]) == ("undoing", 2)
        cancelled = imports.client.post(f"/imports/{done['jobId']}/undo/cancel")
        assert cancelled.status_code == 200 and cancelled.get_json()["status"] == "completed"
        assert "Undo again to finish it" in cancelled.get_json()["error"]
        assert len(imports.contacts()) == 3
        assert imports.client.post(f"/imports/{done['jobId']}/retry").status_code == 409
        finished = undo(imports, done["jobId"])
        assert (finished["undoneRows"], finished["keptRows"]) == (5, 0)
        assert imports.contacts() == {}


def test_a_transient_failure_mid_undo_waits_for_its_retry_in_postgresql(make_app, monkeypatch):
    import sqlalchemy.exc
    from sqlalchemy import update

    from app import undo as undo_module
    from app.extensions import queue
    from app.maintenance import run_task
    from app.models import Import, utcnow
    from app.recovery import queue_due_retries

    app = make_app(WTF_CSRF_ENABLED="false", BATCH_SIZE="2")
    with app.app_context():
        imports = Imports(app)
        done = imports.run(csv_bytes([[f"P {n}", f"p{n}@example.com", "", "", "", ""] for n in range(5)]))
        job_id = done["jobId"]
        removals, calls = undo_module._remove_batch, []

        def drops_on_the_second_batch(*args: Any) -> Any:
            calls.append(args)
            if len(calls) == 2:
                raise sqlalchemy.exc.OperationalError("DELETE", {}, Exception("server closed the connection"))
            return removals(*args)

        monkeypatch.setattr(undo_module, "_remove_batch", drops_on_the_second_batch)
        assert imports.client.post(f"/imports/{job_id}/undo").status_code == 202
        SimpleWorker([QUEUE_NAME], connection=redis()).work(burst=True, with_scheduler=False)
        db.session.remove()
        waiting = imports.client.get(f"/imports/{job_id}").get_json()
        assert (waiting["status"], waiting["undoneRows"]) == ("undoing", 2)
        assert waiting["error"] == "Waiting to retry after a temporary failure: OperationalError"
        # PostgreSQL holds when the retry is due; Redis holds nothing until then, and the
        # reconciler's look for lost undos leaves a waiting retry alone.
        imp = db.session.get(Import, job_id)
        assert imp.retry_at is not None and imp.retries == 1
        assert queue().count == 0 and queue().scheduled_job_registry.count == 0
        run_task(app, queue_due_retries)
        assert queue().count == 0

        db.session.execute(update(Import).where(Import.id == job_id).values(retry_at=utcnow()))
        db.session.commit()
        run_task(app, queue_due_retries)
        assert queue().count == 1
        SimpleWorker([QUEUE_NAME], connection=redis()).work(burst=True, with_scheduler=False)
        db.session.remove()
        finished = imports.client.get(f"/imports/{job_id}").get_json()
        assert (finished["status"], finished["error"]) == ("undone", None)
        assert (finished["undoneRows"], finished["keptRows"]) == (5, 0)
        assert imports.contacts() == {}


def test_each_source_counts_the_contacts_its_imports_left(imports: Imports):
    """The sources page counts from the imports: it agrees with the contacts after inserts, merges,
    a small JSON import, fixes and undos, as the contacts page's source filter does."""
    first = imports.run(csv_bytes(STORED))
    imports.run(csv_bytes(AGAIN), mode="update")  # Edsger new; Ada and Grace changed
    undo(imports, first["jobId"])  # Alan removed; Ada and Grace kept
    shop = imports.run(csv_bytes([["Ada", "ada@example.com", "", "", "", ""]]), source="shop")
    people = [{"name": "Wei", "email": f"w{n}@example.cn"} for n in range(3)]
    small = imports.client.post("/import", json={"source": "web", "data": people})
    assert small.status_code == 202
    SimpleWorker([QUEUE_NAME], connection=redis()).work(burst=True, with_scheduler=False)
    fixed = imports.run(csv_bytes([["Bad", "not an email", "", "", "", ""]]), source="web")
    bad_row = imports.client.get(f"/imports/{fixed['jobId']}/errors").get_json()["items"][0]["row"]
    answer = imports.client.post(
        f"/imports/{fixed['jobId']}/fixes",
        json={"rows": [{"row": bad_row, "values": {"Email": "fixed@example.cn"}}]},
    )
    assert answer.status_code == 202, answer.get_data(as_text=True)
    SimpleWorker([QUEUE_NAME], connection=redis()).work(burst=True, with_scheduler=False)
    undo(imports, shop["jobId"])  # the source is left with no contacts, and still listed
    db.session.remove()

    held = dict(db.session.execute(select(Contact.source, func.count()).group_by(Contact.source)).all())
    assert held == {"crm": 3, "web": 4}
    listed = imports.client.get("/sources").get_json()["items"]
    assert {item["source"]: item["contacts"] for item in listed} == {**held, "shop": 0}
    page = imports.client.get("/contacts", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert re.findall(r'<option value="(\w+)"', page) == ["crm", "web"]
