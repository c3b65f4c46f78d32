"""Routes for imports: thin, choosing JSON or HTML, calling the service, committing."""

from __future__ import annotations

import json
import logging
import re
import tempfile
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from typing import BinaryIO

from flask import (
    Response,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy.exc import IntegrityError

from app.errors import error_response
from app.extensions import csrf, db, settings, storage
from app.imports import bp, idempotency, small
from app.imports.body import SOURCE_MAX, BodyCheck, check_body, has_control_characters, mode_problem
from app.imports.forms import UploadForm
from app.imports.review import (
    ImportOptions,
    OptionRefused,
    announce_review,
    apply_options,
    check_against_file,
    parse_options,
    skip_review,
)
from app.imports.service import (
    EmptyUpload,
    create_import,
    enqueue_import,
)
from app.models import IdempotencyKey, Import
from app.principals import current_principal
from app.storage import StorageFull, StorageRefused, StorageUnavailable, UploadTooLarge, copy_limited

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
    if has_control_characters(source):
        return "Field source must not contain control characters"
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
    mode: str = "skip"
    options: ImportOptions = field(default_factory=ImportOptions)
    # A JSON request of a few rows: its body is kept with the import (app.imports.small).
    small: bool = False

    def fingerprint(self, sha256: str) -> str:
        """This request's fingerprint for idempotency, given the SHA-256 of its file."""
        return idempotency.fingerprint(
            method=request.method,
            path=request.path,
            content_type=request.mimetype,
            source=self.source,
            use_resumable=self.use_resumable,
            sha256=sha256,
            mode=self.mode,
            options=self.options,
        )


def start(asked: ImportRequest, key: str | None = None) -> Response:
    """Store, commit, then enqueue: the import row exists before its job does.

    If Redis cannot take the job, the import is committed all the same and the reconciler
    queues it, so the answer is still 202.
    """
    options = asked.options
    if not current_principal().may_use(asked.source):
        return error_response(403, f"This API token may not import into the source {asked.source!r}")
    try:
        imp = create_import(
            asked.stream,
            source=asked.source,
            filename=asked.filename,
            use_resumable=asked.use_resumable,
            mode=asked.mode,
            status="review" if options.review else "queued",
            created_by=current_principal().id or None,
            small=asked.small,
        )
        check_against_file(imp, options)
    except UploadTooLarge as exc:
        return error_response(413, str(exc))
    except EmptyUpload as exc:
        return error_response(400, str(exc))
    except StorageRefused as exc:  # the store's own rule: the same file would be refused again
        return error_response(exc.status, str(exc))
    except StorageFull as exc:
        return error_response(507, str(exc))  # no Retry-After: space must be freed first
    except StorageUnavailable as exc:
        return storage_unavailable(exc)
    except OptionRefused as exc:
        # Nothing of the import is kept: its row is not committed and its file goes.
        db.session.rollback()
        with suppress(StorageUnavailable, OSError):  # a file left behind is only disk; the answer stands
            storage().delete(imp.storage_key)
        return error_response(400, str(exc))
    apply_options(imp, options)
    announce_review(imp)
    if key is not None:
        idempotency.complete(db.session, current_principal().id, key, asked.fingerprint(imp.sha256), imp)
    db.session.flush()
    # Taken before the commit, after which the id would be read again from the database.
    import_id, response = imp.id, accepted(imp)
    db.session.commit()
    if asked.small:
        small.wake()
    elif not options.review:
        enqueue_import(import_id)
    return response


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
    with idempotency.key_lock(current_principal().id, key) as free:
        if not free:
            return _in_progress()
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


def _in_progress() -> Response:
    response = error_response(
        409, f"A request with this {idempotency.HEADER} is still in progress; retry it in a moment"
    )
    response.headers["Retry-After"] = "1"
    return response


def _post_import(key: str | None) -> Response:
    with ExitStack() as stack:
        asked = _read_request(stack)
        if isinstance(asked, Response):
            return asked
        return start(asked, key)


def _hold(key: str) -> IdempotencyKey | None:
    """Hold the key for this request (committed at once), or the row of the request holding it."""
    principal = current_principal().id
    for _ in range(3):  # the holder may let go between our insert and our read
        try:
            idempotency.hold(db.session, principal, key)
            db.session.commit()
            return None
        except IntegrityError:
            db.session.rollback()
        held = db.session.get(IdempotencyKey, (principal, key))
        if held is not None:
            return held
    return IdempotencyKey(principal=principal, key=key, status="in_flight")


def _let_go(key: str) -> None:
    db.session.rollback()
    idempotency.let_go(db.session, current_principal().id, key)
    db.session.commit()


def _answer_again(held: IdempotencyKey) -> Response:
    """The first answer for the same request; 409 while it runs; 422 for a different request."""
    if held.status != "done":
        return _in_progress()
    different = error_response(
        422,
        f"This {idempotency.HEADER} was already used with a different request "
        "(another file, source, useResumable, content type, mode, mapping, headerRow, sheet or review); "
        "use a new key for a new import",
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


def spooled_json(stack: ExitStack) -> tuple[BinaryIO, int, BodyCheck] | Response:
    """The JSON request body spooled (to disk past SPOOL_IN_MEMORY), its size and its check, rewound;
    413 past MAX_UPLOAD_SIZE, 400 for a body that is not the JSON an import takes."""
    body = stack.enter_context(tempfile.SpooledTemporaryFile(SPOOL_IN_MEMORY))  # noqa: SIM115
    try:
        size, _ = copy_limited(request.stream, body.write, settings().max_upload_size)
    except UploadTooLarge as exc:
        return error_response(413, str(exc))
    body.seek(0)
    try:
        check = check_body(body)
    except ValueError as exc:
        return error_response(400, str(exc))
    body.seek(0)
    return body, size, check


def _from_json(stack: ExitStack) -> ImportRequest | Response:
    spooled = spooled_json(stack)
    if isinstance(spooled, Response):
        return spooled
    body, size, check = spooled
    if check.issues:
        payload = {"error": "Invalid request body", "issues": check.issues}
        if check.more_issues:
            payload["moreIssues"] = check.more_issues
        return Response(json.dumps(payload), 400, mimetype="application/json")
    options = check.options
    try:
        parsed = parse_options(
            options.get("mapping"), options.get("headerRow"), options.get("sheet"), options.get("review")
        )
    except OptionRefused as exc:
        return error_response(400, str(exc))
    return ImportRequest(
        body,
        check.source,
        None,
        check.use_resumable,
        check.mode,
        parsed,
        small=small.is_small(size, check.items, parsed, check.use_resumable),
    )


def _from_multipart() -> ImportRequest | Response:
    if "boundary" not in request.mimetype_params:
        return error_response(400, "The multipart/form-data body has no boundary parameter")
    request.max_content_length = settings().max_upload_size + 64 * 1024
    upload = request.files.get("file")
    if upload is None or not upload.filename:  # a browser sends an empty part for no file
        return error_response(400, "Missing required field: file")
    source = request.form.get("source")
    problem = _source_problem(source) or mode_problem(request.form.get("mode"), "Field mode")
    if problem:
        return error_response(400, problem)
    form = request.form
    try:
        options = parse_options(
            form.get("mapping"), form.get("headerRow"), form.get("sheet"), form.get("review")
        )
    except OptionRefused as exc:
        return error_response(400, str(exc))
    return ImportRequest(
        upload.stream,
        source.strip(),
        upload.filename,
        _flag(form.get("useResumable")),
        (form.get("mode") or "skip").strip(),
        options,
    )


def _from_stream() -> ImportRequest | Response:
    source = _header("X-Source")
    problem = _source_problem(source)
    if problem:
        return error_response(400, f"Missing required parameters for stream upload: {problem}")
    mode = request.headers.get("X-Merge-Mode")
    problem = mode_problem(mode, "Header X-Merge-Mode")
    if problem:
        return error_response(400, problem)
    try:
        options = stream_options()
    except OptionRefused as exc:
        return error_response(400, str(exc))
    return ImportRequest(
        request.stream,
        source.strip(),
        _header("X-Filename"),
        _flag(request.headers.get("X-Use-Resumable")),
        (mode or "skip").strip(),
        options,
    )


def stream_options() -> ImportOptions:
    """A stream upload's options, from its ``X-Mapping``, ``X-Header-Row``, ``X-Sheet`` and ``X-Review``."""
    return parse_options(
        _header("X-Mapping"), _header("X-Header-Row"), _header("X-Sheet"), _header("X-Review")
    )


@bp.route("/", methods=["GET", "POST"])
def new() -> Response | tuple[str, int]:
    """The upload page; without JavaScript it posts this form and lands on the import's page."""
    form = UploadForm()
    valid = form.validate_on_submit()
    if valid and not current_principal().may_use(form.source.data.strip()):
        form.source.errors.append("This API token may not import into that source.")
        valid = False
    if valid:
        upload = form.file.data
        try:
            imp = create_import(
                upload.stream,
                source=form.source.data.strip(),
                filename=upload.filename,
                use_resumable=form.useResumable.data,
                mode=form.mode.data or "skip",
                status="review",
                created_by=current_principal().id or None,
            )
            skip_review(imp)  # a file like the last one of its source needs no review
            announce_review(imp)
        except (UploadTooLarge, EmptyUpload) as exc:
            form.file.errors.append(str(exc))
        except StorageRefused as exc:
            form.file.errors.append(str(exc))
            return render_template("imports/new.html", form=form), exc.status
        except StorageFull as exc:
            form.file.errors.append(str(exc))
            return render_template("imports/new.html", form=form), 507
        except StorageUnavailable as exc:
            log.warning("upload refused, storage is unavailable: %s", exc)
            form.file.errors.append("The file could not be stored, so nothing was imported. Try again later.")
            return render_template("imports/new.html", form=form), 503
        else:
            db.session.commit()
            if imp.status == "queued":
                enqueue_import(imp.id)
                flash(f"{upload.filename} is uploaded and queued for import.", "success")
            else:
                flash(
                    f"{upload.filename} is uploaded. Check how its columns are read, then start it.",
                    "success",
                )
            return redirect(url_for("imports.detail", job_id=imp.id), code=303)
    status = 400 if form.errors else 200
    return render_template("imports/new.html", form=form, chunk_size=settings().upload_chunk_size), status
