"""The watch endpoint: ``WS /bootstrap/watch`` pushes the seed-nodes document as it changes.

Rules:

* The document is sent on connect, again whenever it differs from the last one sent (the app
  calls :meth:`WatchEndpoint.notify_changed`), and at least every
  ``settings.watch_push_interval`` even when unchanged: that resend is the liveness signal that
  keeps this node's answer fresh at the watching peer. A client text message ``probe`` asks for
  it at once, and counts as a contact like the handshake's ``Bootstrap-Contact-Point``.
* A proposal (DESIGN section 8), ``Bootstrap-Round: <r>`` on the handshake or the message
  ``propose <r>``, is handed to the node before the document that answers it is built, so that
  document shows whether this node promised: the handshake's before the first push, a message's
  before the push it asks for. A ``propose`` with a malformed round is answered like ``probe``
  (:mod:`.contacts` has the parsing rules).
* Refused before the handshake is accepted (so never a contact): another path (404), and,
  counted as refusals, a head over ``max_header_bytes`` (431), a handshake offering extensions
  (400: compression would inflate without bound), more than ``max_watches_per_client`` open
  watches from one address (429 with ``retry-after``). Where the server cannot send a response
  body the refusal is a plain close, which servers answer with 403.
* Once open, a client sending faster than ``max_watch_messages_per_push_interval`` (a token
  bucket) is closed with 1008, a message over :data:`~.limits.MAX_CLIENT_MESSAGE_BYTES` with
  1009, and a document that cannot be built with 1011 (logged). Other messages are ignored:
  later protocol versions may send more kinds.
* A watch never ends on its own: :meth:`WatchEndpoint.going_away` closes every watch, and any
  opened later, with 1001; a cancelled watch (the server stopping at once) still says 1001 to
  its client, shielded for at most :data:`CLOSE_ON_SHUTDOWN_TIMEOUT` so a slow client cannot hold
  up the shutdown.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Final

import trio

from ..core import ContactPoint, Settings
from ..core.wire import WATCH_PATH
from .asgi import (
    Receive,
    Scope,
    Send,
    client_host,
    json_bytes,
    offers_websocket_extensions,
    request_head_bytes,
    route_path,
    shown_path,
)
from .contacts import Contacts
from .limits import (
    MAX_CLIENT_MESSAGE_BYTES,
    REFUSED_EXTENSIONS,
    REFUSED_HEADERS,
    REFUSED_MESSAGE_RATE,
    REFUSED_MESSAGE_SIZE,
    REFUSED_WATCHES,
    ClientCounts,
    Refusals,
    ServerLimits,
    retry_after_header,
)

__all__ = ["CLOSE_ON_SHUTDOWN_TIMEOUT", "WatchEndpoint"]

# One logger for the whole server (docs/node.md names it), whichever module logs.
logger = logging.getLogger("bootstrap.server")

#: When the server stops at once (cancelled), a watch gets this long, shielded, to say "going
#: away" (1001) before its connection is dropped: one close handshake with a client that answers
#: promptly. The bottom of the stop-timeout chain (:data:`bootstrap.node.STOP_TIMEOUT`).
CLOSE_ON_SHUTDOWN_TIMEOUT: Final = 1.0

_WS_GOING_AWAY: Final = 1001
_WS_POLICY_VIOLATION: Final = 1008
_WS_MESSAGE_TOO_BIG: Final = 1009
_WS_INTERNAL_ERROR: Final = 1011


class _Watch:
    """One open watch: how the endpoint and the client's reader wake its push loop."""

    __slots__ = ("probe_requested", "wake")

    def __init__(self) -> None:
        self.wake = trio.Event()
        self.probe_requested = False


class _Closing(Exception):
    """Internal: a watch task asks to close the websocket with ``code`` (None: the client left)."""

    def __init__(self, code: int | None) -> None:
        super().__init__(code)
        self.code = code


class WatchEndpoint:
    """Serves every watch of the management app, and wakes them when the document changes."""

    def __init__(
        self,
        *,
        settings: Settings,
        limits: ServerLimits,
        refusals: Refusals,
        contacts: Contacts,
        encoded_document: Callable[[], bytes],
    ) -> None:
        self._settings = settings
        self._limits = limits
        self._refusals = refusals
        self._contacts = contacts
        self._encoded_document = encoded_document
        self._watches: set[_Watch] = set()
        self._going_away = False
        self._by_client = ClientCounts()
        self.opened_total = 0
        self.documents_pushed = 0

    @property
    def open(self) -> int:
        """Watches open right now."""
        return len(self._watches)

    def notify_changed(self) -> None:
        """The document may have changed: every open watch sends it now if it differs.

        Synchronous and cheap: each watch compares the current document with the last one it
        sent, in its own task, so the caller never waits on a slow client.
        """
        for watch in self._watches:
            watch.wake.set()

    def going_away(self) -> None:
        """Close every watch, and any opened later, with 1001 (going away)."""
        self._going_away = True
        for watch in self._watches:
            watch.wake.set()

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one websocket scope: refuse its handshake, or run the watch until it ends."""
        message = await receive()
        if message["type"] != "websocket.connect":
            return  # the client left during the handshake
        if (size := request_head_bytes(scope)) > self._limits.max_header_bytes:
            self._refusals.refuse(REFUSED_HEADERS, client_host(scope), f"a {size}-byte handshake")
            error = f"request headers over {self._limits.max_header_bytes} bytes"
            await _reject(scope, send, 431, error, [])
            return
        path = route_path(scope)
        if path != WATCH_PATH:
            error = f"no websocket endpoint at {shown_path(path)}"
            await _reject(scope, send, 404, error, [])
            return
        client = client_host(scope)
        if offers_websocket_extensions(scope):
            # hypercorn accepts permessage-deflate whenever a client offers it, and nothing
            # bounds how far a compressed message inflates before our 1 KiB check sees it: one
            # 194 KB frame grew a node by ~570 MiB. Our prober offers no extension.
            detail = "a handshake offering websocket extensions"
            self._refusals.refuse(REFUSED_EXTENSIONS, client, detail)
            error = "websocket extensions (compression) are not accepted on the watch"
            await _reject(scope, send, 400, error, [])
            return
        limit = self._limits.max_watches_per_client
        if self._by_client.held_by(client) >= limit:
            # Refused before accepting, and before reading the header: no ContactedBy.
            self._refusals.refuse(REFUSED_WATCHES, client, f"more than {limit} open watches")
            error = f"more than {limit} open watches from {client}; retry later"
            await _reject(scope, send, 429, error, [retry_after_header(self._settings)])
            return
        # Counted with no await since the check, so concurrent handshakes cannot overshoot.
        with self._by_client.holding(client):
            await self._serve_watch(scope, client, receive, send)

    async def _serve_watch(self, scope: Scope, client: str, receive: Receive, send: Send) -> None:
        contact_point = self._contacts.from_headers(scope)
        # Before the first push is built: it answers the handshake's proposal, if any.
        self._contacts.note(contact_point, proposal_round=self._contacts.proposal_round(scope))
        await send({"type": "websocket.accept"})
        watch = _Watch()
        self._watches.add(watch)
        self.opened_total += 1
        try:
            code = await self._run_watch(watch, contact_point, client, receive, send)
        except* trio.Cancelled:
            # The server is shutting down: tell the peer we are going away (a clean close, not
            # a broken connection), but never hold up the shutdown for a slow client. (except*:
            # the cancellation arrives grouped from the watch's nursery.)
            with trio.CancelScope(
                deadline=trio.current_time() + CLOSE_ON_SHUTDOWN_TIMEOUT, shield=True
            ):
                await send({"type": "websocket.close", "code": _WS_GOING_AWAY})
            raise
        finally:
            self._watches.discard(watch)
        if code is not None:
            await send({"type": "websocket.close", "code": code})

    async def _run_watch(
        self,
        watch: _Watch,
        contact_point: ContactPoint | None,
        client: str,
        receive: Receive,
        send: Send,
    ) -> int | None:
        """Push documents and read the client until one side ends; the close code to send."""
        outcome: int | None = None

        async def run_until_closing(task: Callable[[], Awaitable[None]]) -> None:
            nonlocal outcome
            try:
                await task()
            except _Closing as closing:
                outcome = closing.code
                nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_until_closing, functools.partial(self._push, watch, send))
            nursery.start_soon(
                run_until_closing,
                functools.partial(self._read_client, watch, contact_point, client, receive),
            )
        return outcome

    async def _push(self, watch: _Watch, send: Send) -> None:
        interval = self._settings.watch_push_interval
        last_sent: bytes | None = None
        resend_at = -math.inf
        while True:
            # A fresh event before looking: a wake-up that arrives while we build or send the
            # document sets this one, so the next wait returns at once and nothing is missed.
            watch.wake = trio.Event()
            if self._going_away:
                raise _Closing(_WS_GOING_AWAY)
            now = trio.current_time()
            try:
                data = self._encoded_document()
            except Exception:
                logger.exception("could not build the seed-nodes document for a watch")
                raise _Closing(_WS_INTERNAL_ERROR) from None
            # The periodic resend happens even when nothing changed: it is the liveness signal
            # that keeps this node's answer fresh at the watching peer.
            if watch.probe_requested or data != last_sent or now >= resend_at:
                watch.probe_requested = False
                self.documents_pushed += 1
                await send({"type": "websocket.send", "text": data.decode("utf-8")})
                last_sent = data
                resend_at = now + interval
            with trio.move_on_at(resend_at):
                await watch.wake.wait()

    async def _read_client(
        self, watch: _Watch, contact_point: ContactPoint | None, client: str, receive: Receive
    ) -> None:
        # A token bucket: a burst of `capacity` messages, then `capacity` per push interval.
        capacity = float(self._limits.max_watch_messages_per_push_interval)
        refill_rate = capacity / self._settings.watch_push_interval
        tokens = capacity
        last = trio.current_time()
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                raise _Closing(None)
            if message["type"] != "websocket.receive":
                continue
            now = trio.current_time()
            tokens = min(capacity, tokens + (now - last) * refill_rate)
            last = now
            if tokens < 1.0:
                detail = f"a watch client sent more than {capacity:g} messages per push interval"
                self._refusals.refuse(REFUSED_MESSAGE_RATE, client, detail)
                raise _Closing(_WS_POLICY_VIOLATION)
            tokens -= 1.0
            text = message.get("text")
            data = message.get("bytes")
            # surrogatepass: a server hands over valid text, but a size check must never raise.
            size = (
                len(text.encode("utf-8", "surrogatepass")) if text is not None else len(data or b"")
            )
            if size > MAX_CLIENT_MESSAGE_BYTES:
                # Clients only send "probe" and "propose <r>": anything big is a bug or abuse.
                # (hypercorn already closes with 1009 beyond the same size; this is the backstop.)
                detail = f"a watch client sent a {size}-byte message"
                self._refusals.refuse(REFUSED_MESSAGE_SIZE, client, detail)
                raise _Closing(_WS_MESSAGE_TOO_BIG)
            request = self._contacts.watch_request(text)
            if request is not None:
                # Noted before the push it asks for is built, so that push shows any promise.
                self._contacts.note(contact_point, proposal_round=request.proposal_round)
                watch.probe_requested = True
                watch.wake.set()
            # Anything else is ignored: later protocol versions may send more kinds of messages.


async def _reject(
    scope: Scope, send: Send, status: int, error: str, extra_headers: list[tuple[bytes, bytes]]
) -> None:
    """Refuse a handshake: ``status`` with a JSON error where the server can say so."""
    if "websocket.http.response" in (scope.get("extensions") or {}):
        data = json_bytes({"error": error})
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(data)).encode("ascii")),
            *extra_headers,
        ]
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": data})
    else:
        await send({"type": "websocket.close"})  # servers answer this with 403
