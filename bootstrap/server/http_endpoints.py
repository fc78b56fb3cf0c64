"""The HTTP endpoints: the seed-nodes document, the node's status, and the health checks.

* ``GET /bootstrap/seed-nodes``: the seed-nodes document, ``application/json``.
* ``GET /bootstrap/status``, ``GET /alive`` (503 once the node says it is not: a formation
  deadline passed), ``GET /ready`` (503 until joined).
* ``GET /metrics``: the node's metrics in the Prometheus text format (:mod:`bootstrap.metrics`),
  when the app was given them.

Rules:

* Every answer but the metrics is JSON, and every answer has ``cache-control: no-store`` (a
  snapshot of a moving state). A known path answers only GET (405 otherwise); a plain GET of
  the watch endpoint is 426; anything else is 404 naming the path (cut to a readable length).
* Refused before routing, in this order, each counted (:class:`~.limits.Refusals`): a head over
  ``max_header_bytes`` (431), a request announcing a body (413; no endpoint takes one), more
  than ``max_requests_per_client`` in flight from one address (429 with ``retry-after``). The
  413 and 431 close the connection.
* The seed-nodes request's ``Bootstrap-Contact-Point`` counts as a contact even if the answer
  then fails: the peer is alive all the same. Its ``Bootstrap-Round`` (a proposal, DESIGN
  section 8) goes to the node with it, before the document is built, so the answer shows
  whether this node promised. No other endpoint reads either header.
* A node callback that raises, or a status that is not JSON-ready, gives a JSON 500 and is
  logged; nothing escapes to the server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

import attrs

from ..core import Settings
from ..core.wire import (
    ALIVE_PATH,
    METRICS_PATH,
    READY_PATH,
    SEED_NODES_PATH,
    STATUS_PATH,
    WATCH_PATH,
)
from .asgi import (
    Scope,
    Send,
    announces_body,
    client_host,
    json_bytes,
    request_head_bytes,
    route_path,
    shown_path,
)
from .contacts import Contacts
from .limits import (
    REFUSED_BODY,
    REFUSED_HEADERS,
    REFUSED_REQUESTS,
    ClientCounts,
    Refusals,
    ServerLimits,
    retry_after_header,
)

__all__ = ["HttpEndpoints"]

# One logger for the whole server (docs/node.md names it), whichever module logs.
logger = logging.getLogger("bootstrap.server")

_HTTP_PATHS: Final = frozenset({SEED_NODES_PATH, STATUS_PATH, ALIVE_PATH, READY_PATH})
_JSON: Final = b"application/json"


@attrs.frozen
class _Encoded:
    """A response body encoded already, and its content type."""

    data: bytes
    content_type: bytes = _JSON


class HttpEndpoints:
    """Answers the management app's HTTP requests from the node's callbacks."""

    def __init__(
        self,
        *,
        settings: Settings,
        limits: ServerLimits,
        refusals: Refusals,
        contacts: Contacts,
        encoded_document: Callable[[], bytes],
        status: Callable[[], dict[str, object]],
        ready: Callable[[], bool],
        metrics: Callable[[], tuple[bytes, str]] | None = None,
        alive: Callable[[], bool] | None = None,
    ) -> None:
        self._alive = alive
        self._settings = settings
        self._metrics = metrics
        self._paths = _HTTP_PATHS | ({METRICS_PATH} if metrics is not None else set())
        self._limits = limits
        self._refusals = refusals
        self._contacts = contacts
        self._encoded_document = encoded_document
        self._status = status
        self._ready = ready
        self.requests_served = 0
        self.in_flight = ClientCounts()

    async def serve(self, scope: Scope, send: Send) -> None:
        """Answer one HTTP request (the whole exchange: the app takes no body)."""
        client = client_host(scope)
        if (size := request_head_bytes(scope)) > self._limits.max_header_bytes:
            # hypercorn only bounds a head still incomplete when it looks (h11 buffers at most
            # max_header_bytes of it); one that arrives whole in a single read (up to 64 KiB),
            # or over HTTP/2, reaches us, so the bound is enforced here as well.
            self._refusals.refuse(REFUSED_HEADERS, client, f"a {size}-byte request head")
            error = {"error": f"request headers over {self._limits.max_header_bytes} bytes"}
            await self._respond(send, 431, error, [(b"connection", b"close")])
            return
        if announces_body(scope):
            # No endpoint takes a body, and we never read one: refuse it and close the
            # connection (h11 would otherwise have to read and discard it to reuse the
            # connection). HTTP/2 strips the connection-specific header; its stream just ends.
            self._refusals.refuse(REFUSED_BODY, client, "a request announced a body")
            error = {"error": "management endpoints take no request body"}
            await self._respond(send, 413, error, [(b"connection", b"close")])
            return
        limit = self._limits.max_requests_per_client
        if self.in_flight.held_by(client) >= limit:
            # Checked and counted with no await in between: trio cannot interleave another
            # request of this client here.
            self._refusals.refuse(REFUSED_REQUESTS, client, f"more than {limit} requests at once")
            error = {"error": f"more than {limit} requests at once from {client}; retry later"}
            await self._respond(send, 429, error, [retry_after_header(self._settings)])
            return
        with self.in_flight.holding(client):
            await self._answer(scope, send)

    async def _answer(self, scope: Scope, send: Send) -> None:
        path = route_path(scope)
        status: int
        body: object
        headers: list[tuple[bytes, bytes]] = []
        if path == WATCH_PATH:
            status, body = 426, {"error": f"{WATCH_PATH} is a websocket endpoint"}
            headers.append((b"upgrade", b"websocket"))
        elif path not in self._paths:
            status, body = 404, {"error": f"no endpoint at {shown_path(path)}"}
        elif scope.get("method") != "GET":
            status, body = 405, {"error": f"{path} only answers GET"}
            headers.append((b"allow", b"GET"))
        else:
            status, body = self._answer_get(path, scope)
        await self._respond(send, status, body, headers)

    def _answer_get(self, path: str, scope: Scope) -> tuple[int, object]:
        """Status and body (JSON-ready, or :class:`_Encoded`) for a GET of a known path."""
        if path == SEED_NODES_PATH:
            # A contact counts even if we then fail to answer: the peer is alive all the same.
            # Noted before the document is built: the answer must show a promise just given.
            self._contacts.note(
                self._contacts.from_headers(scope),
                proposal_round=self._contacts.proposal_round(scope),
            )
        try:
            if path == SEED_NODES_PATH:
                return 200, _Encoded(self._encoded_document())
            if path == METRICS_PATH and self._metrics is not None:
                data, content_type = self._metrics()
                return 200, _Encoded(data, content_type.encode("ascii"))
            if path == STATUS_PATH:
                return 200, self._status()
            if path == READY_PATH:
                ready = bool(self._ready())
                return (200 if ready else 503), {"ready": ready}
            alive = self._alive is None or bool(self._alive())
            return (200 if alive else 503), {"alive": alive}
        except Exception:
            logger.exception("the node's callback failed while answering GET %s", path)
            return 500, {"error": f"internal error while answering {path}; see the server log"}

    async def _respond(
        self, send: Send, status: int, body: object, extra_headers: list[tuple[bytes, bytes]]
    ) -> None:
        content_type = _JSON
        if isinstance(body, _Encoded):
            data, content_type = body.data, body.content_type
        else:
            try:
                data = json_bytes(body)
            except (TypeError, ValueError):
                # status() returned something that is not JSON-ready: the node's bug, not fatal.
                logger.exception("the %d response body is not JSON-serialisable", status)
                status = 500
                data = json_bytes({"error": "internal error: response is not valid JSON"})
        headers = [
            (b"content-type", content_type),
            (b"content-length", str(len(data)).encode("ascii")),
            # Every answer is a snapshot of a moving state: never serve it from a cache.
            (b"cache-control", b"no-store"),
            *extra_headers,
        ]
        # Counted before sending, so a client that has its answer also sees it counted.
        self.requests_served += 1
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data, "more_body": False})
