"""The tus request headers a chunk or a creation carries: byte counts, Upload-Metadata, Upload-Checksum."""

from __future__ import annotations

import base64
import binascii

from flask import request

from app.upload_files import CHECKSUM_ALGORITHMS, TusError


def byte_count(name: str, required: bool = True) -> int | None:
    """The header ``name`` as a number of bytes; TusError 400 if not one, or missing and ``required``."""
    value = request.headers.get(name)
    if value is None:
        if required:
            raise TusError(400, f"The {name} header is missing")
        return None
    if not (value.isascii() and value.isdigit()):
        raise TusError(400, f"{name} must be a whole number of bytes, not {value!r}")
    return int(value)


def parse_metadata(header: str) -> dict[str, str]:
    """Decode ``Upload-Metadata`` (``key base64value,key2 ...``); raise TusError 400 when malformed."""
    metadata: dict[str, str] = {}
    for pair in header.split(","):
        pair = pair.strip()
        if not pair:
            continue
        key, _, encoded = pair.partition(" ")
        if not key.isascii() or " " in encoded.strip():
            raise TusError(400, f"Upload-Metadata has a malformed pair: {pair[:100]!r}")
        if key in metadata:
            raise TusError(400, f"Upload-Metadata names {key!r} twice")
        try:
            metadata[key] = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise TusError(
                400, f"Upload-Metadata value of {key!r} is not base64-encoded UTF-8 text"
            ) from None
    return metadata


def upload_checksum() -> tuple[str, bytes] | None:
    """The Upload-Checksum header as (algorithm, digest), or None."""
    value = request.headers.get("Upload-Checksum")
    if value is None:
        return None
    algorithm, _, encoded = value.strip().partition(" ")
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise TusError(
            400,
            f"Upload-Checksum algorithm {algorithm!r} is not supported; use one of "
            + ", ".join(CHECKSUM_ALGORITHMS),
        )
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error:
        raise TusError(400, "Upload-Checksum must be the algorithm, a space and a base64 digest") from None
    if len(digest) != CHECKSUM_ALGORITHMS[algorithm]().digest_size:
        raise TusError(400, f"Upload-Checksum is not a {algorithm} digest")
    return algorithm, digest
