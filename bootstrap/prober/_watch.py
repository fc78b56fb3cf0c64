"""The watch client: one websocket per peer; every message it delivers, and its end, an outcome.

Rules (DESIGN section 4):

* **Opening answers the probe in flight.** The wait for a probe slot, the TCP and websocket
  handshakes and the first document together get one ``probe_timeout``. A watch opened for a
  probe that carries a founding round sends ``Bootstrap-Round: <r>`` on its handshake: the
  server weighs the proposal before it pushes the first document, so that document answers it
  and the proposal costs no round trip beyond the handshake (a ``propose`` message after the
  first document would cost a second one, and the first document would answer the probe
  without showing the promise).
* **A later probe is the text message** ``probe`` on the same connection, or ``propose <r>``
  when it carries a founding round. Any document that arrives after it answers it, pushed or
  asked for (the machine treats them alike). No document within ``probe_timeout`` (the slot
  included): the watch is presumed dead, since a half-open connection looks exactly like this,
  and it ends; the next probe opens a new one.
* **A watch ends once**, and its end is emitted the moment it is seen, before the close, which
  may wait up to :data:`WATCH_CLOSE_TIMEOUT` for a peer that does not finish the close
  handshake. The reader and the task that sends ``probe`` can both see the end; only the first
  counts.
* **Bounded.** Frames are refused above :data:`_MAX_WATCH_MESSAGE`, and a watch delivering more
  than :data:`MAX_WATCH_MESSAGES_PER_PUSH_INTERVAL` within one push interval ends as flooded.
* **Outcomes, not reports; ends, not policy.** :meth:`WatchClient.watch` emits each message as a
  :class:`~._failures.Document` and each failure as a :class:`~._failures.Failure` to the
  worker, which reports them; its return value says how the watch ended (:data:`WatchEnd`),
  and the worker decides what follows (reopen, poll for a while, poll for good). Only
  :data:`~._failures.PEER_ERRORS` become failures; other exceptions are bugs and propagate.
* **Closing survives a stop.** The websocket's reader task runs in a nursery of this module,
  outside the region ``stop()`` cancels, so after a stop it still completes the close handshake
  promptly; the close itself runs shielded, bounded by :data:`WATCH_CLOSE_TIMEOUT`.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Final, Literal

import attrs
import trio
import trio_websocket

from ..core import ContactPoint, Settings
from ..core.wire import (
    MAX_DOCUMENT_BYTES,
    PROBE_MESSAGE,
    ROUND_HEADER,
    WATCH_PATH,
    propose_message,
)
from ._failures import (
    PEER_ERRORS,
    Document,
    Failure,
    Outcome,
    describe,
    first_leaf,
    no_slot_in_time,
    timed_out,
    unauthorized,
    watch_closed,
)
from ._streams import open_tls_stream, wrap_websocket
from ._types import ConnectWebsocket, Counters, WatchConnection

__all__ = [
    "MAX_WATCH_MESSAGES_PER_PUSH_INTERVAL",
    "WATCH_CLOSE_TIMEOUT",
    "Ending",
    "OpenWatch",
    "OwnedWatch",
    "SpeaksNoWebsocket",
    "WatchClient",
    "WatchEnd",
]

logger = logging.getLogger("bootstrap.prober")

# Websocket frames are bounded just above the largest document any reader accepts, so the
# decoder, not the framing, names the problem for a document slightly too big, and a peer
# cannot make us buffer more than this.
_MAX_WATCH_MESSAGE: Final = MAX_DOCUMENT_BYTES + 4096
#: A peer that does not finish the websocket close handshake within this gets its TCP
#: connection closed anyway: closing runs shielded from cancellation, so it must not hold up a
#: stop. One close handshake with a peer that answers promptly, as the server's own
#: ``CLOSE_ON_SHUTDOWN_TIMEOUT``; the node's stop may take this long after ``STOP_TIMEOUT``.
WATCH_CLOSE_TIMEOUT: Final = 1.0
#: Most messages a watch may deliver within one ``watch_push_interval`` (DESIGN section 4). A
#: server that keeps to the protocol sends, per interval, one periodic push, one answer to each
#: of our ``probe`` messages (at most one is in flight, and the machine probes a peer at most
#: once per ``watch_push_interval``) and one push per change of its document (coalesced while it
#: sends): a handful. 20 leaves room for a burst of membership changes; beyond it the peer is
#: flooding us (every message is parsed and fed to the machine), so the watch ends as flooded
#: and the worker polls the peer for ``watch_retry_after``: one request, one answer, at our pace.
MAX_WATCH_MESSAGES_PER_PUSH_INTERVAL: Final = 20


@attrs.frozen
class SpeaksNoWebsocket:
    """The peer answered the watch handshake with ``status_code`` (not 101, not 401)."""

    status_code: int


#: How a watch that was open ended: ``"ended"`` (its reason was emitted, or it was stopped; the
#: next probe may open a new one), or ``"flooded"`` (the same, but the peer flooded it).
Ending = Literal["ended", "flooded"]
#: How a watch ended; :class:`SpeaksNoWebsocket`: it never opened and nothing was emitted, so
#: the probe in flight is still to be answered, by polling.
WatchEnd = Ending | SpeaksNoWebsocket


@attrs.frozen
class OwnedWatch:
    """A websocket and the TCP stream we opened for it: closing the watch closes both.

    trio-websocket's ``aclose()`` returns at once when the peer closed first (or the connection
    broke), and a client never closes its stream in that case, so the socket would stay open
    until garbage-collected. The stream is ours; we close it.
    """

    connection: trio_websocket.WebSocketConnection
    stream: trio.SocketStream | trio.SSLStream[trio.SocketStream]

    async def get_message(self) -> str | bytes:
        return await self.connection.get_message()

    async def send_message(self, message: str | bytes) -> None:
        await self.connection.send_message(message)

    async def aclose(self) -> None:
        try:
            await self.connection.aclose()
        finally:
            await self.stream.aclose()


@attrs.frozen(kw_only=True)
class OpenWatch:
    """The prober's own :class:`~._types.ConnectWebsocket`: TCP from our address, TLS if set.

    We open the TCP stream ourselves (rather than ``trio_websocket.connect_websocket``) to bind
    our own address, so a peer sees us as the contact point we advertise, and to count the
    connection. ``tls_context`` is None exactly when the cluster runs without TLS.
    """

    local_address: Callable[[ContactPoint], str | None]
    tls_context: ssl.SSLContext | None
    connection_opened: Callable[[ContactPoint], None]
    connect_cancelled: Callable[[], None] = lambda: None

    async def __call__(
        self,
        nursery: trio.Nursery,
        contact_point: ContactPoint,
        *,
        resource: str,
        extra_headers: list[tuple[bytes, bytes]],
        max_message_size: int,
    ) -> WatchConnection:
        assert contact_point.port is not None  # the worker always passes its address
        try:
            stream = await trio.open_tcp_stream(
                contact_point.host,
                contact_point.port,
                local_address=self.local_address(contact_point),
            )
        except trio.Cancelled:
            self.connect_cancelled()
            raise
        self.connection_opened(contact_point)
        watched: trio.SocketStream | trio.SSLStream[trio.SocketStream] = stream
        try:
            if self.tls_context is not None:
                watched = await open_tls_stream(stream, self.tls_context, contact_point.host)
            connection = await wrap_websocket(
                nursery,
                watched,
                str(contact_point),
                resource,
                extra_headers=extra_headers,
                max_message_size=max_message_size,
            )
        except BaseException:
            # Rejected (or cancelled) before trio-websocket took over the stream: it is ours.
            await trio.aclose_forcefully(stream)
            raise
        return OwnedWatch(connection, watched)


@attrs.define
class _Session:
    """One watch's state: what answers the probe in flight, and whether (and how) it ended."""

    emit: Callable[[Outcome], None]
    counters: Counters
    answered: trio.Event = attrs.Factory(trio.Event)
    scope: trio.CancelScope | None = None  # cancels the reader and the prober once it ends
    end: Ending | None = None

    def received(self, message: str | bytes) -> None:
        self.counters.watch_messages += 1
        self.answered.set()
        self.emit(Document(message.encode() if isinstance(message, str) else message))

    def ended(self, failure: Failure, end: Ending = "ended") -> None:
        """Emit why the watch ended, unless it ended already, and stop serving it."""
        if self.end is not None:
            return
        self.end = end
        self.emit(failure)
        if self.scope is not None:
            self.scope.cancel()


class WatchClient:
    """Opens and serves the watches of one prober, sharing its probe slots and counters."""

    def __init__(
        self,
        *,
        connect: ConnectWebsocket,
        headers: list[tuple[bytes, bytes]],
        settings: Settings,
        limiter: trio.CapacityLimiter,
        counters: Counters,
        secret_sent: bool,
    ) -> None:
        self._connect = connect
        self._headers = headers
        self._settings = settings
        self._limiter = limiter
        self._counters = counters
        self._secret_sent = secret_sent

    async def watch(
        self,
        address: ContactPoint,
        *,
        round: int | None,
        stoppable: Callable[[], AbstractContextManager[None]],
        next_request: Callable[[], Awaitable[int | None]],
        emit: Callable[[Outcome], None],
    ) -> WatchEnd:
        """Open a watch on ``address`` and serve it until it ends; how it ended.

        ``round`` is the founding round the probe in flight proposes, if any (the handshake
        carries it). ``stoppable()`` is the worker's region that ``stop()`` cancels;
        ``next_request()`` returns when the machine asks for the next probe, with the round it
        proposes; ``emit`` takes every outcome.
        """
        session = _Session(emit, self._counters)
        rejected: BaseException | None = None
        try:
            # The websocket's reader task runs in this nursery, outside the stoppable region, so
            # that after a stop() it still completes the close handshake promptly.
            async with trio.open_nursery() as nursery:
                with stoppable():
                    await self._open_and_serve(address, round, nursery, session, next_request)
                # What remains is the reader task, which has nothing left to read.
                nursery.cancel_scope.cancel()
        # trio-websocket raises a rejected handshake from its reader task, hence the groups.
        except* trio_websocket.ConnectionRejected as group:
            rejected = first_leaf(group)
        except* PEER_ERRORS as group:
            session.ended(describe(first_leaf(group), address))
        if not isinstance(rejected, trio_websocket.ConnectionRejected):
            return "ended" if session.end is None else session.end
        if rejected.status_code == 401:
            # It speaks websocket but refuses us: a failure, not a reason to poll it.
            session.ended(unauthorized(address, secret_sent=self._secret_sent))
            return "ended"
        return SpeaksNoWebsocket(rejected.status_code)

    async def _open_and_serve(
        self,
        address: ContactPoint,
        round: int | None,
        nursery: trio.Nursery,
        session: _Session,
        next_request: Callable[[], Awaitable[int | None]],
    ) -> None:
        timeout = self._settings.probe_timeout
        headers = self._headers
        if round is not None:
            headers = [*headers, (ROUND_HEADER.encode(), str(round).encode())]
        connection: WatchConnection | None = None
        slot_taken = False
        try:
            with trio.move_on_after(timeout) as opening:
                async with self._limiter:
                    slot_taken = True
                    self._counters.probes_sent += 1
                    connection = await self._connect(
                        nursery,
                        address,
                        resource=WATCH_PATH,
                        extra_headers=headers,
                        max_message_size=_MAX_WATCH_MESSAGE,
                    )
                    self._counters.open_watches += 1
                    first = await connection.get_message()
            if not slot_taken:
                session.ended(no_slot_in_time(timeout, self._limiter))
                return
            if opening.cancelled_caught or connection is None:
                session.ended(timed_out(timeout, None if connection is None else "the watch"))
                return
            session.received(first)
            await self._serve(connection, session, next_request)
        except trio_websocket.ConnectionClosed as closed:
            session.ended(watch_closed(closed))
        finally:
            if connection is not None:
                self._counters.open_watches -= 1
                await _close_watch(connection)

    async def _serve(
        self,
        connection: WatchConnection,
        session: _Session,
        next_request: Callable[[], Awaitable[int | None]],
    ) -> None:
        # Messages are counted per window of watch_push_interval (a fixed window: a server
        # keeping to the protocol stays far below the bound even across a window's edge). The
        # first document, read when the watch opened, starts the first window.
        window = self._settings.watch_push_interval
        window_start, in_window = trio.current_time(), 1
        async with trio.open_nursery() as nursery:
            session.scope = nursery.cancel_scope
            nursery.start_soon(self._probe_over_watch, connection, session, next_request)
            while True:
                try:
                    message = await connection.get_message()
                except trio_websocket.ConnectionClosed as closed:
                    session.ended(watch_closed(closed))
                    return
                now = trio.current_time()
                if now - window_start >= window:
                    window_start, in_window = now, 0
                in_window += 1
                if in_window > MAX_WATCH_MESSAGES_PER_PUSH_INTERVAL:
                    self._counters.watch_messages += 1  # received, though not decoded
                    reason = (
                        f"watch flooded: more than {MAX_WATCH_MESSAGES_PER_PUSH_INTERVAL} "
                        f"messages within {window:g} s (one watch push interval); closed it and "
                        "polling the peer instead"
                    )
                    session.ended(Failure("flood", reason), "flooded")
                    return
                session.received(message)

    async def _probe_over_watch(
        self,
        connection: WatchConnection,
        session: _Session,
        next_request: Callable[[], Awaitable[int | None]],
    ) -> None:
        timeout = self._settings.probe_timeout
        while True:
            round = await next_request()
            message = PROBE_MESSAGE if round is None else propose_message(round)
            slot_taken = False
            with trio.move_on_after(timeout) as waiting:
                async with self._limiter:
                    slot_taken = True
                    answered = session.answered = trio.Event()
                    self._counters.probes_sent += 1
                    try:
                        await connection.send_message(message)
                    except trio_websocket.ConnectionClosed as closed:
                        session.ended(watch_closed(closed))
                        return
                    await answered.wait()
            if not waiting.cancelled_caught:
                continue
            # A watch that does not answer is presumed dead (a half-open connection looks
            # exactly like this); the next probe opens a new one.
            if slot_taken:
                session.ended(timed_out(timeout, "the watch"))
            else:
                session.ended(no_slot_in_time(timeout, self._limiter))
            return


async def _close_watch(connection: WatchConnection) -> None:
    # Shielded: a stop() cancels the worker, and the close must still happen (once), but
    # bounded, because the close handshake waits for the peer.
    with trio.CancelScope(shield=True), trio.move_on_after(WATCH_CLOSE_TIMEOUT):
        try:
            await connection.aclose()
        except PEER_ERRORS as error:  # a broken connection is closed all the same
            logger.debug("closing a watch raised %r", error)
