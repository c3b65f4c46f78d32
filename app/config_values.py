"""Reading one setting's text: sizes, durations, numbers, switches, backoffs and rates, each
mistake named and collected, so that every wrong setting is reported at once."""

from __future__ import annotations

import re

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$", re.IGNORECASE)
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class ConfigError(Exception):
    """One or more settings are wrong; the message lists every mistake."""


def parse_size(text: str) -> int:
    """Read a byte size such as ``6291456``, ``6MB``, ``6MiB`` or ``1GB``."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a size (examples: 6291456, 6MiB, 1GB)")
    number, unit = match.groups()
    unit = (unit or "").lower()
    base = 1024 if "i" in unit else 1000
    power = {"": 0, "b": 0, "k": 1, "m": 2, "g": 3, "t": 4}[unit.rstrip("ib")[:1]]
    return int(float(number) * base**power)


def parse_duration(text: str) -> float:
    """Read a duration in seconds, such as ``86400``, ``90s``, ``30m``, ``24h`` or ``7d``."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration (examples: 86400, 90s, 30m, 24h, 7d)")
    number, unit = match.groups()
    return float(number) * _SECONDS[(unit or "").lower()]


def read_bool(name: str, text: str, errors: list[str]) -> bool:
    """A switch: true, yes, on or 1; false, no, off or 0."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    errors.append(f"{name} must be true or false, not {text!r}")
    return False


def read_int(name: str, text: str, errors: list[str], minimum: int = 1, maximum: int | None = None) -> int:
    """A whole number between ``minimum`` and ``maximum``."""
    try:
        value = int(text)
    except ValueError:
        errors.append(f"{name} must be a whole number, not {text!r}")
        return minimum
    if value < minimum:
        errors.append(f"{name} must be at least {minimum}, not {value}")
    elif maximum is not None and value > maximum:
        errors.append(f"{name} must be at most {maximum}, not {value}")
    return value


def read_size(name: str, text: str, errors: list[str]) -> int:
    """A size in bytes, more than 0 (see parse_size)."""
    try:
        value = parse_size(text)
    except ValueError as exc:
        errors.append(f"{name}: {exc}")
        return 1
    if value < 1:
        errors.append(f"{name} must be more than 0 bytes")
    return value


def read_duration(name: str, text: str, errors: list[str]) -> float:
    """A duration in seconds, longer than 0 (see parse_duration)."""
    try:
        value = parse_duration(text)
    except ValueError as exc:
        errors.append(f"{name}: {exc}")
        return 1.0
    if value <= 0:
        errors.append(f"{name} must be longer than 0 seconds")
    return value


def read_backoff(name: str, text: str, errors: list[str]) -> tuple[int, ...]:
    """Seconds to wait before each retry, such as ``5,30,120``: one retry per number."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        errors.append(f"{name} must be whole seconds separated by commas (example: 5,30,120), not {text!r}")
        return (1,)
    if any(value < 0 for value in values):
        errors.append(f"{name} cannot hold a negative number of seconds: {text!r}")
    return values


def read_rate(name: str, text: str, errors: list[str]) -> str:
    """A rate limit such as ``600/minute``, as the limits library reads it."""
    from limits import parse_many

    try:
        parse_many(text)
    except ValueError:
        errors.append(f"{name} must be a rate such as 600/minute or 10/second, not {text!r}")
    return text
