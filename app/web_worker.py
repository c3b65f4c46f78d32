"""The web process's gunicorn worker: gevent, so a slow client costs a greenlet rather than a thread.

A client that trickles its request headers is cut off after ``keepalive`` seconds (gunicorn's
asynchronous workers read the headers of every request under that timeout); one that stops
sending or reading a body for ``WEB_BODY_TIMEOUT`` seconds gets 408 and is let go.
"""

from __future__ import annotations

import os

from gunicorn.workers.ggevent import GeventWorker

# nginx's client_body_timeout and send_timeout default to the same minute.
DEFAULT_BODY_TIMEOUT = 60.0


class Worker(GeventWorker):
    """gevent's worker with an idle timeout on each read and write of a request's socket."""

    def handle_request(self, listener_name, req, sock, addr):  # noqa: ANN001 - gunicorn's signature
        """Bound the silence between two reads (or writes) of this request's socket, then serve it."""
        sock.settimeout(float(os.environ.get("WEB_BODY_TIMEOUT", DEFAULT_BODY_TIMEOUT)))
        return super().handle_request(listener_name, req, sock, addr)
