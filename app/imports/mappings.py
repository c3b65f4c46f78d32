"""Routes for previews, imports held in review, and the mappings saved per source. Thin, as the rest."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any, BinaryIO

from flask import Response, flash, redirect, render_template, request, url_for
from werkzeug.exceptions import BadRequest

from app.errors import error_response, wants_json
from app.extensions import csrf, db, settings
from app.fields import MappingError, describe_mapping
from app.imports import bp
from app.imports.access import action_refused, changeable_or_403, check_csrf_of_browsers, import_or_404
from app.imports.body import SOURCE_MAX, has_control_characters
from app.imports.review import (
    ImportOptions,
    OptionRefused,
    parse_options,
    preview_import,
    reopen_for_review,
    start_reviewed,
)
from app.imports.review_page import options_from_form, review_context
from app.imports.routes import spooled_json, stream_options
from app.imports.service import requeue_import
from app.mapping import SourceMapping, check_shape, delete_mapping, parse_mapping, save_mapping
from app.preview import preview
from app.readers import UnusableFile
from app.storage import StoredFileMissing


def _refused(exc: Exception) -> Response:
    """400 for options or a mapping that do not fit; 422 for a file that cannot be read at all."""
    return error_response(422 if isinstance(exc, UnusableFile) else 400, str(exc))


def _preview_request(stack: ExitStack) -> tuple[BinaryIO, int | None, str | None, ImportOptions] | Response:
    """The file, its size, the source and the options of a preview, in any of POST /import's three forms."""
    if request.mimetype == "application/json":
        spooled = spooled_json(stack)
        if isinstance(spooled, Response):
            return spooled
        body, size, check = spooled
        raw = check.options
        options = parse_options(raw.get("mapping"), raw.get("headerRow"), raw.get("sheet"))
        return body, size, check.source if isinstance(check.source, str) else None, options
    if request.mimetype == "multipart/form-data":
        request.max_content_length = settings().max_upload_size + 64 * 1024
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            return error_response(400, "Missing required field: file")
        form = request.form
        options = parse_options(form.get("mapping"), form.get("headerRow"), form.get("sheet"))
        return upload.stream, None, (form.get("source") or "").strip() or None, options
    source = request.headers.get("X-Source")
    return request.stream, request.content_length, (source or "").strip() or None, stream_options()


@bp.post("/imports/preview")
@csrf.exempt
def post_preview() -> Response | dict:
    """What an import of this file would find and store, from its first rows; stores nothing."""
    with ExitStack() as stack:
        try:
            asked = _preview_request(stack)
            if isinstance(asked, Response):
                return asked
            stream, size, source, options = asked
            return preview(
                db.session,
                stream,
                size=size,
                source=source,
                mapping=options.mapping,
                header_row=options.header_row,
                sheet=options.sheet,
            )
        except (OptionRefused, MappingError, UnusableFile) as exc:
            return _refused(exc)
        finally:
            db.session.rollback()  # a preview only reads


def _json_or_form() -> dict[str, Any]:
    """A small request body as a dict: JSON, or a form's fields."""
    if request.mimetype == "application/json":
        try:
            body = request.get_json(silent=False) if request.content_length else {}
        except BadRequest:
            raise OptionRefused("The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise OptionRefused("The request body must be a JSON object.")
        return body
    return request.form.to_dict()


@bp.get("/imports/<job_id>/preview")
def import_preview(job_id: str) -> Response | dict:
    """The preview of an import's stored file, with the options the query string gives."""
    imp = import_or_404(job_id)
    if not imp.storage_key:
        return error_response(409, "The file of this import is no longer stored.")
    args = request.args
    try:
        options = parse_options(args.get("mapping"), args.get("headerRow"), args.get("sheet"))
        return preview_import(imp, options)
    except (OptionRefused, MappingError, UnusableFile) as exc:
        return _refused(exc)
    except StoredFileMissing:
        return error_response(409, "The file of this import is no longer stored.")


@bp.post("/imports/<job_id>/start")
@csrf.exempt
def start_review(job_id: str) -> Response | tuple[dict, int]:
    """Start an import held in review, optionally with a mapping, header row or sheet chosen there.

    The review page posts its form (selects per field); API clients send JSON with a ``mapping``.
    """
    check_csrf_of_browsers()
    imp = changeable_or_403(job_id)
    from_page = request.mimetype != "application/json"
    try:
        body = _json_or_form()
        if from_page and imp.status == "review":
            options = options_from_form(imp, body)
        else:
            options = parse_options(body.get("mapping"), body.get("headerRow"), body.get("sheet"))
        remember = body.get("remember") in (True, "true", "on", "1", "yes")
        mode = body.get("mode")
        start_reviewed(imp, options, remember=remember, mode=mode if isinstance(mode, str) else None)
    except (OptionRefused, UnusableFile) as exc:
        db.session.rollback()
        if from_page and not wants_json():
            flash(str(exc), "error")
            return redirect(url_for("imports.detail", job_id=imp.id), code=303)
        return error_response(409 if imp.status != "review" else 400, str(exc))
    db.session.commit()
    requeue_import(imp.id)  # a reopened import's earlier job is cleared first
    db.session.refresh(imp)
    if from_page and not wants_json():
        flash("The import is queued with the mapping you chose.", "success")
        return redirect(url_for("imports.detail", job_id=imp.id), code=303)
    return imp.to_dict(), 202


@bp.post("/imports/<job_id>/reopen")
@csrf.exempt
def reopen(job_id: str) -> Response | dict:
    """Put a failed import back in review, so its columns can be mapped without uploading it again."""
    check_csrf_of_browsers()
    imp = changeable_or_403(job_id)
    try:
        reopen_for_review(imp)
    except OptionRefused as exc:
        return action_refused(imp, exc)
    db.session.commit()
    if wants_json():
        db.session.refresh(imp)
        return imp.to_dict()
    return redirect(url_for("imports.detail", job_id=imp.id), code=303)


@bp.post("/imports/<job_id>/review")
def review_form(job_id: str) -> Response | str:
    """The review page again for the form as it is now: the fragment for HTMX, the page without it."""
    imp = import_or_404(job_id)
    if imp.status != "review":
        return redirect(url_for("imports.detail", job_id=imp.id), code=303)
    context = review_context(imp, request.form.to_dict())
    if request.headers.get("HX-Request") == "true":
        return render_template("imports/_review.html", **context)
    return render_template("imports/review.html", **context)


def _source_or_400(source: str) -> str | Response:
    if not source.strip() or len(source) > SOURCE_MAX or has_control_characters(source):
        return error_response(
            400, f"The source must be 1 to {SOURCE_MAX} characters, without control characters."
        )
    return source


@bp.get("/sources/<path:source>/mapping")
def get_mapping(source: str) -> Response | dict | str:
    """The mapping saved for a source."""
    checked = _source_or_400(source)
    if isinstance(checked, Response):
        return checked
    saved = db.session.get(SourceMapping, source)
    if not wants_json():
        return render_template(
            "imports/source_mapping.html",
            source=source,
            saved=saved,
            described=describe_mapping(saved.mapping) if saved else None,
        )
    if saved is None:
        return error_response(404, f"No mapping is saved for the source {source!r}.")
    return saved.to_dict()


@bp.post("/sources/<path:source>/mapping/forget")
def forget_mapping_page(source: str) -> Response:
    """The page's way to forget a source's mapping: its next file is reviewed again."""
    if delete_mapping(db.session, source):
        db.session.commit()
        flash(f"The mapping for {source} is forgotten: its next file waits for your review.", "success")
    return redirect(url_for("imports.get_mapping", source=source), code=303)


@bp.put("/sources/<path:source>/mapping")
@csrf.exempt
def put_mapping(source: str) -> Response | dict:
    """Save the mapping for a source (the same object as an import's ``mapping``)."""
    check_csrf_of_browsers()
    checked = _source_or_400(source)
    if isinstance(checked, Response):
        return checked
    try:
        body = _json_or_form()
        mapping = parse_mapping(body.get("mapping", body))
        if mapping is None:
            raise MappingError("Send the mapping as a JSON object of field to column.")
        check_shape(mapping)
    except (OptionRefused, MappingError) as exc:
        return error_response(400, str(exc))
    saved = save_mapping(db.session, source, mapping)
    db.session.commit()
    return saved.to_dict()


@bp.delete("/sources/<path:source>/mapping")
@csrf.exempt
def forget_mapping(source: str) -> Response:
    """Forget the mapping saved for a source; its next imports detect their columns again."""
    check_csrf_of_browsers()
    checked = _source_or_400(source)
    if isinstance(checked, Response):
        return checked
    if not delete_mapping(db.session, source):
        return error_response(404, f"No mapping is saved for the source {source!r}.")
    db.session.commit()
    return Response(status=204)
