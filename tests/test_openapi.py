"""The OpenAPI document matches the API: schemathesis fuzzes a real server with it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.openapi import document
from tests.conftest import served_in_thread

TOKEN = "tok-" + "c" * 28
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    ignored_auth,
]


@pytest.fixture
def api_server(make_app: Callable[..., Flask]) -> Iterator[str]:
    """The app, with API tokens on, served over HTTP on a free loopback port."""
    app = make_app(API_TOKENS=TOKEN, RATE_LIMITS_ENABLED="false")
    with served_in_thread(app) as url:
        yield url


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_api_keeps_its_contract(api_server, mode):
    """Generated requests for every operation: no 5xx, every answer as documented, auth enforced."""
    schema = schemathesis.openapi.from_url(f"{api_server}/openapi.json")

    @given(case=schema.as_strategy(generation_mode=mode))
    @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def keeps_contract(case: schemathesis.Case) -> None:
        case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS)

    keeps_contract()


def test_every_operation_but_health_refuses_a_request_without_a_token(api_server):
    import requests

    for path, operations in document()["paths"].items():
        for method, operation in operations.items():
            url = api_server + path.replace("{jobId}", "some-id").replace("{contactId}", "some-id")
            answer = requests.request(method, url, timeout=30)
            if operation.get("security") == []:
                assert answer.status_code != 401, path
            else:
                assert answer.status_code == 401, (method, path)
                assert answer.headers["WWW-Authenticate"].startswith("Bearer")
