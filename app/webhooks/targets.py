"""Where a webhook may go: https (unless allowed otherwise) to a public address, resolved once."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from app.webhooks.settings import WebhookSettings

URL_MAX = 2000
# Cloud metadata services: never a webhook's target, whatever WEBHOOK_ALLOW_PRIVATE says.
METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(Exception):
    """The URL may not be sent to; the message says why and what would be allowed."""


@dataclass(frozen=True)
class Target:
    """A URL split for sending, with the one address it resolved to."""

    scheme: str
    host: str
    port: int
    path: str
    address: str


def check_url(url: object, config: WebhookSettings) -> str:
    """The URL, stripped, if its form is acceptable; TargetRefused naming what is wrong."""
    if not isinstance(url, str) or not url.strip():
        raise TargetRefused("url must be an absolute https:// URL")
    url = url.strip()
    if len(url) > URL_MAX:
        raise TargetRefused(f"url must be at most {URL_MAX} characters")
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise TargetRefused("url must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"url is not a valid URL ({exc})") from None
    if parts.scheme not in ("https", "http"):
        raise TargetRefused("url must start with https://")
    if parts.scheme == "http" and not config.allow_http:
        raise TargetRefused("url must use https:// (plain http is allowed only with WEBHOOK_ALLOW_HTTP=true)")
    if not parts.hostname:
        raise TargetRefused("url must name a host")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("url must not carry a user name or password; verify the signature instead")
    if port == 0:
        raise TargetRefused("url must not use port 0")
    literal = _literal(parts.hostname)
    if literal is not None:
        refusal = refusal_for(literal, config)
        if refusal:
            raise TargetRefused(f"url points to {literal}, {refusal}")
    elif parts.hostname.rstrip(".").lower().endswith("localhost") and not config.allow_private:
        raise TargetRefused(f"url points to {parts.hostname}, {_PRIVATE_HINT}")
    return url


_PRIVATE_HINT = "a loopback or private address (allowed only with WEBHOOK_ALLOW_PRIVATE=true)"


def _literal(host: str) -> Address | None:
    try:
        return _unmapped(ipaddress.ip_address(host))
    except ValueError:
        return None


def _unmapped(address: Address) -> Address:
    """An IPv4 address written as IPv6 (::ffff:10.0.0.1) is judged as the IPv4 address it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def refusal_for(address: Address, config: WebhookSettings) -> str | None:
    """Why an address may not be sent to, or None when it may."""
    address = _unmapped(address)
    if address in METADATA:
        return "a cloud metadata address, which is never allowed"
    if address.is_multicast or address.is_unspecified:
        return "not an address a webhook can be sent to"
    if address.is_global:
        return None
    if config.allow_private:
        return None
    if address.is_loopback:
        kind = "a loopback address"
    elif address.is_link_local:
        kind = "a link-local address"
    else:
        kind = "a private or reserved address"
    return f"{kind} (allowed only with WEBHOOK_ALLOW_PRIVATE=true)"


def resolve(url: str, config: WebhookSettings) -> Target:
    """Check the URL, resolve its host once and pick the first address that is allowed.

    The request then connects to that address itself, so a DNS answer that changes between
    this check and the connection cannot send it elsewhere.
    """
    url = check_url(url, config)
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(f"{host} could not be resolved ({exc})") from None
    refusals = []
    for *_, sockaddr in found:
        address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        refusal = refusal_for(address, config)
        if refusal is None:
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            return Target(parts.scheme, host, port, path, sockaddr[0])
        refusals.append(f"{address}, {refusal}")
    raise TargetRefused(f"{host} resolves to {refusals[0]}" if refusals else f"{host} has no address")
