"""Routes for imports: thin, choosing JSON or HTML, calling the service, committing."""

from __future__ import annotations

import json
import logging
import math
import re
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from typing import BinaryIO

from flask import Response, abort, flash, redirect, render_template, request, url_for
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.errors import error_response, wants_json
from app.extensions import csrf, db, settings
from app.imports import bp, idempotency
from app.imports.body import SOURCE_MAX, check_body
from app.imports.forms import UploadForm
from app.imports.service import EmptyUpload, create_import, enqueue_import
from app.models import IMPORT_STATUSES, IdempotencyKey, Import, RowError
from app.storage import StorageUnavailable, UploadTooLarge, copy_limited

log = logging.getLogger(__name__)

SPOOL_IN_MEMORY = 1024 * 1024
ERRORS_PER_PAGE = 50
IMPORTS_PER_PAGE = 25
SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _header(name: str) -> str | None:
    """A header as text; WSGI hands headers over as Latin-1, clients send UTF-8."""
    value = request.headers.get(name)
    if value is None:
        return None
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


def _source_problem(source: str | None) -> str | None:
    if source is None or not source.strip():
        return "Missing required field: source"
    if len(source) > SOURCE_MAX:
        return f"Field source must be 1 to {SOURCE_MAX} characters long"
    return None


def accepted(imp: Import) -> Response:
    """202 with the compact ``{"jobId": ...}`` the original clients expect."""
    body = json.dumps({"jobId": imp.id}, separators=(",", ":"))
    response = Response(body, status=202, mimetype="application/json")
    response.headers["Location"] = f"/imports/{imp.id}"
    return response


def storage_unavailable(exc: StorageUnavailable) -> Response:
    """503 when the file could not be stored: nothing was recorded, the client may try again."""
    log.warning("upload refused, storage is unavailable: %s", exc)
    response = error_response(
        503, f"The file could not be stored, so nothing was imported. Try again later. ({exc})"
    )
    response.headers["Retry-After"] = "30"
    return response


@dataclass
class ImportRequest:
    """What a POST /import asks for, whichever way it was sent."""

    stream: BinaryIO
    source: str
    filename: str | None
    use_resumable: bool

    def fingerprint(self, sha256: str) -> str:
        """This request's fingerprint for idempotency, given the SHA-256 of its file."""
        return idempotency.fingerprint(
            method=request.method,
            path=request.path,
            content_type=request.mimetype,
            source=self.source,
            use_resumable=self.use_resumable,
            sha256=sha256,
        )


def start(asked: ImportRequest, key: str | None = None) -> Response:
    """Store, commit, then enqueue: the import row exists before its job does.

    If Redis cannot take the job, the import is committed all the same and the reconciler
    queues it, so the answer is still 202.
    """
    try:
        imp = create_import(
            asked.stream, source=asked.source, filename=asked.filename, use_resumable=asked.use_resumable
        )
    except UploadTooLarge as exc:
        return error_response(413, str(exc))
    except EmptyUpload as exc:
        return error_response(400, str(exc))
    except StorageUnavailable as exc:
        return storage_unavailable(exc)
    if key is not None:
        idempotency.complete(db.session, key, asked.fingerprint(imp.sha256), imp)
    db.session.commit()
    enqueue_import(imp.id)
    return accepted(imp)


@bp.post("/import")
@csrf.exempt
def post_import() -> Response:
    """Start an import from a JSON body, a multipart form, or a raw stream; honour Idempotency-Key."""
    key = request.headers.get(idempotency.HEADER)
    if key is None:
        return _post_import(None)
    problem = idempotency.key_problem(key)
    if problem:
        return error_response(400, problem)
    held = _hold(key)
    if held is not None:
        return _answer_again(held)
    try:
        response = _post_import(key)
    except BaseException:
        _let_go(key)
        raise
    if response.status_code != 202:
        _let_go(key)
    return response


def _post_import(key: str | None) -> Response:
    with ExitStack() as stack:
        asked = _read_request(stack)
        if isinstance(asked, Response):
            return asked
        return start(asked, key)


def _hold(key: str) -> IdempotencyKey | None:
    """Hold the key for this request (committed at once), or the row of the request holding it."""
    for _ in range(3):  # the holder may let go between our insert and our read
        try:
            idempotency.hold(db.session, key)
            db.session.commit()
            return None
        except IntegrityError:
            db.session.rollback()
        held = db.session.get(IdempotencyKey, key)
        if held is not None:
            return held
    return IdempotencyKey(key=key, status="in_flight")


def _let_go(key: str) -> None:
    db.session.rollback()
    idempotency.let_go(db.session, key)
    db.session.commit()


def _answer_again(held: IdempotencyKey) -> Response:
    """The first answer for the same request; 409 while it runs; 422 for a different request."""
    if held.status != "done":
        response = error_response(
            409, f"A request with this {idempotency.HEADER} is still in progress; retry it in a moment"
        )
        response.headers["Retry-After"] = "1"
        return response
    different = error_response(
        422,
        f"This {idempotency.HEADER} was already used with a different request "
        "(another file, source, useResumable or content type); use a new key for a new import",
    )
    with ExitStack() as stack:
        asked = _read_request(stack)
        if isinstance(asked, Response):
            return different
        try:
            _, sha256 = copy_limited(asked.stream, lambda chunk: None, settings().max_upload_size)
        except UploadTooLarge:
            return different
    imp = db.session.get(Import, held.import_id)
    if imp is None or asked.fingerprint(sha256) != held.fingerprint:
        return different
    response = accepted(imp)
    response.headers["Idempotent-Replayed"] = "true"
    return response


def _read_request(stack: ExitStack) -> ImportRequest | Response:
    """The request's file and fields, chosen by Content-Type, or the error response for it."""
    if request.mimetype == "application/json":
        return _from_json(stack)
    if request.mimetype == "multipart/form-data":
        return _from_multipart()
    return _from_stream()


def _from_json(stack: ExitStack) -> ImportRequest | Response:
    limit = settings().max_upload_size
    body = stack.enter_context(tempfile.SpooledTemporaryFile(SPOOL_IN_MEMORY))  # noqa: SIM115
    try:
        copy_limited(request.stream, body.write, limit)
    except UploadTooLarge as exc:
        return error_response(413, str(exc))
    body.seek(0)
    try:
        check = check_body(body)
    except ValueError as exc:
        return error_response(400, str(exc))
    if check.issues:
        payload = {"error": "Invalid request body", "issues": check.issues}
        if check.more_issues:
            payload["moreIssues"] = check.more_issues
        return Response(json.dumps(payload), 400, mimetype="application/json")
    body.seek(0)
    return ImportRequest(body, check.source, None, check.use_resumable)


def _from_multipart() -> ImportRequest | Response:
    if "boundary" not in request.mimetype_params:
        return error_response(400, "The multipart/form-data body has no boundary parameter")
    request.max_content_length = settings().max_upload_size + 64 * 1024
    upload = request.files.get("file")
    if upload is None or not upload.filename:  # a browser sends an empty part for no file
        return error_response(400, "Missing required field: file")
    source = request.form.get("source")
    problem = _source_problem(source)
    if problem:
        return error_response(400, problem)
    return ImportRequest(
        upload.stream, source.strip(), upload.filename, _flag(request.form.get("useResumable"))
    )


def _from_stream() -> ImportRequest | Response:
    source = _header("X-Source")
    problem = _source_problem(source)
    if problem:
        return error_response(400, f"Missing required parameters for stream upload: {problem}")
    return ImportRequest(
        request.stream, source.strip(), _header("X-Filename"), _flag(request.headers.get("X-Use-Resumable"))
    )


def _page() -> int:
    return max(1, request.args.get("page", 1, type=int) or 1)


@bp.get("/imports")
def index() -> Response | str:
    """Recent imports, newest first, filtered by status, source and the SHA-256 of their file."""
    status = request.args.get("status") or None
    source = request.args.get("source") or None
    sha256 = (request.args.get("sha256") or "").strip().lower() or None
    if status and status not in IMPORT_STATUSES:
        return error_response(400, f"status must be one of {', '.join(IMPORT_STATUSES)}")
    if sha256 and not SHA256.match(sha256):
        return error_response(400, "sha256 must be 64 hexadecimal characters")
    per_page = min(max(request.args.get("per_page", IMPORTS_PER_PAGE, type=int) or 1, 1), 100)
    query = select(Import)
    if status:
        query = query.where(Import.status == status)
    if source:
        query = query.where(Import.source == source)
    if sha256:
        query = query.where(Import.sha256 == sha256)
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    page = _page()
    imports = db.session.scalars(
        query.order_by(Import.created_at.desc(), Import.id).limit(per_page).offset((page - 1) * per_page)
    ).all()
    pages = max(1, math.ceil(total / per_page))
    if wants_json():
        return {
            "items": [imp.to_dict() for imp in imports],
            "page": page,
            "pages": pages,
            "total": total,
        }
    return render_template(
        "imports/index.html",
        imports=imports,
        page=page,
        pages=pages,
        total=total,
        status=status,
        source=source,
        statuses=IMPORT_STATUSES,
    )


def _import_or_404(job_id: str) -> Import:
    imp = db.session.get(Import, job_id)
    if imp is None:
        abort(404, description="Import not found")
    return imp


def _errors_page(imp: Import, page: int) -> dict[str, object]:
    total = db.session.scalar(select(func.count()).where(RowError.import_id == imp.id))
    items = db.session.scalars(
        select(RowError)
        .where(RowError.import_id == imp.id)
        .order_by(RowError.row, RowError.id)
        .limit(ERRORS_PER_PAGE)
        .offset((page - 1) * ERRORS_PER_PAGE)
    ).all()
    return {
        "items": [e.to_dict() for e in items],
        "page": page,
        "pages": max(1, math.ceil(total / ERRORS_PER_PAGE)),
        "total": total,
    }


@bp.get("/imports/<job_id>")
def detail(job_id: str) -> Response | str | dict:
    """One import: its status, counts and progress."""
    imp = _import_or_404(job_id)
    if wants_json():
        return imp.to_dict()
    return render_template("imports/detail.html", imp=imp, errors=_errors_page(imp, 1))


@bp.get("/imports/<job_id>/errors")
def errors(job_id: str) -> Response | str | dict:
    """The rejected rows of an import, a page at a time."""
    imp = _import_or_404(job_id)
    page = _errors_page(imp, _page())
    if wants_json():
        return page
    return render_template("imports/_errors.html", imp=imp, errors=page)


@bp.route("/", methods=["GET", "POST"])
def new() -> Response | str:
    """The upload page; without JavaScript it posts this form and lands on the import's page."""
    form = UploadForm()
    if form.validate_on_submit():
        upload = form.file.data
        try:
            imp = create_import(
                upload.stream,
                source=form.source.data.strip(),
                filename=upload.filename,
                use_resumable=form.useResumable.data,
            )
        except (UploadTooLarge, EmptyUpload) as exc:
            form.file.errors.append(str(exc))
        except StorageUnavailable as exc:
            log.warning("upload refused, storage is unavailable: %s", exc)
            form.file.errors.append("The file could not be stored, so nothing was imported. Try again later.")
            return render_template("imports/new.html", form=form), 503
        else:
            db.session.commit()
            enqueue_import(imp.id)
            flash(f"Importing {upload.filename}.", "success")
            return redirect(url_for("imports.detail", job_id=imp.id), code=303)
    status = 400 if form.errors else 200
    return render_template("imports/new.html", form=form), status
