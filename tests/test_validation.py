"""Validation: which columns hold a contact, and which rows make one."""

from __future__ import annotations

import pytest

from app.rows import validate
from app.validation import (
    EMAIL_MAX,
    NAME_MAX,
    Columns,
    Contact,
    Problem,
    check_email,
    check_name,
    find_columns,
    is_blank,
    plain_contact,
)


@pytest.mark.parametrize(
    "header",
    [
        "Name",
        "name",
        "NAME",
        "Full Name",
        "full_name",
        "FullName",
        " Full-Name ",
        "Contact Name",
        "contact.name",
    ],
)
def test_name_header_synonyms(header: str):
    assert find_columns(["ID", header, "Email"]).name == header


@pytest.mark.parametrize(
    "header",
    ["Email", "E-mail", "e_mail", "EMAIL ADDRESS", "Email Address", "email-address", "Mail", " mail "],
)
def test_email_header_synonyms(header: str):
    assert find_columns(["Name", header, "Phone"]).email == header


def test_first_and_last_name_columns():
    columns = find_columns(["First Name", "Last_Name", "E-Mail", "Company"])
    assert columns == Columns(
        emails=("E-Mail",), parts=(("first", "First Name"), ("last", "Last_Name")), company="Company"
    )
    record = {"First Name": " Ada ", "Last_Name": "Lovelace", "E-Mail": "ada@example.com", "Company": "x"}
    parts = {"First Name": "Ada", "Last_Name": "Lovelace"}  # the parts stay beside the name
    assert validate(record, columns) == Contact(
        "Ada Lovelace", "ada@example.com", company="x", attributes=parts
    )
    alone = Contact("Ada", "ada@example.com", company="x", attributes={"First Name": "Ada"})
    assert validate({**record, "Last_Name": ""}, columns) == alone


def test_missing_columns_are_none():
    assert find_columns(["Phone", "City"]) == Columns(phones=("Phone",), extra=("City",))
    assert find_columns(["Name", "Phone"]).email is None


def test_the_first_matching_column_wins_and_further_email_columns_are_candidates():
    columns = find_columns(["Name", "Email", "Full Name", "Mail", "Notes"])
    assert (columns.name, columns.email, columns.emails) == ("Name", "Email", ("Email", "Mail"))
    assert columns.extra == ("Full Name", "Notes")
    record = {"Name": "Ada", "Email": "ada@example.com", "Full Name": "", "Mail": "bad", "Notes": "x" * 5000}
    kept = {"Notes": "x" * 5000, "emails": ["bad"]}  # nothing is dropped; a blank cell is no value
    assert validate(record, columns) == Contact("Ada", "ada@example.com", attributes=kept)


@pytest.mark.parametrize(
    "email",
    [
        "ada@example.com",
        "a.b+tag@sub.example.co.uk",
        "o'hara@example.ie",
        "x@example.museum",
        "user_name-1@ex-ample.org",
        "1234@example.com",
    ],
)
def test_valid_emails(email: str):
    assert check_email(email) == (email, None)


@pytest.mark.parametrize(
    "email",
    [
        "plain",
        "@example.com",
        "ada@",
        "ada@example",
        "ada example@example.com",
        "ada@exa mple.com",
        "ada@@example.com",
        ".ada@example.com",
        "ada.@example.com",
        "a..da@example.com",
        "ada@-example.com",
        "ada@example..com",
        "ada@example.c",
        "ad,a@example.com",
        "ada<@example.com",
        "x" * 65 + "@example.com",
    ],
)
def test_invalid_emails(email: str):
    cleaned, message = check_email(email)
    assert cleaned is None
    assert message.startswith("Not a valid email address")


def test_an_idn_domain_in_ace_is_stored_in_its_unicode_form():
    assert check_email("a@xn--bcher-kva.example") == ("a@bücher.example", None)


def test_email_is_trimmed_and_lower_cased():
    assert check_email("  Ada.Lovelace@Example.COM \t") == ("ada.lovelace@example.com", None)


def test_email_length_limit():
    label = "e" * 63  # the longest a domain label may be
    at_limit = "a" * 64 + "@" + label + "." + label + "." + "e" * 57 + ".com"
    assert len(at_limit) == EMAIL_MAX
    assert check_email(at_limit) == (at_limit, None)
    cleaned, message = check_email("a" + at_limit)
    assert cleaned is None and "longer than" in message


def test_missing_email():
    for value in (None, "", "   "):
        assert check_email(value) == (None, "Email is missing")


def test_name_length_and_trimming():
    assert check_name("  Ada Lovelace  ") == ("Ada Lovelace", None)
    assert check_name("A") == ("A", None)
    assert check_name("n" * NAME_MAX) == ("n" * NAME_MAX, None)
    assert check_name(" " + "n" * NAME_MAX + " ") == ("n" * NAME_MAX, None)
    assert check_name("n" * (NAME_MAX + 1)) == (None, f"Name is longer than {NAME_MAX} characters")
    assert check_name("   ") == (None, "Name is missing")
    assert check_name(None) == (None, "Name is missing")


def test_numbers_from_a_spreadsheet_become_text():
    assert check_name(12345.0) == ("12345", None)
    assert check_name(12345) == ("12345", None)
    assert check_name(1.5) == ("1.5", None)
    assert check_email(1.5)[0] is None


def test_validate_reports_every_problem_with_field_and_raw_value():
    columns = Columns(emails=("E-mail",), name="Name")
    outcome = validate({"Name": "", "E-mail": " not an email "}, columns)
    assert outcome == [
        Problem("name", "Name is missing", ""),
        Problem("email", "Not a valid email address: it has a space inside", " not an email "),
    ]


def test_validate_a_record_without_the_email_key():
    outcome = validate({"name": "Ada"}, find_columns(["name"]))
    assert outcome == [Problem("email", "Email is missing", None)]


def test_a_long_raw_value_is_cut_for_display():
    outcome = validate({"Name": "Ada", "Email": "x" * 5000}, Columns(emails=("Email",), name="Name"))
    assert isinstance(outcome, list)
    assert len(outcome[0].value) == 1001 and outcome[0].value.endswith("…")


def test_blank_rows():
    assert is_blank({"a": "", "b": "  ", "c": None})
    assert is_blank({})
    assert not is_blank({"a": "", "b": 0.0})
    assert not is_blank({"a": " x "})


@pytest.mark.parametrize(
    ("name", "email"),
    [
        ("", "ada@example.com"),
        ("Ada", "not an email"),
        ("Ada", None),
        (None, "ada@example.com"),
        ("Ada", 42.0),
        ("x" * (NAME_MAX + 1), "ada@example.com"),
    ],
)
def test_a_row_that_is_not_plainly_valid_goes_to_the_checks_that_explain(name, email) -> None:
    assert plain_contact(name, email) is None
    problems = validate({"Name": name, "Email": email}, Columns(emails=("Email",), name="Name"))
    assert isinstance(problems, list)
    assert problems


def test_plainly_valid_text_makes_the_same_contact_as_the_full_checks() -> None:
    columns = Columns(emails=("Email",), name="Name")
    record = {"Name": "  Ada Lovelace ", "Email": " Ada@Example.COM "}
    assert validate(record, columns) == Contact("Ada Lovelace", "ada@example.com")
    # Once the full checks found the domain free of typos, its plain addresses take the fast path.
    assert plain_contact(record["Name"], record["Email"]) == validate(record, columns)
