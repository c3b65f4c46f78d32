"""A vCard content line taken apart (group, name, parameters, value) and its value decoded."""

from __future__ import annotations

import binascii
import re
from typing import NamedTuple

_ESCAPES = re.compile(r"\\(.)", re.DOTALL)
_ESCAPED = {"n": "\n", "N": "\n", ",": ",", ";": ";", "\\": "\\", ":": ":"}
# 2.1 writers escape the separators of a compound value and the backslash itself, nothing else:
# "C:\new" in a 2.1 note is a path, not a line break.
_ESCAPED_21 = {";": ";", ",": ",", "\\": "\\"}


class Property(NamedTuple):
    """One content line: ``group.NAME;PARAM=a,b:value``, its value still bytes."""

    group: str
    name: str
    params: dict[str, list[str]]
    value: bytes


def binary_value(before_colon: bytes) -> bool:
    """Whether the parameters say the value is base64 (binary data, kept by no contact field)."""
    return b"ENCODING=B" in before_colon or b"BASE64" in before_colon


def parse_property(line: bytes) -> Property | None:
    """``group.NAME;PARAM=a,b;BARE:value`` taken apart; None for a line that is none of that."""
    colon = _value_start(line)
    if colon < 0:
        return None
    head = line[:colon].decode("utf-8", errors="replace")
    parts = _split_params(head)
    group, _, name = parts[0].strip().rpartition(".")
    name = name.strip().upper()
    if not name or not re.fullmatch(r"[A-Z0-9-]+", name):
        return None
    params: dict[str, list[str]] = {}
    for param in parts[1:]:
        key, eq, value = param.partition("=")
        if not eq:  # 2.1: ;HOME;PREF;QUOTED-PRINTABLE
            key, value = _bare_param(key.strip())
        values = [v.strip().strip('"') for v in value.split(",")] if value else []
        params.setdefault(key.strip().upper(), []).extend(values)
    return Property(group.strip().lower(), name, params, line[colon + 1 :])


def _value_start(line: bytes) -> int:
    """Where the value starts: after the first colon that is not inside a quoted parameter."""
    colon = line.find(b":")
    if colon < 0 or b'"' not in line[:colon]:
        return colon
    quoted = False
    for i, byte in enumerate(line):
        if byte == 0x22:
            quoted = not quoted
        elif byte == 0x3A and not quoted:
            return i
    return -1


def _split_params(head: str) -> list[str]:
    parts, start, quoted = [], 0, False
    for i, ch in enumerate(head):
        if ch == '"':
            quoted = not quoted
        elif ch == ";" and not quoted:
            parts.append(head[start:i])
            start = i + 1
    parts.append(head[start:])
    return parts


def _bare_param(word: str) -> tuple[str, str]:
    upper = word.upper()
    if upper in ("QUOTED-PRINTABLE", "BASE64", "8BIT", "7BIT"):
        return "ENCODING", upper
    if upper.startswith("CHARSET"):
        return "CHARSET", word.partition("=")[2]
    return "TYPE", word


def decoded(prop: Property) -> str:
    """The value's text: QUOTED-PRINTABLE undone, bytes read in the CHARSET the card names."""
    raw = prop.value
    encoding = [e.upper() for e in prop.params.get("ENCODING", [])]
    if "QUOTED-PRINTABLE" in encoding:
        raw = binascii.a2b_qp(raw)
    charset = (prop.params.get("CHARSET") or ["utf-8"])[0] or "utf-8"
    try:
        text = raw.decode(charset)
    except (LookupError, UnicodeDecodeError):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("cp1252", errors="replace")
    return text.replace("\r\n", "\n")


def unescape(text: str, version: str) -> str:
    """Backslash escapes undone (newline, comma, semicolon, backslash, Google's colon; 2.1 fewer)."""
    if "\\" not in text:
        return text
    table = _ESCAPED_21 if version == "2.1" else _ESCAPED
    return _ESCAPES.sub(lambda m: table.get(m.group(1), m.group(0)), text)


def components(text: str, version: str) -> list[str]:
    """A structured value (N, ADR, ORG) split at its unescaped semicolons."""
    parts, start, i = [], 0, 0
    while i < len(text):
        if text[i] == "\\":
            i += 2  # the escaped character, whatever it is, is no separator
            continue
        if text[i] == ";":
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return [unescape(part, version).strip() for part in parts]
