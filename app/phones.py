"""Phone numbers as E.164 (extensions kept), each distinct value parsed once, or a warning saying why not."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult

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
    shown = text if len(text) <= 40 else text[:40] + "…"
    if len(text) > MAX_LENGTH:
        return None, f"Not a phone number: “{shown}” is too long to be one"
    if region is None and text.startswith("00"):
        # 00 is the international prefix nearly everywhere (and no national number starts so).
        text = "+" + text[2:]
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
