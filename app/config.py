"""Typed settings read from the environment and checked once, when the app starts."""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from app.config_values import (
    ConfigError,
    read_backoff,
    read_bool,
    read_duration,
    read_int,
    read_rate,
    read_size,
)
from app.webhooks.settings import WebhookSettings, webhook_settings

STORAGE_BACKENDS = ("local", "supabase")
# The one chunk size Supabase Storage's resumable (tus) endpoint accepts, apart from the last chunk.
SUPABASE_CHUNK_SIZE = 6 * 1024 * 1024
# The open-source server's one-request upload limit in its sample configuration; larger files go
# to Supabase through tus, in parts (SUPABASE_UPLOAD_LIMIT).
SUPABASE_UPLOAD_LIMIT = 50 * 1024 * 1024
MIN_TOKEN_LENGTH = 16


def database_url(url: str) -> str:
    """Normalise a database URL: Heroku-style ``postgres://`` and bare ``postgresql://`` use psycopg 3."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


TOKEN_SCOPES = ("read", "import", "admin")


@dataclass(frozen=True)
class TokenGrant:
    """What one API token may do: its scopes, and the sources it may use (None: every source)."""

    token: str
    scopes: frozenset[str] = frozenset({"admin"})
    sources: frozenset[str] | None = None


def parse_token_grants(text: str) -> tuple[TokenGrant, ...]:
    """Read ``API_TOKENS``: comma-separated ``TOKEN``, ``TOKEN:SCOPES`` or ``TOKEN:SCOPES:SOURCES``.

    Scopes are joined by ``+`` (``read+import``), sources by ``|`` (``crm|newsletter``). A bare
    token keeps full rights, as before scopes existed. Raises ValueError saying what is wrong.
    """
    grants = []
    for entry in text.split(","):
        entry = entry.strip()
        if not entry:
            continue
        token, *rest = entry.split(":")
        token = token.strip()
        if len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(f"each token must be at least {MIN_TOKEN_LENGTH} characters long")
        if len(rest) > 2:
            raise ValueError("write each token as TOKEN, TOKEN:SCOPES or TOKEN:SCOPES:SOURCES")
        if not rest:
            grants.append(TokenGrant(token))
            continue
        scopes = frozenset(s.strip() for s in rest[0].split("+") if s.strip())
        unknown = scopes - set(TOKEN_SCOPES)
        if not scopes or unknown:
            raise ValueError(
                f"scopes must be {', '.join(TOKEN_SCOPES)} joined by '+' (example: read+import), "
                f"not {rest[0]!r}"
            )
        sources = None
        if len(rest) == 2:
            sources = frozenset(s.strip() for s in rest[1].split("|") if s.strip())
            if not sources:
                raise ValueError("a token's sources must name at least one source (crm|newsletter)")
        grants.append(TokenGrant(token, scopes, sources))
    return tuple(grants)


@dataclass(frozen=True)
class SecuritySettings:
    """Who may call DataFlow, how often, and how large a file may grow once read."""

    api_tokens: tuple[str, ...] = ()
    token_grants: tuple[TokenGrant, ...] = ()
    metrics_token: str | None = None
    session_cookie_secure: bool = True
    rate_limits_enabled: bool = True
    rate_limit: str = "600/minute"
    import_rate_limit: str = "60/minute"
    login_rate_limit: str = "10/minute"
    max_rows: int = 10_000_000
    max_columns: int = 1000
    # Seconds a signed-in session may sit unused before it ends.
    session_lifetime: float = 12 * 3600


@dataclass(frozen=True)
class Settings:
    """Everything DataFlow reads from its environment."""

    instance_dir: Path
    database_url: str
    redis_url: str | None
    storage_backend: str
    storage_dir: Path
    secret_key: str
    port: int
    enable_metrics: bool
    upload_chunk_size: int
    worker_concurrency: int
    max_upload_size: int
    security: SecuritySettings
    batch_size: int
    maintenance_interval: float
    upload_expiry: float
    reconcile_interval: float
    job_heartbeat_timeout: float
    stall_timeout: float
    retry_backoff: tuple[int, ...]
    # The address clients reach DataFlow at (https://dataflow.example.com): absolute URLs start with it.
    public_url: str | None = None
    # Proxies whose X-Forwarded-* headers are believed (app.proxies).
    trusted_proxies: tuple = ()
    supabase_url: str | None = None
    supabase_service_role_key: str | None = None
    supabase_bucket: str = "imports"
    # Files above this go to Supabase through tus (in parts), whatever useResumable says.
    supabase_upload_limit: int = SUPABASE_UPLOAD_LIMIT
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    # Where a phone number written without its country code is from (ISO 3166 code, "GB"); None: nowhere.
    default_phone_region: str | None = None
    # Seconds a drawn chart of the ops page is shared by every viewer before it is drawn again; 0: never kept.
    ops_cache_seconds: int = 5
    # Log where each run of an import spent its seconds (reading, each statement, PostgreSQL idle).
    import_timings: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def webhook_poll_interval(self) -> float:
        """Seconds between the worker's looks for webhook deliveries that are due."""
        return self.webhooks.poll_interval

    def as_flask_config(self) -> dict[str, object]:
        """The Flask config keys these settings feed."""
        return {
            "SECRET_KEY": self.secret_key,
            "SQLALCHEMY_DATABASE_URI": self.database_url,
            "SQLALCHEMY_ENGINE_OPTIONS": engine_options(self.database_url),
            # Uploads are streamed by the import routes, which enforce the limit themselves
            # while reading, so Werkzeug must not refuse a chunked body it cannot measure.
            "MAX_CONTENT_LENGTH": None,
            "MAX_FORM_MEMORY_SIZE": 1024 * 1024,
            "WTF_CSRF_TIME_LIMIT": None,
            # Every unsafe request is checked by app.auth, which knows bearer-token requests need none.
            "WTF_CSRF_CHECK_DEFAULT": False,
            "SESSION_COOKIE_SECURE": self.security.session_cookie_secure,
            "SESSION_COOKIE_HTTPONLY": True,
            "SESSION_COOKIE_SAMESITE": "Lax",
            "PERMANENT_SESSION_LIFETIME": timedelta(seconds=self.security.session_lifetime),
            "SETTINGS": self,
        }


def _security(env: dict[str, str], errors: list[str]) -> SecuritySettings:
    """Tokens, cookies, rate limits and file limits."""
    try:
        grants = parse_token_grants(env.get("API_TOKENS", ""))
    except ValueError as exc:
        errors.append(f"API_TOKENS: {exc}")
        grants = ()
    tokens = tuple(grant.token for grant in grants)
    metrics_token = env.get("METRICS_TOKEN", "").strip() or None
    if metrics_token and len(metrics_token) < MIN_TOKEN_LENGTH:
        errors.append(f"METRICS_TOKEN must be at least {MIN_TOKEN_LENGTH} characters long")
    defaults = SecuritySettings()
    return SecuritySettings(
        api_tokens=tokens,
        token_grants=grants,
        metrics_token=metrics_token,
        session_cookie_secure=read_bool(
            "SESSION_COOKIE_SECURE", env.get("SESSION_COOKIE_SECURE", "true"), errors
        ),
        rate_limits_enabled=read_bool("RATE_LIMITS_ENABLED", env.get("RATE_LIMITS_ENABLED", "true"), errors),
        rate_limit=read_rate("RATE_LIMIT", env.get("RATE_LIMIT", defaults.rate_limit), errors),
        import_rate_limit=read_rate(
            "IMPORT_RATE_LIMIT", env.get("IMPORT_RATE_LIMIT", defaults.import_rate_limit), errors
        ),
        login_rate_limit=read_rate(
            "LOGIN_RATE_LIMIT", env.get("LOGIN_RATE_LIMIT", defaults.login_rate_limit), errors
        ),
        max_rows=read_int("MAX_ROWS", env.get("MAX_ROWS", str(defaults.max_rows)), errors),
        max_columns=read_int("MAX_COLUMNS", env.get("MAX_COLUMNS", str(defaults.max_columns)), errors),
        session_lifetime=read_duration("SESSION_LIFETIME", env.get("SESSION_LIFETIME", "12h"), errors),
    )


def _secret_key(instance: Path) -> str:
    """A key kept in the instance folder, so every process of an unconfigured install agrees."""
    path = instance / "secret_key"
    if not path.exists():
        instance.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def engine_options(url: str) -> dict[str, object]:
    """SQLAlchemy's engine options for the database at ``url``.

    On PostgreSQL no statement is prepared on the server. psycopg prepares one that a connection has
    run five times, and PostgreSQL may then plan it once for every value: a search's generic plan
    (``ILIKE $1``, no pattern to look at) reads the whole table in id order, 5 s at 10 million
    contacts instead of 17 ms through the trigram index. The same holds for a source or an import
    whose contacts are few or many. A fresh plan per statement costs well under a millisecond.

    A connection attempt gives up after 10 seconds (unless the URL sets ``connect_timeout``): to a
    host that drops packets it would otherwise wait for the kernel's SYN retries, about two minutes.
    """
    options: dict[str, object] = {"pool_pre_ping": True}
    if url.startswith("postgresql"):
        connect: dict[str, object] = {"prepare_threshold": None}
        if "connect_timeout=" not in url:
            connect["connect_timeout"] = 10
        options["connect_args"] = connect
    return options


def load_settings(env: dict[str, str] | None = None, instance: Path | None = None) -> Settings:
    """Read and check the settings; raise ConfigError naming every mistake at once."""
    env = dict(os.environ if env is None else env)
    instance = instance or Path(env.get("INSTANCE_DIR", "instance")).resolve()
    errors: list[str] = []
    warnings: list[str] = []

    raw_db = env.get("DATABASE_URL") or f"sqlite:///{instance / 'dataflow.db'}"
    db_url = database_url(raw_db)
    if not db_url.startswith(("postgresql+psycopg://", "sqlite:///")):
        errors.append(
            "DATABASE_URL must start with postgres://, postgresql:// or sqlite:///, "
            f"not {raw_db.split(':', 1)[0]!r}"
        )

    redis_url = env.get("REDIS_URL") or None
    if redis_url and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        errors.append("REDIS_URL must start with redis://, rediss:// or unix://")

    backend = env.get("STORAGE_BACKEND", "local").strip().lower()
    if backend not in STORAGE_BACKENDS:
        errors.append(f"STORAGE_BACKEND must be one of {', '.join(STORAGE_BACKENDS)}, not {backend!r}")
    supabase_url = env.get("SUPABASE_URL") or None
    supabase_key = env.get("SUPABASE_SERVICE_ROLE_KEY") or None
    bucket = env.get("SUPABASE_BUCKET", "imports").strip()
    chunk_size = read_size("UPLOAD_CHUNK_SIZE", env.get("UPLOAD_CHUNK_SIZE", "6MiB"), errors)
    if backend == "supabase":
        if not supabase_url:
            errors.append("STORAGE_BACKEND=supabase needs SUPABASE_URL")
        elif not supabase_url.startswith(("https://", "http://")):
            errors.append(f"SUPABASE_URL must start with https:// (or http://), not {supabase_url!r}")
        if not supabase_key:
            errors.append("STORAGE_BACKEND=supabase needs SUPABASE_SERVICE_ROLE_KEY")
        if not bucket or "/" in bucket:
            errors.append(f"SUPABASE_BUCKET must be a bucket name without '/', not {bucket!r}")
        # Supabase's resumable endpoint takes 6 MiB chunks only (apart from the last), and every
        # import may ask for a resumable transfer: any other size would fail at the first upload.
        if chunk_size != SUPABASE_CHUNK_SIZE:
            errors.append(
                f"UPLOAD_CHUNK_SIZE must be 6MiB ({SUPABASE_CHUNK_SIZE} bytes) with "
                f"STORAGE_BACKEND=supabase, not {chunk_size} bytes: Supabase's resumable uploads "
                "accept only 6 MiB chunks (note that 6MB means 6,000,000 bytes; write 6MiB)"
            )

    phone_region = _phone_region(env.get("DEFAULT_PHONE_REGION", ""), errors)
    secret = env.get("SECRET_KEY") or ""
    if not secret:
        try:
            secret = _secret_key(instance)
        except OSError as exc:
            errors.append(
                f"SECRET_KEY is not set, and no generated key can be kept in {instance} "
                f"({exc.strerror}): set SECRET_KEY or INSTANCE_DIR"
            )
        else:
            warnings.append("SECRET_KEY is not set: using a generated key kept in the instance folder")

    public_url = (env.get("PUBLIC_URL") or "").strip().rstrip("/") or None
    if public_url and not re.match(r"^https?://[^/?#\s]+(/[^?#\s]*)?$", public_url):
        errors.append(
            f"PUBLIC_URL must be an http:// or https:// address such as https://dataflow.example.com, "
            f"not {public_url!r}"
        )
    try:
        from app.proxies import parse_networks

        trusted_proxies = parse_networks(env.get("TRUSTED_PROXIES", ""))
    except ValueError as exc:
        errors.append(f"TRUSTED_PROXIES must be addresses or networks separated by commas: {exc}")
        trusted_proxies = ()

    settings = Settings(
        instance_dir=instance,
        public_url=public_url,
        trusted_proxies=trusted_proxies,
        database_url=db_url,
        redis_url=redis_url,
        storage_backend=backend,
        storage_dir=Path(env.get("STORAGE_DIR") or instance / "uploads").resolve(),
        secret_key=secret,
        port=read_int("PORT", env.get("PORT", "8000"), errors, maximum=65535),
        enable_metrics=read_bool("ENABLE_METRICS", env.get("ENABLE_METRICS", "true"), errors),
        upload_chunk_size=chunk_size,
        worker_concurrency=read_int("WORKER_CONCURRENCY", env.get("WORKER_CONCURRENCY", "10"), errors),
        max_upload_size=read_size("MAX_UPLOAD_SIZE", env.get("MAX_UPLOAD_SIZE", "1GB"), errors),
        security=_security(env, errors),
        batch_size=read_int("BATCH_SIZE", env.get("BATCH_SIZE", "10000"), errors),
        maintenance_interval=read_int("MAINTENANCE_INTERVAL", env.get("MAINTENANCE_INTERVAL", "30"), errors),
        upload_expiry=read_duration("UPLOAD_EXPIRY", env.get("UPLOAD_EXPIRY", "24h"), errors),
        reconcile_interval=read_int("RECONCILE_INTERVAL", env.get("RECONCILE_INTERVAL", "30"), errors),
        # A beat goes out every quarter of the timeout, so two seconds is the shortest that works.
        job_heartbeat_timeout=read_int(
            "JOB_HEARTBEAT_TIMEOUT", env.get("JOB_HEARTBEAT_TIMEOUT", "60"), errors, minimum=2
        ),
        # How long a running import's rows and stage may stand still before a new run takes it over.
        stall_timeout=read_duration("STALL_TIMEOUT", env.get("STALL_TIMEOUT", "5m"), errors),
        retry_backoff=read_backoff("RETRY_BACKOFF", env.get("RETRY_BACKOFF", "5,30,120,600,1800"), errors),
        supabase_url=supabase_url.rstrip("/") if supabase_url else None,
        supabase_service_role_key=supabase_key,
        supabase_bucket=bucket,
        supabase_upload_limit=read_size(
            "SUPABASE_UPLOAD_LIMIT", env.get("SUPABASE_UPLOAD_LIMIT", str(SUPABASE_UPLOAD_LIMIT)), errors
        ),
        webhooks=webhook_settings(env, errors),
        default_phone_region=phone_region,
        ops_cache_seconds=read_int("OPS_CACHE_SECONDS", env.get("OPS_CACHE_SECONDS", "5"), errors, minimum=0),
        import_timings=read_bool("IMPORT_TIMINGS", env.get("IMPORT_TIMINGS", "false"), errors),
        warnings=warnings,
    )
    if errors:
        raise ConfigError("DataFlow cannot start:\n" + "\n".join(f"  - {e}" for e in errors))
    return settings


def _phone_region(value: str, errors: list[str]) -> str | None:
    """DEFAULT_PHONE_REGION: a region the phone number library knows, such as GB or US; blank for none."""
    region = value.strip().upper()
    if not region:
        return None
    import phonenumbers  # only when a region is set: the library's metadata is large

    if region not in phonenumbers.SUPPORTED_REGIONS:
        errors.append(
            f"DEFAULT_PHONE_REGION must be a two-letter country code (GB, US, DE...), not {value.strip()!r}"
        )
        return None
    return region
