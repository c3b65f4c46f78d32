"""Standard Webhooks v1 signatures: whsec_ secrets, HMAC-SHA256 of "{id}.{timestamp}.{body}"."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from app.models import utcnow

PREFIX = "whsec_"
SECRET_BYTES = 32
MIN_SECRET_BYTES, MAX_SECRET_BYTES = 24, 64
# After a rotation the old secret keeps signing beside the new one for this long.
ROTATION_OVERLAP = timedelta(hours=24)


class BadSecret(ValueError):
    """A secret given by a client is not a whsec_ secret of 24 to 64 bytes."""


def new_secret() -> str:
    """A fresh secret: ``whsec_`` and the base64 of 32 random bytes."""
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_bytes(secret: str) -> bytes:
    """The key a ``whsec_`` secret holds; BadSecret when it is not one."""
    if not isinstance(secret, str) or not secret.startswith(PREFIX):
        raise BadSecret("secret must start with whsec_ followed by base64")
    try:
        key = base64.b64decode(secret[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise BadSecret("secret must be whsec_ followed by standard base64") from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise BadSecret(
            f"secret must hold {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes once decoded, not {len(key)}"
        )
    return key


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature of the message."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signing_secrets(current: str, old_secrets: list[dict], now: datetime | None = None) -> list[str]:
    """The current secret, then every rotated-out one whose overlap has not ended."""
    now = now or utcnow()
    kept = [current]
    for old in old_secrets or ():
        if datetime.fromisoformat(old["expiresAt"]) > now:
            kept.append(old["secret"])
    return kept


def signature_header(keys: list[str], message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one signature per secret, separated by spaces."""
    return " ".join(sign(key, message_id, timestamp, body) for key in keys)


def rotated(current: str, old_secrets: list[dict], now: datetime | None = None) -> tuple[str, list[dict]]:
    """A new secret, and the old ones still signing (the replaced one for ROTATION_OVERLAP more)."""
    now = now or utcnow()
    still = [old for old in old_secrets or () if datetime.fromisoformat(old["expiresAt"]) > now]
    still.insert(0, {"secret": current, "expiresAt": (now + ROTATION_OVERLAP).isoformat()})
    return new_secret(), still
