"""Phone numbers: E.164 with extensions, national numbers only with a region, a warning saying why not."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app import phones
from app.phones import is_region, normalise_phone
from tests.exports import PEOPLE


@pytest.mark.parametrize(
    ("value", "region", "stored"),
    [
        ("+44 20 7946 0000", None, "+442079460000"),
        ("+44 (0)20 7946 0000", None, "+442079460000"),
        ("020 7946 0000", "GB", "+442079460000"),
        ("020 7946 0000", "gb", "+442079460000"),
        ("0049 89 1234567", "GB", "+49891234567"),
        ("0049 89 1234567", None, "+49891234567"),
        ("1-800-FLOWERS", "US", "+18003569377"),
        ("+49 89 1234567", "US", "+49891234567"),
        ("(415) 555-2671", "US", "+14155552671"),
        ("415.555.2671", "US", "+14155552671"),
        ("+1 415 555 2671", None, "+14155552671"),
        ("tel:+1-415-555-2671", None, "+14155552671"),
        ("+353 1 234 5678 ext. 12", None, "+35312345678;ext=12"),
        ("+1 (415) 555-2671 x 99", None, "+14155552671;ext=99"),
        ("+1 415 555 2671 #7", None, "+14155552671;ext=7"),
        ("+86 10 1234 5678", None, "+861012345678"),
        ("+30 21 0123 4567", None, "+302101234567"),
        ("+34 912 34 56 78", None, "+34912345678"),
        ("\u202d+44 20 7946 0000\u202c", None, "+442079460000"),
        (4420794600000.0, "GB", None),
    ],
)
def test_numbers_are_stored_in_e164(value: object, region: str | None, stored: str | None) -> None:
    number, warning = normalise_phone(value, region)
    assert number == stored
    assert (warning is None) == (stored is not None)


@pytest.mark.parametrize("value", ["", "   ", None])
def test_a_blank_cell_is_no_number_and_no_warning(value: object) -> None:
    assert normalise_phone(value, "GB") == (None, None)


@pytest.mark.parametrize(
    ("value", "region", "warning"),
    [
        (
            "020 7946 0000",
            None,
            "Phone number “020 7946 0000” has no country code: write it with + and the country code "
            "(such as +44 20 7946 0000), or set a default region for numbers without one",
        ),
        (
            "+99 123 4567",
            None,
            "Not a valid phone number: “+99 123 4567”: its country code is not one in use",
        ),
        ("call me", "GB", "Not a phone number: “call me”: it holds no number to call"),
        (
            "+44 20 79",
            None,
            "Not a valid phone number: “+44 20 79”: it is too short: "
            "the area code or some digits are missing",
        ),
        ("+44 2", None, "Not a valid phone number: “+44 2”: it is too short"),
        (
            "+44 20 7946 0000 0000 0000",
            None,
            "Not a valid phone number: “+44 20 7946 0000 0000 0000”: it is too long",
        ),
        (
            "+1 555 123 4567",
            None,
            "Not a valid phone number: “+1 555 123 4567”: no such number is in use under country code +1",
        ),
        ("9" * 80, "GB", f"Not a phone number: “{'9' * 40}…” is too long to be one"),
    ],
)
def test_a_bad_number_gets_a_warning_saying_why(value: str, region: str | None, warning: str) -> None:
    assert normalise_phone(value, region) == (None, warning)


def test_the_same_value_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    phones._normalise.cache_clear()
    calls: list[str] = []
    real_parse = phonenumbers.parse

    def counting_parse(text: str, region: str | None = None, *args: object) -> phonenumbers.PhoneNumber:
        calls.append(text)
        return real_parse(text, region, *args)

    monkeypatch.setattr(phonenumbers, "parse", counting_parse)
    column = ["+44 20 7946 0000", "+44 20 7946 0001", " +44 20 7946 0000 "] * 100
    results = [normalise_phone(value, "GB") for value in column]
    assert results[0] == results[2] == ("+442079460000", None)
    assert sorted(calls) == ["+44 20 7946 0000", "+44 20 7946 0001"]


def test_the_cache_is_bounded() -> None:
    assert phones._normalise.cache_info().maxsize == phones.CACHE_SIZE


def test_regions() -> None:
    assert is_region("GB") and is_region("de")
    assert not is_region("UK")


@pytest.mark.parametrize("person", PEOPLE, ids=lambda p: p["first"])
def test_the_export_fixtures_phones_normalise(person: dict) -> None:
    number, warning = normalise_phone(person["phone"], None)
    assert warning is None and number and number.startswith("+")


_REGIONS = sorted(r for r in phonenumbers.SUPPORTED_REGIONS if phonenumbers.example_number(r) is not None)


@given(st.sampled_from(_REGIONS), st.sampled_from(["NATIONAL", "INTERNATIONAL", "E164", "RFC3966"]))
def test_every_way_of_writing_a_number_gives_one_e164(region: str, style: str) -> None:
    example = phonenumbers.example_number(region)
    written = phonenumbers.format_number(example, getattr(phonenumbers.PhoneNumberFormat, style))
    expected = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
    assert normalise_phone(written, region) == (expected, None)
    if style != "NATIONAL":
        assert normalise_phone(written, None) == (expected, None)


@given(st.text(max_size=40), st.sampled_from([None, "GB", "US", "DE"]))
def test_any_text_gets_an_answer(text: str, region: str | None) -> None:
    number, warning = normalise_phone(text, region)
    if not text.strip():
        assert (number, warning) == (None, None)
    else:
        assert (number is None) != (warning is None)
        if number:
            assert number.startswith("+") and number[1:].split(";ext=")[0].isdigit()
