"""vCard 2.1, 3.0 and 4.0 (.vcf), streamed card by card: each card a record, a broken one a rejected row.

A card's record: ``Name`` (FN); the parts of N as ``Name Prefix``, ``First Name``, ``Middle Name``,
``Last Name``, ``Name Suffix``; ``E-mail``, every EMAIL, the preferred first, joined with `` ::: ``;
``Phone``, the preferred TEL, the others as ``Phone 2``...; ``Company`` (ORG), ``Title`` (TITLE); every
other property by its name (``ADR``, ``NOTE``, ``BDAY``, ``URL``...), repeats numbered ``ADR 2``;
VERSION and PRODID describe the card, not the contact, and are not kept. A
label given to a grouped property (``item1.URL`` with ``item1.X-ABLabel``) is kept as ``URL Label``.
Photos, logos, sounds, keys and any other embedded binary are skipped as they stream past.
"""

from __future__ import annotations

import codecs
import io
import re
from collections.abc import Iterator
from typing import BinaryIO

from app.readers import BrokenRow, Record, Table
from app.readers.vcard_values import Property, binary_value, components, decoded, parse_property, unescape

# A physical line is read at most this much at a time, so a photo written on one line of many
# megabytes (Google does not fold) streams past in pieces instead of filling memory.
CHUNK = 64 * 1024
# What one card may hold once its photos are skipped; a card larger than this is not a contact.
CARD_LIMIT = 1024 * 1024
SHOWN = 1000

SKIPPED = frozenset({"PHOTO", "LOGO", "SOUND", "KEY"})
# What the card says of itself, not of the contact.
_NOT_KEPT = frozenset({"BEGIN", "END", "VERSION", "PRODID"})
_LABELS = {"X-ABLABEL": "Label", "X-ABADR": "Country"}
_N_PARTS = ("Last Name", "First Name", "Middle Name", "Name Prefix", "Name Suffix")
_BEGIN = re.compile(rb"[ \t]*BEGIN[ \t]*:[ \t]*VCARD[ \t]*", re.IGNORECASE)
_END = re.compile(rb"[ \t]*END[ \t]*:[ \t]*VCARD[ \t]*", re.IGNORECASE)
_APPLE_LABEL = re.compile(r"_\$!<(.*)>!\$_")


def sniff(head: bytes) -> str | None:
    """``vcard`` for content that starts with BEGIN:VCARD after an optional BOM and blank lines."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        head = head.decode("utf-16", errors="ignore").encode()
    body = head.removeprefix(codecs.BOM_UTF8).lstrip(b" \t\r\n")
    return "vcard" if _BEGIN.match(body.split(b"\n", 1)[0].rstrip(b"\r")) else None


def read(stream: BinaryIO, head: bytes, kind: str, size: int | None) -> Table:
    """The cards of a .vcf file, as records numbered by their position in the file."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        stream = _Recoded(stream, "utf-16", "utf-8")
    elif b"\r" in head and b"\n" not in head:
        stream = _Recoded(stream, "latin-1", "latin-1")
    cards = len(re.findall(rb"(?im)^[ \t]*BEGIN[ \t]*:[ \t]*VCARD", head)) or 1
    total = None
    if size and head:
        total = cards if len(head) >= size else round(size * cards / len(head))
    return Table(kind, _cards(stream), total)


class _Card:
    """What has been read of the current card."""

    def __init__(self) -> None:
        self.properties: list[Property] = []
        self.version = "3.0"
        self.size = 0
        self.shown: list[str] = []
        self.problem: str | None = None

    def keep_text(self, line: bytes) -> None:
        if sum(map(len, self.shown)) < SHOWN:
            self.shown.append(line[:SHOWN].decode("utf-8", errors="replace"))

    def text(self) -> str:
        return "\n".join(self.shown)[:SHOWN]


def _cards(stream: BinaryIO) -> Iterator[tuple[int, Record | BrokenRow]]:
    """Each card in turn; a card cut short, merged into the next or holding garbage is a BrokenRow."""
    position = 0
    card: _Card | None = None
    stray: list[str] = []
    for line, skipped in _logical_lines(stream):
        if _BEGIN.fullmatch(line):
            if stray:
                position += 1
                yield position, BrokenRow(_NOT_A_CARD, "\n".join(stray)[:SHOWN])
                stray = []
            if card is not None:
                position += 1
                yield (
                    position,
                    BrokenRow("This card has no END:VCARD: the next card begins before it ends", card.text()),
                )
            card = _Card()
            card.keep_text(line)
            continue
        if card is None:
            if line.strip() and len(stray) < 20:
                stray.append(line[:SHOWN].decode("utf-8", errors="replace"))
            continue
        if _END.fullmatch(line):
            position += 1
            yield position, _record(card)
            card = None
            continue
        if skipped or not line.strip():
            continue
        card.keep_text(line)
        if card.problem:
            continue
        prop = parse_property(line)
        if prop is None:
            shown = line[:80].decode("utf-8", errors="replace")
            card.problem = f"This card has a line that is not a vCard property: “{shown}”"
            continue
        card.size += len(line)
        if card.size > CARD_LIMIT:
            card.problem = f"This card holds more than {CARD_LIMIT // (1024 * 1024)} MB besides its photos"
            card.properties.clear()
            continue
        if prop.name == "VERSION":
            card.version = prop.value.decode("ascii", errors="replace").strip()
        card.properties.append(prop)
    if card is not None:
        position += 1
        yield position, BrokenRow("This card ends without END:VCARD: the file may be cut short", card.text())
    elif stray:
        position += 1
        yield position, BrokenRow(_NOT_A_CARD, "\n".join(stray)[:SHOWN])


_NOT_A_CARD = "This part of the file is not a vCard: it is outside any BEGIN:VCARD … END:VCARD"


def _logical_lines(stream: BinaryIO) -> Iterator[tuple[bytes, bool]]:
    """Unfolded content lines, and whether each is one to skip (its value has streamed past unread).

    3.0 and 4.0 fold with a line break and one space or tab, which unfolding removes; 2.1 folds at
    white space it keeps, and breaks QUOTED-PRINTABLE values with ``=`` at the end of a line.
    """
    current: list[bytes] = []
    size = 0
    skipping = False  # a photo or other binary value: read past, never kept
    overflow = False  # a value larger than a card may be: its start is kept, the rest read past
    quoted_printable = False
    keep_space = False  # 2.1
    line_open = False  # the last piece read did not end its physical line
    first = True
    while piece := stream.readline(CHUNK):
        if first:
            piece = piece.removeprefix(codecs.BOM_UTF8)
            first = False
        ends = piece.endswith(b"\n")
        text = piece.rstrip(b"\r\n") if ends else piece
        if line_open:
            if not (skipping or overflow):
                current.append(text)
                size += len(text)
        elif text[:1] in (b" ", b"\t") and (current or skipping):
            if not (skipping or overflow):
                current.append(text if keep_space else text[1:])
                size += len(text)
        elif quoted_printable and current and current[-1].endswith(b"="):
            if not overflow:
                current[-1] = current[-1][:-1]  # a soft line break
                current.append(text)
                size += len(text)
        else:
            if current or skipping:
                yield b"".join(current), skipping
            current, size, overflow = [text], len(text), False
            before = text.split(b":", 1)[0].upper()
            name = before.split(b";", 1)[0].rsplit(b".", 1)[-1].strip()
            skipping = name.decode("ascii", errors="replace") in SKIPPED or binary_value(before)
            quoted_printable = b"QUOTED-PRINTABLE" in before
            if name == b"VERSION":
                keep_space = text.split(b":", 1)[-1].strip() == b"2.1"
            elif name == b"BEGIN":
                keep_space = False
            if skipping:
                current, size = [text[:200]], 0
        if size > CARD_LIMIT and not (skipping or overflow):
            # Keep enough to refuse the card whole (its size is what is wrong), no more.
            current, overflow = [b"".join(current)[: CARD_LIMIT + 1]], True
        line_open = not ends
    if current or skipping:
        yield b"".join(current), skipping


def _preference(prop: Property, index: int) -> tuple[int, int]:
    """Sort key: PREF=1 (4.0) or TYPE=pref (2.1, 3.0) first, then the order of the file."""
    rank = 101
    for value in prop.params.get("PREF", []):
        if value.isdigit():
            rank = min(rank, int(value))
    types = [t.lower() for t in prop.params.get("TYPE", [])]
    if "pref" in types or "PREF" in prop.params and not prop.params["PREF"]:
        rank = min(rank, 1)
    return rank, index


def _record(card: _Card) -> Record | BrokenRow:
    """The record of a complete card."""
    if card.problem:
        return BrokenRow(card.problem, card.text())
    version = card.version
    record: Record = {}
    emails: list[tuple[tuple[int, int], str, Property]] = []
    phones: list[tuple[tuple[int, int], str, Property]] = []
    owners: dict[str, str] = {}  # group -> the record key of its main property
    labels: list[Property] = []
    for index, prop in enumerate(card.properties):
        name = prop.name
        if name in _NOT_KEPT:
            continue
        if name.startswith("X-AB") and prop.group:
            labels.append(prop)
            continue
        text = decoded(prop)
        if name == "EMAIL":
            value = unescape(text, version).strip()
            if value:
                emails.append((_preference(prop, index), value, prop))
        elif name == "TEL":
            value = unescape(text, version).strip()
            if value:
                phones.append((_preference(prop, index), value, prop))
        elif name == "FN":
            _put(record, "Name", unescape(text, version).strip(), prop, owners)
        elif name == "N":
            for key, part in zip(_N_PARTS, components(text, version), strict=False):
                if part:
                    record[key] = part
        elif name == "ORG":
            _put(record, "Company", ", ".join(p for p in components(text, version) if p), prop, owners)
        elif name == "TITLE":
            _put(record, "Title", unescape(text, version).strip(), prop, owners)
        elif name == "ADR":
            _put(record, "ADR", ", ".join(p for p in components(text, version) if p), prop, owners)
        else:
            _put(record, name, unescape(text, version).strip(), prop, owners)
    if emails:
        emails.sort(key=lambda e: e[0])
        record["E-mail"] = " ::: ".join(value for _, value, _ in emails)
        for number, (_, _, prop) in enumerate(emails, start=1):
            if prop.group:
                owners.setdefault(prop.group, "E-mail" if number == 1 else f"E-mail {number}")
    phones.sort(key=lambda p: p[0])
    for number, (_, value, prop) in enumerate(phones, start=1):
        key = "Phone" if number == 1 else f"Phone {number}"
        record[key] = value
        if prop.group:
            owners.setdefault(prop.group, key)
    for prop in labels:
        label = unescape(decoded(prop), version).strip()
        label = _APPLE_LABEL.sub(r"\1", label)
        owner = owners.get(prop.group)
        key = f"{owner} {_LABELS.get(prop.name, prop.name)}" if owner else prop.name
        if label:
            _put(record, key, label, prop, {})
    return record


def _put(record: Record, key: str, value: str, prop: Property, owners: dict[str, str]) -> None:
    """Set ``key``, or ``key 2``, ``key 3``... when the card repeats the property."""
    if not value:
        return
    final, number = key, 1
    while final in record:
        number += 1
        final = f"{key} {number}"
    record[final] = value
    if prop.group:
        owners.setdefault(prop.group, final)


class _Recoded(io.RawIOBase):
    """A file read a line at a time as bytes in another encoding, with universal line ends.

    UTF-16 (with its BOM) is read as UTF-8; a file whose lines end in a lone CR (old Macs) is
    read byte for byte (Latin-1 both ways) with LF line ends.
    """

    def __init__(self, stream: BinaryIO, encoding: str, into: str) -> None:
        self._text = io.TextIOWrapper(stream, encoding=encoding, errors="replace", newline=None)
        self._into = into
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readline(self, size: int | None = -1) -> bytes:  # type: ignore[override]
        if not self._pending:
            self._pending = self._text.readline(CHUNK // 4).encode(self._into)
        limit = len(self._pending) if size is None or size < 0 else size
        line, self._pending = self._pending[:limit], self._pending[limit:]
        return line
