"""JSON (an array of objects, or an object with a ``data`` array) and NDJSON, streamed."""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from typing import Any, BinaryIO

import ijson

from app.readers import BrokenRow, Record, Table, UnusableFile, seekable

_SCALAR_OR_START = {"start_map", "start_array", "string", "number", "boolean", "null"}


def _strip(head: bytes) -> bytes:
    return head.removeprefix(codecs.BOM_UTF8).lstrip()


def sniff(head: bytes) -> str | None:
    """``json`` for an array or an object holding one, ``ndjson`` for an object per line."""
    body = _strip(head)
    if body.startswith(b"["):
        return "json"
    if not body.startswith(b"{"):
        return None
    first, newline, rest = body.partition(b"\n")
    try:
        value = json.loads(first)
    except ValueError:
        return "json"  # a pretty-printed object spans many lines
    if isinstance(value, dict) and isinstance(value.get("data"), list) and not rest.strip():
        return "json"
    return "ndjson" if isinstance(value, dict) else None


def _broken(item: Any) -> BrokenRow:
    return BrokenRow("This item is not an object with a name and an email", json.dumps(item)[:1000])


def read(stream: BinaryIO, head: bytes, kind: str, size: int | None) -> Table:
    """The items of a JSON or NDJSON file."""
    if kind == "ndjson":
        lines = head.count(b"\n") or 1
        total = round(size * lines / len(head)) if size else None
        return Table(kind, _lines(stream), total)

    copy = seekable(stream)
    owned = copy is not stream  # a temporary copy of a stream that cannot seek: ours to close
    path = "item" if _strip(head).startswith(b"[") else "data.item"
    try:
        total = _count_items(copy, path)
    except BaseException:
        if owned:
            copy.close()
        raise
    copy.seek(0)
    return Table(kind, _items(copy, path, close=owned), total)


def _skip_bom(stream: BinaryIO) -> BinaryIO:
    start = stream.tell()
    if stream.read(3) != codecs.BOM_UTF8:
        stream.seek(start)
    return stream


def _count_items(stream: BinaryIO, path: str) -> int:
    """Check the whole file is valid JSON before a row is imported, and count its items."""
    count = 0
    has_data = path == "item"
    try:
        for prefix, event, _value in ijson.parse(_skip_bom(stream)):
            if prefix == path and event in _SCALAR_OR_START:
                count += 1
            elif prefix == "data" and event == "start_array":
                has_data = True
    except ijson.JSONError as exc:
        raise UnusableFile(f"The file is not valid JSON: it may be cut short or damaged ({exc}).") from exc
    if not has_data:
        raise UnusableFile(
            'The JSON file holds an object without a "data" list. Send a list of contacts, '
            'or an object whose "data" is that list.'
        )
    return count


def _items(stream: BinaryIO, path: str, close: bool) -> Iterator[tuple[int, Record | BrokenRow]]:
    try:
        for position, item in enumerate(ijson.items(_skip_bom(stream), path, use_float=True), 1):
            yield position, item if isinstance(item, dict) else _broken(item)
    finally:
        if close:
            stream.close()


def _lines(stream: BinaryIO) -> Iterator[tuple[int, Record | BrokenRow]]:
    """One object per line; a line that is not one is a rejected row, and blank lines are skipped."""
    for number, raw in enumerate(stream, start=1):
        line = raw.removeprefix(codecs.BOM_UTF8).strip() if number == 1 else raw.strip()
        if not line:
            continue
        text = line.decode("utf-8", errors="replace")
        try:
            item = json.loads(text)
        except ValueError as exc:
            yield number, BrokenRow(f"This line is not valid JSON ({exc.args[0]})", text[:1000])
            continue
        yield number, item if isinstance(item, dict) else _broken(item)
