"""JSON (an array of objects, or an object with a ``data`` array) and NDJSON, streamed."""

from __future__ import annotations

import codecs
import contextlib
import json
from collections.abc import Iterator
from typing import Any, BinaryIO

import ijson

from app.readers import BrokenRow, Record, Table, UnusableFile, seekable

_VALUE_STARTS = {"start_map", "start_array", "string", "number", "boolean", "null"}
MAX_DEPTH = 64
# As CSV lines are (app.readers.text): a longer NDJSON line is a rejected row, never read whole.
LINE_LIMIT = 8 * 1024 * 1024
BROKEN_TEXT = 1000  # characters of a broken line kept to show
SKIP_PIECE = 1024 * 1024  # the rest of a long line is skipped a megabyte at a time


def _strip(head: bytes) -> bytes:
    return head.removeprefix(codecs.BOM_UTF8).lstrip()


def sniff(head: bytes) -> str | None:
    """``json`` for an array or an object holding one, ``ndjson`` for an object per line."""
    body = _strip(head)
    if body.startswith(b"["):
        return "json"
    if not body.startswith(b"{"):
        return None
    first, _newline, rest = body.partition(b"\n")
    try:
        value = json.loads(first)
    except (ValueError, RecursionError):
        # A pretty-printed object spans many lines; an NDJSON file may start with a broken line.
        return "ndjson" if _objects_per_line(rest) else "json"
    if isinstance(value, dict) and isinstance(value.get("data"), list) and not rest.strip():
        return "json"
    return "ndjson" if isinstance(value, dict) else None


def _objects_per_line(sample: bytes) -> bool:
    """Whether most complete lines of a sample are JSON objects on their own."""
    lines = [line for line in sample.split(b"\n")[:-1] if line.strip()][:20]
    objects = 0
    for line in lines:
        with contextlib.suppress(ValueError, RecursionError):
            objects += isinstance(json.loads(line), dict)
    return bool(lines) and objects * 2 > len(lines)


class NestedTooDeep(ValueError):
    """JSON nested deeper than any contact list needs (and deep enough to exhaust a parser)."""

    def __init__(self) -> None:
        super().__init__(f"The JSON is nested more than {MAX_DEPTH} levels deep; a contact list never is.")


def json_events(stream: BinaryIO) -> Iterator[tuple[int, str, Any]]:
    """ijson's basic events, each with the nesting depth before it; too deep a nesting raises.

    ijson's path-tracking parser grows its memory with the square of the nesting depth, so
    a few kilobytes of ``[[[[`` could take a process down: this check runs first.
    """
    depth = 0
    for event, value in ijson.basic_parse(stream, use_float=True):
        yield depth, event, value
        if event in ("start_map", "start_array"):
            depth += 1
            if depth > MAX_DEPTH:
                raise NestedTooDeep()
        elif event in ("end_map", "end_array"):
            depth -= 1


def parse_error(exc: Exception) -> str:
    """The first line of a parser's message (ijson adds a drawing of where it stopped)."""
    lines = str(exc).strip().splitlines()
    return lines[0].strip() if lines else type(exc).__name__


def _broken(item: Any) -> BrokenRow:
    return BrokenRow("This item is not an object with a name and an email", json.dumps(item)[:BROKEN_TEXT])


def read(stream: BinaryIO, head: bytes, kind: str, size: int | None, head_only: bool = False) -> Table:
    """The items of a JSON or NDJSON file; with ``head_only``, read lazily without checking the whole."""
    if kind == "ndjson":
        lines = head.count(b"\n") or 1
        total = round(size * lines / len(head)) if size else None
        return Table(kind, _lines(stream), total)
    path = "item" if _strip(head).startswith(b"[") else "data.item"
    if head_only:
        return Table(kind, _items(stream, path, close=False), None)

    copy = seekable(stream)
    owned = copy is not stream  # a temporary copy of a stream that cannot seek: ours to close
    try:
        total = _count_items(copy, path)
    except BaseException:
        if owned:
            copy.close()
        raise
    copy.seek(0)
    return Table(kind, _items(copy, path, close=owned), total)


def _skip_bom(stream: BinaryIO) -> BinaryIO:
    if not stream.seekable():  # read_rows hands a stream that cannot seek over as a BufferedReader
        if stream.peek(3)[:3] == codecs.BOM_UTF8:  # type: ignore[attr-defined]
            stream.read(3)
        return stream
    start = stream.tell()
    if stream.read(3) != codecs.BOM_UTF8:
        stream.seek(start)
    return stream


def _count_items(stream: BinaryIO, path: str) -> int:
    """Check the whole file is valid JSON before a row is imported, and count its items."""
    in_data = path == "data.item"
    item_depth = 2 if in_data else 1
    inside = not in_data
    has_data = not in_data
    key = None
    count = 0
    try:
        for depth, event, value in json_events(_skip_bom(stream)):
            if event == "map_key" and depth == 1:
                key = value
            elif event == "start_array" and in_data and depth == 1 and key == "data":
                inside = has_data = True
            elif event == "end_array" and in_data and depth == 2:
                inside = False
            elif inside and depth == item_depth and event in _VALUE_STARTS:
                count += 1
    except NestedTooDeep as exc:
        raise UnusableFile(f"{exc} Send a list of contacts.") from exc
    except ijson.JSONError as exc:
        raise UnusableFile(
            f"The file is not valid JSON ({parse_error(exc)}): it may be cut short or damaged. "
            "Export it again and upload the new copy."
        ) from exc
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


def _bounded_lines(stream: BinaryIO) -> Iterator[tuple[bytes, int | None]]:
    """Each line with None, or for a line longer than LINE_LIMIT its start and its length.

    The rest of a long line is read and dropped a piece at a time, so memory stays flat.
    """
    while raw := stream.readline(LINE_LIMIT):
        if len(raw) < LINE_LIMIT or raw.endswith(b"\n"):
            yield raw, None
            continue
        length, start = len(raw), raw[:BROKEN_TEXT]
        del raw  # only its start is kept: the rest must not stay alive while the line is skipped
        while piece := stream.readline(SKIP_PIECE):
            length += len(piece)
            if piece.endswith(b"\n"):
                break
        yield start, length


def _lines(stream: BinaryIO) -> Iterator[tuple[int, Record | BrokenRow]]:
    """One object per line; a line that is not one (or is too long) is a rejected row; blanks are skipped."""
    for number, (raw, too_long) in enumerate(_bounded_lines(stream), start=1):
        if too_long is not None:
            start = raw.decode("utf-8", errors="replace")
            message = (
                f"This line is {too_long:,} bytes long; a line of more than {LINE_LIMIT // (1024 * 1024)} MB "
                "is not read (no contact needs one). Its start is kept."
            )
            yield number, BrokenRow(message, start)
            continue
        line = raw.removeprefix(codecs.BOM_UTF8).strip() if number == 1 else raw.strip()
        if not line:
            continue
        text = line.decode("utf-8", errors="replace")
        try:
            item = json.loads(text)
        except ValueError as exc:
            yield number, BrokenRow(f"This line is not valid JSON ({exc.args[0]})", text[:BROKEN_TEXT])
            continue
        except RecursionError:
            yield number, BrokenRow("This line is nested too deeply to be a contact", text[:BROKEN_TEXT])
            continue
        yield number, item if isinstance(item, dict) else _broken(item)
