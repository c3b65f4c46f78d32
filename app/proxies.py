"""Where requests come from: the configured public address, and the proxies whose headers are believed.

The ``Host`` header is the client's to choose, so no URL this app hands out is built from it:
absolute URLs start with ``PUBLIC_URL`` when it is set, and are absolute paths otherwise.
``X-Forwarded-For``, ``-Proto``, ``-Host`` and ``-Port`` are honoured (werkzeug's ProxyFix) only
on connections from an address in ``TRUSTED_PROXIES``, and dropped from every other request.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from flask import Flask, url_for
from werkzeug.middleware.proxy_fix import ProxyFix

from app.extensions import settings

FORWARDED = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST")
FORWARDED += ("HTTP_X_FORWARDED_PORT", "HTTP_X_FORWARDED_PREFIX", "HTTP_FORWARDED")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    """``TRUSTED_PROXIES``: addresses or networks, comma-separated (``127.0.0.1, 10.0.0.0/8``)."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip())


class TrustedProxies:
    """WSGI middleware: ProxyFix for requests from a trusted proxy; forwarded headers dropped for others."""

    def __init__(self, wsgi_app: Callable[..., Any], networks: tuple[Network, ...]) -> None:
        self.networks = networks
        self.plain = wsgi_app
        # One proxy in front (nginx, a load balancer): its values are the last of each header.
        self.fixed = ProxyFix(wsgi_app, x_for=1, x_proto=1, x_host=1, x_port=1, x_prefix=1)

    def _trusted(self, address: str | None) -> bool:
        try:
            ip = ipaddress.ip_address(address or "")
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """Believe the forwarded headers of a trusted proxy, and nobody else's."""
        if self.networks and self._trusted(environ.get("REMOTE_ADDR")):
            return self.fixed(environ, start_response)
        for name in FORWARDED:
            environ.pop(name, None)
        return self.plain(environ, start_response)


def absolute_url(endpoint: str, **values: Any) -> str:
    """The URL of an endpoint: PUBLIC_URL and its path, or the path alone (never the Host header)."""
    path = url_for(endpoint, **values)
    base = settings().public_url
    return f"{base}{path}" if base else path


def init_app(app: Flask) -> None:
    """Put the proxy check in front of everything else."""
    app.wsgi_app = TrustedProxies(app.wsgi_app, settings(app).trusted_proxies)  # type: ignore[method-assign]
