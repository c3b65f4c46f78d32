"""Phone numbers: E.164 with extensions, national numbers only with a region, a warning saying why not."""

from __future__ import annotations

import random
from collections.abc import Iterator

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
    quick: list[str] = []
    careful: list[str] = []
    real_quick, real_parse = phones.quick_e164, phonenumbers.parse

    def counting_quick(text: str, region: str | None) -> str | None:
        quick.append(text)
        return real_quick(text, region)

    def counting_parse(text: str, region: str | None = None, *args: object) -> phonenumbers.PhoneNumber:
        careful.append(text)
        return real_parse(text, region, *args)

    monkeypatch.setattr(phones, "quick_e164", counting_quick)
    monkeypatch.setattr(phonenumbers, "parse", counting_parse)
    # The first takes the fast path, the second (a tel: URI) the careful one.
    column = ["+44 20 7946 0000", "tel:+44-20-7946-0001", " +44 20 7946 0000 "] * 100
    results = [normalise_phone(value, "GB") for value in column]
    assert results[0] == results[2] == ("+442079460000", None)
    assert results[1] == ("+442079460001", None)
    assert sorted(quick) == ["+44 20 7946 0000", "tel:+44-20-7946-0001"]
    assert careful == ["tel:+44-20-7946-0001"]


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


# -- the fast path against the careful one ------------------------------------------------------

_TYPES = [
    phonenumbers.PhoneNumberType.FIXED_LINE,
    phonenumbers.PhoneNumberType.MOBILE,
    phonenumbers.PhoneNumberType.TOLL_FREE,
    phonenumbers.PhoneNumberType.PREMIUM_RATE,
    phonenumbers.PhoneNumberType.SHARED_COST,
    phonenumbers.PhoneNumberType.VOIP,
    phonenumbers.PhoneNumberType.PERSONAL_NUMBER,
    phonenumbers.PhoneNumberType.PAGER,
    phonenumbers.PhoneNumberType.UAN,
    phonenumbers.PhoneNumberType.VOICEMAIL,
]
_EXTENSIONS = ["", "", "", " ext. 12", " x 99", " X1234", " ext 123456789", " x 1234567890", " #7", ";ext=5"]
_SEPARATORS = [" ", "-", ".", "", "/", "\xa0", " - "]


def _examples() -> Iterator[tuple[str, phonenumbers.PhoneNumber]]:
    """Every region's example number of every type, its invalid example, and the non-geographic ones."""
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in _TYPES:
            if (number := phonenumbers.example_number_for_type(region, kind)) is not None:
                yield region, number
        if (number := phonenumbers.invalid_example_number(region)) is not None:
            yield region, number
    for code in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        if (number := phonenumbers.example_number_for_non_geo_entity(code)) is not None:
            yield "001", number


def _digits(rng: random.Random, national: str) -> str:
    """The digits as written, or as mistyped: one short or long, one changed, leading zeros, random."""
    changes = [
        lambda: national,
        lambda: national[:-1],
        lambda: national + str(rng.randrange(10)),
        lambda: national[: (i := rng.randrange(len(national)))] + str(rng.randrange(10)) + national[i + 1 :],
        lambda: "0" + national,
        lambda: "00" + national,
        lambda: national[: rng.randrange(1, 4)],
        lambda: "".join(str(rng.randrange(10)) for _ in range(rng.randrange(1, 19))),
        lambda: national + "".join(str(rng.randrange(10)) for _ in range(rng.randrange(2, 6))),
    ]
    return rng.choice(changes)()


def _spaced(rng: random.Random, digits: str) -> str:
    """The digits in groups, with one kind of separator, the first group sometimes in brackets."""
    groups, at = [], 0
    while at < len(digits):
        step = rng.randrange(1, 5)
        groups.append(digits[at : at + step])
        at += step
    separator = rng.choice(_SEPARATORS)
    if len(groups) > 1 and rng.random() < 0.2:
        return f"({groups[0]}) " + separator.join(groups[1:])
    return separator.join(groups)


def _written(rng: random.Random, region: str, number: phonenumbers.PhoneNumber) -> str:
    """One way a person could write the number, or a number near it."""
    code = str(number.country_code)
    meta = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(number.country_code, region)
    digits = _spaced(rng, _digits(rng, phonenumbers.national_significant_number(number)))
    international = (meta.preferred_international_prefix or meta.international_prefix or "00")[:4]
    shapes = [
        f"+{code} {digits}",
        f"+{code}{digits}",
        f"{meta.national_prefix or ''}{digits}",  # the trunk prefix (0, 1, 8...)
        digits,
        f"+{code} (0){digits}",
        f"{international} {code} {digits}",
        f"{code}{digits}",  # the country code without its +
        f"{meta.national_prefix or '0'}{meta.national_prefix or '0'}{digits}",
    ]
    text = rng.choice(shapes)
    if rng.random() < 0.05:  # a letter or three (vanity numbers, typos)
        text = text.replace(str(rng.randrange(10)), rng.choice(["A", "O", "FLOWERS"]), 1)
    if rng.random() < 0.03:
        text = "+" + text
    return text + rng.choice(_EXTENSIONS)


def _cases() -> Iterator[tuple[str, str | None]]:
    """About 45,000 numbers of every region, in its formats and near misses, each with a default region."""
    rng = random.Random(18)
    regions = sorted(phonenumbers.SUPPORTED_REGIONS)
    for region, number in _examples():
        own = region if region != "001" else None
        for style in ("E164", "INTERNATIONAL", "NATIONAL", "RFC3966"):
            written = phonenumbers.format_number(number, getattr(phonenumbers.PhoneNumberFormat, style))
            yield written, own
            yield written, None
            yield written, rng.choice(regions)
        for _ in range(20):
            yield _written(rng, region, number), rng.choice([own, None, rng.choice(regions), "GB", "US"])


def test_the_fast_path_gives_the_careful_answer_whenever_it_answers() -> None:
    answered = valid = 0
    for text, region in _cases():
        quick = phones.quick_e164(text, region)
        careful, warning = phones.careful_e164(text, region)
        assert quick is None or (quick, warning) == (careful, None), (text, region)
        answered += quick is not None
        valid += careful is not None
    # Not an empty promise: most valid numbers are written in the shapes the fast path reads.
    assert answered > 8_000 and answered / valid > 0.6


@pytest.mark.parametrize(
    "style", [phonenumbers.PhoneNumberFormat.E164, phonenumbers.PhoneNumberFormat.INTERNATIONAL]
)
def test_the_fast_path_reads_every_valid_example_with_a_country_code(style: int) -> None:
    for _region, number in _examples():
        if phonenumbers.is_valid_number(number):
            written = phonenumbers.format_number(number, style)
            assert phones.quick_e164(written, None) == phonenumbers.format_number(
                number, phonenumbers.PhoneNumberFormat.E164
            ), written


def _leading_zeros(number: phonenumbers.PhoneNumber, national: str) -> phonenumbers.PhoneNumber:
    """The number with the leading zeros of its national digits, as phonenumbers.parse records them."""
    zeros = len(national) - len(national.lstrip("0"))
    if len(national) > 1 and zeros:
        number.italian_leading_zero = True
        number.number_of_leading_zeros = min(zeros, len(national) - 1)
    return number


def test_the_fast_paths_validity_is_phonenumbers_validity() -> None:
    rng = random.Random(4)
    checked = valid = 0
    for _region, example in _examples():
        code = example.country_code
        national = phonenumbers.national_significant_number(example)
        for _ in range(40):
            digits = _digits(rng, national)
            number = _leading_zeros(
                phonenumbers.PhoneNumber(country_code=code, national_number=int(digits)), digits
            )
            expected = phonenumbers.is_valid_number(number)
            assert phones._is_valid(code, digits) == expected, (code, digits)
            checked += 1
            valid += expected
    assert valid > 5_000 and checked - valid > 5_000


_WRITTEN = st.text(alphabet="0123456789 +-.()/xXet#;=\xa0", min_size=1, max_size=30)


@given(
    _WRITTEN, st.sampled_from([None, "GB", "US", "DE", "FR", "IT", "AR", "MX", "BR", "IN", "JP", "RU", "AU"])
)
def test_any_digits_and_separators_get_the_careful_answer(text: str, region: str | None) -> None:
    quick = phones.quick_e164(text, region)
    assert quick is None or phones.careful_e164(text, region) == (quick, None)
