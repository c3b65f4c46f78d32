"""Fixing rejected rows through the API: edits, dismissals, the follow-up import and its counts."""

from __future__ import annotations

import re
import threading
import time
from typing import Any

from rq import SimpleWorker
from sqlalchemy import func, select, text

from app.extensions import QUEUE_NAME, db, redis
from app.models import Import
from tests import test_merge
from tests.test_merge import HEADERS, Imports, csv_bytes

# The merge tests' app, on PostgreSQL and on SQLite.
imports, imports_on_postgresql = test_merge.imports, test_merge.imports_on_postgresql

ROWS = [
    ["Ada Lovelace", "ada@example.com", "", "", "", ""],
    ["Grace Hopper", "grace-at-example.com", "", "US Navy", "", ""],
    ["Alan Turing", "", "", "", "", "Wilmslow"],
    ["Edsger Dijkstra", "edsger@@example.nl", "", "", "", ""],
    ["Barbara Liskov", "barbara example.com", "", "", "", ""],
]


def rejected_rows(imports: Imports, job_id: str) -> dict[int, str]:
    """The import's rejected rows: row number -> problem."""
    items = imports.client.get(f"/imports/{job_id}/errors?level=error").get_json()["items"]
    return {item["row"]: item["message"] for item in items}


def run_jobs() -> None:
    SimpleWorker([QUEUE_NAME], connection=redis()).work(burst=True, with_scheduler=False)
    db.session.remove()


def post_fixes(imports: Imports, job_id: str, body: dict[str, Any]) -> Any:
    return imports.client.post(f"/imports/{job_id}/fixes", json=body)


def test_fixed_rows_go_into_a_follow_up_import_of_the_same_source_mapping_and_mode(imports: Imports):
    original = imports.run(csv_bytes(ROWS), mode="update")
    rejected = rejected_rows(imports, original["jobId"])
    assert len(rejected) == 4
    grace, alan, edsger, barbara = sorted(rejected)
    answer = post_fixes(
        imports,
        original["jobId"],
        {
            "rows": [
                {"row": grace, "values": {"Email": "grace@example.com"}},
                {"row": alan, "values": {"Email": "alan@example.com"}},
                {"row": edsger, "values": {"Email": "still broken"}},
            ],
            "dismiss": [barbara],
        },
    )
    assert answer.status_code == 202, answer.get_data(as_text=True)
    follow_id = answer.get_json()["jobId"]
    assert follow_id != original["jobId"]
    # Edsger's edit is kept with its problem; he is not imported to be rejected again.
    [not_ready] = answer.get_json()["notReady"]
    assert not_ready["row"] == edsger and not_ready["problem"].startswith("Not a valid email address")
    run_jobs()
    follow = imports.client.get(f"/imports/{follow_id}").get_json()
    assert follow["status"] == "completed"
    assert (follow["fixes"], follow["source"], follow["mode"]) == (original["jobId"], "crm", "update")
    assert follow["mapping"] == original["mapping"]
    assert (follow["processedRows"], follow["insertedRows"], follow["rejectedRows"]) == (2, 2, 0)
    contacts = imports.contacts()
    assert contacts["grace@example.com"][2] == "US Navy"
    assert contacts["alan@example.com"][4] == {"City": "Wilmslow"}

    page = imports.client.get(f"/imports/{original['jobId']}", headers={"Accept": "text/html"})
    html = page.get_data(as_text=True)
    assert f'2 fixed in <a href="/imports/{follow_id}">' in html
    assert "1 dismissed, 1 left" in html
    shown = imports.client.get(f"/imports/{follow_id}", headers={"Accept": "text/html"}).get_data(
        as_text=True
    )
    assert f'href="/imports/{original["jobId"]}" data-fixes-of' in shown


def test_a_row_that_is_not_rejected_or_a_column_the_row_lacks_is_a_400(imports: Imports):
    original = imports.run(csv_bytes(ROWS))
    rejected = sorted(rejected_rows(imports, original["jobId"]))
    good_row = min(set(range(1, 8)) - set(rejected))
    for body, said in (
        (
            {"rows": [{"row": good_row, "values": {"Email": "x@example.com"}}]},
            f"Row {good_row} is not a rejected",
        ),
        ({"dismiss": [9999]}, "Row 9999 is not a rejected"),
        ({"rows": [{"row": rejected[0], "values": {"Mail": "x@example.com"}}]}, "has no column 'Mail'"),
        ({"rows": [{"row": rejected[0], "values": {"Email": 5}}]}, "must be text"),
        ({"rows": "all"}, "rows must be a list"),
    ):
        answer = post_fixes(imports, original["jobId"], body)
        assert answer.status_code == 400, body
        assert said in answer.get_json()["error"]
    # Nothing of a refused request was kept: the row can still be fixed.
    fixed = post_fixes(
        imports, original["jobId"], {"rows": [{"row": rejected[0], "values": {"Email": "g@example.com"}}]}
    )
    assert fixed.status_code == 202
    again = post_fixes(
        imports, original["jobId"], {"rows": [{"row": rejected[0], "values": {"Email": "h@example.com"}}]}
    )
    assert again.status_code == 400 and "already imported again" in again.get_json()["error"]


def test_an_edit_on_the_page_is_checked_at_once_and_the_button_imports_the_ready_rows(imports: Imports):
    original = imports.run(csv_bytes(ROWS))
    grace, alan, *_ = sorted(rejected_rows(imports, original["jobId"]))
    html = {"Accept": "text/html", "HX-Request": "true"}
    page = imports.client.get(f"/imports/{original['jobId']}", headers={"Accept": "text/html"}).get_data(
        as_text=True
    )
    html["X-CSRFToken"] = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    still = imports.client.post(
        f"/imports/{original['jobId']}/fixes/{grace}", data={"cell:Email": "grace@example"}, headers=html
    )
    assert still.status_code == 200 and "Not a valid email address" in still.get_data(as_text=True)
    ready = imports.client.post(
        f"/imports/{original['jobId']}/fixes/{grace}", data={"cell:Email": "grace@example.com"}, headers=html
    )
    assert ">Ready<" in ready.get_data(as_text=True)
    dismissed = imports.client.post(
        f"/imports/{original['jobId']}/fixes/{alan}", data={"dismiss": "1"}, headers=html
    )
    assert ">Dismissed<" in dismissed.get_data(as_text=True)
    listing = imports.client.get(
        f"/imports/{original['jobId']}/fixes?problem=Email is missing", headers=html
    ).get_data(as_text=True)
    assert f'data-row="{alan}"' in listing and f'data-row="{grace}"' not in listing
    started = imports.client.post(
        f"/imports/{original['jobId']}/fixes", headers={"X-CSRFToken": html["X-CSRFToken"]}
    )
    assert started.status_code == 202
    run_jobs()
    follow = imports.client.get(f"/imports/{started.get_json()['jobId']}").get_json()
    assert (follow["insertedRows"], follow["rejectedRows"]) == (1, 0)
    assert HEADERS[1] == "Email"


def test_a_vcard_without_an_email_is_fixed_by_its_own_property_names(imports: Imports):
    cards = (
        "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Ada Lovelace\r\nEMAIL;TYPE=INTERNET:ada@example.com\r\n"
        "END:VCARD\r\n"
        "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Алан Тьюринг\r\nTEL;TYPE=CELL:+44 1625 000000\r\n"
        "NOTE:met at Bletchley\r\nEND:VCARD\r\n"
    ).encode()
    answer = imports.client.post(
        "/import", data=cards, headers={"X-Source": "phone", "X-Filename": "all.vcf"}
    )
    assert answer.status_code == 202
    run_jobs()
    original = imports.client.get(f"/imports/{answer.get_json()['jobId']}").get_json()
    assert (original["insertedRows"], original["rejectedRows"]) == (1, 1)
    assert (original["mapping"]["name"], original["mapping"]["email"]) == ("Name", "E-mail")
    [row] = rejected_rows(imports, original["jobId"])
    fixed = post_fixes(
        imports, original["jobId"], {"rows": [{"row": row, "values": {"E-mail": "alan@example.com"}}]}
    )
    assert fixed.status_code == 202, fixed.get_data(as_text=True)
    run_jobs()
    follow = imports.client.get(f"/imports/{fixed.get_json()['jobId']}").get_json()
    assert (follow["status"], follow["insertedRows"], follow["rejectedRows"]) == ("completed", 1, 0)
    alan = imports.contacts("phone")["alan@example.com"]
    assert (alan[0], alan[1]) == ("Алан Тьюринг", "+441625000000")
    assert alan[4]["NOTE"] == "met at Bletchley"


def test_the_problem_filter_counts_rows_by_kind_whatever_each_message_adds(imports: Imports):
    # Each address without a dot names its own domain: 1,100 messages of one kind.
    rows = [[f"Person {n}", f"p{n}@host{n}", "", "", "", ""] for n in range(1100)]
    rows += [
        ["Alan Turing", "alan@@example.com", "", "", "", ""],
        ["Edsger Dijkstra", "", "", "", "", ""],
        ["Barbara Liskov", "barbara@example.com", "", "", "", ""],
    ]
    original = imports.run(csv_bytes(rows))
    assert original["rejectedRows"] == 1102
    html = {"Accept": "text/html", "HX-Request": "true"}
    listing = imports.client.get(f"/imports/{original['jobId']}/fixes", headers=html).get_data(as_text=True)
    options = re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)</option>', listing)
    assert options == [
        ("", "Every problem"),
        ("Not a valid email address", "Not a valid email address (1,101)"),
        ("Email is missing", "Email is missing (1)"),
    ]
    missing = imports.client.get(
        f"/imports/{original['jobId']}/fixes", query_string={"problem": "Email is missing"}, headers=html
    ).get_data(as_text=True)
    assert re.findall(r'data-row="(\d+)"', missing) == ["1103"]
    asked = {"problem": "Not a valid email address"}
    invalid = imports.client.get(
        f"/imports/{original['jobId']}/fixes", query_string=asked, headers=html
    ).get_data(as_text=True)
    assert [int(n) for n in re.findall(r'data-row="(\d+)"', invalid)] == list(range(2, 52))
    # "Next rows" goes on after the last row shown, with the same filter.
    following = re.search(r'hx-get="([^"]+)"[^>]*>Next rows<', invalid).group(1).replace("&amp;", "&")
    more = imports.client.get(following, headers=html).get_data(as_text=True)
    assert [int(n) for n in re.findall(r'data-row="(\d+)"', more)] == list(range(52, 102))


def test_rows_of_a_follow_up_that_was_cancelled_or_undone_can_be_sent_again(imports: Imports):
    original = imports.run(csv_bytes(ROWS))
    grace, alan, *_ = sorted(rejected_rows(imports, original["jobId"]))
    fixes = {"rows": [{"row": grace, "values": {"Email": "grace@example.com"}}]}
    first = post_fixes(imports, original["jobId"], fixes).get_json()["jobId"]
    cancelled = imports.client.post(f"/imports/{first}/cancel").get_json()
    assert cancelled["status"] == "cancelled"
    run_jobs()

    def summary() -> str:
        # A client of its own: a page's session cookie would ask the API client's posts for CSRF tokens.
        page = imports.app.test_client().get(f"/imports/{original['jobId']}", headers={"Accept": "text/html"})
        return re.sub(r"\s+", " ", page.get_data(as_text=True))

    assert "0 dismissed, 4 left" in summary() and "fixed in" not in summary()
    # Grace's edit is kept and ready: the button sends her again, with Alan now fixed too.
    second = post_fixes(
        imports, original["jobId"], {"rows": [{"row": alan, "values": {"Email": "al@example.com"}}]}
    )
    assert second.status_code == 202, second.get_data(as_text=True)
    second_id = second.get_json()["jobId"]
    run_jobs()
    assert imports.client.get(f"/imports/{second_id}").get_json()["insertedRows"] == 2
    assert f'2 fixed in <a href="/imports/{second_id}">' in summary()

    assert imports.client.post(f"/imports/{second_id}/undo").status_code == 202
    run_jobs()
    assert imports.client.get(f"/imports/{second_id}").get_json()["status"] == "undone"
    assert "grace@example.com" not in imports.contacts()
    assert "0 dismissed, 4 left" in summary()
    third = post_fixes(imports, original["jobId"], {})
    assert third.status_code == 202
    run_jobs()
    assert imports.client.get(f"/imports/{third.get_json()['jobId']}").get_json()["insertedRows"] == 2
    assert {"grace@example.com", "al@example.com"} <= set(imports.contacts())


def test_two_imports_of_the_fixed_rows_at_once_send_each_row_once(imports_on_postgresql: Imports):
    imports = imports_on_postgresql
    original = imports.run(csv_bytes(ROWS))
    job_id = original["jobId"]
    grace, alan, *_ = sorted(rejected_rows(imports, job_id))
    for row, email in ((grace, "grace@example.com"), (alan, "alan@example.com")):
        assert (
            imports.client.post(f"/imports/{job_id}/fixes/{row}", data={"cell:Email": email}).status_code
            == 303
        )
    answers: list[Any] = []

    def press_the_button() -> None:
        client = imports.app.test_client()
        answers.append(
            client.post(f"/imports/{job_id}/fixes", json={}, headers={"Accept": "application/json"})
        )

    # Another transaction holds the import, so that both presses arrive before either goes on.
    with db.engine.connect() as holder:
        holder.execute(text("SELECT 1 FROM imports WHERE id = :id FOR UPDATE"), {"id": job_id})
        presses = [threading.Thread(target=press_the_button) for _ in range(2)]
        for press in presses:
            press.start()
        waiting = 0
        for _ in range(100):
            waiting = db.session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
            )
            db.session.rollback()
            if waiting == 2:
                break
            time.sleep(0.1)
        assert waiting == 2, "both presses should wait for the import's lock"
        holder.rollback()
    for press in presses:
        press.join(30)
    started = [a.get_json()["jobId"] for a in answers if a.status_code == 202]
    assert sorted(a.status_code for a in answers) == [200, 202] and len(started) == 1
    nothing_left = {"jobId": None, "dismissed": 0, "notReady": []}
    assert [a.get_json() for a in answers if a.status_code == 200] == [nothing_left]
    run_jobs()
    follow = imports.client.get(f"/imports/{started[0]}").get_json()
    assert (follow["processedRows"], follow["insertedRows"]) == (2, 2)
    assert db.session.scalar(select(func.count()).select_from(Import).where(Import.fixes_of == job_id)) == 1


def test_an_edit_may_name_a_field_for_the_column_it_is_read_from(imports: Imports):
    outlook = (
        "First Name,Last Name,E-mail Address,Company\r\n"
        "José,García,jose.garcia@,Acme\r\n"
        "Zoë,,,Ångström AB\r\n"
    ).encode()
    original = imports.run(outlook)
    jose, zoe = sorted(rejected_rows(imports, original["jobId"]))
    split = post_fixes(imports, original["jobId"], {"rows": [{"row": zoe, "values": {"name": "Zoë Lind"}}]})
    assert split.status_code == 400
    assert split.get_json()["error"] == (
        f"The name of row {zoe} is read from the columns First Name, Last Name: give each by its header."
    )
    fixed = post_fixes(
        imports,
        original["jobId"],
        {"rows": [{"row": jose, "values": {"email": "jose.garcia@example.es"}}], "dismiss": [zoe]},
    )
    assert fixed.status_code == 202, fixed.get_data(as_text=True)
    run_jobs()
    assert imports.client.get(f"/imports/{fixed.get_json()['jobId']}").get_json()["insertedRows"] == 1
    assert imports.contacts()["jose.garcia@example.es"][:3] == ("José García", None, "Acme")


def test_the_follow_up_reads_the_columns_as_the_original_was_told_to(imports: Imports):
    data = b"Name,Work email,Home email\r\nAda Lovelace,ada@engines.example,ada@home\r\n"
    mapping = '{"name": "Name", "email": "Home email"}'
    answer = imports.client.post(
        "/import", data=data, headers={"X-Source": "crm", "X-Mapping": mapping}, content_type="text/csv"
    )
    assert answer.status_code == 202, answer.get_data(as_text=True)
    run_jobs()
    job_id = answer.get_json()["jobId"]
    [row] = rejected_rows(imports, job_id)
    fixed = post_fixes(imports, job_id, {"rows": [{"row": row, "values": {"email": "ada@home.example"}}]})
    assert fixed.status_code == 202, fixed.get_data(as_text=True)
    run_jobs()
    follow = imports.client.get(f"/imports/{fixed.get_json()['jobId']}").get_json()
    assert (follow["insertedRows"], follow["mappingFrom"]) == (1, "given")
    assert imports.contacts() == {
        "ada@home.example": ("Ada Lovelace", None, None, None, {"Work email": "ada@engines.example"})
    }


def test_a_row_too_long_to_keep_whole_is_shown_but_not_fixed_from_its_cut_copy(imports: Imports):
    notes = "Met at the Analytical Society. " * 1400  # about 43,000 characters: kept cut
    original = imports.run(csv_bytes([["Ada Lovelace", "ada@", "", "", "", notes]]))
    [row] = rejected_rows(imports, original["jobId"])
    refused = post_fixes(
        imports, original["jobId"], {"rows": [{"row": row, "values": {"email": "ada@x.org"}}]}
    )
    assert refused.status_code == 400
    assert refused.get_json()["error"] == (
        f"Row {row} was longer than 32 KB, so only the start of its cells was kept: "
        "dismiss it, or fix it in the file and import that again."
    )
    html = {"Accept": "text/html", "HX-Request": "true"}
    page = imports.app.test_client()  # its session cookie would ask the API client's posts for CSRF tokens
    listing = page.get(f"/imports/{original['jobId']}/fixes", headers=html).get_data(as_text=True)
    assert "data-cut" in listing and ">Save<" not in listing and "data-dismiss" in listing
    dismissed = post_fixes(imports, original["jobId"], {"dismiss": [row]})
    assert dismissed.get_json() == {"jobId": None, "dismissed": 1, "notReady": []}
