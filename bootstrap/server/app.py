"""The management app: the ASGI 3 application that routes each scope to its endpoint.

Rules:

* The app only serves what the node hands it (``document()``, ``status()``, ``ready()``); it
  holds no bootstrap state of its own. The node calls :meth:`ManagementApp.notify_changed` when
  the document may have changed.
* ``http`` scopes go to :mod:`.http_endpoints`, ``websocket`` scopes to :mod:`.watch`, and the
  ``lifespan`` scope is acknowledged here; any other scope type raises, as the ASGI spec asks.
* Both endpoints share one contact reader (:mod:`.contacts`) and one refusal record
  (:mod:`.limits`), so :meth:`ManagementApp.statistics` counts every refusal once, whichever
  endpoint refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from ..core import ContactPoint, SeedNodesDocument, Settings, encode_seed_nodes
from .asgi import Receive, Scope, Send
from .contacts import Contacts
from .http_endpoints import HttpEndpoints
from .limits import Refusals, ServerLimits, ServerStatistics
from .watch import WatchEndpoint

__all__ = ["ManagementApp"]

_DEFAULT_LIMITS: Final = ServerLimits()


class ManagementApp:
    """The ASGI 3 application behind every management endpoint.

    The callbacks are the node's: ``document()`` and ``status()`` build what is served,
    ``ready()`` says whether the node has joined, and ``on_contacted(cp)`` is called for every
    seed-nodes request, watch handshake and watch ``probe`` message that carries a valid
    ``Bootstrap-Contact-Point`` header. ``on_proposal(cp, round)`` is called instead when that
    contact also asks for a promise (``Bootstrap-Round: <r>``, or the watch message ``propose
    <r>``; DESIGN section 8); without it a proposal counts as a plain contact. The document that
    answers a contact is built after its callback returns, so a node that handles the event
    there and then answers with its consequence (the promise just given). Callbacks run in the
    server's trio tasks: keep them quick and non-blocking.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        self_contact_point: ContactPoint,
        service_name: str | None,
        document: Callable[[], SeedNodesDocument],
        status: Callable[[], dict[str, object]],
        ready: Callable[[], bool],
        on_contacted: Callable[[ContactPoint], None],
        on_proposal: Callable[[ContactPoint, int], None] | None = None,
        limits: ServerLimits = _DEFAULT_LIMITS,
        metrics: Callable[[], tuple[bytes, str]] | None = None,
        alive: Callable[[], bool] | None = None,
    ) -> None:
        self._self_contact_point = self_contact_point
        self._service_name = service_name
        self._limits = limits
        self._refusals = Refusals()
        contacts = Contacts(on_contacted, on_proposal)

        def encoded_document() -> bytes:
            return encode_seed_nodes(document())

        self._http = HttpEndpoints(
            settings=settings,
            limits=limits,
            refusals=self._refusals,
            contacts=contacts,
            encoded_document=encoded_document,
            status=status,
            ready=ready,
            metrics=metrics,
            alive=alive,
        )
        self._watch = WatchEndpoint(
            settings=settings,
            limits=limits,
            refusals=self._refusals,
            contacts=contacts,
            encoded_document=encoded_document,
        )

    @property
    def self_contact_point(self) -> ContactPoint:
        """The contact point this app's node advertises (and the server binds)."""
        return self._self_contact_point

    @property
    def service_name(self) -> str | None:
        """The service whose documents this app serves, if named."""
        return self._service_name

    @property
    def limits(self) -> ServerLimits:
        """The bounds this app enforces (:func:`.serve_management` also configures hypercorn)."""
        return self._limits

    def notify_changed(self) -> None:
        """The document may have changed: every open watch sends it now if it differs.

        Synchronous and cheap: each watch compares the current document with the last one it
        sent, in its own task, so the caller never waits on a slow client.
        """
        self._watch.notify_changed()

    def going_away(self) -> None:
        """The server is shutting down: close every watch, and any opened later, with 1001.

        A watch never ends on its own, so without this a graceful shutdown would wait out its
        timeout for each one; the peer reads "going away", not a broken connection.
        """
        self._watch.going_away()

    def statistics(self) -> ServerStatistics:
        """Counters since the app was created."""
        return ServerStatistics(
            requests_served=self._http.requests_served,
            watches_open=self._watch.open,
            watches_opened_total=self._watch.opened_total,
            documents_pushed=self._watch.documents_pushed,
            requests_in_flight=self._http.in_flight.total(),
            requests_refused=self._refusals.by_kind(),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http.serve(scope, send)
        elif kind == "websocket":
            await self._watch.serve(scope, receive, send)
        elif kind == "lifespan":
            await _serve_lifespan(receive, send)
        else:
            # The ASGI spec asks apps to raise on scope types they do not know.
            raise ValueError(f"unsupported ASGI scope type {kind!r}")


async def _serve_lifespan(receive: Receive, send: Send) -> None:
    """Acknowledge startup and shutdown: the app has nothing to open or close."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
