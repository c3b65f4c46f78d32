"""Hostile requests: bodies past the size limit or cut short, malformed forms, and the security headers.

Everything here runs before a route reads a byte, or after it answers, so no route has to remember it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import IO, Any

from flask import Flask, Request, Response, request
from werkzeug.exceptions import BadRequest, ClientDisconnected, RequestEntityTooLarge
from werkzeug.formparser import FormDataParser, default_stream_factory

from app.errors import error_response, http_error
from app.extensions import settings

# A multipart body carries its file plus boundaries, part headers and the small fields.
FORM_OVERHEAD = 64 * 1024
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
# Served as files to save, never rendered by the browser.
DOWNLOAD_TYPES = frozenset({"text/csv", "application/octet-stream"})


class IncompleteBody(ClientDisconnected):
    """The body ended before the bytes its Content-Length announced (the client went away).

    A ClientDisconnected, so code that keeps what arrived of a cut-short body (tus) still can.
    """


class BodyTimedOut(ClientDisconnected):
    """The client sent nothing of its body for the web server's body timeout (WEB_BODY_TIMEOUT)."""

    code = 408
    description = (
        "The request body stopped arriving: nothing came for too long, so the server stopped waiting. "
        "Send the request again."
    )


class MalformedForm(BadRequest):
    """A multipart/form-data body that cannot be parsed to its end."""


class _CheckedInput:
    """The WSGI input: an early end (before its Content-Length) or a stall is an error, not a short file."""

    def __init__(self, stream: IO[bytes], expected: int | None) -> None:
        self._stream = stream
        self._expected = expected
        self._seen = 0

    def _count(self, data: bytes, asked: int | None) -> bytes:
        self._seen += len(data)
        if not data and (asked is None or asked > 0) and self._expected and self._seen < self._expected:
            raise IncompleteBody(
                f"The request body ended after {self._seen:,} of the {self._expected:,} bytes its "
                "Content-Length announced. Nothing was stored; send the whole body again."
            )
        return data

    def read(self, size: int | None = -1) -> bytes:
        """Read, raising IncompleteBody when the client stopped sending too early."""
        try:
            return self._count(self._stream.read(size if size is not None else -1), size)
        except TimeoutError:  # the socket's idle timeout (app.web_worker)
            raise BodyTimedOut() from None

    def readline(self, size: int | None = -1) -> bytes:
        """Read a line, raising IncompleteBody when the client stopped sending too early."""
        try:
            return self._count(self._stream.readline(size if size is not None else -1), size)
        except TimeoutError:
            raise BodyTimedOut() from None

    def __iter__(self) -> Iterable[bytes]:
        while line := self.readline():
            yield line

    def close(self) -> None:
        """Close the underlying stream if it can be."""
        close = getattr(self._stream, "close", None)
        if close:
            close()


class BodyGuard:
    """WSGI middleware: every body is checked for a stall, and one with a Content-Length for an early end."""

    def __init__(self, wsgi_app: Callable[..., Any]) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """Wrap the input stream, then hand the request on."""
        length = environ.get("CONTENT_LENGTH", "")
        if length.isdigit() and int(length) > 0:
            environ["wsgi.input"] = _CheckedInput(environ["wsgi.input"], int(length))
        elif environ.get("wsgi.input_terminated"):  # a chunked body
            environ["wsgi.input"] = _CheckedInput(environ["wsgi.input"], None)
        return self.wsgi_app(environ, start_response)


# Every method a route here answers; anything else is refused before Flask (or a metric label) sees it.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class MethodGuard:
    """WSGI middleware: 501 for a method no route knows, so invented methods cannot grow /metrics."""

    def __init__(self, wsgi_app: Callable[..., Any]) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """Refuse an unknown method, or hand the request on."""
        if environ.get("REQUEST_METHOD") in KNOWN_METHODS:
            return self.wsgi_app(environ, start_response)
        body = b'{"error":"This server does not implement that HTTP method"}\n'
        start_response(
            "501 Not Implemented",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            + list(SECURITY_HEADERS.items()),
        )
        return [body]


class TooManyParts(RequestEntityTooLarge):
    """A multipart form with more parts than any upload form has (werkzeug's max_form_parts)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"The form has more than {limit:,} parts. Send the file and its few fields "
            "(file, source, useResumable) in one form, or the file alone as the request body."
        )


class _PartCounter:
    """A multipart body on its way to the parser, counting its boundary lines as they pass."""

    def __init__(self, stream: IO[bytes], boundary: bytes) -> None:
        self._stream = stream
        self._delimiter = b"--" + boundary
        self._tail = b""
        self.parts = 0

    def read(self, size: int = -1) -> bytes:
        """Read, counting the boundaries (one that straddles two reads too)."""
        data = self._stream.read(size)
        if self._delimiter != b"--":
            window = self._tail + data
            self.parts += window.count(self._delimiter)
            keep = len(self._delimiter) - 1
            self._tail = window[-keep:] if keep else b""
        return data


class StrictFormParser(FormDataParser):
    """A form parser that says what is wrong with a broken multipart body instead of dropping it.

    The temporary files of a parse that fails are closed at once, not left to the collector.
    """

    def __init__(self, stream_factory: Callable[..., IO[bytes]] | None = None, **kwargs: Any) -> None:
        self._opened: list[IO[bytes]] = []
        make = stream_factory or default_stream_factory

        def tracked(*args: Any, **factory_kwargs: Any) -> IO[bytes]:
            spool = make(*args, **factory_kwargs)
            self._opened.append(spool)
            return spool

        super().__init__(tracked, **{**kwargs, "silent": False})

    def parse(
        self, stream: IO[bytes], mimetype: str, content_length: int | None, options: dict | None = None
    ) -> Any:
        """Parse, turning the parser's ValueError into a 400 that explains it."""
        boundary = (options or {}).get("boundary", "")
        counted = _PartCounter(stream, boundary.encode()) if mimetype == "multipart/form-data" else None
        try:
            return super().parse(counted or stream, mimetype, content_length, options)
        except RequestEntityTooLarge:
            self._close_spools()
            # Werkzeug gives every form limit the same bare 413; say which one this was.
            if counted and self.max_form_parts is not None and counted.parts > self.max_form_parts:
                raise TooManyParts(self.max_form_parts) from None
            raise
        except ValueError as exc:
            self._close_spools()
            if "boundary" in str(exc).lower():
                raise MalformedForm("The multipart/form-data body has no boundary parameter") from exc
            raise MalformedForm(
                "The multipart/form-data body is cut short or malformed: it does not end with its "
                "closing boundary. Nothing was stored; send the whole form again."
            ) from exc
        except BaseException:
            self._close_spools()
            raise

    def _close_spools(self) -> None:
        for spool in self._opened:
            spool.close()


class CheckedRequest(Request):
    """Flask's request, with the strict form parser."""

    form_data_parser_class = StrictFormParser


def _refuse_oversize() -> Response | None:
    """A body announced larger than MAX_UPLOAD_SIZE is refused before a byte of it is read."""
    limit = settings().max_upload_size
    if request.content_length is not None and request.content_length > limit + FORM_OVERHEAD:
        return error_response(413, f"The file is larger than the limit of {limit:,} bytes")
    # Forms are parsed (and their files spooled) only up to the limit.
    request.max_content_length = limit + FORM_OVERHEAD
    return None


def _headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if response.mimetype in DOWNLOAD_TYPES and "Content-Disposition" not in response.headers:
        response.headers["Content-Disposition"] = "attachment"
    return response


def _timed_out(exc: BodyTimedOut) -> Response:
    """408, and the connection is closed: the rest of that body is not worth waiting for."""
    response = http_error(exc)
    response.headers["Connection"] = "close"
    return response


def init_app(app: Flask) -> None:
    """Guard request bodies and add the security headers to every response."""
    app.register_error_handler(BodyTimedOut, _timed_out)
    app.request_class = CheckedRequest
    app.wsgi_app = MethodGuard(BodyGuard(app.wsgi_app))  # type: ignore[method-assign]
    app.before_request(_refuse_oversize)
    app.after_request(_headers)
