"""Rate limits: per token, user or address, counted in Redis so every web process agrees."""

from __future__ import annotations

from collections.abc import Callable

import redis as redis_lib
from flask import Flask
from sqlalchemy import func, select

from app.extensions import db
from app.models import Import
from app.rate_limits import limiter_storage_uri
from tests.test_auth import csrf_token_of

TOKEN = "tok-" + "a" * 28
OTHER_TOKEN = "tok-" + "b" * 28
BODY = {"source": "crm", "data": [{"name": "Ada", "email": "ada@example.com"}]}


def imports_count(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Import))


def test_past_the_import_limit_is_429_with_retry_after_and_nothing_stored(make_app: Callable[..., Flask]):
    app = make_app(API_TOKENS=f"{TOKEN},{OTHER_TOKEN}", IMPORT_RATE_LIMIT="2/minute")
    client = app.test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert [client.post("/import", json=BODY, headers=auth).status_code for _ in range(2)] == [202, 202]
    refused = client.post("/import", json=BODY, headers=auth)
    assert refused.status_code == 429
    assert refused.get_json()["error"].startswith("Too many requests: the limit is 2/minute.")
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert imports_count(app) == 2
    # Counted per token: another client is not held back, and reading is not an import.
    other = client.post("/import", json=BODY, headers={"Authorization": f"Bearer {OTHER_TOKEN}"})
    assert other.status_code == 202
    assert client.get("/imports", headers=auth).status_code == 200
    assert "Retry-After" not in client.get("/imports", headers=auth).headers


def test_the_overall_limit_counts_every_route_and_spares_health(make_app: Callable[..., Flask]):
    app = make_app(RATE_LIMIT="3/minute")
    client = app.test_client()
    paths = ["/imports", "/imports/x", "/openapi.json"]
    assert [client.get(p, headers={"Accept": "application/json"}).status_code for p in paths] == [
        200,
        404,
        200,
    ]
    refused = client.get("/imports", headers={"Accept": "application/json"})
    assert refused.status_code == 429 and "Retry-After" in refused.headers
    assert [client.get("/health").status_code for _ in range(10)] == [200] * 10


def test_unauthenticated_requests_are_limited_per_address(make_app: Callable[..., Flask]):
    app = make_app(API_TOKENS=TOKEN, RATE_LIMIT="3/minute")
    client = app.test_client()
    guesses = [client.get("/imports", headers={"Authorization": f"Bearer guess-{i:024d}"}) for i in range(4)]
    assert [g.status_code for g in guesses] == [401, 401, 401, 429]
    elsewhere = client.get(
        "/imports", headers={"Authorization": "Bearer x"}, environ_base={"REMOTE_ADDR": "10.9.9.9"}
    )
    assert elsewhere.status_code == 401


def test_sign_in_attempts_are_limited(make_app: Callable[..., Flask]):
    app = make_app(API_TOKENS=TOKEN, LOGIN_RATE_LIMIT="2/minute")
    client = app.test_client()
    token = csrf_token_of(client.get("/login").get_data(as_text=True))
    attempt = {"email": "a@example.com", "password": "wrong password", "csrf_token": token}
    tries = [client.post("/login", data=attempt) for _ in range(3)]
    assert [t.status_code for t in tries] == [401, 401, 429]
    assert client.get("/login").status_code == 200  # looking at the page is not an attempt


def test_processes_share_their_counts_in_redis(make_app: Callable[..., Flask], env):
    # Two apps stand for two gunicorn workers: the limit holds across them.
    first, second = (make_app(API_TOKENS=TOKEN, IMPORT_RATE_LIMIT="2/minute") for _ in range(2))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert first.test_client().post("/import", json=BODY, headers=auth).status_code == 202
    assert second.test_client().post("/import", json=BODY, headers=auth).status_code == 202
    assert first.test_client().post("/import", json=BODY, headers=auth).status_code == 429
    keys = redis_lib.Redis.from_url(env["REDIS_URL"]).keys("LIMITS:LIMITER/dataflow/token:*")
    assert keys and all(TOKEN.encode() not in key for key in keys)  # the token itself is never stored


def test_requests_go_through_when_redis_cannot_count_them(make_app: Callable[..., Flask]):
    app = make_app(API_TOKENS=TOKEN, REDIS_URL="redis://127.0.0.1:1/0")
    response = app.test_client().get("/imports", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200


def test_limits_can_be_turned_off(make_app: Callable[..., Flask]):
    app = make_app(IMPORT_RATE_LIMIT="1/minute", RATE_LIMITS_ENABLED="false")
    client = app.test_client()
    assert [client.post("/import", json=BODY).status_code for _ in range(3)] == [202] * 3


def test_storage_uri_for_each_kind_of_redis():
    assert limiter_storage_uri("redis://127.0.0.1:6379/3") == "redis://127.0.0.1:6379/3"
    assert limiter_storage_uri("rediss://cache.example:6380/0") == "rediss://cache.example:6380/0"
    assert limiter_storage_uri("unix:///tmp/x/redis.socket?db=0") == "redis+unix:///tmp/x/redis.socket?db=0"
    assert limiter_storage_uri(None) == "memory://"


def test_unknown_paths_are_counted_too(make_app: Callable[..., Flask]):
    app = make_app(RATE_LIMIT="3/minute")
    client = app.test_client()
    json = {"Accept": "application/json"}
    answers = [client.get(f"/scan/{n}", headers=json).status_code for n in range(4)]
    assert answers == [404, 404, 404, 429]
    assert client.get("/imports", headers=json).status_code == 429  # the same client, the same window
