"""Webhooks end to end in one process: the API, a real receiver that verifies with standardwebhooks,
retries, 410, timeouts, redirects, Retry-After, rotation, recovery, the pages and the metrics."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from rq import SimpleWorker
from sqlalchemy import text, update

from app.extensions import QUEUE_NAME, db, redis
from app.models import Import, utcnow
from app.webhooks import record_event
from app.webhooks.delivery import QUEUE_NAME as WEBHOOK_QUEUE
from app.webhooks.models import WebhookEndpoint, WebhookEvent
from tests.conftest import wait_for
from tests.webhook_receiver import Receiver, Reply, running_receiver

# A receiver on loopback over plain http needs both switches; retries come at once.
OPEN = {
    "WEBHOOK_ALLOW_PRIVATE": "true",
    "WEBHOOK_ALLOW_HTTP": "true",
    "WEBHOOK_RETRY_SCHEDULE": "0,0,0,0,0",
    "RATE_LIMITS_ENABLED": "false",
}
BODY = {"source": "crm", "data": [{"name": "Ada", "email": "ada@example.com"}]}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


def _clean(app: Flask) -> None:
    with app.app_context():
        db.session.execute(text("TRUNCATE webhook_endpoints, webhook_events CASCADE"))
        db.session.commit()


@pytest.fixture
def hooks_app(make_app: Callable[..., Flask]) -> Iterator[Flask]:
    """An app that may send to the loopback receiver, with an app context pushed."""
    app = make_app(**OPEN)
    with app.app_context():
        yield app
    _clean(app)


@pytest.fixture
def api(hooks_app: Flask) -> FlaskClient:
    return json_client(hooks_app)


def json_client(app: Flask) -> FlaskClient:
    """A client of the app that asks for JSON, as API clients do."""
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT"] = "application/json"
    return client


def deliver() -> None:
    """Run the queued jobs, deliveries and imports, as a worker does, until both queues are empty."""
    SimpleWorker([WEBHOOK_QUEUE, QUEUE_NAME], connection=redis()).work(burst=True, with_scheduler=False)
    db.session.remove()


def add_endpoint(api: FlaskClient, url: str, **fields: object) -> dict:
    answer = api.post("/webhooks", json={"url": url, **fields})
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()


def start_import(api: FlaskClient) -> str:
    answer = api.post("/import", json=BODY)
    assert answer.status_code == 202
    return answer.get_json()["jobId"]


def page_of(api: FlaskClient, path: str) -> str:
    """A page as a browser sees it, from a client of its own (a page opens a session)."""
    return api.application.test_client().get(path, headers={"Accept": "text/html"}).get_data(as_text=True)


def five_pings(api: FlaskClient, receiver: Receiver) -> None:
    """Five test pings to a new endpoint, due at once."""
    endpoint = add_endpoint(api, receiver.url)
    for _ in range(5):
        api.post(f"/webhooks/{endpoint['id']}/test")


def log_of(api: FlaskClient, endpoint_id: str) -> list[dict]:
    answer = api.get(f"/webhooks/{endpoint_id}/deliveries")
    assert answer.status_code == 200
    return answer.get_json()["items"]


def test_a_completed_import_is_delivered_signed_with_the_import_as_its_data(api, receiver):
    endpoint = add_endpoint(api, receiver.url, description="CRM sync")
    assert endpoint["secret"].startswith("whsec_")
    assert "secret" not in api.get(f"/webhooks/{endpoint['id']}").get_json()
    job_id = start_import(api)
    deliver()

    assert len(receiver.received) == 1
    got = receiver.received[0]
    payload = got.verify(endpoint["secret"])
    assert payload["type"] == "import.completed"
    assert payload["data"] == api.get(f"/imports/{job_id}").get_json()
    assert payload["data"]["status"] == "completed" and payload["data"]["insertedRows"] == 1
    assert got.headers["Content-Type"] == "application/json"
    assert re.fullmatch(r"v1,[A-Za-z0-9+/=]+", got.headers["webhook-signature"])

    [message] = log_of(api, endpoint["id"])
    assert message["status"] == "delivered" and message["webhookId"] == got.headers["webhook-id"]
    assert message["importId"] == job_id
    [attempt] = message["attemptLog"]
    assert attempt["statusCode"] == 200 and attempt["outcome"] == "success" and attempt["response"] == "ok"

    page = page_of(api, f"/imports/{job_id}")
    assert "Webhooks" in page and receiver.url in page and "Delivered" in page


def test_an_endpoint_gets_only_the_events_it_asked_for(api, receiver):
    add_endpoint(api, receiver.url, events=["import.failed"])
    start_import(api)
    deliver()
    assert receiver.received == []
    bad = api.post("/import", data=b"\x00\x01 not a table \xff" * 50, headers={"X-Source": "crm"})
    deliver()
    [got] = receiver.received
    assert got.headers["webhook-id"].startswith("msg_")
    assert bad.get_json()["jobId"] in got.body.decode()


def test_500_three_times_then_200_is_delivered_on_the_fourth_try(api, receiver):
    endpoint = add_endpoint(api, receiver.url)
    receiver.script(*[Reply(500, body=b"database down")] * 3)
    start_import(api)
    deliver()

    assert len(receiver.received) == 4
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
    for got in receiver.received:
        got.verify(endpoint["secret"])
    [message] = log_of(api, endpoint["id"])
    assert message["status"] == "delivered" and message["attempts"] == 4
    assert [a["statusCode"] for a in message["attemptLog"]] == [500, 500, 500, 200]
    assert [a["number"] for a in message["attemptLog"]] == [1, 2, 3, 4]
    assert message["attemptLog"][0]["response"] == "database down"
    assert api.get(f"/webhooks/{endpoint['id']}").get_json()["failingSince"] is None


def test_giving_up_after_the_last_retry_and_recovering_later(api, receiver):
    endpoint = add_endpoint(api, receiver.url)
    receiver.default = Reply(500)
    start_import(api)
    deliver()
    assert len(receiver.received) == 5  # the schedule's five attempts
    [message] = log_of(api, endpoint["id"])
    assert message["status"] == "failed" and message["nextAttemptAt"] is None
    assert api.get(f"/webhooks/{endpoint['id']}").get_json()["failingSince"] is not None

    receiver.default = Reply(204, body=b"")
    since = (utcnow() - timedelta(hours=1)).isoformat()
    answer = api.post(f"/webhooks/{endpoint['id']}/recover", query_string={"since": since})
    assert answer.status_code == 202 and answer.get_json() == {"recovered": 1}
    deliver()
    [message] = log_of(api, endpoint["id"])
    assert message["status"] == "delivered" and len(message["attemptLog"]) == 6
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
    later = api.post(f"/webhooks/{endpoint['id']}/recover", query_string={"since": since})
    assert later.get_json() == {"recovered": 0}


def test_410_disables_the_endpoint_and_the_page_says_why(api, receiver):
    endpoint = add_endpoint(api, receiver.url)
    receiver.default = Reply(410, body=b"gone for good")
    start_import(api)
    deliver()
    assert len(receiver.received) == 1
    shown = api.get(f"/webhooks/{endpoint['id']}").get_json()
    assert shown["enabled"] is False and "410" in shown["disabledReason"]
    [message] = log_of(api, endpoint["id"])
    assert message["status"] == "failed" and message["attemptLog"][0]["outcome"] == "gone"

    start_import(api)
    deliver()
    assert len(receiver.received) == 1  # a disabled endpoint is sent nothing
    page = page_of(api, f"/webhooks/{endpoint['id']}")
    assert "This endpoint is disabled" in page and "410 Gone" in page
    assert api.post(f"/webhooks/{endpoint['id']}/test").status_code == 409

    assert api.patch(f"/webhooks/{endpoint['id']}", json={"enabled": True}).get_json()["enabled"] is True
    receiver.default = Reply()
    answer = api.post(f"/webhooks/deliveries/{message['id']}/retry")
    assert answer.status_code == 202 and answer.get_json()["status"] == "pending"
    deliver()
    assert log_of(api, endpoint["id"])[-1]["status"] == "delivered"


def test_an_endpoint_failing_for_five_days_is_disabled(api, receiver):
    endpoint = add_endpoint(api, receiver.url)
    db.session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint["id"])
        .values(failing_since=utcnow() - timedelta(days=5, minutes=1))
    )
    db.session.commit()
    receiver.default = Reply(500)
    start_import(api)
    deliver()
    assert len(receiver.received) == 1
    shown = api.get(f"/webhooks/{endpoint['id']}").get_json()
    assert shown["enabled"] is False and "Every delivery failed for 5 days" in shown["disabledReason"]
    [message] = log_of(api, endpoint["id"])
    assert message["status"] == "failed" and "disabled" in message["lastError"]
    page = page_of(api, "/webhooks")
    assert "Disabled" in page and "Every delivery failed for 5 days" in page


def test_a_slow_receiver_times_out_and_is_retried_later(make_app, receiver):
    app = make_app(**OPEN | {"WEBHOOK_TIMEOUT": "1", "WEBHOOK_RETRY_SCHEDULE": "0,1h"})
    with app.app_context():
        api = json_client(app)
        endpoint = add_endpoint(api, receiver.url)
        receiver.default = Reply(delay=4)
        start_import(api)
        deliver()
        [message] = log_of(api, endpoint["id"])
        [attempt] = message["attemptLog"]
        assert attempt["outcome"] == "timeout" and attempt["error"] == "No answer within 1 s"
        assert attempt["statusCode"] is None and attempt["durationMs"] < 3000
        assert message["status"] == "pending" and message["nextAttemptAt"] > utcnow().isoformat()
    _clean(app)


def test_a_redirect_is_a_failure_and_is_not_followed(api, receiver):
    endpoint = add_endpoint(api, receiver.url, events=["import.completed"])
    receiver.script(Reply(302, {"Location": receiver.url + "/elsewhere"}))
    receiver.default = Reply(500)
    start_import(api)
    deliver()
    assert all(r.path == "/hook" for r in receiver.received)
    first = log_of(api, endpoint["id"])[0]["attemptLog"][0]
    assert first["statusCode"] == 302 and first["outcome"] == "failure"
    assert "Redirects are not followed" in first["error"]


def test_429_with_retry_after_waits_as_long_as_asked(make_app, receiver):
    app = make_app(**OPEN | {"WEBHOOK_RETRY_SCHEDULE": "0,1"})
    with app.app_context():
        api = json_client(app)
        endpoint = add_endpoint(api, receiver.url)
        receiver.script(Reply(429, {"Retry-After": "600"}))
        start_import(api)
        deliver()
        [message] = log_of(api, endpoint["id"])
        assert len(receiver.received) == 1 and message["status"] == "pending"
        assert message["nextAttemptAt"] > (utcnow() + timedelta(seconds=590)).isoformat()
    _clean(app)


def test_a_rotated_secret_signs_beside_the_new_one_for_a_day(api, receiver):
    endpoint = add_endpoint(api, receiver.url)
    old = endpoint["secret"]
    rotated = api.post(f"/webhooks/{endpoint['id']}/rotate-secret")
    assert rotated.status_code == 200
    new = rotated.get_json()["secret"]
    assert new != old and new.startswith("whsec_")
    expires = rotated.get_json()["previousSecretExpiresAt"]
    assert (
        (utcnow() + timedelta(hours=23)).isoformat() < expires < (utcnow() + timedelta(hours=25)).isoformat()
    )

    api.post(f"/webhooks/{endpoint['id']}/test")
    deliver()
    got = receiver.received[-1]
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    assert got.verify(new)["type"] == "ping"
    assert got.verify(old)["data"]["endpointId"] == endpoint["id"]

    # A day later the old secret no longer signs.
    row = db.session.get(WebhookEndpoint, endpoint["id"])
    row.old_secrets = [
        {**o, "expiresAt": (utcnow() - timedelta(seconds=1)).isoformat()} for o in row.old_secrets
    ]
    db.session.commit()
    api.post(f"/webhooks/{endpoint['id']}/test")
    deliver()
    got = receiver.received[-1]
    assert len(got.headers["webhook-signature"].split(" ")) == 1
    got.verify(new)
    from standardwebhooks.webhooks import WebhookVerificationError

    with pytest.raises(WebhookVerificationError):
        got.verify(old)


def test_a_secret_given_by_the_client_is_used(api, receiver):
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    endpoint = add_endpoint(api, receiver.url, secret=secret)
    assert endpoint["secret"] == secret
    api.post(f"/webhooks/{endpoint['id']}/test")
    deliver()
    assert receiver.received[0].verify(secret)["type"] == "ping"


def test_events_other_branches_record_go_through_the_same_outbox(api, receiver):
    endpoint = add_endpoint(api, receiver.url)
    job_id = start_import(api)
    deliver()
    imp = db.session.get(Import, job_id)
    assert record_event(db.session, imp, "import.undone")
    assert record_event(db.session, job_id, "import.review_needed")
    db.session.commit()
    deliver()
    types = [r.verify(endpoint["secret"])["type"] for r in receiver.received]
    assert sorted(types) == ["import.completed", "import.review_needed", "import.undone"]
    with pytest.raises(ValueError, match="not an import event"):
        record_event(db.session, imp, "import.exploded")


def test_an_import_held_for_review_sends_import_review_needed(api, receiver):
    endpoint = add_endpoint(api, receiver.url)
    answer = api.post("/import", json={**BODY, "review": True})
    assert answer.status_code == 202
    job_id = answer.get_json()["jobId"]
    deliver()
    [got] = receiver.received
    payload = got.verify(endpoint["secret"])
    assert payload["type"] == "import.review_needed"
    assert payload["data"]["jobId"] == job_id and payload["data"]["status"] == "review"


def test_an_undone_import_sends_import_undone(api, receiver):
    endpoint = add_endpoint(api, receiver.url)
    job_id = start_import(api)
    deliver()
    assert api.post(f"/imports/{job_id}/undo").status_code == 202
    deliver()  # the undo runs, and its event's delivery is queued by its commit
    deliver()
    types = [r.verify(endpoint["secret"])["type"] for r in receiver.received]
    assert types == ["import.completed", "import.undone"]
    undone = receiver.received[-1].verify(endpoint["secret"])["data"]
    assert undone["jobId"] == job_id and undone["status"] == "undone"


def test_an_event_rolled_back_with_its_import_is_never_sent(api, receiver):
    add_endpoint(api, receiver.url)
    job_id = start_import(api)
    deliver()
    before = len(receiver.received)
    record_event(db.session, job_id, "import.undone")
    db.session.rollback()
    deliver()
    assert len(receiver.received) == before
    assert db.session.query(WebhookEvent).filter_by(type="import.undone").count() == 0


def test_a_cancelled_import_sends_import_cancelled(api, receiver, hooks_app):
    endpoint = add_endpoint(api, receiver.url)
    job_id = start_import(api)
    assert api.post(f"/imports/{job_id}/cancel").status_code == 200
    deliver()
    [got] = receiver.received
    payload = got.verify(endpoint["secret"])
    assert payload["type"] == "import.cancelled" and payload["data"]["status"] == "cancelled"


def test_the_api_refuses_bad_input_with_what_to_do(api, receiver):
    cases = [
        ({}, "Missing required field: url"),
        ({"url": "ftp://example.com/x"}, "https://"),
        ({"url": "not a url"}, "url"),
        ({"url": receiver.url, "events": []}, "non-empty list"),
        ({"url": receiver.url, "events": ["import.exploded"]}, "unknown event"),
        ({"url": receiver.url, "colour": "blue"}, "unknown field 'colour'"),
        ({"url": receiver.url, "description": "x" * 256}, "at most 255"),
        ({"url": receiver.url, "secret": "whsec_c2hvcnQ="}, "24 to 64 bytes"),
        ({"url": receiver.url, "secret": "plain"}, "whsec_"),
        ({"url": "https://user:pw@example.com/hook"}, "password"),
        ([1, 2], "JSON object"),
    ]
    for body, message in cases:
        answer = api.post("/webhooks", json=body)
        assert answer.status_code == 400, body
        assert message in answer.get_json()["error"], (body, answer.get_json())
    assert api.post("/webhooks", data="{", content_type="application/json").status_code == 400
    assert api.post("/webhooks", data="url=x", content_type="text/plain").status_code == 400

    endpoint = add_endpoint(api, receiver.url)
    path = f"/webhooks/{endpoint['id']}"
    assert api.patch(path, json={"enabled": "yes"}).status_code == 400
    assert api.patch(path, json={"id": "other"}).status_code == 400
    assert api.get("/webhooks/ep_nope").status_code == 404
    assert api.delete("/webhooks/ep_nope").status_code == 404
    assert api.post("/webhooks/deliveries/dlv_nope/retry").status_code == 404
    assert "since" in api.post(f"{path}/recover").get_json()["error"]
    assert api.post(f"{path}/recover", query_string={"since": "yesterday"}).status_code == 400
    assert api.get(f"{path}/deliveries", query_string={"status": "lost"}).status_code == 400
    assert api.patch(path, json={"description": "kept", "events": ["import.failed"]}).status_code == 200
    assert api.get(path).get_json()["events"] == ["import.failed"]
    assert api.delete(path).status_code == 204
    assert api.get(path).status_code == 404


def test_private_targets_are_refused_without_the_switch(make_app, receiver):
    app = make_app(RATE_LIMITS_ENABLED="false")
    with app.app_context():
        api = json_client(app)
        for url in (
            "http://example.com/hook",
            "https://127.0.0.1/hook",
            "https://10.1.2.3/hook",
            "https://[::1]/hook",
            "https://[::ffff:192.168.0.1]/hook",
            "https://169.254.169.254/latest/meta-data",
            "https://localhost/hook",
        ):
            answer = api.post("/webhooks", json={"url": url})
            assert answer.status_code == 400, url
            assert re.search("https://|WEBHOOK_ALLOW|metadata", answer.get_json()["error"]), url

        # A name that resolves to loopback when it is sent, not when it was added: refused then.
        endpoint = WebhookEndpoint(
            url=receiver.url.replace("127.0.0.1", "localhost.").replace("http:", "https:"),
            events=["import.completed"],
            secret="whsec_" + "A" * 44,
            old_secrets=[],
        )
        db.session.add(endpoint)
        db.session.commit()
        endpoint_id = endpoint.id
        start_import(api)
        deliver()
        assert receiver.received == []
        [message] = log_of(api, endpoint_id)
        attempt = message["attemptLog"][0]
        assert attempt["outcome"] == "refused" and "loopback" in attempt["error"]
    _clean(app)


def test_metrics_count_deliveries_by_outcome(api, receiver):
    add_endpoint(api, receiver.url)
    receiver.script(Reply(500))
    start_import(api)
    deliver()
    metrics = api.get("/metrics").get_data(as_text=True)
    assert 'dataflow_webhook_deliveries_total{outcome="success"} 1.0' in metrics
    assert 'dataflow_webhook_deliveries_total{outcome="failure"} 1.0' in metrics
    assert 'dataflow_webhook_messages{status="delivered"} 1.0' in metrics
    # The latency of the last five minutes: of two attempts, the quicker is p50 and the slower p95.
    [endpoint] = api.get("/webhooks").get_json()["items"]
    took = sorted(a["durationMs"] for m in log_of(api, endpoint["id"]) for a in m["attemptLog"])
    for quantile, ms in (("0.5", took[0]), ("0.95", took[-1])):
        found = re.search(
            rf'dataflow_webhook_recent_delivery_seconds{{quantile="{quantile}"}} (\S+)', metrics
        )
        assert float(found.group(1)) == pytest.approx(ms / 1000)


def csrf_token_of(page: str) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)


def test_the_page_adds_an_endpoint_shows_its_secret_once_and_replays(hooks_app, receiver):
    browser = hooks_app.test_client()
    browser.environ_base["HTTP_ACCEPT"] = "text/html"
    page = browser.get("/webhooks").get_data(as_text=True)
    assert "No endpoints yet" in page and 'href="/webhooks"' in page
    token = csrf_token_of(page)
    refused = browser.post("/webhooks", data={"url": receiver.url, "events": ["import.completed"]})
    assert refused.status_code == 400  # no CSRF token
    created = browser.post(
        "/webhooks",
        data={"url": receiver.url, "events": ["import.completed", "import.failed"], "csrf_token": token},
    )
    assert created.status_code == 201
    secret = re.search(r'id="secret">(whsec_[^<]+)<', created.get_data(as_text=True)).group(1)
    endpoint = db.session.query(WebhookEndpoint).one()
    assert endpoint.events == ["import.completed", "import.failed"]
    db.session.expunge(endpoint)  # its id and url are all the test reads from here
    shown = browser.get(f"/webhooks/{endpoint.id}").get_data(as_text=True)
    assert secret not in shown and "No messages yet" in shown

    ping = browser.post(f"/webhooks/{endpoint.id}/test", data={"csrf_token": token})
    assert ping.status_code == 303
    deliver()
    assert receiver.received[0].verify(secret)["type"] == "ping"
    shown = browser.get(f"/webhooks/{endpoint.id}").get_data(as_text=True)
    assert "Delivered" in shown and "HTTP 200" in shown and "Replay" in shown
    message_id = re.search(r"/webhooks/deliveries/([^/]+)/retry", shown).group(1)
    browser.post(f"/webhooks/deliveries/{message_id}/retry", data={"csrf_token": token})
    deliver()
    assert [r.headers["webhook-id"] for r in receiver.received] == [
        receiver.received[0].headers["webhook-id"]
    ] * 2

    off = browser.post(f"/webhooks/{endpoint.id}/disable", data={"csrf_token": token}, follow_redirects=True)
    assert "This endpoint is disabled" in off.get_data(as_text=True)
    browser.post(f"/webhooks/{endpoint.id}/delete", data={"csrf_token": token})
    assert db.session.query(WebhookEndpoint).count() == 0


def test_webhooks_need_a_token_like_the_rest_of_the_api(make_app):
    token = "tok-" + "w" * 28
    app = make_app(API_TOKENS=token, RATE_LIMITS_ENABLED="false")
    client = app.test_client()
    for method, path in [
        ("GET", "/webhooks"),
        ("POST", "/webhooks"),
        ("GET", "/webhooks/ep_x"),
        ("PATCH", "/webhooks/ep_x"),
        ("DELETE", "/webhooks/ep_x"),
        ("POST", "/webhooks/ep_x/rotate-secret"),
        ("POST", "/webhooks/ep_x/test"),
        ("GET", "/webhooks/ep_x/deliveries"),
        ("POST", "/webhooks/deliveries/dlv_x/retry"),
        ("POST", "/webhooks/ep_x/recover"),
    ]:
        answer = client.open(path, method=method, headers={"Accept": "application/json"})
        assert answer.status_code == 401, (method, path)
    ok = client.get("/webhooks", headers={"Accept": "application/json", "Authorization": f"Bearer {token}"})
    assert ok.status_code == 200 and ok.get_json() == {"items": []}


def test_a_claimed_message_is_held_by_one_run_until_its_lease_ends(api, receiver):
    from app.webhooks.answers import record
    from app.webhooks.delivery import attempt, claim
    from app.webhooks.models import WebhookMessage

    endpoint = add_endpoint(api, receiver.url)
    for _ in range(3):
        api.post(f"/webhooks/{endpoint['id']}/test")
    config = api.application.config["SETTINGS"].webhooks
    first = claim(10, config)
    assert len(first) == 3
    assert claim(10, config) == []  # another worker finds nothing to send

    # The first run dies; once its lease has run out another run takes the messages over.
    db.session.execute(update(WebhookMessage).values(lease_until=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    second = claim(10, config)
    assert {c.message_id for c in second} == {c.message_id for c in first}
    assert all(c.number == 2 and c.token != first[0].token for c in second)

    # The dead run's late answer cannot move a message the new run holds.
    late = first[0]
    record([(late, attempt(late, config), utcnow())], config)
    db.session.commit()
    assert db.session.get(WebhookMessage, late.message_id).lease_token == second[0].token

    # An endpoint deleted while its messages are out: their answers have nowhere to go, and no error.
    api.delete(f"/webhooks/{endpoint['id']}")
    record([(c, attempt(c, config), utcnow()) for c in second], config)
    db.session.commit()
    assert db.session.query(WebhookMessage).count() == 0


def test_a_job_asked_to_stop_sends_what_it_started_and_gives_the_rest_back(make_app, receiver):
    from app.imports.runs import handback_requested
    from app.webhooks.delivery import claim, drain
    from app.webhooks.models import WebhookAttempt, WebhookMessage

    app = make_app(**OPEN | {"WEBHOOK_CONCURRENCY": "1"})
    with app.app_context():
        five_pings(json_client(app), receiver)
        held = threading.Event()
        receiver.script(Reply(hold=held))

        def stop_while_the_first_is_out() -> None:
            wait_for(lambda: receiver.received, timeout=10, interval=0.01)
            handback_requested.set()  # as a worker's warm shutdown does
            held.set()

        stopper = threading.Thread(target=stop_while_the_first_is_out)
        stopper.start()
        try:
            sent = drain()
        finally:
            stopper.join()
            handback_requested.clear()
        assert sent == 1 and len(receiver.received) == 1
        messages = db.session.scalars(db.select(WebhookMessage)).all()
        assert sorted(m.status for m in messages) == ["delivered", "pending", "pending", "pending", "pending"]
        waiting = [m for m in messages if m.status == "pending"]
        assert all(m.attempts == 0 and m.lease_until is None for m in waiting)
        assert db.session.query(WebhookAttempt).count() == 1
        # Given back, they are due at once, and their first attempt is the first one logged.
        again = claim(10, app.config["SETTINGS"].webhooks)
        assert sorted(c.message_id for c in again) == sorted(m.id for m in waiting)
        assert {c.number for c in again} == {1}
        db.session.rollback()
    _clean(app)


def test_a_job_past_its_budget_gives_back_what_no_thread_started(make_app, receiver, monkeypatch):
    from app.webhooks import delivery
    from app.webhooks.models import WebhookMessage

    monkeypatch.setattr(delivery, "DRAIN_BUDGET", 0.5)
    app = make_app(**OPEN | {"WEBHOOK_CONCURRENCY": "1"})
    with app.app_context():
        five_pings(json_client(app), receiver)
        delivery.queue().empty()
        receiver.default = Reply(delay=0.3)
        sent = delivery.drain()  # all five are claimed at once; about two fit in the budget
        assert 1 <= sent < 5 and len(receiver.received) == sent
        pending = db.select(WebhookMessage).where(WebhookMessage.status == "pending")
        waiting = db.session.scalars(pending).all()
        assert len(waiting) == 5 - sent
        assert all(m.attempts == 0 and m.lease_until is None for m in waiting)
        assert delivery.queue().count == 1  # the next job, which sends them
        delivery.queue().empty()
    _clean(app)


def test_the_import_page_follows_its_deliveries_only_while_they_may_change(api, receiver):
    job_id = start_import(api)
    fragment = f"/webhooks/for-import/{job_id}"
    assert fragment not in page_of(api, f"/imports/{job_id}")  # no endpoint: nothing to follow

    add_endpoint(api, receiver.url)
    assert f'hx-get="{fragment}"' in page_of(api, f"/imports/{job_id}")  # running: events to come
    deliver()
    done = page_of(api, fragment)
    assert "Delivered" in done and "hx-get" not in done

    receiver.default = Reply(500)
    job_id = start_import(api)
    deliver()
    waiting = page_of(api, f"/webhooks/for-import/{job_id}")
    assert "Failed" in waiting and "5 attempts" in waiting and "hx-get" not in waiting
    assert api.get("/webhooks/for-import/nope").status_code == 404


def test_old_events_are_forgotten_once_nothing_waits(api, receiver):
    from app.webhooks.models import WebhookAttempt, WebhookMessage
    from app.webhooks.retention import forget_old_messages

    endpoint = add_endpoint(api, receiver.url)
    start_import(api)
    deliver()
    api.post(f"/webhooks/{endpoint['id']}/test")  # not sent: it waits for its hour below
    db.session.execute(
        update(WebhookMessage)
        .where(WebhookMessage.status == "pending")
        .values(next_attempt_at=utcnow() + timedelta(hours=1))
    )
    db.session.execute(update(WebhookEvent).values(created_at=utcnow() - timedelta(days=31)))
    db.session.commit()
    counted = 'dataflow_webhook_deliveries_total{outcome="success"} 1.0'
    assert counted in api.get("/metrics").get_data(as_text=True)
    forget_old_messages()
    left = db.session.query(WebhookMessage).all()
    assert [m.status for m in left] == ["pending"]  # the delivered one is gone, the waiting one kept
    assert db.session.query(WebhookEvent).count() == 1
    assert db.session.query(WebhookAttempt).count() == 0
    # The forgotten attempt still counts: a Prometheus counter never goes down.
    assert counted in api.get("/metrics").get_data(as_text=True)
    forget_old_messages()  # nothing more to forget, nothing counted twice
    assert counted in api.get("/metrics").get_data(as_text=True)

    assert api.delete(f"/webhooks/{endpoint['id']}").status_code == 204
    assert db.session.query(WebhookMessage).count() == 0


def test_a_body_far_larger_than_an_endpoint_needs_is_refused_unread(api, receiver):
    huge = b'{"url": "' + b"a" * 70_000 + b'"}'
    answer = api.post("/webhooks", data=huge, content_type="application/json")
    assert answer.status_code == 413 and "larger than 64 KB" in answer.get_json()["error"]
    endpoint = add_endpoint(api, receiver.url)
    assert (
        api.patch(f"/webhooks/{endpoint['id']}", data=huge, content_type="application/json").status_code
        == 413
    )
