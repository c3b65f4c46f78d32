"""Webhook settings read from the environment: safety switches, timeout, retry schedule, pace."""

from __future__ import annotations

from dataclasses import dataclass

from app.config_values import parse_duration, read_bool, read_duration, read_int

# Seconds before each attempt: the first at once, then the Standard Webhooks schedule.
DEFAULT_SCHEDULE = "0,5s,5m,30m,2h,5h,10h,14h,20h,24h"


@dataclass(frozen=True)
class WebhookSettings:
    """How webhooks are sent, retried and guarded."""

    allow_private: bool = False
    allow_http: bool = False
    timeout: float = 15.0
    schedule: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
    disable_after: float = 5 * 86400
    poll_interval: float = 5.0
    concurrency: int = 8


def _schedule(text: str, errors: list[str]) -> tuple[float, ...]:
    try:
        values = tuple(parse_duration(part) for part in text.split(","))
    except ValueError as exc:
        errors.append(f"WEBHOOK_RETRY_SCHEDULE: {exc}; give delays such as 0,5s,5m,30m,2h")
        return WebhookSettings.schedule
    return values


def webhook_settings(env: dict[str, str], errors: list[str]) -> WebhookSettings:
    """Read the WEBHOOK_* variables, adding every mistake to ``errors``."""
    return WebhookSettings(
        allow_private=read_bool("WEBHOOK_ALLOW_PRIVATE", env.get("WEBHOOK_ALLOW_PRIVATE", "false"), errors),
        allow_http=read_bool("WEBHOOK_ALLOW_HTTP", env.get("WEBHOOK_ALLOW_HTTP", "false"), errors),
        timeout=read_duration("WEBHOOK_TIMEOUT", env.get("WEBHOOK_TIMEOUT", "15s"), errors),
        schedule=_schedule(env.get("WEBHOOK_RETRY_SCHEDULE", DEFAULT_SCHEDULE), errors),
        disable_after=read_duration("WEBHOOK_DISABLE_AFTER", env.get("WEBHOOK_DISABLE_AFTER", "5d"), errors),
        poll_interval=read_duration("WEBHOOK_POLL_INTERVAL", env.get("WEBHOOK_POLL_INTERVAL", "5s"), errors),
        concurrency=read_int("WEBHOOK_CONCURRENCY", env.get("WEBHOOK_CONCURRENCY", "8"), errors, maximum=64),
    )
