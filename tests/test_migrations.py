"""Migrations on a database of their own: the search index built without blocking, again if cut short."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic import command
from alembic.config import Config
from flask import Flask
from sqlalchemy import select

from app import create_app
from app.cli import ROOT
from app.contact_search import ContactFilter
from app.extensions import db
from app.models import Contact
from app.search_sample import Plan
from tests.conftest import ADMIN_URL, DATABASE_NAME
from tests.test_search_sample import asks_cjk_index, explained

NAME = f"{DATABASE_NAME}_migrations"


@pytest.fixture
def fresh(redis_url: str, tmp_path: Path) -> Iterator[tuple[Flask, Config, str]]:
    """An app on an empty PostgreSQL database, and the migrations' configuration for it."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{NAME}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{NAME}"')
    url = f"{ADMIN_URL.rsplit('/', 1)[0]}/{NAME}"
    app = create_app(
        {"DATABASE_URL": url, "REDIS_URL": redis_url, "INSTANCE_DIR": str(tmp_path), "SECRET_KEY": "t"}
    )
    config = Config()
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["flask_app"] = app
    yield app, config, url
    with app.app_context():
        db.engine.dispose()
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{NAME}" WITH (FORCE)')


def _indexes(url: str) -> dict[str, bool]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.relname, x.indisvalid FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid "
            "WHERE x.indrelid = 'contacts'::regclass AND c.relname LIKE '%trgm%'"
        ).fetchall()
    return dict(rows)


def test_a_search_index_build_cut_short_is_built_again(fresh: tuple[Flask, Config, str]):
    app, config, url = fresh
    with app.app_context():
        command.upgrade(config, "head")
        assert _indexes(url) == {"contacts_search_trgm_idx": True, "contacts_cjk_trgm_idx": True}
        command.downgrade(config, "0012_webhook_tallies")
        assert _indexes(url) == {"contacts_email_trgm_idx": True, "contacts_name_trgm_idx": True}
        # What a CREATE INDEX CONCURRENTLY cut short leaves behind: the index, marked invalid.
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "CREATE INDEX contacts_search_trgm_idx ON contacts "
                "USING gin ((email || E'\\x1f' || name) gin_trgm_ops)"
            )
            conn.execute(
                "UPDATE pg_index SET indisvalid = false "
                "WHERE indexrelid = 'contacts_search_trgm_idx'::regclass"
            )
        assert _indexes(url)["contacts_search_trgm_idx"] is False
        command.upgrade(config, "head")
        assert _indexes(url) == {"contacts_search_trgm_idx": True, "contacts_cjk_trgm_idx": True}


def _cut_short(url: str, index: str) -> None:
    """Leave what a CREATE INDEX CONCURRENTLY cut short leaves behind: an index of that name, invalid."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE INDEX {index} ON contacts (name)")
        conn.execute(f"UPDATE pg_index SET indisvalid = false WHERE indexrelid = '{index}'::regclass")


def _valid(url: str, index: str) -> list[bool]:
    """Whether the index is valid: [True], [False], or [] when there is none."""
    with psycopg.connect(url) as conn:
        found = "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)"
        return [row[0] for row in conn.execute(found, (index,))]


def test_a_cjk_index_build_cut_short_is_built_again_and_used(fresh: tuple[Flask, Config, str]):
    app, config, url = fresh
    with app.app_context():
        command.upgrade(config, "0017_row_errors_unchecked")
        _cut_short(url, "contacts_cjk_trgm_idx")
        command.upgrade(config, "head")
        assert _indexes(url) == {"contacts_search_trgm_idx": True, "contacts_cjk_trgm_idx": True}
        # The search names the index's expression and condition as the migration wrote them.
        query = select(Contact.id).where(*ContactFilter(q="徐强").where(db.session, Plan(cjk=["徐强"])))
        assert asks_cjk_index(explained(query))
        command.downgrade(config, "0017_row_errors_unchecked")
        assert _indexes(url) == {"contacts_search_trgm_idx": True}


def test_a_pair_index_build_cut_short_is_built_again_and_used(fresh: tuple[Flask, Config, str]):
    app, config, url = fresh

    def valid() -> list[bool]:
        return _valid(url, "contacts_pair_idx")

    with app.app_context():
        command.upgrade(config, "0018_cjk_search")
        _cut_short(url, "contacts_pair_idx")
        command.upgrade(config, "head")
        assert valid() == [True]
        # The search names the index's condition as the migration wrote it.
        query = select(Contact.id).where(*ContactFilter(q="zt").where(db.session, Plan(pair="zt")))
        assert "Bitmap Index Scan on contacts_pair_idx" in explained(query)
        command.downgrade(config, "0018_cjk_search")
        assert valid() == []


def test_the_contacts_undos_removed_before_the_count_was_kept_are_counted_once(
    fresh: tuple[Flask, Config, str],
):
    """Migration 0016: an undo run before it removed what its import inserted and is no longer there."""
    app, config, url = fresh
    with app.app_context():
        command.upgrade(config, "0015_search_sample")
        with psycopg.connect(url, autocommit=True) as conn:
            for import_id, undone in (("undone", True), ("kept", False)):
                conn.execute(
                    "INSERT INTO imports (id, status, source, created_at, inserted_rows, undo_state) "
                    "VALUES (%s, %s, 'crm', now(), 3, %s)",
                    (import_id, "undone" if undone else "completed", '{"phase": "done"}' if undone else None),
                )
            # The undone import's third contact was changed by a later import, so its undo kept it.
            rows = [("undone", "kept@example.com")] + [("kept", f"p{n}@example.com") for n in range(3)]
            for import_id, email in rows:
                conn.execute(
                    "INSERT INTO contacts (id, name, email, source, import_id, imported_at) "
                    "VALUES (gen_random_uuid(), '', %s, 'crm', %s, now())",
                    (email, import_id),
                )
        command.upgrade(config, "head")
        with psycopg.connect(url) as conn:
            removed = dict(conn.execute("SELECT id, removed_rows FROM imports").fetchall())
        assert removed == {"undone": 2, "kept": 0}
        client = app.test_client()
        listed = client.get("/sources", headers={"Accept": "application/json"}).get_json()["items"]
        assert [(item["source"], item["contacts"]) for item in listed] == [("crm", 4)]


def test_a_source_order_index_build_cut_short_is_built_again_and_used(fresh: tuple[Flask, Config, str]):
    app, config, url = fresh

    def valid() -> list[bool]:
        return _valid(url, "contacts_source_id_idx")

    with app.app_context():
        command.upgrade(config, "0019_pair_search")
        _cut_short(url, "contacts_source_id_idx")
        command.upgrade(config, "head")
        assert valid() == [True]
        # A page of one source, in id order, as the contacts page asks for it.
        query = select(Contact.id).where(*ContactFilter(source="crm").where(db.session)).order_by(Contact.id)
        assert "contacts_source_id_idx" in explained(query.limit(51))
        command.downgrade(config, "0019_pair_search")
        assert valid() == []
