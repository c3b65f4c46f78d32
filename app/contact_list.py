"""The stored contacts as JSON, a page at a time: ``GET /contacts?source=&importId=&page=``."""

from __future__ import annotations

import math
from typing import Any

from flask import Blueprint, abort, request
from sqlalchemy import func, select

from app.contact_search import BadFilter, ContactFilter, keyset_page
from app.errors import error_response, wants_json
from app.extensions import db
from app.models import Contact, iso
from app.principals import current_principal

bp = Blueprint("contacts", __name__)


def contacts_page(wanted: ContactFilter) -> Any:
    """The contacts page (app.contact_pages), imported here late: it imports this module."""
    from app.contact_pages import contacts_page as page

    return page(wanted)


PER_PAGE = 50
PER_PAGE_MAX = 500
# Far past any real page, and small enough that its offset stays a valid SQL integer.
PAGE_MAX = 1_000_000_000
# Numbered pages count the matching contacts up to this many; past it, keyset pages go on.
COUNT_MAX = 10_000


def contact_json(contact: Contact) -> dict[str, Any]:
    """A contact as the JSON API shows it: every field, and the columns kept as attributes."""
    return {
        "id": str(contact.id),
        "name": contact.name,
        "email": contact.email,
        "phone": contact.phone,
        "company": contact.company,
        "title": contact.title,
        "attributes": contact.attributes or {},
        "source": contact.source,
        "importId": contact.import_id,
        "importedAt": iso(contact.imported_at),
        "updatedAt": iso(contact.updated_at),
    }


@bp.get("/contacts")
def index() -> Any:
    """A page of contacts, oldest first, of one source or import if asked, matching ``q`` if given.

    Browsers get the contacts page; ``after`` (an id) asks for keyset pages, which stay fast at any depth.
    """
    try:
        wanted = ContactFilter.from_args(request.args, current_principal().sources)
    except BadFilter as exc:
        abort(400, description=str(exc))  # a page to a browser, JSON to an API client
    if not wants_json():
        return contacts_page(wanted)
    per_page = min(max(request.args.get("per_page", PER_PAGE, type=int) or 1, 1), PER_PAGE_MAX)
    if "after" in request.args:
        contacts, after = keyset_page(db.session, wanted, per_page)
        return {"items": [contact_json(c) for c in contacts], "next": after}
    page = min(max(1, request.args.get("page", 1, type=int) or 1), PAGE_MAX)
    where = wanted.where(db.session)
    # Counted up to COUNT_MAX: counting every contact of a large table costs seconds (2.1 s at 10M).
    matching = select(Contact.id).where(*where).limit(COUNT_MAX + 1).subquery()
    total = db.session.scalar(select(func.count()).select_from(matching))
    exact = total <= COUNT_MAX
    if not exact and (page - 1) * per_page >= COUNT_MAX:
        return error_response(
            400,
            f"Numbered pages reach the first {COUNT_MAX:,} contacts; "
            "ask for keyset pages (after=, then after=<next>) to go further.",
        )
    total = min(total, COUNT_MAX)
    # Ids are time-ordered (see app.contacts.batch_id_head), so the primary key gives a stable order.
    contacts = db.session.scalars(
        select(Contact).where(*where).order_by(Contact.id).limit(per_page).offset((page - 1) * per_page)
    ).all()
    return {
        "items": [contact_json(c) for c in contacts],
        "page": page,
        "pages": max(1, math.ceil(total / per_page)),
        "total": total,
        "totalExact": exact,
    }
