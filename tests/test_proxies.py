"""The Host header and X-Forwarded-*: URLs from PUBLIC_URL, forwarded headers only from TRUSTED_PROXIES."""

from __future__ import annotations

import base64

import pytest

from app.config import ConfigError

TUS = {
    "Tus-Resumable": "1.0.0",
    "Upload-Length": "10",
    "Upload-Metadata": "source " + base64.b64encode(b"crm").decode(),
}


def created_location(app, remote: str = "127.0.0.1", **headers: str) -> str:
    answer = app.test_client().post(
        "/uploads", headers=TUS | headers, environ_overrides={"REMOTE_ADDR": remote}
    )
    assert answer.status_code == 201
    return answer.headers["Location"]


def test_a_forged_host_never_reaches_a_location(make_app):
    plain = make_app(RATE_LIMITS_ENABLED="false")
    location = created_location(plain, Host="evil.example", **{"X-Forwarded-Host": "evil.example"})
    assert location.startswith("/uploads/") and "evil" not in location
    public = make_app(RATE_LIMITS_ENABLED="false", PUBLIC_URL="https://dataflow.example.com/")
    location = created_location(public, Host="evil.example")
    assert location.startswith("https://dataflow.example.com/uploads/")


def test_forwarded_headers_count_only_from_a_trusted_proxy(make_app):
    app = make_app(TRUSTED_PROXIES="10.0.0.0/8, ::1", RATE_LIMITS_ENABLED="false")
    seen = {}

    @app.get("/_seen")
    def _seen():
        from flask import request

        seen.update(addr=request.remote_addr, scheme=request.scheme, host=request.host)
        return {}

    forwarded = {
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "d.example",
    }
    client = app.test_client()
    client.get("/_seen", headers=forwarded, environ_overrides={"REMOTE_ADDR": "10.1.2.3"})
    assert seen == {"addr": "203.0.113.7", "scheme": "https", "host": "d.example"}
    client.get("/_seen", headers=forwarded, environ_overrides={"REMOTE_ADDR": "198.51.100.9"})
    assert seen == {"addr": "198.51.100.9", "scheme": "http", "host": "localhost"}


def test_proxy_settings_are_checked_at_start(make_app):
    with pytest.raises(ConfigError, match="TRUSTED_PROXIES must be addresses or networks"):
        make_app(TRUSTED_PROXIES="10.0.0.0/8, nginx")
    with pytest.raises(ConfigError, match="PUBLIC_URL must be an http:// or https:// address"):
        make_app(PUBLIC_URL="dataflow.example.com")
