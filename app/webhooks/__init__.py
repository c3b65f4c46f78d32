"""Webhooks: events written with an import's final status, signed, delivered, retried and logged.

Other code tells of an event with ``record_event(session, import_row, "import.undone")`` inside the
transaction that changes the import; the event is delivered once that transaction commits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from app.models import Import

# Every event an endpoint can subscribe to; ``ping`` is sent only by the test button.
IMPORT_EVENTS = (
    "import.completed",
    "import.failed",
    "import.cancelled",
    "import.review_needed",
    "import.undone",
)
EVENTS = (*IMPORT_EVENTS, "ping")


def record_event(session: Session, import_row: Import | str, event_type: str) -> str | None:
    """Write the event and one message per subscribed endpoint in the caller's transaction.

    Returns the event's id (the ``webhook-id`` every delivery of it carries), or None when no
    enabled endpoint wants it. The caller commits; delivery starts once it has.
    """
    from app.webhooks.outbox import record_import_event  # keeps app.config's import of this package light

    return record_import_event(session, import_row, event_type)


def record_events(session: Session, import_ids: list[str], event_type: str) -> None:
    """``record_event`` for several imports changed in the caller's transaction (the endpoints read once)."""
    from app.webhooks.outbox import record_import_events

    record_import_events(session, import_ids, event_type)
