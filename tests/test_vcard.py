"""vCard files as phones and address books write them: every card a record, broken ones rejected rows."""

from __future__ import annotations

import base64
import codecs
import io
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.readers import BrokenRow, UnusableFile, detect_format, read_rows
from tests.exports import (
    PEOPLE,
    android_vcard,
    fake_jpeg,
    fold,
    google_vcard,
    iphone_vcard,
    vcard_escape,
)
from tests.test_readers import OneWayStream


def cards(data: bytes, seekable: bool = True) -> list[tuple[int, dict | BrokenRow]]:
    """Every row of a .vcf file, read as the worker reads a stored file."""
    stream = io.BytesIO(data) if seekable else io.BufferedReader(OneWayStream(data))
    table = read_rows(stream, len(data))
    assert table.format == "vcard"
    return list(table.rows)


def card(*lines: str, version: str = "3.0") -> str:
    return "\r\n".join(["BEGIN:VCARD", f"VERSION:{version}", *lines, "END:VCARD"]) + "\r\n"


def test_an_iphone_export() -> None:
    rows = cards(iphone_vcard(PEOPLE))
    assert [n for n, _ in rows] == [1, 2, 3, 4, 5, 6]
    jose = rows[0][1]
    assert jose == {
        "Last Name": "García",
        "First Name": "José",
        "Name": "José García",
        "Company": "Telefónica",
        "Title": "Ingeniero",
        "ADR": "Madrid, Spain",
        "ADR Country": "es",
        "E-mail": "jose.garcia@example.com",
        "Phone": "+34 912 34 56 78",
    }
    juergen = rows[1][1]
    # The phone's preferred address (item1, type=pref) comes first; its label stays beside it.
    assert juergen["E-mail"] == "jürgen@münchen.de ::: juergen.mueller@example.de"
    assert juergen["E-mail Label"] == "Other"
    assert juergen["NOTE"] == "Met at the fair, hall 3.\nPrefers email."
    assert juergen["Company"] == "Müller & Söhne GmbH"
    assert rows[2][1]["Name"] == "王芳"
    assert (rows[2][1]["Last Name"], rows[2][1]["First Name"]) == ("王", "芳")
    zoe = rows[4][1]
    assert zoe["Name"] == "Dr. Zoë Anne O'Brien PhD"
    assert (zoe["Name Prefix"], zoe["Middle Name"], zoe["Name Suffix"]) == ("Dr.", "Anne", "PhD")
    assert zoe["Company"] == "Trinity Labs, Ltd."
    assert (zoe["URL"], zoe["URL Label"]) == ("https://example.ie/zoe", "HomePage")
    assert zoe["BDAY"] == "1985-04-12"
    assert "PRODID" not in zoe and "VERSION" not in zoe


def test_a_google_export() -> None:
    rows = cards(google_vcard(PEOPLE))
    assert len(rows) == 6
    zoe = rows[4][1]
    assert zoe["URL"] == "https://example.ie/zoe"  # Google's escaped colon undone
    assert zoe["URL Label"] == "Profile"
    assert zoe["CATEGORIES"] == "myContacts"
    assert zoe["ADR"] == "1 College Green, Dublin, D02, Ireland"
    assert rows[0][1]["CATEGORIES"] == "myContacts,Clients"
    assert rows[1][1]["E-mail"] == "juergen.mueller@example.de ::: jürgen@münchen.de"


def test_an_android_export_in_quoted_printable() -> None:
    long_note = "Ünïcödé " * 30 + "end"
    people = [*PEOPLE, {"first": "Long", "last": "Note", "email": "long@example.com", "notes": long_note}]
    data = android_vcard(people)
    assert b"=\r\n" in data  # soft line breaks really are there
    rows = cards(data)
    assert [r["Name"] for _, r in rows] == [
        "José García",
        "Jürgen Müller",
        "王芳",
        "Σωκράτης Παπαδόπουλος",
        "Dr. Zoë Anne O'Brien PhD",
        "Ada Lovelace",
        "Long Note",
    ]
    assert rows[1][1]["NOTE"] == "Met at the fair, hall 3.\nPrefers email."
    assert rows[1][1]["E-mail"] == "juergen.mueller@example.de ::: jürgen@münchen.de"
    assert rows[6][1]["NOTE"] == long_note


def test_a_2_1_card_in_another_charset() -> None:
    latin = [p for p in PEOPLE if p["first"] in ("José", "Zoë", "Ada")]
    rows = cards(android_vcard(latin, charset="ISO-8859-1"))
    assert [r["Name"] for _, r in rows] == ["José García", "Dr. Zoë Anne O'Brien PhD", "Ada Lovelace"]
    raw = (
        "BEGIN:VCARD\r\nVERSION:2.1\r\nN;CHARSET=ISO-8859-1:Müller;Jürgen\r\n"
        "FN;CHARSET=ISO-8859-1:Jürgen Müller\r\nEMAIL;INTERNET:j@example.de\r\nEND:VCARD\r\n"
    ).encode("latin-1")
    assert cards(raw) == [
        (
            1,
            {
                "Last Name": "Müller",
                "First Name": "Jürgen",
                "Name": "Jürgen Müller",
                "E-mail": "j@example.de",
            },
        )
    ]


def test_a_4_0_card() -> None:
    data = card(
        "FN:Ada Lovelace",
        "N:Lovelace;Ada;;;",
        "KIND:individual",
        "EMAIL;TYPE=home:ada@home.example",
        "EMAIL;TYPE=work;PREF=1:ada@work.example",
        "TEL;VALUE=uri;TYPE=cell:tel:+44-20-7946-0000",
        "TEL;VALUE=uri;PREF=1;TYPE=work:tel:+44-20-7946-0001",
        "PHOTO:data:image/jpeg;base64," + base64.b64encode(fake_jpeg(3000)).decode(),
        "X-SOCIALPROFILE;TYPE=twitter:https://x.example/ada",
        version="4.0",
    ).encode()
    assert cards(data) == [
        (
            1,
            {
                "Name": "Ada Lovelace",
                "Last Name": "Lovelace",
                "First Name": "Ada",
                "KIND": "individual",
                "X-SOCIALPROFILE": "https://x.example/ada",
                "E-mail": "ada@work.example ::: ada@home.example",
                "Phone": "tel:+44-20-7946-0001",
                "Phone 2": "tel:+44-20-7946-0000",
            },
        )
    ]


@pytest.mark.parametrize(
    ("lines", "emails"),
    [
        (
            ["EMAIL;TYPE=INTERNET:a@x.example", "EMAIL;TYPE=INTERNET,pref:b@x.example"],
            "b@x.example ::: a@x.example",
        ),
        (
            ["EMAIL;TYPE=INTERNET:a@x.example", "EMAIL;TYPE=INTERNET;TYPE=pref:b@x.example"],
            "b@x.example ::: a@x.example",
        ),
        (
            ["EMAIL;PREF=2:a@x.example", "EMAIL:c@x.example", "EMAIL;PREF=1:b@x.example"],
            "b@x.example ::: a@x.example ::: c@x.example",
        ),
        (["EMAIL:a@x.example", "EMAIL:b@x.example"], "a@x.example ::: b@x.example"),
    ],
)
def test_preferred_emails_come_first(lines: list[str], emails: str) -> None:
    assert cards(card("FN:A", *lines).encode())[0][1]["E-mail"] == emails


def test_2_1_bare_parameters() -> None:
    data = card(
        "FN:A",
        "EMAIL;INTERNET:a@x.example",
        "EMAIL;PREF;INTERNET:b@x.example",
        "TEL;CELL;PREF:+1 415 555 2671",
        "TEL;HOME:+1 415 555 2672",
        version="2.1",
    )
    row = cards(data.encode())[0][1]
    assert row["E-mail"] == "b@x.example ::: a@x.example"
    assert (row["Phone"], row["Phone 2"]) == ("+1 415 555 2671", "+1 415 555 2672")


def test_escapes_are_undone() -> None:
    data = card(
        r"FN:Lovelace\, Ada",
        r"N:Love\;lace;Ada;;;",
        r"NOTE:one\, two\; three\\four\nfive\Nsix",
        r"ORG:Analytical Engines;Research\, Europe",
        r"ADR;TYPE=WORK:;;12 St James\, Square;London;;SW1Y 4LB;UK",
    )
    row = cards(data.encode())[0][1]
    assert row["Name"] == "Lovelace, Ada"
    assert row["Last Name"] == "Love;lace"
    assert row["NOTE"] == "one, two; three\\four\nfive\nsix"
    assert row["Company"] == "Analytical Engines, Research, Europe"
    assert row["ADR"] == "12 St James, Square, London, SW1Y 4LB, UK"


def test_2_1_keeps_backslashes_and_folding_space() -> None:
    data = "BEGIN:VCARD\r\nVERSION:2.1\r\nFN:Ada\r\nNOTE:C:\\new\\table is a long\r\n line\r\nEND:VCARD\r\n"
    assert cards(data.encode())[0][1]["NOTE"] == "C:\\new\\table is a long line"


def test_3_0_folding_drops_one_space_even_inside_a_character() -> None:
    note = "Grüße aus München, " * 10
    line = ("NOTE:" + vcard_escape(note)).encode()
    folded = b"\r\n ".join(line[i : i + 30] for i in range(0, len(line), 30))  # cuts through ü and ß
    data = b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:A\r\n" + folded + b"\r\n\tEND\r\nEND:VCARD\r\n"
    assert cards(data)[0][1]["NOTE"] == note + "END"


def test_grouped_properties_keep_their_labels() -> None:
    data = card(
        "FN:Ada",
        "item1.EMAIL;type=INTERNET:ada@work.example",
        "item1.X-ABLabel:_$!<Work>!$_",
        "item2.EMAIL;type=INTERNET:ada@club.example",
        "item2.X-ABLabel:Chess club",
        "item3.TEL:+44 20 7946 0000",
        "item3.X-ABLabel:Studio",
        "item4.ADR;type=HOME:;;1 Main St;Bath;;BA1;UK",
        "item4.X-ABADR:gb",
        "X-ABUID:1234-5678",
    )
    row = cards(data.encode())[0][1]
    assert row["E-mail"] == "ada@work.example ::: ada@club.example"
    assert (row["E-mail Label"], row["E-mail 2 Label"]) == ("Work", "Chess club")
    assert (row["Phone"], row["Phone Label"]) == ("+44 20 7946 0000", "Studio")
    assert (row["ADR"], row["ADR Country"]) == ("1 Main St, Bath, BA1, UK", "gb")
    assert row["X-ABUID"] == "1234-5678"


def test_repeated_properties_are_numbered() -> None:
    data = card(
        "FN:A", "NOTE:first", "NOTE:second", "URL:https://a.example", "URL:https://b.example", "NOTE:third"
    )
    row = cards(data.encode())[0][1]
    assert (row["NOTE"], row["NOTE 2"], row["NOTE 3"]) == ("first", "second", "third")
    assert (row["URL"], row["URL 2"]) == ("https://a.example", "https://b.example")


@pytest.mark.parametrize("line_end", ["\r\n", "\n"])
@pytest.mark.parametrize("bom", [b"", codecs.BOM_UTF8])
def test_bom_and_line_ends(line_end: str, bom: bytes) -> None:
    data = bom + ("\n\n" + card("FN:Zoë", "EMAIL:zoe@example.ie")).replace("\r\n", line_end).encode()
    assert cards(data) == [(1, {"Name": "Zoë", "E-mail": "zoe@example.ie"})]


def test_a_utf16_file() -> None:
    data = card("FN:王芳", "EMAIL:wang@example.cn").encode("utf-16")
    assert data.startswith(codecs.BOM_UTF16_LE)
    assert cards(data) == [(1, {"Name": "王芳", "E-mail": "wang@example.cn"})]


def test_a_stream_that_cannot_seek() -> None:
    rows = cards(iphone_vcard(PEOPLE, photo_size=200_000), seekable=False)
    assert [r["E-mail"].split(" ::: ")[0] for _, r in rows][:2] == [
        "jose.garcia@example.com",
        "jürgen@münchen.de",
    ]


@pytest.mark.parametrize(
    "head",
    [
        b"BEGIN:VCARD\r\n",
        b"begin:vcard\n",
        codecs.BOM_UTF8 + b"\r\n\r\nBEGIN:VCARD\r\n",
        b"  \nBEGIN:VCARD\n",
    ],
)
def test_vcards_are_known_by_their_content(head: bytes) -> None:
    assert detect_format(head + b"VERSION:3.0\r\nFN:A\r\nEND:VCARD\r\n") == "vcard"


def test_a_csv_that_mentions_vcards_is_still_a_csv() -> None:
    assert detect_format(b"name,email\nBEGIN:VCARD,a@example.com\n") == "csv"


def test_the_refusal_names_vcard() -> None:
    with pytest.raises(UnusableFile, match=r"JSON or vCard \(\.vcf\) file"):
        read_rows(io.BytesIO(b"\x00\x01\x02\x03" * 100))


def test_a_card_without_its_end_is_a_rejected_row() -> None:
    data = (
        "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Cut Short\r\nEMAIL:cut@example.com\r\n"
        + card("FN:Ada", "EMAIL:ada@example.com")
        + card("FN:Grace", "EMAIL:grace@example.com")
    ).encode()
    rows = cards(data)
    assert [n for n, _ in rows] == [1, 2, 3]
    broken = rows[0][1]
    assert isinstance(broken, BrokenRow)
    assert broken.message == "This card has no END:VCARD: the next card begins before it ends"
    assert "FN:Cut Short" in broken.text
    assert rows[1][1] == {"Name": "Ada", "E-mail": "ada@example.com"}
    assert rows[2][1] == {"Name": "Grace", "E-mail": "grace@example.com"}


def test_a_file_cut_short_rejects_only_its_last_card() -> None:
    data = (card("FN:Ada", "EMAIL:ada@example.com") + "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Gra").encode()
    rows = cards(data)
    assert rows[0] == (1, {"Name": "Ada", "E-mail": "ada@example.com"})
    assert rows[1][0] == 2
    assert rows[1][1].message == "This card ends without END:VCARD: the file may be cut short"


def test_garbage_between_cards_is_a_rejected_row_of_its_own() -> None:
    data = (card("FN:Ada") + "this is not\r\npart of any card\r\n" + card("FN:Grace")).encode()
    rows = cards(data)
    assert [n for n, _ in rows] == [1, 2, 3]
    assert rows[1][1].message.startswith("This part of the file is not a vCard")
    assert rows[1][1].text == "this is not\npart of any card"
    assert rows[2][1] == {"Name": "Grace"}


def test_a_line_that_is_no_property_rejects_its_card() -> None:
    rows = cards((card("FN:Ada", "garbage without a colon") + card("FN:Grace")).encode())
    assert (
        rows[0][1].message == "This card has a line that is not a vCard property: “garbage without a colon”"
    )
    assert rows[1] == (2, {"Name": "Grace"})


def test_a_card_too_large_is_rejected_whole() -> None:
    note = "NOTE:" + "x" * (2 * 1024 * 1024)
    rows = cards((card("FN:Huge", note) + card("FN:Small")).encode())
    assert rows[0][1].message == "This card holds more than 1 MB besides its photos"
    assert len(rows[0][1].text) <= 1000
    assert rows[1] == (2, {"Name": "Small"})


def _peak_while_reading(path: Path) -> tuple[int, list]:
    with path.open("rb") as f:
        tracemalloc.start()
        try:
            table = read_rows(f, path.stat().st_size)
            rows = list(table.rows)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    return peak, rows


@pytest.mark.parametrize("folded", [True, False], ids=["iPhone, folded", "one line"])
def test_photos_stream_past_without_being_held(tmp_path: Path, folded: bool) -> None:
    cards(card("FN:Warm-up").encode())  # the first read compiles and imports: not the photo's doing
    peaks = []
    for size in (1_000_000, 8_000_000):
        photo = base64.b64encode(fake_jpeg(size)).decode()
        line = "PHOTO;ENCODING=b;TYPE=JPEG:" + photo
        path = tmp_path / f"{size}.vcf"
        path.write_bytes(
            (
                card("FN:Ada", fold(line) if folded else line, "EMAIL:ada@example.com") + card("FN:Grace")
            ).encode()
        )
        assert path.stat().st_size > size
        peak, rows = _peak_while_reading(path)
        assert rows == [(1, {"Name": "Ada", "E-mail": "ada@example.com"}), (2, {"Name": "Grace"})]
        peaks.append(peak)
    # Eight times the photo costs nothing more, and neither photo was ever held whole.
    assert peaks[1] < 1_000_000, peaks
    assert peaks[1] < peaks[0] * 1.5 + 100_000, peaks


def test_a_2_1_photo_is_skipped() -> None:
    rows = cards(android_vcard(PEOPLE[:2], photo_size=50_000))
    assert [r["Name"] for _, r in rows] == ["José García", "Jürgen Müller"]
    assert all(not any(k.startswith("PHOTO") for k in r) for _, r in rows)


_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\r"),
    min_size=1,
    max_size=60,
).filter(lambda t: t.strip() == t and t)


@given(
    name=_TEXT,
    note=st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r"),
        min_size=1,
        max_size=200,
    ).filter(lambda t: t.strip() == t and t),
    title=_TEXT,
)
def test_any_text_survives_a_round_trip(name: str, note: str, title: str) -> None:
    lines = [
        fold("FN:" + vcard_escape(name)),
        fold("NOTE:" + vcard_escape(note)),
        fold("TITLE:" + vcard_escape(title)),
    ]
    rows = cards(card(*lines).encode())
    assert rows == [(1, {"Name": name, "NOTE": note, "Title": title})]


def test_a_huge_value_on_one_line_is_refused_in_flat_memory(tmp_path: Path) -> None:
    cards(card("FN:Warm-up").encode())
    path = tmp_path / "note.vcf"
    path.write_bytes((card("FN:Huge", "NOTE:" + "x" * 16_000_000) + card("FN:Small")).encode())
    peak, rows = _peak_while_reading(path)
    assert rows[0][1].message == "This card holds more than 1 MB besides its photos"
    assert rows[1] == (2, {"Name": "Small"})
    assert peak < 4_000_000, peak


def test_a_vcf_import_end_to_end(client, work) -> None:
    from tests.test_pipeline import contacts, post_file

    one_address = [p for p in PEOPLE if not p.get("email2")]
    broken = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Cut Short\r\n"
    data = iphone_vcard(one_address[:2], photo_size=300_000) + broken.encode() + iphone_vcard(one_address[2:])
    job_id = post_file(client, data, source="phone", filename="contacts.vcf")
    work()
    status = client.get(f"/imports/{job_id}").get_json()
    assert (status["status"], status["format"]) == ("completed", "vcard")
    assert (status["insertedRows"], status["rejectedRows"]) == (len(one_address), 1)
    errors = client.get(f"/imports/{job_id}/errors").get_json()["items"]
    assert [(e["row"], e["message"]) for e in errors] == [
        (3, "This card has no END:VCARD: the next card begins before it ends")
    ]
    assert ("王芳", "wang.fang@example.cn") in contacts("phone")


def test_a_quoted_parameter_may_hold_a_colon() -> None:
    data = card("FN:Ada", 'ADR;LABEL="1 Main St\\nBath: UK";TYPE=home:;;1 Main St;Bath;;;UK', version="4.0")
    assert cards(data.encode())[0][1]["ADR"] == "1 Main St, Bath, UK"


_FIELD = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters=":"),
    min_size=1,
    max_size=40,
).filter(lambda t: t.strip() == t)
_PEOPLE = st.lists(
    st.fixed_dictionaries(
        {
            "first": _FIELD,
            "last": _FIELD,
            "email": st.from_regex(r"[a-z0-9._%+-]{1,12}@[a-z0-9]{1,10}\.[a-z]{2,6}", fullmatch=True),
            "company": _FIELD,
            "title": _FIELD,
        },
        optional={"notes": st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=120)},
    ),
    min_size=1,
    max_size=4,
)


@pytest.mark.parametrize("export", [iphone_vcard, google_vcard, android_vcard])
@given(people=_PEOPLE)
def test_every_exporter_round_trips(export, people: list[dict]) -> None:
    rows = cards(export(people))
    assert [n for n, _ in rows] == list(range(1, len(people) + 1))
    for person, (_, row) in zip(people, rows, strict=True):
        assert (row["First Name"], row["Last Name"]) == (person["first"], person["last"])
        assert row["E-mail"] == person["email"]
        assert (row["Company"], row["Title"]) == (person["company"], person["title"])
        if person.get("notes", "").strip():
            assert row["NOTE"] == person["notes"].strip()


def test_old_mac_line_ends() -> None:
    data = card("FN:Zoë", "EMAIL:zoe@example.ie", "NOTE:a long", "  note").replace("\r\n", "\r").encode()
    assert cards(data) == [(1, {"Name": "Zoë", "E-mail": "zoe@example.ie", "NOTE": "a long note"})]


def test_a_windows_1252_card_without_a_charset() -> None:
    data = card("FN:Jürgen Groß", "EMAIL:j@example.de", version="2.1").encode("cp1252")
    assert cards(data) == [(1, {"Name": "Jürgen Groß", "E-mail": "j@example.de"})]
