"""Making a contact of a row: name parts, email candidates, phones, and every other column kept."""

from __future__ import annotations

import csv
import io

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from app.fields import Columns, find_columns
from app.readers import read_rows
from app.rows import ContactReader, validate
from app.validation import Contact, Problem
from tests.spreadsheets import xlsx_bytes


def read(headers: list[str], row: list[object], region: str | None = None) -> Contact | list[Problem]:
    return ContactReader(find_columns(headers), headers, region).read(row)


def test_a_name_in_parts_is_joined_in_order_and_each_part_kept():
    headers = ["Title", "First Name", "Middle Name", "Last Name", "Suffix", "E-mail Address", "Job Title"]
    contact = read(headers, ["Dr.", "Zoë", "Anne", "O'Brien", "PhD", "zoe@example.ie", "Research Lead"])
    assert isinstance(contact, Contact)
    assert contact.name == "Dr. Zoë Anne O'Brien PhD" and contact.title == "Research Lead"
    assert contact.attributes == {
        "Title": "Dr.",
        "First Name": "Zoë",
        "Middle Name": "Anne",
        "Last Name": "O'Brien",
        "Suffix": "PhD",
    }


def test_a_chinese_name_puts_the_family_name_first_without_a_space():
    contact = read(["First Name", "Last Name", "Email"], ["芳", "王", "wang.fang@example.cn"])
    assert isinstance(contact, Contact) and contact.name == "王芳"


def test_the_first_valid_address_of_all_candidates_is_the_email_the_others_are_kept():
    headers = ["Name", "E-mail Address", "E-mail 2 Address", "E-mail 3 Address"]
    contact = read(headers, ["Ada", "", "Ada@Example.com ; ada.home@example.org", "ADA@work.example.com"])
    assert isinstance(contact, Contact)
    assert contact.email == "ada@example.com"
    assert contact.attributes == {"emails": ["ada.home@example.org", "ada@work.example.com"]}


def test_a_row_whose_only_address_is_in_the_second_column_is_not_rejected():
    contact = read(["Name", "E-mail Address", "E-mail 2 Address"], ["Bob", "", "bob@example.com"])
    assert isinstance(contact, Contact) and contact.email == "bob@example.com"


def test_an_invalid_first_address_passed_over_is_kept_with_a_warning():
    contact = read(
        ["Name", "E-mail 1 - Value", "E-mail 2 - Value"], ["Bob", "bob(at)example", "bob@example.com"]
    )
    assert isinstance(contact, Contact) and contact.email == "bob@example.com"
    assert contact.attributes == {"emails": ["bob(at)example"]}
    assert [(w.field, w.value) for w in contact.warnings] == [("email", "bob(at)example")]
    assert contact.warnings[0].message.startswith("Not a valid email address")


def test_no_valid_address_rejects_the_row_with_the_first_ones_reason():
    problems = read(["Name", "Email", "Email 2"], ["Bob", "bob@@example.com", "nope"])
    assert problems == [Problem("email", problems[0].message, "bob@@example.com")]  # type: ignore[index]
    assert problems[0].message.startswith("Not a valid email address")  # type: ignore[index]
    assert read(["Name", "Email"], ["Bob", " "]) == [Problem("email", "Email is missing", " ")]


def test_the_display_name_of_an_address_names_a_contact_without_a_name():
    contact = read(["Name", "Email"], ["", "Ada Lovelace <ada@example.com>"])
    assert isinstance(contact, Contact) and (contact.name, contact.email) == (
        "Ada Lovelace",
        "ada@example.com",
    )


def test_an_address_on_a_typo_domain_is_stored_as_written_with_a_suggestion():
    contact = read(["Name", "Email"], ["Linus", "linus@gmial.com"])
    assert isinstance(contact, Contact) and contact.email == "linus@gmial.com"
    assert contact.warnings == (
        Problem("email", "Email may have a typo: did you mean linus@gmail.com?", "linus@gmial.com"),
    )


def test_phones_are_normalised_and_a_bad_one_is_kept_raw_with_a_warning():
    headers = ["Name", "Email", "Mobile Phone", "Business Phone"]
    contact = read(headers, ["Ada", "ada@example.com", "+44 20 7946 0000", "020 7946 0001"])
    assert isinstance(contact, Contact) and contact.phone == "+442079460000"
    assert contact.attributes == {"Business Phone": "020 7946 0001"} and contact.warnings == ()

    bad = read(headers, ["Ada", "ada@example.com", "call me", "+1 202 555 0123"])
    assert isinstance(bad, Contact) and bad.phone == "+12025550123"
    assert bad.attributes == {"Mobile Phone": "call me"}
    assert [(w.field, w.value) for w in bad.warnings] == [("phone", "call me")]


def test_a_national_number_needs_the_default_phone_region():
    headers = ["Name", "Email", "Phone"]
    without = read(headers, ["Ada", "ada@example.com", "020 7946 0000"])
    assert isinstance(without, Contact) and without.phone is None and without.warnings
    assert without.attributes == {"Phone": "020 7946 0000"}
    with_region = read(headers, ["Ada", "ada@example.com", "020 7946 0000"], region="GB")
    assert isinstance(with_region, Contact) and with_region.phone == "+442079460000"


def test_blank_cells_are_no_attribute_and_cells_past_the_header_are_kept():
    contact = read(["Name", "Email", "Notes", "City"], ["Ada", "ada@example.com", "  ", "London", "extra"])
    assert isinstance(contact, Contact)
    assert contact.attributes == {"City": "London", "Column 5": "extra"}


def test_a_json_record_keeps_its_extra_keys_and_nested_values_as_json():
    record = {
        "name": "Ada",
        "email": "ada@example.com",
        "phone": "+44 20 7946 0000",
        "tags": ["a", "b"],
        "n": 3,
    }
    contact = validate(record, find_columns(record))
    assert isinstance(contact, Contact)
    assert contact.phone == "+442079460000"
    assert contact.attributes == {"tags": '["a", "b"]', "n": "3"}


# -- round trips of the new fields through a file ------------------------------------------------------

_text = (
    st.text(
        st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\ufeff"),
        min_size=1,
        max_size=30,
    )
    .map(str.strip)
    .filter(bool)
)
_phones = st.sampled_from(
    [
        ("+44 20 7946 0000", "+442079460000"),
        ("+1 (202) 555-0123", "+12025550123"),
        ("+49 89 1234567", "+49891234567"),
    ]
)
_rows = st.lists(
    st.tuples(
        _text,  # name
        st.from_regex(r"[a-z0-9]{1,12}@example\.(com|org|de)", fullmatch=True),
        _phones,
        _text,  # company
        _text,  # title
        st.lists(_text, min_size=3, max_size=3),  # three extra columns
    ),
    min_size=1,
    max_size=8,
)
HEADERS = ["Name", "Email", "Phone", "Company", "Job Title", "Notes", "Birthday", "Favourite colour"]


def _table_rows(rows: list) -> list[list[str]]:
    return [
        [name, email, phone[0], company, title, *extra] for name, email, phone, company, title, extra in rows
    ]


def _read_back(data: bytes) -> list[Contact | list[Problem]]:
    table = read_rows(io.BytesIO(data), len(data))
    reader = ContactReader(find_columns(table.columns), table.columns, None)
    assert table.columns == HEADERS
    return [reader.read(row) for _, row in table.rows]


def _expected(rows: list) -> list[Contact]:
    return [
        Contact(name, email, phone[1], company, title, dict(zip(HEADERS[5:], extra, strict=True)))
        for name, email, phone, company, title, extra in rows
    ]


@given(rows=_rows)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_new_fields_round_trip_through_csv(rows: list):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADERS)
    writer.writerows(_table_rows(rows))
    assert _read_back(out.getvalue().encode()) == _expected(rows)


@given(rows=_rows)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_new_fields_round_trip_through_xlsx(rows: list):
    table = _table_rows(rows)
    # openpyxl writes a text starting with "=" as a formula, with no value for a reader to find
    assume(not any(cell.startswith("=") for row in table for cell in row))
    assert _read_back(xlsx_bytes([HEADERS, *table])) == _expected(rows)


def test_a_mapping_given_as_json_reads_the_same_rows():
    headers = ["Who", "Mail", "Tel", "Firm"]
    columns = Columns.from_dict({"name": "Who", "email": "Mail", "phone": "Tel"}, headers)
    contact = ContactReader(columns, headers, None).read(["Ada", "ada@example.com", "+44 20 7946 0000", "AE"])
    assert contact == Contact("Ada", "ada@example.com", "+442079460000", attributes={"Firm": "AE"})
