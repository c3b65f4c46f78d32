"""Settings: every mistake named at once, sizes and database URLs read as people write them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import ConfigError, load_settings
from app.config_values import parse_size
from tests.conftest import ROOT


def settings(tmp_path: Path, **env: str):
    return load_settings({"INSTANCE_DIR": str(tmp_path), "SECRET_KEY": "k", **env})


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("6291456", 6291456),
        ("6MiB", 6 * 1024**2),
        ("6 mib", 6 * 1024**2),
        ("6MB", 6_000_000),
        ("1GB", 10**9),
        ("2GiB", 2 * 1024**3),
        ("500kb", 500_000),
        ("1.5KiB", 1536),
        ("100b", 100),
    ],
)
def test_sizes(text: str, size: int):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "6XB", "-1MB", "MB", "1 G B"])
def test_not_sizes(text: str):
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(text)


@pytest.mark.parametrize(
    ("url", "stored"),
    [
        ("postgres://u:p@db:5432/app", "postgresql+psycopg://u:p@db:5432/app"),
        ("postgresql://u:p@db:5432/app", "postgresql+psycopg://u:p@db:5432/app"),
        ("postgresql+psycopg://u@db/app", "postgresql+psycopg://u@db/app"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ],
)
def test_database_urls(tmp_path: Path, url: str, stored: str):
    assert settings(tmp_path, DATABASE_URL=url).database_url == stored


def test_defaults_need_nothing(tmp_path: Path):
    config = load_settings({"INSTANCE_DIR": str(tmp_path)})
    assert config.database_url == f"sqlite:///{tmp_path / 'dataflow.db'}"
    assert config.redis_url is None
    assert (config.storage_backend, config.storage_dir) == ("local", tmp_path / "uploads")
    assert (config.port, config.enable_metrics, config.worker_concurrency) == (8000, True, 10)
    assert config.upload_chunk_size == 6 * 1024**2 and config.max_upload_size == 10**9
    # the generated secret is kept, so every process of the install agrees on it
    assert config.secret_key == load_settings({"INSTANCE_DIR": str(tmp_path)}).secret_key
    assert any("SECRET_KEY" in warning for warning in config.warnings)


def test_every_bad_setting_is_named_at_once(tmp_path: Path):
    with pytest.raises(ConfigError) as caught:
        settings(
            tmp_path,
            DATABASE_URL="mysql://root@db/app",
            REDIS_URL="localhost:6379",
            STORAGE_BACKEND="s3",
            PORT="eighty",
            ENABLE_METRICS="maybe",
            UPLOAD_CHUNK_SIZE="6 megs",
            WORKER_CONCURRENCY="0",
            MAX_UPLOAD_SIZE="0",
            BATCH_SIZE="-5",
        )
    message = str(caught.value)
    for expected in (
        "DATABASE_URL must start with postgres://, postgresql:// or sqlite:///, not 'mysql'",
        "REDIS_URL must start with redis://, rediss:// or unix://",
        "STORAGE_BACKEND must be one of local, supabase, not 's3'",
        "PORT must be a whole number, not 'eighty'",
        "ENABLE_METRICS must be true or false, not 'maybe'",
        "UPLOAD_CHUNK_SIZE: '6 megs' is not a size",
        "WORKER_CONCURRENCY must be at least 1, not 0",
        "MAX_UPLOAD_SIZE must be more than 0 bytes",
        "BATCH_SIZE must be at least 1, not -5",
    ):
        assert expected in message
    assert message.startswith("DataFlow cannot start:")
    assert len(message.splitlines()) == 10  # the heading and one line per mistake


def test_port_must_be_a_port(tmp_path: Path):
    with pytest.raises(ConfigError, match="PORT must be at most 65535, not 70000"):
        settings(tmp_path, PORT="70000")


def test_supabase_needs_its_url_and_key(tmp_path: Path):
    with pytest.raises(ConfigError) as caught:
        settings(tmp_path, STORAGE_BACKEND="supabase")
    assert "needs SUPABASE_URL" in str(caught.value)
    assert "needs SUPABASE_SERVICE_ROLE_KEY" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "value"), [("false", False), ("0", False), ("no", False), ("TRUE", True), ("on", True)]
)
def test_enable_metrics(tmp_path: Path, text: str, value: bool):
    assert settings(tmp_path, ENABLE_METRICS=text).enable_metrics is value


def test_an_instance_folder_that_cannot_keep_the_key_is_a_mistake(tmp_path: Path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    with pytest.raises(ConfigError, match="no generated key can be kept in"):
        load_settings({"INSTANCE_DIR": str(blocked / "instance")})


@pytest.mark.parametrize(
    "command",
    [
        ["-m", "flask", "--app", "wsgi", "migrate"],
        ["-m", "gunicorn", "-c", "python:app.gunicorn_conf", "--bind", "127.0.0.1:0", "wsgi:app"],
    ],
    ids=["flask", "gunicorn"],
)
def test_the_commands_and_gunicorn_stop_with_the_mistakes_and_no_traceback(
    tmp_path: Path, command: list[str]
):
    env = {
        "PATH": os.environ["PATH"],
        "INSTANCE_DIR": str(tmp_path),
        "PORT": "eighty",
        "ENABLE_METRICS": "maybe",
    }
    result = subprocess.run(
        [sys.executable, *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "DataFlow cannot start" in result.stderr
    assert "PORT must be a whole number, not 'eighty'" in result.stderr
    assert "ENABLE_METRICS must be true or false, not 'maybe'" in result.stderr
    assert "Traceback" not in result.stderr


def test_default_phone_region(tmp_path: Path):
    assert settings(tmp_path).default_phone_region is None
    assert settings(tmp_path, DEFAULT_PHONE_REGION=" gb ").default_phone_region == "GB"
    with pytest.raises(ConfigError, match="DEFAULT_PHONE_REGION must be a two-letter country code.*'UK'"):
        settings(tmp_path, DEFAULT_PHONE_REGION="UK")


def test_a_database_that_never_answers_fails_the_connection_instead_of_hanging():
    """A server that takes the TCP connection and then says nothing (a host dropping packets, a
    frozen proxy): the connection attempt gives up after ``connect_timeout``, 10 s unless the URL
    sets it."""
    import socket

    import sqlalchemy
    import sqlalchemy.exc

    from app.config import engine_options

    assert engine_options("postgresql+psycopg://db/app")["connect_args"]["connect_timeout"] == 10
    assert (
        "connect_timeout"
        not in engine_options("postgresql+psycopg://db/app?connect_timeout=3")["connect_args"]
    )
    with socket.create_server(("127.0.0.1", 0)) as silent:  # listens; never accepts, never answers
        url = f"postgresql+psycopg://nobody@127.0.0.1:{silent.getsockname()[1]}/app?connect_timeout=1"
        engine = sqlalchemy.create_engine(url, **engine_options(url))
        with pytest.raises(sqlalchemy.exc.OperationalError, match="timeout"):
            engine.connect()
        engine.dispose()
