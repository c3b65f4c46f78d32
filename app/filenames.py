"""Filenames as people give them: any language, cleaned on arrival, sent back safely (RFC 6266).

Control characters are stripped when a name arrives (multipart, X-Filename, tus metadata); a
download names its file with an ASCII ``filename`` and the real one in ``filename*=UTF-8''...``,
which every browser reads and no HTTP server refuses.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

NAME_MAX = 255
# Controls that reorder or hide text: a name could show as "report.csv" while ending in ".exe".
_INVISIBLE_CONTROLS = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# What an ASCII fallback name may hold beside letters and digits.
_ASCII_KEPT = frozenset(" ._-()+,[]")


def clean_filename(name: str | None) -> str | None:
    """A filename without control characters (CR, LF, NUL, tabs, bidi overrides), or None if nothing is left.

    Letters of every script and emoji are kept as they are; joiners inside emoji (ZWJ) stay too.
    """
    if not name:
        return None
    kept = "".join(
        " " if ch in "\t\r\n" else ch
        for ch in unicodedata.normalize("NFC", name)
        if ch in "\t\r\n" or (unicodedata.category(ch) != "Cc" and ch not in _INVISIBLE_CONTROLS)
    )
    kept = " ".join(kept.split())  # the spaces a CR/LF left behind, and any run of them, become one
    return kept[-NAME_MAX:] or None


def _ascii(text: str) -> str:
    letters = []
    for ch in unicodedata.normalize("NFKD", text):
        if unicodedata.combining(ch):
            continue  # é becomes e
        letters.append(ch if ch.isascii() and (ch.isalnum() or ch in _ASCII_KEPT) else "_")
    return re.sub(r"_+", "_", "".join(letters)).strip(" _-.")


def ascii_fallback(name: str, default: str = "download") -> str:
    """The name in plain ASCII for clients that ignore ``filename*``: accents dropped, other letters gone.

    ``Zoë.csv`` gives ``Zoe.csv``, ``📇 list.csv`` ``list.csv``, ``контакты.csv`` ``download.csv``.
    """
    stem, dot, extension = name.rpartition(".")
    if not dot:
        stem, extension = name, ""
    extension = _ascii(extension)
    return (_ascii(stem) or default) + (f".{extension}" if extension else "")


def content_disposition(filename: str | None, default: str = "download") -> str:
    """``attachment`` with an ASCII ``filename`` and, for any other name, ``filename*=UTF-8''...``."""
    name = clean_filename(filename) or default
    fallback = ascii_fallback(name)
    value = f'attachment; filename="{fallback}"'
    if fallback != name:
        value += "; filename*=UTF-8''" + quote(name, safe="")
    return value
