"""Who may call DataFlow: API tokens, users who sign in, CSRF on sessions, the create-user command."""

from __future__ import annotations

import io
import re
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.auth import hash_password, token_is_valid
from app.extensions import db
from app.models import Import, Upload, User
from tests.conftest import USER_PASSWORD as PASSWORD
from tests.conftest import count, stored_files

TOKEN = "tok-" + "a" * 28
OTHER_TOKEN = "tok-" + "b" * 28
METRICS = "metrics-" + "c" * 24
CSV = b"name,email\nAda Lovelace,ada@example.com\n"
BODY = {"source": "crm", "data": [{"name": "Ada", "email": "ada@example.com"}]}


@pytest.fixture
def secured(make_app: Callable[..., Flask]) -> Flask:
    """An app with API tokens and CSRF on. No app context is pushed: each request gets its own."""
    return make_app(API_TOKENS=f"{TOKEN}, {OTHER_TOKEN}", METRICS_TOKEN=METRICS, RATE_LIMITS_ENABLED="false")


def csrf_token_of(page: str) -> str:
    match = re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert match, "the page carries no CSRF token"
    return match.group(1)


def sign_in(client: FlaskClient, email: str = "ops@example.com", password: str = PASSWORD):
    page = client.get("/login", headers={"Accept": "text/html"}).get_data(as_text=True)
    return client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": csrf_token_of(page)},
        headers={"Accept": "text/html"},
    )


# --- API tokens -------------------------------------------------------------------------------


def test_every_api_route_needs_a_token_and_stores_nothing_without_one(secured):
    client = secured.test_client()
    refused = [
        client.post("/import", json=BODY),
        client.post("/import", data={"source": "crm", "file": (io.BytesIO(CSV), "c.csv")}),
        client.post("/import", data=CSV, headers={"X-Source": "crm"}),
        client.get("/imports", headers={"Accept": "application/json"}),
        client.get("/imports/some-id", headers={"Accept": "application/json"}),
        client.get("/imports/some-id/errors", headers={"Accept": "application/json"}),
        client.post("/uploads", headers={"Tus-Resumable": "1.0.0", "Upload-Length": "10"}),
        client.patch("/uploads/" + "0" * 32, headers={"Tus-Resumable": "1.0.0"}),
    ]
    for response in refused:
        assert response.status_code == 401, response.request.path
        assert response.get_json()["error"].startswith("Authentication required")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert count(secured, Import) == 0
    assert count(secured, Upload) == 0
    assert stored_files(secured) == []


def test_a_wrong_token_is_401_and_a_right_one_works(secured):
    client = secured.test_client()
    wrong = client.post("/import", json=BODY, headers={"Authorization": "Bearer " + "x" * 32})
    assert wrong.status_code == 401
    assert wrong.get_json() == {"error": "The API token is not valid"}
    assert 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]
    basic = client.get("/imports", headers={"Authorization": "Basic b3BzOnB3"})
    assert basic.status_code == 401
    assert count(secured, Import) == 0

    for token in (TOKEN, OTHER_TOKEN):
        answer = client.post("/import", json=BODY, headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 202
        job = client.get(answer.headers["Location"], headers={"Authorization": f"Bearer {token}"})
        assert job.get_json()["status"] == "queued"
    assert count(secured, Import) == 2


def test_health_and_the_contract_stay_open(secured):
    client = secured.test_client()
    assert client.get("/health").status_code == 200
    assert client.get("/openapi.json").get_json()["openapi"] == "3.1.0"


def test_metrics_take_their_own_token(secured):
    client = secured.test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 401
    scraped = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS}"})
    assert scraped.status_code == 200
    assert b"dataflow_imports_active" in scraped.data


def test_without_a_metrics_token_metrics_take_an_api_token_once_authentication_is_on(make_app):
    app = make_app(API_TOKENS=TOKEN)
    client = app.test_client()
    refused = client.get("/metrics", headers={"Accept": "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"})
    assert refused.status_code == 401
    assert b"dataflow_" not in refused.data
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert make_app().test_client().get("/metrics").status_code == 200  # authentication off: open


def test_token_check_compares_every_token():
    tokens = (TOKEN, OTHER_TOKEN)
    assert token_is_valid(TOKEN, tokens) and token_is_valid(OTHER_TOKEN, tokens)
    assert not token_is_valid(TOKEN[:-1], tokens)
    assert not token_is_valid(TOKEN + "a", tokens)
    assert not token_is_valid("", tokens)
    assert not token_is_valid(TOKEN, ())


def test_short_tokens_are_refused_at_start(make_app):
    from app.config import ConfigError

    with pytest.raises(ConfigError, match="API_TOKENS: each token must be at least 16"):
        make_app(API_TOKENS="short")


# --- users, sessions and CSRF -----------------------------------------------------------------


def test_pages_send_a_browser_to_sign_in_and_back(secured, users):
    users()
    client = secured.test_client()
    page = client.get("/imports?status=failed", headers={"Accept": "text/html"})
    assert page.status_code == 303
    assert page.headers["Location"] == "/login?next=/imports?status%3Dfailed"

    wrong = sign_in(client, password="not the password")
    assert wrong.status_code == 401
    assert "The email or password is wrong." in wrong.get_data(as_text=True)
    unknown = sign_in(client, email="nobody@example.com")
    assert unknown.status_code == 401

    page = client.get("/login?next=/imports", headers={"Accept": "text/html"}).get_data(as_text=True)
    signed_in = client.post(
        "/login?next=/imports",
        data={"email": "OPS@example.com ", "password": PASSWORD, "csrf_token": csrf_token_of(page)},
    )
    assert signed_in.status_code == 303 and signed_in.headers["Location"] == "/imports"
    cookie = signed_in.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=Lax" in cookie
    listing = client.get("/imports", headers={"Accept": "text/html"})
    assert listing.status_code == 200
    assert "ops@example.com" in listing.get_data(as_text=True)
    assert client.get("/imports", headers={"Accept": "application/json"}).status_code == 200


def test_login_never_redirects_off_site(secured, users):
    users()
    client = secured.test_client()
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"):
        page = client.get("/login", headers={"Accept": "text/html"}).get_data(as_text=True)
        answer = client.post(
            "/login?next=" + target,
            data={"email": "ops@example.com", "password": PASSWORD, "csrf_token": csrf_token_of(page)},
        )
        assert answer.status_code == 303
        assert answer.headers["Location"] == "/", target


def test_session_requests_need_the_csrf_token_on_every_route(secured, users):
    users()
    client = secured.test_client()
    sign_in(client)
    token = csrf_token_of(client.get("/", headers={"Accept": "text/html"}).get_data(as_text=True))
    forged = [
        client.post("/import", json=BODY, headers={"Accept": "application/json"}),
        client.post("/import", data=CSV, headers={"X-Source": "crm", "Accept": "application/json"}),
        client.post("/import", data={"source": "crm", "file": (io.BytesIO(CSV), "c.csv")}),
        client.post("/uploads", headers={"Tus-Resumable": "1.0.0", "Upload-Length": "10"}),
        client.post("/import", json=BODY, headers={"X-CSRFToken": "forged", "Accept": "application/json"}),
    ]
    for response in forged:
        assert response.status_code == 400, response.request.path
        assert "CSRF token" in response.get_json()["error"]
    assert count(secured, Import) == 0
    assert count(secured, Upload) == 0
    assert stored_files(secured) == []

    assert client.post("/import", json=BODY, headers={"X-CSRFToken": token}).status_code == 202
    form = client.post(
        "/import", data={"source": "crm", "file": (io.BytesIO(CSV), "c.csv"), "csrf_token": token}
    )
    assert form.status_code == 202, form.get_json()
    tus = client.post(
        "/uploads",
        headers={"Tus-Resumable": "1.0.0", "Upload-Length": "10", "Upload-Metadata": "source Y3Jt"}
        | {"X-CSRFToken": token},
    )
    assert tus.status_code == 201
    assert count(secured, Import) == 2


def test_a_bearer_request_never_uses_the_session(secured, users):
    users()
    client = secured.test_client()
    sign_in(client)  # the client now holds a valid session cookie
    wrong = client.post("/import", json=BODY, headers={"Authorization": "Bearer " + "x" * 32})
    assert wrong.status_code == 401
    wrong_scheme = client.get("/imports", headers={"Authorization": "Token abc", "Accept": "text/html"})
    assert wrong_scheme.status_code == 401
    assert count(secured, Import) == 0
    # A valid token needs no CSRF token, cookie or not.
    assert client.post("/import", json=BODY, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 202


def test_users_alone_turn_authentication_on(make_app, users):
    users()
    app = make_app(RATE_LIMITS_ENABLED="false")
    with app.app_context():
        client = app.test_client()
        assert client.post("/import", json=BODY).status_code == 401
        # Without API_TOKENS no token is valid: the API is for signed-in browsers only.
        assert client.get("/imports", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 401
        assert count(app, Import) == 0


def test_sign_out_needs_the_token_and_ends_the_session(secured, users):
    users()
    client = secured.test_client()
    sign_in(client)
    page = client.get("/", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert client.post("/logout", headers={"Accept": "text/html"}).status_code == 400
    assert client.get("/imports", headers={"Accept": "application/json"}).status_code == 200
    out = client.post("/logout", data={"csrf_token": csrf_token_of(page)})
    assert out.status_code == 303 and out.headers["Location"] == "/login"
    assert client.get("/imports", headers={"Accept": "application/json"}).status_code == 401


def test_a_new_password_ends_the_old_sessions(secured, users):
    user_id = users()
    client = secured.test_client()
    sign_in(client)
    assert client.get("/imports", headers={"Accept": "application/json"}).status_code == 200
    with secured.app_context():
        db.session.get(User, user_id).password_hash = hash_password("a brand new password")
        db.session.commit()
    assert client.get("/imports", headers={"Accept": "application/json"}).status_code == 401


def test_plain_http_cookies_when_configured(make_app, users):
    users()
    app = make_app(API_TOKENS=TOKEN, SESSION_COOKIE_SECURE="false")
    answer = sign_in(app.test_client())
    assert answer.status_code == 303
    assert "Secure" not in answer.headers["Set-Cookie"]
    assert "HttpOnly" in answer.headers["Set-Cookie"]


# --- without authentication -------------------------------------------------------------------


def test_without_auth_the_pages_and_the_log_say_so(make_app, capsys):
    app = make_app()
    assert "Authentication is OFF" in capsys.readouterr().err
    page = app.test_client().get("/", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert "Authentication is off: anyone who can reach this server" in page


def test_with_auth_there_is_no_banner_and_no_warning(make_app, users, capsys):
    users()
    capsys.readouterr()
    app = make_app(API_TOKENS=TOKEN)
    assert "Authentication is OFF" not in capsys.readouterr().err
    page = app.test_client().get("/login", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert "Authentication is off" not in page


# --- the create-user command ------------------------------------------------------------------


def test_create_user_hashes_the_password(secured, users):
    runner = secured.test_cli_runner()
    result = runner.invoke(args=["create-user", "New@Example.com", "--password-stdin"], input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert "created new@example.com" in result.output
    with secured.app_context():
        stored = db.session.scalar(select(User.password_hash).where(User.email == "new@example.com"))
    assert stored.startswith("scrypt:") and PASSWORD not in stored
    assert sign_in(secured.test_client(), "new@example.com").status_code == 303

    again = runner.invoke(args=["create-user", "new@example.com", "--password-stdin"], input=PASSWORD)
    assert again.exit_code != 0 and "already exists; use --update" in again.output
    short = runner.invoke(args=["create-user", "b@example.com", "--password-stdin"], input="short\n")
    assert short.exit_code != 0 and "at least 10 characters" in short.output
    prompted = runner.invoke(args=["create-user", "c@example.com"], input=f"{PASSWORD}\n{PASSWORD}\n")
    assert prompted.exit_code == 0, prompted.output
    mismatch = runner.invoke(args=["create-user", "d@example.com"], input=f"{PASSWORD}\nother one!!\n")
    assert mismatch.exit_code != 0
    updated = runner.invoke(
        args=["create-user", "new@example.com", "--update", "--password-stdin"], input="another password\n"
    )
    assert updated.exit_code == 0 and "updated new@example.com" in updated.output
    assert sign_in(secured.test_client(), "new@example.com", "another password").status_code == 303
    with secured.app_context():
        emails = db.session.scalars(select(User.email).order_by(User.email)).all()
    assert emails == ["c@example.com", "new@example.com"]


# --- sessions end on the server -----------------------------------------------------------------


def copy_of_session(app: Flask, client: FlaskClient) -> FlaskClient:
    """Another client holding the same session cookie (a saved copy, another tab, a thief)."""
    copy = app.test_client()
    copy.set_cookie("session", client.get_cookie("session").value)
    return copy


def test_sign_out_ends_a_saved_copy_of_the_cookie_too(secured, users):
    users()
    client = secured.test_client()
    sign_in(client)
    saved = copy_of_session(secured, client)
    other_device = secured.test_client()
    sign_in(other_device)
    assert saved.get("/imports", headers={"Accept": "application/json"}).status_code == 200
    token = csrf_token_of(client.get("/", headers={"Accept": "text/html"}).get_data(as_text=True))
    assert client.post("/logout", data={"csrf_token": token}).status_code == 303
    for stale in (saved, other_device):
        assert stale.get("/imports", headers={"Accept": "application/json"}).status_code == 401
        headers = {"X-CSRFToken": token, "Accept": "application/json"}
        assert stale.post("/import", json=BODY, headers=headers).status_code == 401
    assert count(secured, Import) == 0
    assert sign_in(client).status_code == 303  # signing in again works
    assert client.get("/imports", headers={"Accept": "application/json"}).status_code == 200


def test_revoke_sessions_and_a_new_password_end_every_session(secured, users):
    users()
    client = secured.test_client()
    sign_in(client)
    runner = secured.test_cli_runner()
    result = runner.invoke(args=["revoke-sessions", "OPS@example.com"])
    assert result.exit_code == 0 and "every session of ops@example.com has ended" in result.output
    assert client.get("/imports", headers={"Accept": "application/json"}).status_code == 401
    assert runner.invoke(args=["revoke-sessions", "nobody@example.com"]).exit_code != 0

    sign_in(client)
    saved = copy_of_session(secured, client)
    updated = runner.invoke(
        args=["create-user", "ops@example.com", "--update", "--password-stdin"], input="another password\n"
    )
    assert updated.exit_code == 0
    assert saved.get("/imports", headers={"Accept": "application/json"}).status_code == 401


def test_a_session_idle_past_session_lifetime_ends(make_app, users):
    users()
    app = make_app(API_TOKENS=TOKEN, SESSION_LIFETIME="30m", RATE_LIMITS_ENABLED="false")
    client = app.test_client()
    signed_in = sign_in(client)
    assert "Expires=" in signed_in.headers["Set-Cookie"]  # the browser drops it too
    assert client.get("/imports", headers={"Accept": "application/json"}).status_code == 200
    with client.session_transaction() as stored:
        stored["seen"] -= 29 * 60  # used 29 minutes ago: still alive, and now seen again
    assert client.get("/imports", headers={"Accept": "application/json"}).status_code == 200
    with client.session_transaction() as stored:
        stored["seen"] -= 31 * 60
    assert client.get("/imports", headers={"Accept": "application/json"}).status_code == 401
