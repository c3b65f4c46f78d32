"""What a Supabase Storage bucket and server refuse (sizes, content types), and how DataFlow says so."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.readers import MEDIA_TYPES, UNKNOWN_MEDIA_TYPE
from app.storage import StorageRefused

MIB = 1024 * 1024
# Every content type DataFlow may send: the formats it reads, and the one for a file it cannot name.
SENT_TYPES = (*dict.fromkeys(MEDIA_TYPES.values()), UNKNOWN_MEDIA_TYPE)


def describe_size(size: int) -> str:
    """A byte count as people read it: ``52,428,800 bytes (50 MiB)``."""
    if size < MIB:
        return f"{size:,} bytes"
    mib = f"{size / MIB:.1f}".removesuffix(".0")
    return f"{size:,} bytes ({mib} MiB)"


def mime_allowed(mime_type: str, allowed: tuple[str, ...]) -> bool:
    """Whether a bucket's ``allowed_mime_types`` take ``mime_type``, compared as the server does.

    ``type/subtype`` must match a rule exactly or a ``type/*`` rule; no rules allow everything.
    """
    if not allowed:
        return True
    kind, _, sub = mime_type.partition("/")
    for rule in allowed:
        rule_kind, _, rule_sub = rule.partition("/")
        if sub and rule_kind == kind and rule_sub in ("*", sub):
            return True
    return False


@dataclass(frozen=True)
class BucketRules:
    """A bucket's own limits, as ``GET /bucket/<id>`` shows them."""

    bucket: str
    file_size_limit: int | None = None
    allowed_mime_types: tuple[str, ...] = ()

    @classmethod
    def of(cls, bucket: str, info: Any) -> BucketRules:
        """The rules of a bucket from the storage client's answer (absent or empty: no rule)."""
        limit = getattr(info, "file_size_limit", None)
        allowed = getattr(info, "allowed_mime_types", None) or ()
        return cls(bucket, int(limit) if limit else None, tuple(str(rule) for rule in allowed))

    def content_type(self, true_type: str) -> str | None:
        """What to send for a file of ``true_type``: it, else the generic type, if the bucket takes it."""
        for candidate in (true_type, UNKNOWN_MEDIA_TYPE):
            if mime_allowed(candidate, self.allowed_mime_types):
                return candidate
        return None

    def refused_types(self) -> list[str]:
        """The content types DataFlow sends that this bucket would refuse."""
        return [kind for kind in SENT_TYPES if self.content_type(kind) is None]


def type_refused(rules: BucketRules, content_type: str) -> StorageRefused:
    """415: the bucket's allowed types leave out this file's type."""
    allowed = ", ".join(rules.allowed_mime_types) or "(unknown)"
    return StorageRefused(
        415,
        f"The storage bucket {rules.bucket!r} accepts only these content types: {allowed} "
        f"(its allowed MIME types), and this file is {content_type}. Nothing was imported. "
        f"Send the file in a format the bucket accepts, or ask an administrator to add {content_type} "
        "(or application/octet-stream) to the bucket's allowed MIME types.",
    )


def too_large(rules: BucketRules | None, store_limit: int | None, size: int, said: str) -> StorageRefused:
    """413: the file passes the bucket's file size limit, or the server's own upload limit."""
    what = f"The file ({describe_size(size)})"
    split = "Nothing was imported. Split the file into smaller files"
    if rules and rules.file_size_limit and size > rules.file_size_limit:
        return StorageRefused(
            413,
            f"{what} is larger than the storage bucket {rules.bucket!r} accepts: its file size limit "
            f"is {describe_size(rules.file_size_limit)}. {split}, or ask an administrator to raise "
            "the bucket's file size limit.",
        )
    if store_limit and size > store_limit:
        return StorageRefused(
            413,
            f"{what} is larger than Supabase Storage accepts: its upload size limit is "
            f"{describe_size(store_limit)}. {split}, or ask an administrator to raise the storage "
            "upload size limit (the project's setting, or UPLOAD_FILE_SIZE_LIMIT on a self-hosted server).",
        )
    return StorageRefused(
        413,
        f"{what} is larger than Supabase Storage accepts ({said}). {split}, or ask an administrator "
        "to raise the storage upload size limit.",
    )


def health_warnings(rules: BucketRules, store_limit: int | None, max_upload_size: int | None) -> list[str]:
    """What the bucket or the server would refuse of the uploads DataFlow accepts."""
    warnings = []
    if max_upload_size and rules.file_size_limit and rules.file_size_limit < max_upload_size:
        warnings.append(
            f"bucket {rules.bucket!r} has a file size limit of {describe_size(rules.file_size_limit)}, "
            f"below MAX_UPLOAD_SIZE ({describe_size(max_upload_size)}): larger files are refused with "
            "413; raise the bucket's limit or lower MAX_UPLOAD_SIZE"
        )
    if max_upload_size and store_limit and store_limit < max_upload_size:
        warnings.append(
            f"Supabase Storage takes files up to {describe_size(store_limit)} (its upload size limit, "
            f"Tus-Max-Size), below MAX_UPLOAD_SIZE ({describe_size(max_upload_size)}): larger files "
            "are refused with 413; raise the storage limit or lower MAX_UPLOAD_SIZE"
        )
    refused = rules.refused_types()
    if refused:
        warnings.append(
            f"bucket {rules.bucket!r} allows only {', '.join(rules.allowed_mime_types)}, so files sent as "
            f"{', '.join(refused)} are refused with 415; add application/octet-stream (or those types) "
            "to its allowed MIME types, or clear them"
        )
    return warnings
