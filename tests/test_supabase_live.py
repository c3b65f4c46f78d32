"""A smoke test against a real Supabase project; it runs only where one is configured.

Set SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY (and SUPABASE_BUCKET, default ``imports``, an
existing private bucket) in the environment to run it. It stores, reads back and deletes two files.
"""

from __future__ import annotations

import hashlib
import io
import os

import pytest

from app.config import SUPABASE_CHUNK_SIZE
from app.storage import StoredFileMissing
from app.storage.supabase import SupabaseStorage

URL = os.environ.get("SUPABASE_URL")
KEY = os.environ.get("SUPABASE_SERVICE_ROLE_KEY")

pytestmark = pytest.mark.skipif(
    not (URL and KEY),
    reason="no Supabase project: set SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY to run this smoke test",
)


@pytest.fixture
def live() -> SupabaseStorage:
    assert URL and KEY
    return SupabaseStorage(URL, KEY, os.environ.get("SUPABASE_BUCKET", "imports"), SUPABASE_CHUNK_SIZE)


@pytest.mark.parametrize("use_resumable", [False, True])
def test_round_trip_against_a_real_project(live, use_resumable):
    live.check()
    # Past one chunk when resumable, so the 6 MiB rule and the last short chunk are both exercised.
    data = os.urandom(SUPABASE_CHUNK_SIZE + 12345 if use_resumable else 200_000)
    stored = live.save(io.BytesIO(data), len(data), use_resumable=use_resumable)
    try:
        digest = hashlib.sha256()
        with live.open(stored.key) as stream:
            while chunk := stream.read(1024 * 1024):
                digest.update(chunk)
        assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
    finally:
        live.delete(stored.key)
    with pytest.raises(StoredFileMissing), live.open(stored.key):
        pass
