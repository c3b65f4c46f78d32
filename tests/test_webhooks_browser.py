"""The Webhooks page in a real Chromium, with a real worker and a receiver that verifies."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from app.extensions import db
from tests.conftest import served_in_thread, wait_for
from tests.webhook_receiver import Receiver, Reply, running_receiver

pytestmark = pytest.mark.browser
OPEN = {"WEBHOOK_ALLOW_PRIVATE": "true", "WEBHOOK_ALLOW_HTTP": "true", "WEBHOOK_POLL_INTERVAL": "1"}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


@pytest.fixture
def site(make_app) -> Iterator[str]:
    app = make_app(**OPEN, SESSION_COOKIE_SECURE="false", RATE_LIMITS_ENABLED="false")
    with served_in_thread(app) as url:
        yield url
    with app.app_context():
        db.session.execute(text("TRUNCATE webhook_endpoints, webhook_events CASCADE"))
        db.session.commit()


def test_add_an_endpoint_ping_it_and_replay_from_the_page(site, receiver, chromium, worker_process):
    worker_process("--concurrency", "1", **OPEN)
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(site + "/")
    page.get_by_role("link", name="Webhooks").click()
    page.get_by_label("URL").fill(receiver.url)
    page.get_by_label("import.cancelled").uncheck()
    page.get_by_label("Description").fill("CRM sync")
    page.get_by_role("button", name="Add endpoint").click()
    secret = page.locator("#secret").inner_text()
    assert secret.startswith("whsec_")

    page.get_by_role("link", name="Go to the endpoint").click()
    assert secret not in page.content()
    page.get_by_role("button", name="Send a test ping").click()
    assert "A ping is on its way" in page.locator(".flash").inner_text()
    wait_for(lambda: receiver.received, timeout=60, interval=0.2)
    assert receiver.received[0].verify(secret)["type"] == "ping"

    def delivered() -> bool:
        page.reload()
        return page.locator(".status", has_text="Delivered").count() == 1

    wait_for(delivered, timeout=30, interval=0.5)
    page.get_by_text("1 attempt").click()
    assert "HTTP 200" in page.locator(".attempts").inner_text()

    receiver.script(Reply(410))
    page.get_by_role("button", name="Replay").click()
    wait_for(lambda: len(receiver.received) == 2, timeout=60, interval=0.2)
    assert receiver.received[1].headers["webhook-id"] == receiver.received[0].headers["webhook-id"]

    def disabled() -> bool:
        page.reload()
        return "This endpoint is disabled" in page.content()

    wait_for(disabled, timeout=30, interval=0.5)
    assert re.search(r"410 Gone", page.locator(".notice").inner_text())
    page.get_by_role("button", name="Enable").click()
    assert page.get_by_role("button", name="Disable").is_visible()

    phone = context.new_page()
    phone.set_viewport_size({"width": 375, "height": 812})
    phone.goto(page.url)
    assert phone.evaluate("document.documentElement.scrollWidth") <= 375
    context.close()
