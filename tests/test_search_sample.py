"""The search sample: searches planned from it find exactly what the plain search finds (PostgreSQL)."""

from __future__ import annotations

import random
import uuid

import pytest
from flask import Flask
from sqlalchemy import Select, event, select, text

from app import contact_search, maintenance, search_sample
from app.contact_search import ContactFilter, keyset_page
from app.extensions import db
from app.models import Contact
from tests.test_merge import Imports, csv_bytes

FIRST = ["Maria", "José", "Jürgen", "Zoë", "Наталья", "Дмитрий", "Wei", "Nguyễn", "Siobhán", "Ali"]
LAST = ["García", "Müller", "Волкова", "Иванов", "Zhang", "Thị Hương", "Ó Briain", "Smith", "Nowak"]
# Names in scripts written without spaces, many of them two letters long: no trigram in them.
CJK_NAMES = ["高橋翔", "佐々木陽菜", "徐强", "孙芳", "김민준", "이서연", "王秀英", "𠮷野さくら", "加藤さくら"]
CJK_NAMES += ["ﾔﾏﾀﾞ ﾕｷ"]  # half-width katakana, as older Japanese systems export names
DOMAINS = ["gmail.com", "example.co.uk", "mail.example", "stonelegal.co.uk", "ezweb.ne.jp"]


@pytest.fixture(autouse=True)
def _no_sample_read() -> None:
    search_sample.forget()


@pytest.fixture
def people(app: Flask) -> list[tuple[str, str]]:
    """Three hundred contacts imported through the API, and a sample drawn of them."""
    rng = random.Random(14)
    rows, seen = [], set()
    while len(rows) < 300:
        first, last = rng.choice(FIRST), rng.choice(LAST)
        name = rng.choice(CJK_NAMES) if len(rows) % 10 == 9 else f"{first} {last}"
        email = f"{rng.choice(['m', first[:3].lower(), 'x.y'])}{rng.randrange(10**4)}@{rng.choice(DOMAINS)}"
        if email not in seen:
            seen.add(email)
            rows.append([name, email, "", "", "", ""])
    Imports(app).run(csv_bytes(rows))
    assert search_sample.draw(db.session, minimum=0)
    return [(name, email) for name, email, *_ in rows]


def found(q: str, plain: bool = False) -> list[str]:
    """The emails of every contact the search finds, page after page of 50, in id order.

    Planned, it is the contacts page's own keyset pages; plain, the search PostgreSQL plans alone.
    """
    emails: list[str] = []
    wanted = ContactFilter(q=q)
    while True:
        if plain:
            query = select(Contact).where(*wanted.where(db.session, search_sample.PLAIN))
            if wanted.after is not None:
                query = query.where(Contact.id > wanted.after)
            page = list(db.session.scalars(query.order_by(Contact.id).limit(51)))
            after = page[49].id if len(page) > 50 else None
            page = page[:50]
        else:
            page, after = keyset_page(db.session, wanted, 50)
        emails += [c.email for c in page]
        if after is None:
            return emails
        wanted = ContactFilter(q=q, after=uuid.UUID(str(after)))


def test_a_planned_search_finds_what_the_plain_one_finds(people: list[tuple[str, str]]):
    rng = random.Random(18)
    terms = ["a", "gmail", "co.uk", "müller", "ВОЛКОВ", "Thị Hương", "100%", "x.y1", "nowhere"]
    for name, email in rng.sample(people, 25):
        local = email.split("@")[0]
        terms += [f"{local}@", email[1:-2], name[1:], name.split()[-1].upper(), "@" + email.split("@")[1]]
    planned = 0
    for term in terms:
        by_hand = sorted(e for n, e in people if term.lower() in e.lower() or term.lower() in n.lower())
        assert sorted(found(term)) == by_hand, term
        assert found(term) == found(term, plain=True), term
        planned += search_sample.plan(db.session, term) != search_sample.PLAIN
    assert planned > len(terms) // 2  # most were planned from the sample, not left to the plain search


def test_a_term_most_contacts_hold_is_read_for_in_id_order(people: list[tuple[str, str]]):
    common = search_sample.plan(db.session, "a")
    assert common.share and common.share > 0.5 and common.parts is None
    assert 0 < common.contacts_to_read(51) < len(people)  # a page is found before the table's end
    by_hand = [e for n, e in people if "a" in e.lower() or "a" in n.lower()]
    assert sorted(found("a")) == sorted(by_hand) and found("a") == found("a", plain=True)


def test_a_page_read_for_in_order_goes_on_past_the_contacts_read(people, monkeypatch: pytest.MonkeyPatch):
    """A sample can be wrong where a term's contacts are: the page is found after those read too."""
    monkeypatch.setattr(contact_search, "plan", lambda *_: search_sample.Plan(share=0.9))
    late = people[-1][1]  # the last contact of all, past the 170 read for a page
    assert found(late) == [late]
    domain = "@" + late.split("@")[1]
    assert found(domain) == found(domain, plain=True) and len(found(domain)) > 50


def explained(query: Select) -> str:
    """PostgreSQL's plan of ``query``, a read of the whole table forbidden."""
    with db.engine.connect() as conn:
        conn.execute(text("SET enable_seqscan = off"))
        compiled = query.compile(conn, compile_kwargs={"literal_binds": True})
        return "\n".join(row[0] for row in conn.execute(text(f"EXPLAIN {compiled}")))


def asks_cjk_index(plan: str) -> bool:
    """Whether the plan asks the CJK index for the tripled letters, not just reads all of it."""
    return "on contacts_cjk_trgm_idx" in plan and "Index Cond: (regexp_replace(" in plan


def first_page(term: str) -> Select:
    """The ids of the first page of the search for ``term``, as the contacts page asks for them."""
    return select(Contact.id).where(*ContactFilter(q=term).where(db.session)).order_by(Contact.id).limit(51)


def test_a_rare_term_asks_the_index_for_its_rarest_part_only(people: list[tuple[str, str]]):
    name, email = people[7]
    term = email.split("@")[0] + "@"
    parts = search_sample.plan(db.session, term).parts
    assert parts and all(part in term for part in parts) and "".join(parts) != term
    plan = explained(select(Contact.id).where(*ContactFilter(q=term).where(db.session)))
    index_conditions = [line for line in plan.splitlines() if "Index Cond" in line]
    assert "contacts_search_trgm_idx" in plan and index_conditions
    assert not any(term in line for line in index_conditions)  # the whole term is checked, not indexed
    assert found(term) == [email]


def test_a_short_cjk_term_is_asked_of_the_cjk_index(app: Flask, people: list[tuple[str, str]], monkeypatch):
    """One or two Chinese, Japanese or Korean letters hold no trigram; their own index finds them."""
    terms = ["徐强", "强", "佐々", "々木", "橋翔", "김", "민준", "𠮷", "野さ", "徐 强", "a徐", "王秀英"]
    terms += ["ÜLLER徐", "sato@", "高%", "ﾕｷ", "ﾀﾞ"]
    for term in terms:
        by_hand = sorted(e for n, e in people if term.lower() in e.lower() or term.lower() in n.lower())
        assert sorted(found(term)) == by_hand, term
        assert found(term) == found(term, plain=True), term
    assert len(found("徐强")) == len([n for n, _ in people if n == "徐强"]) > 0
    rare = search_sample.plan(db.session, "徐强")
    assert rare.cjk == ["徐强"] and rare.share is None  # a few contacts: asked of the index alone
    assert all(asks_cjk_index(explained(first_page(term))) for term in ("徐强", "김", "ﾕｷ"))
    assert search_sample.plan(db.session, "王秀英").cjk is None  # three letters: a trigram, as before
    # Beside a source, PostgreSQL chooses between the source's index and the CJK one.
    Imports(app).run(csv_bytes([["徐强", "xu.qiang@shop.example", "", "", "", ""]]), source="shop")
    in_shop, _ = keyset_page(db.session, ContactFilter(q="徐强", source="shop"), 50)
    in_crm, _ = keyset_page(db.session, ContactFilter(q="强", source="crm"), 50)
    assert [c.email for c in in_shop] == ["xu.qiang@shop.example"]
    assert sorted(c.email for c in in_crm) == sorted(e for n, e in people if "强" in n)
    # Read for in id order first, the term is asked of the CJK index past the contacts read.
    late = next(n for n, _ in reversed(people[170:]) if n in CJK_NAMES)[-2:]  # past the 170 read for a page
    monkeypatch.setattr(contact_search, "plan", lambda *_: search_sample.Plan(share=0.9, cjk=[late]))
    assert found(late) == found(late, plain=True)
    assert [e for n, e in people[170:] if late in n][-1] in found(late)


# What stands beside a pair of letters in real names and emails: nothing (the text's start or
# end), a letter or a digit, a separator, other punctuation, a letter outside ASCII (Öztürk), a CJK
# letter, and the two letters that lower-case to ASCII letters (the Kelvin sign and İ).
BESIDE = [
    "",
    "a",
    "Q",
    "7",
    " ",
    ".",
    "@",
    "_",
    "+",
    "'",
    "-",
    "(",
    ")",
    "/",
    "é",
    "Ö",
    "ü",
    "李",
    "–",
    "K",
    "İ",
]


def test_a_pair_of_letters_is_found_beside_whatever_stands_around_it(app: Flask, people, monkeypatch):
    """Two letters hold no trigram: the trigram index is asked for them with what stands beside
    them, and the index of migration 0019 for the rest; what is found is what the plain search finds."""
    rows = [
        [f"Ma{before}Zt{after}", f"p{i}.{j}@pair.example", "", "", "", ""]
        for i, before in enumerate(BESIDE)
        for j, after in enumerate(BESIDE)
    ]
    rows += [[f"Öztürk {n}", f"zt{n}@pair.example", "", "", "", ""] for n in range(3)]  # at the text's start
    rows += [["Ayşe Öztürk", "ayse@pair.example", "", "", "", ""]]
    rows += [
        ["Ma\u212at", "kelvin@pair.example", "", "", "", ""],
        ["Mİt", "dotted@pair.example", "", "", "", ""],
    ]
    Imports(app).run(csv_bytes(rows), source="pairs")
    stored = db.session.execute(select(Contact.email, Contact.name)).all()
    for term in ["zt", "ZT", "tM", "a7", "7z", "qz", "kt", "it", "şe"]:
        pair = search_sample.pair_of(term)
        monkeypatch.setattr(contact_search, "plan", lambda *_, pair=pair: search_sample.Plan(pair=pair))
        if term.isascii() and term.lower() not in ("kt", "it"):  # Python lower-cases as PostgreSQL does
            by_hand = sorted(e for e, n in stored if term.lower() in f"{e}\x1f{n}".lower())
            assert sorted(found(term)) == by_hand, term
        assert found(term) == found(term, plain=True), term
    assert len(found("zt")) > len(BESIDE) ** 2
    # PostgreSQL asks the trigram index for the pair beside what it knows, and the new index for the rest.
    by_pair = ContactFilter(q="zt").where(db.session, search_sample.Plan(pair="zt"))
    plan = explained(select(Contact.id).where(*by_pair))
    assert (
        "Bitmap Index Scan on contacts_search_trgm_idx" in plan
        and "Bitmap Index Scan on contacts_pair_idx" in plan
    )


def test_a_rare_pair_is_planned_by_the_indexes_a_common_one_read_in_order(people: list[tuple[str, str]]):
    assert search_sample.plan(db.session, "Qz") == search_sample.Plan(pair="qz")
    sample = search_sample.current(db.session)
    term = max(["ar", "an", "er", "ia", "ll", "ng"], key=sample.share_holding)  # held by many names
    common = search_sample.plan(db.session, term)
    assert common.share and common.pair == term and common.past_reading() == search_sample.Plan(pair=term)
    assert search_sample.plan(db.session, "q.").pair is None  # not two letters or digits: as before
    assert sorted(found(term)) == sorted(e for n, e in people if term in e or term in n.lower())


def test_the_sample_is_drawn_again_only_when_the_table_has_changed(app: Flask, people):
    assert not search_sample.draw(db.session, minimum=0)  # fresh: left as it is
    made = db.session.execute(text("SELECT made_at, contacts FROM search_samples")).one()
    assert made.contacts == 300
    more = [[f"Extra {n}", f"extra{n}@example.org", "", "", "", ""] for n in range(100)]
    Imports(app).run(csv_bytes(more), source="shop")
    assert search_sample.draw(db.session, minimum=0)  # a third more contacts
    again = db.session.execute(text("SELECT made_at, contacts, texts FROM search_samples")).one()
    assert again.made_at > made.made_at and again.contacts == 400 and "extra7@example.org" in again.texts
    assert not search_sample.draw(db.session)  # fewer than the default minimum: none is kept
    assert db.session.execute(text("SELECT count(*) FROM search_samples")).scalar() == 0
    assert search_sample.plan(db.session, "extra7@") == search_sample.PLAIN
    assert search_sample.keep_search_sample in maintenance.TASKS


def test_many_contacts_are_taken_from_the_statistics_not_counted(app: Flask, monkeypatch: pytest.MonkeyPatch):
    def contacts(first: int) -> list[list[str]]:
        return [[f"Person {n}", f"person{n}@example.org", "", "", "", ""] for n in range(first, first + 300)]

    statements: list[str] = []

    def sent(_connection, _cursor, statement: str, *_rest) -> None:
        statements.append(statement)

    def counted() -> int:
        statements.clear()
        event.listen(db.engine, "before_cursor_execute", sent)
        try:
            return search_sample.count_contacts(db.session)
        finally:
            event.remove(db.engine, "before_cursor_execute", sent)
            db.session.commit()  # as a maintenance tick does: the next one reads the statistics anew

    Imports(app).run(csv_bytes(contacts(0)))
    assert counted() == 300  # few: counted
    Imports(app).run(csv_bytes(contacts(300)), source="shop")
    monkeypatch.setattr(search_sample, "COUNTED_BELOW", 100)  # 600 contacts are now many
    # Statistics lost (as in a crash): the count stops at COUNTED_BELOW, and the table is analyzed.
    db.session.execute(text("SELECT pg_stat_reset_single_table_counters('contacts'::regclass)"))
    assert counted() == 600
    assert any("ANALYZE" in s for s in statements)
    assert not [s for s in statements if "count(*) FROM contacts" in s]  # never every row
    # Now the statistics know: neither a count nor ANALYZE.
    assert counted() == 600
    assert not [s for s in statements if "count(" in s or "ANALYZE" in s]


def test_no_sample_means_the_plain_search(app: Flask):
    assert search_sample.current(db.session) is None
    assert search_sample.plan(db.session, "margaret.ovric77@") == search_sample.PLAIN


def test_a_search_run_many_times_on_one_connection_is_never_prepared(people: list[tuple[str, str]]):
    """A prepared search is planned once for every term: at scale, a read of the whole table."""
    for _ in range(8):
        assert found("gmail")
    connection = db.session.connection()
    assert connection.execute(text("SELECT count(*) FROM pg_prepared_statements")).scalar() == 0
