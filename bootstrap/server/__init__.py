"""The management server: the endpoints peers probe, as an ASGI app on hypercorn's trio worker.

Endpoints (DESIGN section 4):

* ``GET /bootstrap/seed-nodes``: the seed-nodes document, ``application/json``.
* ``WS /bootstrap/watch``: the same document on connect, again whenever it changes, and at least
  every ``settings.watch_push_interval``; a client text message ``probe`` asks for it at once,
  ``propose <r>`` too, asking for a promise for founding round ``r`` (DESIGN section 8).
* ``GET /bootstrap/status``, ``GET /alive``, ``GET /ready`` (503 until joined).

Nothing a peer sends, and no exception from the node's callbacks, escapes the app: a callback
that raises gives a JSON 500 (or closes the watch with 1011) and is logged. Each module states
its own rules:

* :mod:`.app`: :class:`ManagementApp`, the router the node builds and notifies.
* :mod:`.http_endpoints`: the HTTP endpoints; :mod:`.watch`: the watch endpoint.
* :mod:`.contacts`: the ``Bootstrap-Contact-Point`` header, turned into ``on_contacted(cp)``,
  and a proposal (``Bootstrap-Round``, ``propose <r>``) into ``on_proposal(cp, round)``.
* :mod:`.limits`: :class:`ServerLimits`, :class:`ServerStatistics`, refusal accounting.
* :mod:`.asgi`: the ASGI types and what is read from a scope.
* :mod:`.require_secret`: :class:`RequireSecret`, the shared secret enforced.
* :mod:`.handshake_alert`: how a refused TLS handshake ends.
* :mod:`.serving`: the hypercorn configuration and :func:`serve_management`.

The paths, the header names and the watch's messages are the wire's (:mod:`bootstrap.core.wire`);
the keep-alive timeout is the settings' (:attr:`bootstrap.Settings.server_keep_alive_timeout`).
"""

from .app import ManagementApp
from .asgi import Message, Receive, Scope, Send
from .limits import MAX_CLIENT_MESSAGE_BYTES, ServerLimits, ServerStatistics
from .require_secret import RequireSecret
from .serving import (
    GRACEFUL_SHUTDOWN_TIMEOUT,
    SHUTDOWN_TIMEOUT,
    management_server_config,
    serve_management,
)
from .watch import CLOSE_ON_SHUTDOWN_TIMEOUT

__all__ = [
    "CLOSE_ON_SHUTDOWN_TIMEOUT",
    "GRACEFUL_SHUTDOWN_TIMEOUT",
    "MAX_CLIENT_MESSAGE_BYTES",
    "SHUTDOWN_TIMEOUT",
    "ManagementApp",
    "Message",
    "Receive",
    "RequireSecret",
    "Scope",
    "Send",
    "ServerLimits",
    "ServerStatistics",
    "management_server_config",
    "serve_management",
]
