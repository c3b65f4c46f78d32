"""What a Supabase bucket and server refuse, compared and worded as DataFlow does: no app, no server."""

from __future__ import annotations

from types import SimpleNamespace

from app.storage.supabase_rules import SENT_TYPES, BucketRules, describe_size, mime_allowed, too_large

MIB = 1024 * 1024


def test_mime_rules_compare_as_the_server_does():
    assert mime_allowed("text/csv", ())
    assert mime_allowed("text/csv", ("text/csv",))
    assert mime_allowed("text/vcard", ("text/*",))
    assert not mime_allowed("text/csv; charset=utf-8", ("text/csv",))
    assert not mime_allowed("application/json", ("text/*", "image/png"))
    assert not mime_allowed("text", ("text/*",))


def test_bucket_rules_from_the_clients_answer():
    info = SimpleNamespace(file_size_limit=1000, allowed_mime_types=["text/csv"])
    rules = BucketRules.of("imports", info)
    assert rules == BucketRules("imports", 1000, ("text/csv",))
    assert BucketRules.of("imports", SimpleNamespace(file_size_limit=None, allowed_mime_types=None)) == (
        BucketRules("imports")
    )
    assert rules.content_type("text/csv") == "text/csv"
    assert rules.content_type("application/json") is None
    assert BucketRules("b", None, ("application/octet-stream",)).content_type("text/csv") == (
        "application/octet-stream"
    )
    assert len(rules.refused_types()) == len(SENT_TYPES) - 1


def test_sizes_read_as_people_read_them():
    assert describe_size(1000) == "1,000 bytes"
    assert describe_size(50 * MIB) == "52,428,800 bytes (50 MiB)"
    assert describe_size(50_000_000) == "50,000,000 bytes (47.7 MiB)"


def test_too_large_names_the_limit_that_was_passed():
    bucket = BucketRules("imports", 10 * MIB)
    assert "bucket 'imports'" in str(too_large(bucket, 500 * MIB, 20 * MIB, "x"))
    roomy = BucketRules("imports", 100 * MIB)
    assert "upload size limit is 52,428,800 bytes" in str(too_large(roomy, 50 * MIB, 60 * MIB, "x"))
    unknown = too_large(None, None, 8 * MIB, "The object exceeded the maximum allowed size")
    assert unknown.status == 413 and "The object exceeded the maximum allowed size" in str(unknown)
