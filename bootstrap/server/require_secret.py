"""The shared secret, enforced: an ASGI wrapper that refuses requests without it.

Rules:

* Only requests carrying ``Authorization: Bearer <secret>`` reach the wrapped app; paths in
  ``open_paths`` (:data:`~bootstrap.security.OPEN_PATHS`: ``/alive`` and ``/ready``, the
  orchestrator's health checks) pass without it, routed below the mount point as the app routes.
* The secret is compared in constant time: SHA-256 digests of both sides through
  ``hmac.compare_digest``, so the time taken says nothing about the length or prefix of what
  the client sent.
* The inner app never sees a refused request, so a refusal is never counted as a contact.
  HTTP requests get 401 (``WWW-Authenticate: Bearer`` and a JSON error); websocket handshakes
  get 401 where the server supports the ``websocket.http.response`` extension, else they are
  closed before being accepted (the server answers 403).
* The first refusal from each client address is logged at WARNING, later ones at DEBUG, on the
  ``bootstrap.security`` logger (docs/node.md names it). The record of addresses is cleared
  when full, so a scanner cycling through addresses cannot grow memory.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Collection
from typing import Any, Final

from ..core import ContactPoint
from ..core.wire import CONTACT_POINT_HEADER
from ..security import OPEN_PATHS, Security
from .app import ManagementApp
from .asgi import Receive, Scope, Send, first_header, json_bytes, route_path
from .limits import ServerStatistics

__all__ = ["RequireSecret"]

# The secret's logger, not the server's: operators look there for who was refused a secret.
logger = logging.getLogger("bootstrap.security")

# Distinct client addresses whose refusals are remembered (logged once each at WARNING).
_MAX_REPORTED_CLIENTS: Final = 256
# A header value quoted in a log line is cut here.
_MAX_LOGGED_HEADER: Final = 100

_AUTHORIZATION: Final = b"authorization"
# ASGI servers hand header names lower-cased bytes.
_CONTACT_POINT: Final = CONTACT_POINT_HEADER.lower().encode("ascii")


class RequireSecret:
    """ASGI wrapper: only requests with ``Authorization: Bearer <secret>`` reach ``app``.

    Paths in ``open_paths`` (``/alive`` and ``/ready``) pass without it. Anything else without
    the right secret is answered here: HTTP requests with ``401`` (``WWW-Authenticate: Bearer``
    and a JSON error), websocket handshakes with ``401`` where the server supports the
    ``websocket.http.response`` extension, else they are closed before being accepted (the
    server answers ``403``). The inner app never sees a refused request, so it is never counted
    as a contact. The first refusal from each client address is logged at WARNING, later ones at
    DEBUG. Everything else (``notify_changed()``, ``statistics()``, ...) is the inner app's.
    """

    def __init__(
        self, app: ManagementApp, *, secret: bytes, open_paths: Collection[str] = OPEN_PATHS
    ) -> None:
        # The configuration's own rules (bytes, printable ASCII, not empty), so the wrapper
        # never requires a secret the prober could not send.
        Security(secret=secret)
        self._app = app
        # Digests compared, not the raw values, so the comparison takes the same time whatever
        # the length of what the client sent.
        self._digest = hashlib.sha256(secret).digest()
        self._open_paths = frozenset(open_paths)
        self._reported_clients: set[str] = set()
        self._refused = 0

    @property
    def app(self) -> ManagementApp:
        """The wrapped management app."""
        return self._app

    @property
    def self_contact_point(self) -> ContactPoint:
        return self._app.self_contact_point

    @property
    def service_name(self) -> str | None:
        return self._app.service_name

    @property
    def refused(self) -> int:
        """Requests and handshakes refused for a missing or wrong secret."""
        return self._refused

    def notify_changed(self) -> None:
        self._app.notify_changed()

    def statistics(self) -> ServerStatistics:
        return self._app.statistics()

    def __getattr__(self, name: str) -> Any:
        # Whatever else the node (or a subclass of it) uses of the app.
        if name == "_app":  # not set yet: never recurse
            raise AttributeError(name)
        return getattr(self._app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket") or route_path(scope) in self._open_paths:
            await self._app(scope, receive, send)
            return
        problem = self._problem(scope)
        if problem is None:
            await self._app(scope, receive, send)
            return
        self._refused += 1
        self._report(scope, problem)
        if kind == "http":
            await self._refuse_http(send, problem)
        else:
            await self._refuse_websocket(scope, receive, send, problem)

    def _problem(self, scope: Scope) -> str | None:
        """Why the request is refused, or None if it carries the secret."""
        value = first_header(scope, _AUTHORIZATION)
        if value is None:
            return "no Authorization header"
        scheme, _, token = value.strip().partition(b" ")
        if scheme.lower() != b"bearer":
            return "the Authorization header is not Bearer"
        given = hashlib.sha256(token.strip()).digest()
        if not hmac.compare_digest(given, self._digest):
            return "wrong secret"
        return None

    def _report(self, scope: Scope, problem: str) -> None:
        client = scope.get("client")
        address = str(client[0]) if client else "an unknown address"
        claimed = ""
        if (value := first_header(scope, _CONTACT_POINT)) is not None:
            text = value[:_MAX_LOGGED_HEADER].decode("latin-1")
            claimed = f", claiming to be {text!r}"
        request = "websocket" if scope["type"] == "websocket" else str(scope.get("method", ""))
        message = "refused %s %s from %s%s: %s"
        args = (request, route_path(scope), address, claimed, problem)
        if address in self._reported_clients:
            logger.debug(message, *args)
            return
        if len(self._reported_clients) >= _MAX_REPORTED_CLIENTS:
            self._reported_clients.clear()
        self._reported_clients.add(address)
        hint = (
            "; every node of a cluster needs the same secret "
            "(later refusals from this address are logged at DEBUG)"
        )
        logger.warning(message + hint, *args)

    async def _refuse_http(self, send: Send, problem: str) -> None:
        data, headers = _unauthorized_body(problem)
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": data, "more_body": False})

    async def _refuse_websocket(
        self, scope: Scope, receive: Receive, send: Send, problem: str
    ) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return  # the client left during the handshake
        if "websocket.http.response" in scope.get("extensions", {}):
            data, headers = _unauthorized_body(problem)
            await send({"type": "websocket.http.response.start", "status": 401, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": data})
        else:
            await send({"type": "websocket.close"})  # servers answer this with 403


def _unauthorized_body(problem: str) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The 401's JSON body and headers; ``invalid_token`` only when a wrong secret was sent."""
    error = f"{problem}: this endpoint needs Authorization: Bearer <the cluster's shared secret>"
    data = json_bytes({"error": error})
    challenge = b'Bearer realm="cluster-bootstrap"'
    if problem == "wrong secret":
        challenge += b', error="invalid_token"'
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(data)).encode("ascii")),
        (b"cache-control", b"no-store"),
        (b"www-authenticate", challenge),
    ]
    return data, headers
