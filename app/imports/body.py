"""Checking a JSON import request (``{"source", "data", "useResumable"}``) without loading it whole."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, BinaryIO

import ijson

from app.models import MERGE_MODES
from app.readers.json import NestedTooDeep, json_events, parse_error
from app.validation import NAME_MAX, check_email

SOURCE_MAX = 100
SOURCE_CONTROL = "Source must not contain control characters"


def has_control_characters(text: str) -> bool:
    """Whether text holds a control character (NUL cannot even be stored in PostgreSQL)."""
    return any(ord(ch) < 32 or ord(ch) == 127 for ch in text)


def mode_problem(mode: object, what: str = "mode") -> str | None:
    """Why a merge mode is not one, naming the modes there are; None for a mode (or none given)."""
    if mode is None or (isinstance(mode, str) and mode.strip() in ("", *MERGE_MODES)):
        return None
    return (
        f"{what} must be one of {', '.join(MERGE_MODES)} (skip: leave contacts the source already has "
        "alone; fill: fill their empty fields; update: overwrite them with the file's values), "
        f"not {mode!r}"
    )


MAX_ISSUES = 100
OPTION_KEYS = ("mapping", "headerRow", "sheet", "review")
_EVENT_KINDS = {
    "start_array": "array",
    "string": "string",
    "number": "number",
    "boolean": "boolean",
    "null": "null",
}


@dataclass
class BodyCheck:
    """What the check found: the request's fields, and every issue with a JSON path."""

    source: str | None = None
    use_resumable: bool = False
    # How to read the data (mapping, headerRow, sheet) and whether to hold it in review, as sent.
    options: dict[str, Any] = field(default_factory=dict)
    mode: str = "skip"
    items: int = 0
    issues: list[dict[str, Any]] = field(default_factory=list)
    more_issues: int = 0

    def add(self, path: list[str | int], message: str) -> None:
        if len(self.issues) < MAX_ISSUES:
            self.issues.append({"path": path, "message": message})
        else:
            self.more_issues += 1


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float) or type(value).__name__ == "Decimal":
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _expected(check: BodyCheck, path: list[str | int], want: str, value: Any) -> bool:
    got = _kind(value)
    if got != want:
        check.add(path, f"Expected {want}, received {got}")
        return False
    return True


def check_body(stream: BinaryIO) -> BodyCheck:
    """Check the request body, in two streaming passes over a seekable file.

    Raises ``ValueError`` with a readable message when the body is not JSON at all.
    """
    check = BodyCheck()
    top: dict[str, Any] = {}
    key = None
    try:
        events = json_events(stream)
        _depth, event, value = next(events)
        if event != "start_map":
            check.add([], f"Expected object, received {_EVENT_KINDS.get(event, event)}")
            for _ in events:
                pass
            return check
        for depth, event, value in events:
            if depth != 1:
                continue
            if event == "map_key":
                key = value
            elif key in ("source", "useResumable", "mode", "data", *OPTION_KEYS) and key not in top:
                top[key] = {"start_array": [], "start_map": {}}.get(event, value)
    except StopIteration:
        raise ValueError("The request body is empty") from None
    except NestedTooDeep as exc:
        raise ValueError(f"Malformed JSON in request body: {exc}") from None
    except ijson.JSONError as exc:
        raise ValueError(f"Malformed JSON in request body: {parse_error(exc)}") from None

    if "source" not in top:
        check.add(["source"], "Required")
    elif _expected(check, ["source"], "string", top["source"]):
        check.source = top["source"]
        if not 1 <= len(check.source) <= SOURCE_MAX:
            check.add(["source"], f"Source must be 1 to {SOURCE_MAX} characters long")
        elif has_control_characters(check.source):
            check.add(["source"], SOURCE_CONTROL)
    if "useResumable" in top and _expected(check, ["useResumable"], "boolean", top["useResumable"]):
        check.use_resumable = top["useResumable"]
    if "mode" in top and _expected(check, ["mode"], "string", top["mode"]):
        problem = mode_problem(top["mode"], "Mode")
        if problem:
            check.add(["mode"], problem)
        else:
            check.mode = top["mode"].strip() or "skip"
    check.options = {key: top[key] for key in OPTION_KEYS if key in top}
    if "mapping" in top and isinstance(top["mapping"], dict):  # only its start was seen: read it whole
        stream.seek(0)
        check.options["mapping"] = next(ijson.items(stream, "mapping", use_float=True), None)
    if "data" not in top:
        check.add(["data"], "Required")
        return check
    if not _expected(check, ["data"], "array", top["data"]):
        return check

    stream.seek(0)
    try:
        _check_items(check, stream)
    except ijson.JSONError as exc:  # a number too large for the parser, found on the second pass
        raise ValueError(f"Malformed JSON in request body: {exc}") from None
    if check.items == 0:
        check.add(["data"], "Array must contain at least 1 item")
    return check


def _check_items(check: BodyCheck, stream: BinaryIO) -> None:
    for index, item in enumerate(ijson.items(stream, "data.item", use_float=True)):
        check.items += 1
        if not _expected(check, ["data", index], "object", item):
            continue
        if "name" not in item:
            check.add(["data", index, "name"], "Required")
        elif _expected(check, ["data", index, "name"], "string", item["name"]):
            name = item["name"].strip()
            if not 1 <= len(name) <= NAME_MAX:
                check.add(["data", index, "name"], f"Name must be 1 to {NAME_MAX} characters long")
        if "email" not in item:
            check.add(["data", index, "email"], "Required")
        elif _expected(check, ["data", index, "email"], "string", item["email"]):
            _, problem = check_email(item["email"])
            if problem:
                check.add(["data", index, "email"], problem)
