"""The contacts page, one contact, the CSV export and the sources, through the API and as pages."""

from __future__ import annotations

import csv
import io
import uuid

from sqlalchemy import select, text

from app import contact_search
from app.contact_search import ContactFilter
from app.extensions import db
from app.mapping import save_mapping
from app.models import Contact
from tests import test_merge
from tests.test_merge import Imports, csv_bytes

# The merge tests' app, on PostgreSQL and on SQLite.
imports, imports_on_postgresql = test_merge.imports, test_merge.imports_on_postgresql

PEOPLE = [
    ["Ada Lovelace", "ada@example.com", "+44 20 7946 0001", "Engines", "Countess", "London"],
    ["Grace Hopper", "grace@navy.example", "", "US Navy", "", ""],
    ["Adam Smith", "wealth@example.com", "", "=HYPERLINK(1)", "", ""],
    ["Zoë Ångström", "zoe@example.se", "", "", "", "Uppsala"],
]
HTML = {"Accept": "text/html"}


def test_search_by_prefix_and_substring_of_email_or_name_in_either_case(imports: Imports):
    done = imports.run(csv_bytes(PEOPLE))
    imports.run(csv_bytes([["Other Ada", "ada@example.com", "", "", "", ""]]), source="shop")

    def emails(**args: str) -> list[tuple[str, str]]:
        items = imports.client.get("/contacts", query_string={**args, "after": ""}).get_json()["items"]
        return sorted((c["email"], c["source"]) for c in items)

    # "ada" is in two emails and in Adam's name.
    assert emails(q="ada") == [
        ("ada@example.com", "crm"),
        ("ada@example.com", "shop"),
        ("wealth@example.com", "crm"),
    ]
    assert emails(q="ADA@", source="crm") == [("ada@example.com", "crm")]
    assert emails(q="navy") == [("grace@navy.example", "crm")]  # a substring of the email
    assert emails(q="Ångs") == [("zoe@example.se", "crm")]  # of the name, not ASCII
    if db.engine.dialect.name == "postgresql":  # SQLite folds the case of ASCII letters only
        assert emails(q="ångs") == [("zoe@example.se", "crm")]
    assert emails(q="100%") == []  # wildcards are searched as themselves
    assert emails(importId=done["jobId"], q="example.com") == [
        ("ada@example.com", "crm"),
        ("wealth@example.com", "crm"),
    ]
    paged = imports.client.get("/contacts", query_string={"source": "crm", "q": "a", "page": 1}).get_json()
    assert paged["total"] == 4 and paged["pages"] == 1  # the page-numbered shape stays as it was
    assert imports.client.get("/contacts?after=nope").status_code == 400


def test_keyset_pages_cover_every_contact_once(imports: Imports):
    imports.run(csv_bytes([[f"P {n}", f"p{n}@example.com", "", "", "", ""] for n in range(7)]))
    seen, after = [], ""
    while after is not None:
        page = imports.client.get("/contacts", query_string={"after": after, "per_page": 3}).get_json()
        seen += [c["email"] for c in page["items"]]
        after = page["next"]
    assert sorted(seen) == sorted(f"p{n}@example.com" for n in range(7))
    html = imports.client.get("/contacts", headers=HTML).get_data(as_text=True)
    assert 'data-contact="p0@example.com"' in html and "data-next" not in html


def test_search_in_other_scripts_pages_by_keyset_and_never_across_email_and_name(imports: Imports):
    people = [
        ["Наталья Волкова", "n.volkova@mail.example", "", "", "", ""],
        ["高橋翔", "s.takahashi@ezweb.example", "", "", "", ""],
        ["Nguyễn Thị Hương", "huong@example.vn", "", "", "", ""],
        *([f"Smith {n}", f"smith{n}@example.com", "", "", "", ""] for n in range(7)),
        ["Jo Smithers", "jo@example.org", "", "", "", ""],
    ]
    imports.run(csv_bytes(people))

    def names(q: str) -> list[str]:
        return [
            c["name"]
            for c in imports.client.get("/contacts", query_string={"q": q, "after": ""}).json["items"]
        ]

    assert names("Волков") == ["Наталья Волкова"]
    assert names("高橋") == ["高橋翔"] and names("橋翔") == ["高橋翔"]  # two characters, no trigram
    assert names("Thị Hương") == ["Nguyễn Thị Hương"]
    if db.engine.dialect.name == "postgresql":  # SQLite folds the case of ASCII letters only
        assert names("ВОЛКОВ") == ["Наталья Волкова"] and names("NGUYỄN") == ["Nguyễn Thị Hương"]
    # The end of an email and the start of the name are not one text to search.
    assert names("example.vnNguy") == [] and names("vn Nguy") == []
    seen, after, pages = [], "", 0
    while after is not None:
        page = imports.client.get(
            "/contacts", query_string={"q": "SMITH", "after": after, "per_page": 3}
        ).json
        seen += [(uuid.UUID(c["id"]), c["name"]) for c in page["items"]]
        after, pages = page["next"], pages + 1
    # Every match once, in id order, three to a page.
    assert sorted(name for _, name in seen) == ["Jo Smithers", *(f"Smith {n}" for n in range(7))]
    assert seen == sorted(seen) and pages == 3


def test_the_search_is_answered_by_its_index_on_postgresql(app):
    """The search names the expression the migration indexed: otherwise every search reads the table.

    (PostgreSQL alone: SQLite has no trigram index, and its search reads the table.)"""
    assert db.engine.dialect.name == "postgresql"
    query = select(Contact.id).where(*ContactFilter(q="ada").where(db.session))
    with db.engine.connect() as conn:
        conn.execute(text("SET enable_seqscan = off"))
        compiled = query.compile(conn, compile_kwargs={"literal_binds": True})
        plan = "\n".join(row[0] for row in conn.execute(text(f"EXPLAIN {compiled}")))
    assert "contacts_search_trgm_idx" in plan


def test_one_contact_the_export_and_the_sources(imports: Imports):
    done = imports.run(csv_bytes(PEOPLE))
    ada = imports.client.get("/contacts", query_string={"q": "ada@", "after": ""}).get_json()["items"][0]
    one = imports.client.get(f"/contacts/{ada['id']}").get_json()
    assert one == ada and one["attributes"] == {"City": "London"}
    page = imports.client.get(f"/contacts/{ada['id']}", headers=HTML).get_data(as_text=True)
    assert "Countess" in page and "London" in page
    assert imports.client.get("/contacts/not-an-id").status_code == 404

    export = imports.client.get("/contacts.csv", query_string={"source": "crm", "q": "a"})
    assert export.headers["Content-Disposition"] == "attachment; filename=contacts.csv"
    data = export.get_data()
    assert data.startswith("\ufeff".encode())
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    assert sorted(r["email"] for r in rows) == [
        "ada@example.com",
        "grace@navy.example",
        "wealth@example.com",
        "zoe@example.se",
    ]
    adam = next(r for r in rows if r["email"] == "wealth@example.com")
    assert adam["company"].startswith("'=")  # a spreadsheet shows the formula as text, never runs it

    sources = imports.client.get("/sources").get_json()["items"]
    assert sources == [
        {
            "source": "crm",
            "contacts": 4,
            "lastImport": {"jobId": done["jobId"], "status": "completed", "filename": None},
            "mapping": None,
            "mappingShown": None,
        }
    ]
    save_mapping(db.session, "crm", {"name": "Name", "email": "Email"})
    db.session.commit()
    [crm] = imports.client.get("/sources").get_json()["items"]
    assert crm["mapping"]["mapping"]["email"] == "Email"
    shown = imports.client.get("/sources", headers=HTML).get_data(as_text=True)
    assert "Email → email" in shown and 'href="/sources/crm/mapping"' in shown
    assert 'href="/contacts?source=crm"' in shown and 'href="/imports?source=crm"' in shown
    listed_by_source = imports.client.get("/contacts?source=crm", headers=HTML).get_data(as_text=True)
    assert listed_by_source.count("data-contact=") == 4
    detail = imports.client.get(f"/imports/{done['jobId']}", headers=HTML).get_data(as_text=True)
    assert f'href="/contacts?importId={done["jobId"]}" data-see-contacts>4 inserted: see them' in detail
    listed = imports.client.get(f"/contacts?importId={done['jobId']}", headers=HTML).get_data(as_text=True)
    assert listed.count("data-contact=") == 4


def test_a_long_export_holds_no_transaction_while_the_client_reads(
    imports_on_postgresql: Imports, monkeypatch
):
    imports = imports_on_postgresql
    monkeypatch.setattr(contact_search, "EXPORT_BATCH", 2)
    imports.run(csv_bytes(PEOPLE))
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"
    )
    chunks = iter(imports.client.get("/contacts.csv", buffered=False).response)
    read = [next(chunks)]
    with db.engine.connect() as watcher:
        for chunk in chunks:  # a batch of two contacts at a time, each read before the next is asked
            read.append(chunk)
            assert watcher.execute(waiting).scalar() == 0
            watcher.rollback()
    rows = list(csv.DictReader(io.StringIO(b"".join(read).decode("utf-8-sig"))))
    assert len(read) == 3 and sorted(r["email"] for r in rows) == sorted(p[1] for p in PEOPLE)


def test_a_filter_that_cannot_be_used_is_a_page_to_a_browser_and_json_to_a_client(imports: Imports):
    said = "q must not contain control characters"
    for path in ("/contacts", "/contacts.csv"):
        page = imports.client.get(path, query_string={"q": "a\x00"}, headers=HTML)
        assert page.status_code == 400 and page.mimetype == "text/html"
        assert said in page.get_data(as_text=True)
        answer = imports.client.get(path, query_string={"q": "a\x00"})
        assert answer.status_code == 400 and answer.get_json() == {"error": said}
    page = imports.client.get("/contacts", query_string={"after": "nope"}, headers=HTML)
    assert page.status_code == 400 and "after must be the id of a contact" in page.get_data(as_text=True)


def test_every_new_route_needs_a_token_when_authentication_is_on(make_app):
    from tests.test_auth import TOKEN

    secured = make_app(API_TOKENS=TOKEN, RATE_LIMITS_ENABLED="false")
    client = secured.test_client()
    json = {"Accept": "application/json"}
    some = "00000000-0000-0000-0000-000000000000"
    for method, path in (
        ("GET", "/contacts"),
        ("GET", "/contacts?q=ada&after="),
        ("GET", f"/contacts/{some}"),
        ("GET", "/contacts.csv"),
        ("GET", "/sources"),
        ("GET", f"/imports/{some}/undo"),
        ("POST", f"/imports/{some}/undo"),
        ("POST", f"/imports/{some}/undo/cancel"),
        ("GET", f"/imports/{some}/fixes"),
        ("POST", f"/imports/{some}/fixes"),
        ("POST", f"/imports/{some}/fixes/3"),
    ):
        answer = client.open(path, method=method, headers=json)
        assert answer.status_code == 401, path
        assert b"ada" not in answer.get_data()
    allowed = {**json, "Authorization": f"Bearer {TOKEN}"}
    assert client.get("/contacts", headers=allowed).status_code == 200
    assert client.get("/sources", headers=allowed).get_json() == {"items": []}
    assert client.post(f"/imports/{some}/undo", headers=allowed).status_code == 404


def test_the_pages_show_a_list_of_extra_addresses_as_the_addresses(imports: Imports):
    # A file of just a name and an email: the second address of a cell is kept, and the first row
    # of an email still wins over a later one.
    done = imports.run(
        b"Name,Email\r\nAda Lovelace,ada@example.com; ada@work.example\r\nAda Again,ada@example.com\r\n"
    )
    assert (done["insertedRows"], done["duplicateRows"]) == (1, 1)
    [ada] = imports.client.get("/contacts", query_string={"q": "ada@"}).get_json()["items"]
    assert (ada["name"], ada["attributes"]) == ("Ada Lovelace", {"emails": ["ada@work.example"]})
    for path in ("/contacts?q=ada%40", f"/contacts/{ada['id']}"):
        page = imports.client.get(path, headers=HTML).get_data(as_text=True)
        assert "ada@work.example" in page and "[&#39;ada@work.example&#39;]" not in page
        assert "[" not in page.split("ada@work.example")[0][-3:]


def test_numbered_pages_count_up_to_a_limit_and_send_on_to_keyset_pages(imports: Imports, monkeypatch):
    from app import contact_list

    imports.run(csv_bytes([[f"P {n}", f"p{n}@example.com", "", "", "", ""] for n in range(7)]))
    page = imports.client.get("/contacts", query_string={"per_page": 2}).get_json()
    assert (page["total"], page["totalExact"], page["pages"]) == (7, True, 4)
    monkeypatch.setattr(contact_list, "COUNT_MAX", 3)
    capped = imports.client.get("/contacts", query_string={"per_page": 2}).get_json()
    assert (capped["total"], capped["totalExact"], capped["pages"]) == (3, False, 2)
    assert len(imports.client.get("/contacts", query_string={"per_page": 2, "page": 2}).json["items"]) == 2
    past = imports.client.get("/contacts", query_string={"per_page": 2, "page": 3})
    assert past.status_code == 400 and "after=" in past.get_json()["error"]
    assert len(imports.client.get("/contacts", query_string={"after": "", "per_page": 7}).json["items"]) == 7
