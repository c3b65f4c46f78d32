"""The review page of an import: its form read into options, and the preview it shows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.fields import NAME_PARTS, Columns, MappingError
from app.imports.review import ImportOptions, OptionRefused, head_rows, parse_options, preview_import
from app.mapping import saved_mapping
from app.models import Import
from app.readers import UnusableFile, cell_text

# The selects of the form, in the order the page shows them: (form field, label, mapping field).
FIELD_SELECTS = (
    ("name", "Name", "name"),
    ("prefix", "Name prefix", None),
    ("first", "First name", None),
    ("middle", "Middle name", None),
    ("last", "Last name", None),
    ("suffix", "Name suffix", None),
    ("email", "Email", "email"),
    ("phone", "Phone", "phone"),
    ("company", "Company", "company"),
    ("title", "Job title", "title"),
)
MODES = (
    ("skip", "Skip: leave contacts the source already has alone"),
    ("fill", "Fill: fill their empty fields from the file"),
    ("update", "Update: overwrite them with the file's values"),
)


def _first(value: Any) -> str:
    """A mapping's value as one header (the first of a list)."""
    if isinstance(value, list):
        return value[0] if value else ""
    return value or ""


def mapping_from_form(form: Mapping[str, str], columns: list[str]) -> dict[str, Any] | None:
    """The mapping the form's selects give, or None when the form carries none (its first showing)."""
    if "email" not in form:
        return None
    mapping: dict[str, Any] = {}
    name = form.get("name", "")
    parts = [form.get(part, "") for part in NAME_PARTS]
    if name:
        mapping["name"] = name
    elif any(parts):
        mapping["name"] = [part for part in parts if part]
    for field in ("email", "phone", "company", "title"):
        if form.get(field):
            mapping[field] = form[field]
    taken = {form.get(key) for key, _, _ in FIELD_SELECTS}
    mapping["attributes"] = [
        column
        for index, column in enumerate(columns)
        if column not in taken and form.get(f"keep_{index}") != "ignore"
    ]
    return mapping


def options_from_form(imp: Import, form: Mapping[str, str]) -> ImportOptions:
    """The options a review form starts its import with; OptionRefused says what does not fit."""
    options, problem = read_form(form)
    if problem:
        raise OptionRefused(problem)
    try:
        columns = preview_import(imp, options)["columns"]
    except (UnusableFile, MappingError) as exc:
        raise OptionRefused(str(exc)) from None
    mapping = mapping_from_form(form, columns)  # type: ignore[arg-type]
    return ImportOptions(mapping, options.header_row, options.sheet)


def _shown(preview: Mapping[str, Any]) -> str:
    """What the form's columns were read with: a new sheet or header row means new columns."""
    sheet = preview["sheet"] if len(preview["sheets"]) > 1 else ""
    return f"{sheet}|{preview['headerRow'] or 0}"


def _posted(form: Mapping[str, str]) -> str:
    """The sheet and header row the form asks for, in ``_shown``'s terms."""
    return f"{form.get('sheet', '')}|{form.get('headerRow') or 0}"


def read_form(form: Mapping[str, str]) -> tuple[ImportOptions, str | None]:
    """The options a review form asks for (its mapping fitted later), and what was wrong with them."""
    try:
        options = parse_options(None, form.get("headerRow") or None, form.get("sheet") or None)
    except OptionRefused as exc:
        return ImportOptions(), str(exc)
    return options, None


def review_context(imp: Import, form: Mapping[str, str] | None = None) -> dict[str, object]:
    """Everything the review page shows, for the form as sent (None: the page's first showing)."""
    form = form or {}
    options, problem = read_form(form)
    columns_changed = form.get("shown") is not None and form.get("shown") != _posted(form)
    preview = None
    try:
        preview = preview_import(imp, options)
        mapping = None if columns_changed else mapping_from_form(form, preview["columns"])  # type: ignore[arg-type]
        if mapping is not None:
            try:
                preview = preview_import(imp, ImportOptions(mapping, options.header_row, options.sheet))
            except MappingError as exc:
                problem = str(exc)
    except (UnusableFile, OptionRefused) as exc:
        problem = str(exc)
        if options.header_row is not None or options.sheet is not None:  # back to what detection finds
            options = ImportOptions()
            preview = preview_import(imp, options)
    return _context(imp, preview, options, form, problem)


def _context(
    imp: Import,
    preview: dict[str, Any] | None,
    options: ImportOptions,
    form: Mapping[str, str],
    problem: str | None,
) -> dict[str, object]:
    if preview is None:
        return {"imp": imp, "preview": None, "problem": problem, "fields": [], "extras": []}
    mapping = preview["mapping"]
    columns = preview["columns"]
    parts: dict[str, str] = {}
    name = mapping.get("name")
    if name and not isinstance(name, str):
        try:
            # The parts' roles, as an import would read them (the email here only completes the mapping).
            parts = dict(Columns.from_dict({"name": name, "email": "\x00"}, [*columns, "\x00"]).parts)
        except MappingError:
            parts = {}
    selected = {
        "name": name if isinstance(name, str) else "",
        **{part: parts.get(part, "") for part in NAME_PARTS},
        **{field: _first(mapping.get(field)) for field in ("email", "phone", "company", "title")},
    }
    # The other candidates of a field (a second email or phone column) stay with the contact too.
    candidates = [mapping.get(field) for field in ("email", "phone")]
    kept = set(preview["unmapped"]) | {h for value in candidates if isinstance(value, list) for h in value}
    taken = set(selected.values())
    extras = [
        {"index": i, "column": column, "keep": column in kept}
        for i, column in enumerate(columns)
        if column not in taken
    ]
    rows = [
        (number, " · ".join(c for c in cells[:4] if c)[:80])
        for number, cells in head_rows(imp, options.sheet)
    ]
    return {
        "imp": imp,
        "preview": preview,
        "problem": problem,
        "fields": [(key, label, selected[key]) for key, label, _ in FIELD_SELECTS],
        "extras": extras,
        "header_rows": rows,
        "shown": _shown(preview),
        "mode": form.get("mode") or getattr(imp, "mode", "skip") or "skip",
        "modes": MODES,
        "remember": form.get("remember", "on") == "on" if form.get("shown") is not None else True,
        "has_saved": saved_mapping_exists(imp),
    }


def saved_mapping_exists(imp: Import) -> bool:
    """Whether the import's source has a saved mapping (that this file's columns did not match)."""
    from app.extensions import db

    return saved_mapping(db.session, imp.source) is not None


def describe_cell(value: Any) -> str:
    """A stored value as the preview table shows it."""
    return cell_text(value) if value is not None else ""
