"""The production web server under slow clients: a normal client is still answered within a second."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

from tests.slow_clients import CSV, Trickle, timed

# A small JSON import, whose body is kept with its import rather than in storage.
SMALL_JSON = b'{"source": "normal", "data": [{"name": "Ada Lovelace", "email": "ada@example.com"}]}'

SLOW_HEADERS = 50
SLOW_BODIES = 50
SLOW_UPLOADS = 30  # tus PATCHes: each holds its upload's lock while its chunk trickles in
# The bound: every answer to the normal client within a second. Here they take 5 to 40 ms.
BOUND = 1.0


def test_slow_clients_do_not_starve_health_or_an_import(web_server, make_app):
    make_app()  # so the tables are emptied after the test
    base = web_server(RATE_LIMITS_ENABLED="false", WEB_HEADER_TIMEOUT="2")
    host, port = urlsplit(base).hostname, urlsplit(base).port
    with Trickle(host, port, headers=SLOW_HEADERS, bodies=SLOW_BODIES, uploads=SLOW_UPLOADS) as trickle:
        time.sleep(1)  # every slow client is connected and has started its request
        health = [timed(host, port, "GET", "/health", None, BOUND) for _ in range(5)]
        imports = [timed(host, port, "POST", "/import", CSV, BOUND) for _ in range(5)]
        small = [
            timed(host, port, "POST", "/import", SMALL_JSON, BOUND, "application/json") for _ in range(5)
        ]
        time.sleep(2)  # past the header timeout
    assert max(health) < BOUND, health
    assert max(imports) < BOUND, imports
    assert max(small) < BOUND, small
    # A client that trickles its headers is cut off at the header timeout (and here came back).
    assert trickle.reconnects >= SLOW_HEADERS


def test_a_body_that_stops_arriving_gets_408(web_server, make_app):
    make_app()
    base = web_server(RATE_LIMITS_ENABLED="false", WEB_BODY_TIMEOUT="1")
    connection = socket.create_connection((urlsplit(base).hostname, urlsplit(base).port), timeout=30)
    connection.sendall(
        b"POST /import HTTP/1.1\r\nHost: test\r\nX-Source: s\r\nAccept: application/json\r\n"
        b"Content-Type: text/csv\r\nContent-Length: 5000\r\n\r\nname,email\n"
    )
    answer = b""
    while chunk := connection.recv(65536):  # the server closes the connection after its answer
        answer += chunk
    connection.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"stopped arriving" in answer
