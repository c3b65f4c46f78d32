"""Phone numbers as E.164 (extensions kept), each distinct value parsed once, or a warning saying why not."""

from __future__ import annotations

import re
from functools import cache, lru_cache
from typing import Any, NamedTuple

import phonenumbers
from phonenumbers import NumberParseException, PhoneMetadata, PhoneNumberFormat, ValidationResult

from app.readers import cell_text

# A file's phone column repeats itself (switchboards, shared lines) and parsing is the costly part
# of a wide row: keep the last values, bounded so a file of a million distinct numbers stays small.
CACHE_SIZE = 32_768
# The longest number E.164 allows is 15 digits; with spacing, punctuation and an extension a
# written number stays well under this. Longer text is something else, and parsing it is wasted.
MAX_LENGTH = 64

_PARSE_REASONS = {
    NumberParseException.INVALID_COUNTRY_CODE: "its country code is not one in use",
    NumberParseException.TOO_SHORT_AFTER_IDD: "it is too short after its international prefix",
    NumberParseException.TOO_SHORT_NSN: "it is too short",
    NumberParseException.TOO_LONG: "it is too long",
}
_LENGTH_REASONS = {
    ValidationResult.INVALID_COUNTRY_CODE: "its country code is not one in use",
    ValidationResult.TOO_SHORT: "it is too short",
    ValidationResult.TOO_LONG: "it is too long",
    ValidationResult.INVALID_LENGTH: "it has the wrong number of digits",
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "it is too short: the area code or some digits are missing",
}


def normalise_phone(value: Any, region: str | None) -> tuple[str | None, str | None]:
    """``("+442079460000", None)``, ``(None, "why it is not a phone number")``, or ``(None, None)`` if blank.

    ``region`` (ISO 3166 code, as ``DEFAULT_PHONE_REGION``) reads numbers written without a
    country code; without one, only numbers that start with ``+`` and a country code normalise.
    """
    text = (value if type(value) is str else cell_text(value)).strip()
    if not text:
        return None, None
    return _normalise(text, region.upper() if region else None)


def is_region(code: str) -> bool:
    """Whether ``code`` is a region phone numbers can be read for (``GB``, not ``UK``)."""
    return code.upper() in phonenumbers.SUPPORTED_REGIONS


@lru_cache(maxsize=CACHE_SIZE)
def _normalise(text: str, region: str | None) -> tuple[str | None, str | None]:
    if len(text) > MAX_LENGTH:
        shown = text[:40] + "…"
        return None, f"Not a phone number: “{shown}” is too long to be one"
    if region is None and text.startswith("00"):
        # 00 is the international prefix nearly everywhere (and no national number starts so).
        text = "+" + text[2:]
    quick = quick_e164(text, region)
    return (quick, None) if quick is not None else careful_e164(text, region)


def careful_e164(text: str, region: str | None) -> tuple[str | None, str | None]:
    """The number in E.164 by ``phonenumbers``' full parse and validation, or a warning saying why not."""
    shown = text if len(text) <= 40 else text[:40] + "…"
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException as exc:
        national = not text.startswith(("+", "00"))
        if exc.error_type == NumberParseException.INVALID_COUNTRY_CODE and national and region is None:
            return None, (
                f"Phone number “{shown}” has no country code: write it with + and the country "
                "code (such as +44 20 7946 0000), or set a default region for numbers without one"
            )
        if exc.error_type == NumberParseException.NOT_A_NUMBER:
            return None, f"Not a phone number: “{shown}”: it holds no number to call"
        reason = _PARSE_REASONS.get(exc.error_type, "it cannot be read as a number")
        return None, f"Not a valid phone number: “{shown}”: {reason}"
    if not phonenumbers.is_valid_number(number):
        possible = phonenumbers.is_possible_number_with_reason(number)
        reason = _LENGTH_REASONS.get(possible)
        if reason is None:
            reason = f"no such number is in use under country code +{number.country_code}"
        return None, f"Not a valid phone number: “{shown}”: {reason}"
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    if number.extension:
        e164 += f";ext={number.extension}"
    return e164, None


# -- the fast path ------------------------------------------------------------------------------
# Most numbers in a file are written one of a few ways: "+44 20 7946 0000", "(415) 555-2671",
# "020 7946 0000 ext. 12". For those, ``quick_e164`` takes the steps ``phonenumbers.parse`` and
# ``is_valid_number`` take, in the same order and on the same metadata, with each region's patterns
# compiled once: a valid number costs a few microseconds instead of 20 to 60. Whatever falls outside
# these shapes (letters, other scripts' digits, an international prefix, a number that is not valid)
# is left to the careful path, which alone words the warnings.

# An optional +, ASCII digits with common separators, ending in a digit; an optional extension
# ("x 12", "ext. 12") that phonenumbers' own extension pattern reads the same way.
_SHAPE = re.compile(
    r"\(?(\+)?\(?([0-9](?:[0-9 ().\-/\xa0]*[0-9])?)(?: *(?:ext|x)\.? *([0-9]{1,9}))?", re.IGNORECASE
)
_NOT_DIGIT = re.compile(r"[^0-9]")
_NEVER = "(?!)"  # the pattern of a description without one: it matches nothing, as in phonenumbers
_MIN_NSN, _MAX_NSN = 2, 17  # phonenumbers' bounds on a national significant number
_LONGEST_CODE = 3  # country calling codes have one to three digits
# The lengths after which phonenumbers keeps a national prefix it could strip: the number had none.
_TOO_FEW_DIGITS = (
    ValidationResult.TOO_SHORT,
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY,
    ValidationResult.INVALID_LENGTH,
)


class _Plan(NamedTuple):
    """What the fast path needs of one region's metadata, compiled once."""

    country_code: int
    general: re.Pattern[str]  # the general pattern alone, as national prefixes are checked
    lengths: tuple[int, ...]  # the general possible lengths, sorted in the metadata (none: not sure)
    local_lengths: tuple[int, ...]
    valid: re.Pattern[str]  # general pattern and lengths, then any number type with its lengths
    national_prefix: re.Pattern[str] | None
    transform: str | None
    international_prefix: re.Pattern[str] | None
    leading_digits: re.Pattern[str] | None


def _desc_pattern(desc: Any) -> str | None:
    """A number description as one expression: its possible lengths, then its pattern, to the end."""
    if desc is None or not desc.national_number_pattern:
        return None
    lengths = "|".join(f"[0-9]{{{n}}}" for n in desc.possible_length if n >= 0)
    if desc.possible_length and not lengths:
        return None  # only -1: no number of this type exists
    ahead = f"(?=(?:{lengths})\\Z)" if lengths else ""
    return f"{ahead}(?:{desc.national_number_pattern})\\Z"


@cache
def _plan(country_code: int, region: str) -> _Plan | None:
    """The compiled metadata of a region (``001`` with the country code: a non-geographic one)."""
    meta = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
    if meta is None:
        return None
    # The number types phonenumbers tries in turn; mobile only when its pattern is not the fixed line's.
    types = [
        meta.premium_rate,
        meta.toll_free,
        meta.shared_cost,
        meta.voip,
        meta.personal_number,
        meta.pager,
        meta.uan,
        meta.voicemail,
        meta.fixed_line,
    ]
    if not meta.same_mobile_and_fixed_line_pattern:
        types.append(meta.mobile)
    general = _desc_pattern(meta.general_desc)
    kinds = [p for p in map(_desc_pattern, types) if p is not None]
    valid = f"(?={general})(?:{'|'.join(kinds)})" if general and kinds else _NEVER

    def compiled(pattern: str | None) -> re.Pattern[str] | None:
        return re.compile(pattern) if pattern else None

    return _Plan(
        meta.country_code,
        re.compile(meta.general_desc.national_number_pattern or _NEVER),
        tuple(meta.general_desc.possible_length),
        tuple(meta.general_desc.possible_length_local_only),
        re.compile(valid),
        compiled(meta.national_prefix_for_parsing),
        meta.national_prefix_transform_rule or None,
        compiled(meta.international_prefix),
        compiled(meta.leading_digits),
    )


def _region_plan(region: str) -> _Plan | None:
    return _plan(phonenumbers.country_code_for_region(region), region)


def quick_e164(text: str, region: str | None) -> str | None:
    """The number in E.164 when it is written in a common shape and valid; None when not sure.

    Gives exactly what ``careful_e164`` gives whenever it gives a number.
    """
    shape = _SHAPE.fullmatch(text)
    if shape is None:
        return None
    plus, main, extension = shape.groups()
    digits = main.replace(" ", "")
    if not digits.isdigit():
        digits = _NOT_DIGIT.sub("", digits)
    if len(digits) < 3:  # phonenumbers' least viable number; shorter ones are never valid anyway
        return None
    if plus:
        found = _country_code(digits)
        if found is None:
            return None
        country_code, national = found
        plan = _plan(country_code, phonenumbers.region_code_for_country_code(country_code))
    else:
        if region not in phonenumbers.SUPPORTED_REGIONS:
            return None  # no region to read a national number by: the careful path says so
        plan = _region_plan(region)  # type: ignore[arg-type]
        if plan is None or not plan.lengths:
            return None
        if plan.international_prefix and plan.international_prefix.match(digits):
            return None  # "00 44 20 ..." or "011 44 ...": left to the careful path
        country_code, national = plan.country_code, digits
        code = str(country_code)
        if digits.startswith(code):  # "1 415 555 2671": the country code, written without its +
            rest = _strip_national_prefix(digits[len(code) :], plan)
            if rest is None:
                return None
            # phonenumbers takes it for one if that makes a number of what was none, or of one too long.
            general = plan.general
            better = not general.fullmatch(digits) and general.fullmatch(rest)
            if better or _length(digits, plan) == ValidationResult.TOO_LONG:
                national = rest
                plan = _plan(country_code, phonenumbers.region_code_for_country_code(country_code))
    if plan is None or not plan.lengths or len(national) < _MIN_NSN:
        return None
    stripped = _strip_national_prefix(national, plan)
    if stripped is None:
        return None
    if _length(stripped, plan) not in _TOO_FEW_DIGITS:  # else the number had no national prefix
        national = stripped
    if len(national) > _MAX_NSN or not _is_valid(country_code, national):
        return None
    e164 = f"+{country_code}{national}"
    return f"{e164};ext={extension}" if extension else e164


def _country_code(digits: str) -> tuple[int, str] | None:
    """The country calling code the digits after a + start with, and the rest; as phonenumbers finds it."""
    if len(digits) <= _MIN_NSN or digits[0] == "0":
        return None
    codes = _codes()
    for length in range(1, _LONGEST_CODE + 1):
        code = codes.get(digits[:length])
        if code is not None:
            return code, digits[length:]
    return None


@cache
def _codes() -> dict[str, int]:
    """The country calling codes in use, by their digits."""
    return {str(code): code for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE}


def _strip_national_prefix(number: str, plan: _Plan) -> str | None:
    """The number without its national prefix (0, 1, or a region's rule), as phonenumbers strips it.

    None where the metadata asks for what the fast path does not do.
    """
    prefix = plan.national_prefix.match(number) if plan.national_prefix and number else None
    if prefix is None:
        return number
    groups = prefix.groups()
    if plan.transform and not groups:
        return None
    if plan.transform and groups[-1] is not None:
        stripped = plan.national_prefix.sub(plan.transform, number, count=1)  # type: ignore[union-attr]
    else:
        stripped = number[prefix.end() :]
    if plan.general.fullmatch(number) and not plan.general.fullmatch(stripped):
        return number
    return stripped


def _length(number: str, plan: _Plan) -> int:
    """The ``ValidationResult`` of the number's length against the region's possible lengths."""
    size, lengths = len(number), plan.lengths
    if size in plan.local_lengths:
        return ValidationResult.IS_POSSIBLE_LOCAL_ONLY
    if size == lengths[0]:
        return ValidationResult.IS_POSSIBLE
    if size < lengths[0]:
        return ValidationResult.TOO_SHORT
    if size > lengths[-1]:
        return ValidationResult.TOO_LONG
    return ValidationResult.IS_POSSIBLE if size in lengths else ValidationResult.INVALID_LENGTH


@cache
def _plans_of(country_code: int) -> tuple[_Plan | None, tuple[_Plan, ...]]:
    """The plan of a code's only region, or the plans of the regions that share it, in phonenumbers' order."""
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE[country_code]
    if len(regions) == 1:
        return _plan(country_code, regions[0]), ()
    return None, tuple(plan for plan in map(_region_plan, regions) if plan is not None)


def _is_valid(country_code: int, national: str) -> bool:
    """Whether the number is valid, in the region phonenumbers picks among those sharing the code."""
    only, shared = _plans_of(country_code)
    if only is not None:
        return only.country_code == country_code and bool(only.valid.fullmatch(national))
    for plan in shared:
        if plan.leading_digits is None:
            if plan.valid.fullmatch(national):  # picked for being valid here, so valid
                return plan.country_code == country_code
        elif plan.leading_digits.match(national):
            return plan.country_code == country_code and bool(plan.valid.fullmatch(national))
    return False
