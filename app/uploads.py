"""The tus 1.0.0 server at /uploads: resumable uploads that become imports when their last byte arrives."""

from __future__ import annotations

import logging
import re

import redis.exceptions
from flask import Blueprint, Response, request
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select
from werkzeug.http import http_date

from app.errors import error_response
from app.extensions import csrf, db, settings, storage
from app.filenames import clean_filename
from app.imports.body import SOURCE_MAX, has_control_characters, mode_problem
from app.imports.review import announce_review, skip_review
from app.imports.service import EmptyUpload, create_import, enqueue_import
from app.maintenance import TASKS
from app.models import Upload, aware, utcnow
from app.principals import current_principal
from app.proxies import absolute_url
from app.storage import (
    StorageFull,
    StorageRefused,
    StorageUnavailable,
    UploadTooLarge,
)
from app.tus_headers import byte_count, parse_metadata, upload_checksum
from app.upload_files import (
    CHECKSUM_ALGORITHMS,
    INSUFFICIENT_STORAGE,
    TusError,
    locked,
    new_expiry,
    partial_path,
    receive,
    remove_files,
    upload_lock,
)

log = logging.getLogger(__name__)

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,creation-with-upload,termination,expiration,checksum"
CHUNK_TYPE = "application/offset+octet-stream"
# Upload ids are generated here (uuid4 hex); anything else is unknown, and never reaches a path.
_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
_TRUE = ("1", "true", "yes", "on")

bp = Blueprint("uploads", __name__, url_prefix="/uploads")
# tus clients send no CSRF token; a tus request cannot be forged by a plain form either,
# since it needs the Tus-Resumable header, which only a same-origin script can set.
csrf.exempt(bp)


def _drop(upload: Upload) -> None:
    """Delete an upload and its bytes: it can never become an import (the client keeps its file)."""
    remove_files(upload.id)
    if sa_inspect(upload).persistent:  # a refusal inside the creation already dropped it
        db.session.delete(upload)
        db.session.commit()


def _discard_copy(key: str) -> None:
    """Remove the stored copy of an upload whose import could not start; storage may be failing too."""
    try:
        storage().delete(key)
    except StorageUnavailable:
        log.warning("stored copy %s of an upload whose import failed to start could not be deleted", key)


@bp.errorhandler(TusError)
def _tus_error(exc: TusError) -> Response:
    response = error_response(exc.status, exc.message)
    if exc.status == 503:  # a passing fault: say when to come back
        response.headers["Retry-After"] = "5"
    return response


@bp.before_request
def _require_tus_version() -> Response | None:
    """Every request but OPTIONS names the protocol version it speaks (412 otherwise)."""
    if request.method == "OPTIONS":
        return None
    version = request.headers.get("Tus-Resumable")
    if version != TUS_VERSION:
        said = "no Tus-Resumable header" if version is None else f"Tus-Resumable: {version}"
        response = error_response(412, f"This server speaks tus {TUS_VERSION}; the request sent {said}")
        response.headers["Tus-Version"] = TUS_VERSION
        return response
    return None


@bp.after_request
def _tus_headers(response: Response) -> Response:
    response.headers["Tus-Resumable"] = TUS_VERSION
    # An offset is only true at the moment it is read: no cache may keep it.
    response.headers["Cache-Control"] = "no-store"
    return response


# --- headers ---------------------------------------------------------------------------------


def _upload_headers(response: Response, upload: Upload) -> Response:
    response.headers["Upload-Offset"] = str(upload.offset)
    response.headers["Upload-Expires"] = http_date(aware(upload.expires_at))
    if upload.import_id:
        response.headers["X-Import-Id"] = upload.import_id
    return response


# --- state -----------------------------------------------------------------------------------


def _find(upload_id: str) -> Upload:
    """The live upload of this principal, or 404 (unknown, deleted, another's) / 410 (expired)."""
    upload = db.session.get(Upload, upload_id) if _UPLOAD_ID.match(upload_id) else None
    # Another client's upload is not there for this one: it learns nothing of it, not even that it exists.
    if upload is None or (upload.owner or "") != current_principal().id:
        raise TusError(404, "Upload not found: it never existed, was deleted, or expired")
    if aware(upload.expires_at) <= utcnow():
        raise TusError(410, "This upload expired before it was finished; start it again")
    return upload


def _start_import(upload: Upload) -> None:
    """Turn a complete upload into an import (the caller holds its lock); idempotent.

    The import row and the upload's link to it are committed together, so a passing failure
    leaves the partial file and the upload as they were and the client may simply ask again.
    A refusal by the store's own rules (size, type) will not pass: the upload is dropped.
    """
    if upload.import_id or not upload.is_complete:
        return
    stored_key = None
    try:
        # The page asks for a review of each file, unless its source's saved mapping fits it.
        review = parse_metadata(upload.metadata_header or "").get("review", "").strip().lower() in _TRUE
        with open(partial_path(upload.id), "rb") as partial:
            # The merge mode travels in the upload's metadata, checked when the upload was created.
            mode = parse_metadata(upload.metadata_header or "").get("mode", "").strip() or "skip"
            imp = create_import(
                partial,
                source=upload.source,
                filename=upload.filename,
                use_resumable=upload.use_resumable,
                status="review" if review else "queued",
                mode=mode,
                created_by=upload.owner,
            )
        stored_key = imp.storage_key
        if review:
            skip_review(imp)
            announce_review(imp)
        db.session.flush()  # gives the import its id
        upload.import_id = imp.id
        upload.expires_at = new_expiry()
        db.session.commit()
    except (UploadTooLarge, EmptyUpload) as exc:
        db.session.rollback()
        raise TusError(413 if isinstance(exc, UploadTooLarge) else 400, str(exc)) from None
    except StorageRefused as exc:
        db.session.rollback()
        _drop(upload)
        log.info("upload %s is complete but storage refuses it: %s", upload.id, exc)
        raise TusError(exc.status, str(exc)) from None
    except StorageFull:
        db.session.rollback()
        # Every byte is kept in the upload; a HEAD or PATCH starts the import once there is room.
        raise TusError(
            INSUFFICIENT_STORAGE,
            "The file arrived, but storage is full so its import could not start. The upload is "
            "kept: once space is freed, ask for its offset (HEAD) and the import starts.",
        ) from None
    except Exception:
        db.session.rollback()
        if stored_key:
            _discard_copy(stored_key)
        log.exception("upload %s is complete but its import could not start", upload.id)
        raise TusError(503, "The file arrived but its import could not start; retry in a moment") from None
    log.info("upload %s complete, import %s started", upload.id, upload.import_id)
    try:
        if imp.status == "queued":
            enqueue_import(upload.import_id)
    except redis.exceptions.RedisError:
        # The import is committed as queued; the reconciler puts its job back on the queue.
        log.exception("import %s is recorded but could not be queued", upload.import_id)
    partial_path(upload.id).unlink(missing_ok=True)


# --- routes ----------------------------------------------------------------------------------


@bp.route("", methods=["OPTIONS"])
@bp.route("/<upload_id>", methods=["OPTIONS"])
def options(upload_id: str | None = None) -> Response:
    """What this server supports."""
    response = Response(status=204)
    response.headers["Tus-Version"] = TUS_VERSION
    response.headers["Tus-Extension"] = TUS_EXTENSIONS
    response.headers["Tus-Max-Size"] = str(settings().max_upload_size)
    response.headers["Tus-Checksum-Algorithm"] = ",".join(CHECKSUM_ALGORITHMS)
    return response


@bp.post("", provide_automatic_options=False)
def create() -> Response:
    """Create an upload (creation), with its first bytes if the body has any (creation-with-upload)."""
    if "Upload-Defer-Length" in request.headers:
        raise TusError(400, "Upload-Defer-Length is not supported: send Upload-Length")
    length = byte_count("Upload-Length")
    limit = settings().max_upload_size
    if length > limit:
        raise TusError(413, f"The file is larger than the limit of {limit:,} bytes")
    if length == 0:
        raise TusError(400, "The file is empty")
    metadata_header = request.headers.get("Upload-Metadata", "")
    metadata = parse_metadata(metadata_header)
    source = metadata.get("source", "").strip()
    if not source:
        raise TusError(400, "Missing required metadata: source (the import's source, 1 to 100 characters)")
    if len(source) > SOURCE_MAX:
        raise TusError(400, f"Metadata source must be 1 to {SOURCE_MAX} characters long")
    if has_control_characters(source):
        raise TusError(400, "Metadata source must not contain control characters")
    try:
        # Refused now, not after the user has sent every byte of a file the store will not take.
        storage().check_size(length)
    except StorageRefused as exc:
        raise TusError(exc.status, str(exc)) from None
    problem = mode_problem(metadata.get("mode"), "Metadata mode")
    if problem:
        raise TusError(400, problem)
    if not current_principal().may_use(source):
        raise TusError(403, f"This API token may not import into the source {source!r}")
    with_data = request.mimetype == CHUNK_TYPE
    checksum = upload_checksum() if with_data else None
    declared = byte_count("Content-Length", required=False)
    if with_data and declared is not None and declared > length:
        raise TusError(413, f"The data runs past the upload's length of {length:,} bytes")

    filename = clean_filename(metadata.get("filename"))
    upload = Upload(
        length=length,
        offset=0,
        metadata_header=metadata_header.strip() or None,
        source=source,
        filename=filename,
        use_resumable=metadata.get("useResumable", "").strip().lower() in _TRUE,
        expires_at=new_expiry(),
        owner=current_principal().id or None,
    )
    db.session.add(upload)
    db.session.commit()
    log.info("upload %s created: %s bytes from %s", upload.id, length, source)

    if with_data and declared != 0:
        try:
            with locked(upload.id):
                receive(upload, request.stream, checksum)
                _start_import(upload)
        except TusError as exc:
            if exc.status != 503:
                # The creation failed as a whole: keep nothing, the client still has its file.
                db.session.rollback()
                _drop(upload)
                raise
            # 503: the bytes are safe and the upload exists; a HEAD or PATCH starts the import.
    response = Response(status=201)
    response.headers["Location"] = absolute_url("uploads.status", upload_id=upload.id)
    return _upload_headers(response, upload)


@bp.route("/<upload_id>", methods=["HEAD"])
def status(upload_id: str) -> Response:
    """How far an upload has come; once complete, the import it became (X-Import-Id)."""
    upload = _find(upload_id)
    if upload.is_complete and not upload.import_id:
        # The import could not start when the last byte came: try again now.
        with upload_lock(upload_id) as held:
            if held:
                db.session.refresh(upload)
                _start_import(upload)
    response = Response(status=200)
    response.headers["Upload-Length"] = str(upload.length)
    if upload.metadata_header:
        response.headers["Upload-Metadata"] = upload.metadata_header
    return _upload_headers(response, upload)


@bp.patch("/<upload_id>", provide_automatic_options=False)
def append(upload_id: str) -> Response:
    """Add bytes at the upload's offset; the last byte starts the import."""
    if request.mimetype != CHUNK_TYPE:
        raise TusError(415, f"A PATCH must have Content-Type: {CHUNK_TYPE}")
    offset = byte_count("Upload-Offset")
    checksum = upload_checksum()
    declared = byte_count("Content-Length", required=False)
    with locked(upload_id):
        upload = _find(upload_id)
        if offset != upload.offset:
            raise TusError(409, f"Upload-Offset is {offset} but the upload is at {upload.offset}")
        if declared is not None and offset + declared > upload.length:
            raise TusError(413, f"The data runs past the upload's length of {upload.length:,} bytes")
        if not upload.is_complete:
            receive(upload, request.stream, checksum)
        _start_import(upload)
        return _upload_headers(Response(status=204), upload)


@bp.delete("/<upload_id>", provide_automatic_options=False)
def terminate(upload_id: str) -> Response:
    """Abandon an upload: its bytes and its record go (an import it already started stays)."""
    with locked(upload_id):
        upload = _find(upload_id)
        remove_files(upload.id)
        db.session.delete(upload)
        db.session.commit()
    log.info("upload %s terminated", upload_id)
    return Response(status=204)


@bp.post("/<upload_id>", provide_automatic_options=False)
def method_override(upload_id: str) -> Response:
    """PATCH and DELETE sent as POST with X-HTTP-Method-Override, for clients behind strict proxies."""
    views = {"PATCH": append, "DELETE": terminate}
    view = views.get(request.headers.get("X-HTTP-Method-Override", "").upper())
    if view is None:
        raise TusError(405, "POST to an upload needs X-HTTP-Method-Override: PATCH or DELETE")
    return view(upload_id)


# --- upkeep ----------------------------------------------------------------------------------


def expire_uploads() -> None:
    """Delete uploads left untouched for longer than UPLOAD_EXPIRY, and their files."""
    expired = db.session.scalars(select(Upload.id).where(Upload.expires_at <= utcnow())).all()
    db.session.rollback()
    for upload_id in expired:
        with upload_lock(upload_id) as held:
            if not held:  # a request is writing to it right now, so it is not abandoned
                continue
            upload = db.session.get(Upload, upload_id)
            if upload is None or aware(upload.expires_at) > utcnow():
                db.session.rollback()
                continue
            remove_files(upload_id)
            db.session.delete(upload)
            db.session.commit()
            log.info("upload %s expired and was deleted", upload_id)


TASKS.append(expire_uploads)
