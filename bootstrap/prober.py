"""The prober: carries out the machine's ``Probe`` / ``StopProbing`` and reports what peers said.

This module is the reason the project exists. The anchor opened a new TCP connection for every
probe, so every node left ``60 s x peers / interval`` sockets in TIME_WAIT and exhausted its
ports; slowing the probe only divided the leak. Here (DESIGN sections 4 and 5):

* **One connection per peer for the life of the process.** With ``transport="watch"`` the first
  probe opens a websocket (``/bootstrap/watch``); the peer pushes its document on every change and
  at least every ``watch_push_interval``, and a later probe is the text message ``probe`` on that
  same connection. A peer that speaks no websocket (an Akka node answers the upgrade with 404) is
  remembered and polled instead. Polling (``transport="poll"``, or that fallback) is one ``GET
  /bootstrap/seed-nodes`` over a keep-alive connection that lives in a pool of its own per peer,
  so it is never evicted by other peers' connections and ``stop()`` can close exactly it.
* **Keep-alive outlives the probe period.** httpx closes an idle connection after 5 s by default,
  so any probe period near or above 5 s would reconnect every time. The pools keep a connection
  for ``bootstrap.server.client_keepalive_expiry`` (the server derives its longer keep-alive from
  the same function), and a configuration that would still reconnect per probe is
  refused when the prober is built (:class:`ConnectionChurnError`), not silently degraded.
* **We close.** Connections are closed by this side (after ``stop()``, ``stop_all()`` or when
  :meth:`Prober.run` ends), so TIME_WAIT lands on the prober, bounded by its peer count. Sockets
  are closed normally, never with ``SO_LINGER 0``.
* **Timeouts are cancel scopes** of ``probe_timeout``: a timed-out request is really cancelled
  (httpx's own timeouts are off, so exactly one clock decides). In-flight probes are bounded
  globally by a :class:`trio.CapacityLimiter`; per peer at most one is in flight.
* **Every failure is an event.** Refused, reset, timed out, a non-200 status, a redirect (never
  followed), a body that is not ``application/json``, a malformed or oversized document (the size
  is enforced while reading, and a slow body is cut by ``probe_timeout``), another service's
  document, a watch flooded with messages: each becomes ``ProbeFailed`` with a reason an
  operator understands, never an exception out of a peer's worker. One failure never stops the
  worker (the anchor's prober died on one timeout).
* **Nothing late.** After ``stop(cp)`` nothing more about ``cp`` is reported, even a result that
  was already on its way.

Each peer has one worker task in the prober's nursery. ``probe()`` and ``stop()`` only flag
the worker (they never block), so the node's driver loop can call them between two events.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import math
import socket
import ssl
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any, Literal, Protocol, cast

import attrs
import httpx
import trio
import trio_websocket

from ._version import __version__
from .core import (
    ContactPoint,
    Event,
    ProbeFailed,
    ProbeSucceeded,
    ProtocolError,
    Settings,
    UsageError,
)
from .core.wire import MAX_DOCUMENT_BYTES, SeedNodesDocument, check_service_name, decode_seed_nodes
from .error_chain import causes as error_causes
from .security import (
    Security,
    open_tls_stream,
    tls_failure_reason,
    unauthorized_reason,
    wrap_websocket,
)
from .server import client_keepalive_expiry, longest_probe_period

__all__ = [
    "CONTACT_POINT_HEADER",
    "PROBE_MESSAGE",
    "SEED_NODES_PATH",
    "WATCH_PATH",
    "ConnectWebsocket",
    "ConnectionChurnError",
    "FailureKind",
    "Prober",
    "ProberStatistics",
    "Transport",
    "WatchConnection",
]

logger = logging.getLogger("bootstrap.prober")

Transport = Literal["watch", "poll"]

#: What a probe failed of, for the statistics and for rate-limiting the log.
FailureKind = Literal[
    "refused",  # nothing listens at the contact point (yet)
    "reset",  # the peer reset or broke the connection
    "timeout",  # no answer within probe_timeout
    "dns",  # the contact point's host name does not resolve
    "connect",  # any other failure to connect (unreachable, bad local address, ...)
    "network",  # any other transport error after connecting
    "http_status",  # the peer answered, but not 200 (a redirect included: never followed)
    "protocol",  # the document (or the HTTP / websocket exchange) broke the protocol
    "service_name",  # the peer serves another service (a recycled address)
    "watch_closed",  # the watch ended
    "unauthorized",  # the peer refused our secret, or requires one we lack (HTTP 401)
    "tls",  # the TLS handshake failed: certificate not trusted, client certificate refused, ...
    "flood",  # the peer sent more over its watch than any server would; it is polled instead
    "internal",  # a bug on our side; logged with its traceback
]

SEED_NODES_PATH = "/bootstrap/seed-nodes"
WATCH_PATH = "/bootstrap/watch"
#: The header that tells a peer who probes it (the server turns it into ``ContactedBy``).
CONTACT_POINT_HEADER = "Bootstrap-Contact-Point"
#: The text message that asks a watch for the document now.
PROBE_MESSAGE = "probe"

# Websocket frames are bounded just above the largest document any reader accepts, so the
# decoder, not the framing, names the problem for a document slightly too big, and a peer
# cannot make us buffer more than this.
_MAX_WATCH_MESSAGE = MAX_DOCUMENT_BYTES + 4096
# A peer that does not finish the websocket close handshake promptly gets its TCP connection
# closed anyway; closing must not hold up a stop (it runs shielded from cancellation).
_CLOSE_TIMEOUT = 1.0
# A peer that keeps failing the same way is logged at most this often (seconds).
_FAILURE_LOG_INTERVAL = 30.0
# Most messages a watch may deliver within one ``watch_push_interval`` (DESIGN section 4). A
# server that keeps to the protocol sends, per interval, one periodic push, one answer to each of
# our ``probe`` messages (at most one is in flight, and the machine probes a peer at most once per
# ``watch_push_interval``) and one push per change of its document (coalesced while it sends): a
# handful. 20 leaves room for a burst of membership changes; beyond it the peer is flooding us
# (every message is parsed and fed to the machine), so the watch is closed and the peer polled:
# one request, one answer, at our pace. Reopening the watch instead would let a flooding peer
# make us reconnect on every probe, the churn this module exists to prevent.
_MAX_WATCH_MESSAGES_PER_PUSH_INTERVAL = 20
# Peer-supplied text quoted in a reason (a redirect's Location, a Content-Type) is cut to this.
_MAX_QUOTED_CHARS = 200


class ConnectionChurnError(UsageError):
    """The keep-alive settings would make the prober open a new connection for every probe."""


# --- what the prober can be given ----------------------------------------------------------------


class WatchConnection(Protocol):
    """The part of :class:`trio_websocket.WebSocketConnection` the prober uses."""

    async def get_message(self) -> str | bytes:
        """The next message; raises :class:`trio_websocket.ConnectionClosed` once closed."""

    async def send_message(self, message: str | bytes) -> None:
        """Send one message; raises :class:`trio_websocket.ConnectionClosed` if closed."""

    async def aclose(self) -> None:
        """Close the watch (idempotent)."""


class ConnectWebsocket(Protocol):
    """Opens a watch: connect to ``contact_point`` and complete the websocket handshake.

    Background tasks (the websocket's reader) run in ``nursery``, which the prober owns. A
    rejected handshake surfaces as :class:`trio_websocket.ConnectionRejected` from that nursery
    (that is how trio-websocket reports it); the prober then polls the peer instead.
    """

    def __call__(
        self,
        nursery: trio.Nursery,
        contact_point: ContactPoint,
        *,
        resource: str,
        extra_headers: list[tuple[bytes, bytes]],
        max_message_size: int,
    ) -> Awaitable[WatchConnection]: ...


@attrs.frozen(kw_only=True)
class ProberStatistics:
    """Counters of one prober (DESIGN invariant 6: connections opened stay <= peers + reconnects).

    Connections are counted at our side, each new TCP connection once, keyed by the contact point
    connected to (with its port). ``probes_sent`` counts GET requests, watch handshakes and
    ``probe`` messages. ``failures_by_kind`` is keyed by :data:`FailureKind`.
    """

    connections_opened: int
    connections_opened_by_peer: Mapping[ContactPoint, int] = attrs.field(hash=False)
    probes_sent: int
    watch_messages_received: int
    failures_by_kind: Mapping[str, int] = attrs.field(hash=False)
    peers: int
    open_watches: int


# --- failures ----------------------------------------------------------------------------------


@attrs.frozen
class _Failure:
    kind: FailureKind
    reason: str


def _describe(error: BaseException, address: ContactPoint) -> _Failure:
    """A reason an operator understands for ``error`` raised while probing ``address``."""
    causes = list(error_causes(error))
    if any(isinstance(cause, ConnectionRefusedError) for cause in causes):
        return _Failure("refused", "connection refused")
    tls_reason = tls_failure_reason(causes)
    if tls_reason is not None:
        return _Failure("tls", tls_reason)
    if any(isinstance(cause, ConnectionResetError | BrokenPipeError) for cause in causes):
        return _Failure("reset", "connection reset")
    for cause in causes:
        if isinstance(cause, socket.gaierror):
            return _Failure("dns", f"cannot resolve {address.host}: {cause.strerror or cause}")
    # The deepest OS error says most: trio's "all attempts to connect failed" wraps one per
    # address tried ("No route to host", "local_address=... is incompatible with ...").
    os_errors = [cause for cause in causes if isinstance(cause, OSError)]
    detail = (os_errors[-1].strerror or str(os_errors[-1])) if os_errors else str(error)
    detail = detail or type(error).__name__
    if isinstance(error, httpx.ConnectError | OSError):
        return _Failure("connect", f"cannot connect: {detail}")
    if isinstance(error, ProtocolError):
        return _Failure("protocol", f"protocol error: {error}")
    if isinstance(error, httpx.RemoteProtocolError):
        return _Failure("protocol", f"HTTP protocol error: {error}")
    if isinstance(error, trio_websocket.HandshakeError):
        return _Failure("protocol", f"websocket handshake failed: {error!r}")
    if isinstance(error, httpx.TransportError):
        return _Failure("network", f"network error: {detail}")
    return _Failure("internal", f"internal error: {type(error).__name__}: {error}")


def _watch_closed(closed: trio_websocket.ConnectionClosed) -> _Failure:
    reason = closed.reason
    if reason is None:
        return _Failure("watch_closed", "watch closed")
    name = reason.name.lower().replace("_", " ")
    detail = f": {reason.reason}" if reason.reason else ""
    return _Failure("watch_closed", f"watch closed ({reason.code} {name}{detail})")


def _first_leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def _quoted(text: str) -> str:
    """Peer-supplied ``text`` for a reason: repr'd (no control characters reach a log) and cut."""
    if len(text) > _MAX_QUOTED_CHARS:
        text = text[:_MAX_QUOTED_CHARS] + "..."
    return repr(text)


def _refused_answer(response: httpx.Response, address: ContactPoint) -> _Failure | None:
    """Why a seed-nodes response is not a document to decode (whatever its body), or None."""
    status = response.status_code
    location = response.headers.get("location")
    if 300 <= status < 400 and location is not None:
        # The client never follows redirects: a probe must reach the contact point it reports
        # on (an answer from elsewhere would be credited to it), and every hop would be one more
        # connection per probe.
        return _Failure(
            "http_status",
            f"HTTP {status} from {address} redirects to {_quoted(location)}: "
            "redirects are not followed",
        )
    if status != 200:
        return _Failure("http_status", f"HTTP {status} from {address}")
    content_type = response.headers.get("content-type")
    # No Content-Type says nothing (the strict decoder still judges the body); another one says
    # the peer serves something else: a proxy's login page, a web server's index, an error page.
    if content_type is not None:
        media_type = content_type.partition(";")[0].strip().lower()
        if media_type != "application/json":
            return _Failure(
                "protocol",
                f"protocol error: document sent with Content-Type {_quoted(content_type)}, "
                "not application/json",
            )
    return None


async def _read_bounded(response: httpx.Response, limit: int) -> bytes | None:
    """The body, or None as soon as it is known to exceed ``limit`` (nothing more is read).

    Stopping early leaves the response unfinished, so httpcore closes that connection: a peer
    that sends oversized bodies costs a reconnect, never unbounded memory.
    """
    length = response.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    # aiter_bytes, not aiter_raw: the caller refused any Content-Encoding, so they are the same
    # bytes, and aiter_bytes also serves a response whose body was read already (in tests).
    # aclosing: leaving the loop early must close the generator now, not when it is collected.
    # (typed as AsyncIterator by httpx, but it is an async generator, which has aclose)
    chunks_in = cast(AsyncGenerator[bytes, None], response.aiter_bytes())
    async with contextlib.aclosing(chunks_in) as body:
        async for chunk in body:
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
    return b"".join(chunks)


# --- per-peer state ----------------------------------------------------------------------------

_TraceHook = Callable[[str, Mapping[str, Any]], Awaitable[None]]


class _Peer:
    """One probed contact point and its worker's state."""

    __slots__ = (
        "address",
        "answered",
        "contact_point",
        "detached_pool",
        "in_flight",
        "logged_at",
        "logged_kind",
        "requested",
        "scopes",
        "stopped",
        "trace",
        "url",
    )

    def __init__(
        self,
        contact_point: ContactPoint,
        address: ContactPoint,
        trace: _TraceHook,
        scheme: str = "http",
    ):
        self.contact_point = contact_point  # as the machine knows it: every report carries it
        self.address = address  # what we connect to (the fallback port applied)
        self.url = f"{scheme}://{address}{SEED_NODES_PATH}"
        self.trace = trace
        self.scopes: set[trio.CancelScope] = set()  # what stop() cancels (see _until_stopped)
        self.requested = trio.Event()  # set by probe(), replaced when the worker takes it
        self.answered = trio.Event()  # set whenever an answer (or failure) is reported
        self.in_flight = False
        self.stopped = False
        self.detached_pool: httpx.AsyncBaseTransport | None = None
        self.logged_kind: FailureKind | None = None
        self.logged_at = -math.inf


@attrs.define
class _WatchSession:
    """One open watch; ``end`` reports why it ended exactly once."""

    scope: trio.CancelScope
    ended: bool = False


@attrs.frozen
class _OwnedWatch:
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


class _PoolPerPeer(httpx.AsyncBaseTransport):
    """Routes each request to its peer's own connection pool (at most one connection each).

    One shared pool would do for reuse, but it has no way to close one peer's connection when
    that peer leaves, and it evicts idle connections beyond ``max_keepalive_connections``: both
    would leave connections to the server or reopen them. A pool per peer makes "one connection
    per peer, closed by us when we stop probing it" structural.
    """

    def __init__(self, make_pool: Callable[[ContactPoint], httpx.AsyncBaseTransport]) -> None:
        self._make_pool = make_pool
        self._pools: dict[ContactPoint, httpx.AsyncBaseTransport] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        # httpx leaves out a scheme's default port; our addresses always carry one.
        default_port = 443 if request.url.scheme == "https" else 80
        address = ContactPoint(request.url.host, request.url.port or default_port)
        pool = self._pools.get(address)
        if pool is None:
            pool = self._pools[address] = self._make_pool(address)
        return await pool.handle_async_request(request)

    def detach(self, address: ContactPoint) -> httpx.AsyncBaseTransport | None:
        """Forget ``address``'s pool (the caller closes it); the next request gets a new one."""
        return self._pools.pop(address, None)

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()


# --- the prober --------------------------------------------------------------------------------


class Prober:
    """Probes peers on the machine's behalf over one long-lived connection per peer.

    Start it with ``await nursery.start(prober.run)``; then ``probe(cp)`` for each ``Probe``
    action and ``stop(cp)`` for each ``StopProbing``. Results arrive through ``report`` as
    ``ProbeSucceeded`` / ``ProbeFailed`` (also unsolicited ones, pushed over a watch).
    ``http_transport`` and ``connect_websocket`` replace the network in tests.
    ``keepalive_expiry`` overrides ``client_keepalive_expiry(settings)``; either way a value that
    would let a connection expire between two probes raises :class:`ConnectionChurnError`.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        self_contact_point: ContactPoint,
        service_name: str | None,
        transport: Transport,
        report: Callable[[Event], None],
        http_transport: httpx.AsyncBaseTransport | None = None,
        connect_websocket: ConnectWebsocket | None = None,
        max_in_flight: int = 64,
        keepalive_expiry: float | None = None,
        security: Security | None = None,
    ) -> None:
        if transport not in ("watch", "poll"):
            raise UsageError(f"transport must be 'watch' or 'poll', got {transport!r}")
        if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int):
            raise UsageError(f"max_in_flight must be an integer >= 1, got {max_in_flight!r}")
        if max_in_flight < 1:
            raise UsageError(f"max_in_flight must be an integer >= 1, got {max_in_flight!r}")
        expiry = client_keepalive_expiry(settings) if keepalive_expiry is None else keepalive_expiry
        longest = longest_probe_period(settings)
        if not expiry > longest:
            raise ConnectionChurnError(
                f"keepalive_expiry {expiry} s is not longer than the longest probe period "
                f"{longest} s (max(probe_backoff_max, probe_interval * (1 + probe_jitter)) + "
                "probe_timeout): idle connections would expire between probes and every probe "
                "would open a new connection; raise keepalive_expiry or shorten the probe settings"
            )
        self._settings = settings
        self._self_contact_point = self_contact_point
        self._service_name = service_name
        self._transport: Transport = transport
        self._report = report
        self._keepalive_expiry = expiry
        self._connect_websocket: ConnectWebsocket = (
            self._open_websocket if connect_websocket is None else connect_websocket
        )
        # Without per-peer pools (an injected transport, in tests) there is no per-peer
        # connection for stop() to close.
        self._pools: _PoolPerPeer | None = None
        self._http_transport: httpx.AsyncBaseTransport
        if http_transport is None:
            self._pools = self._http_transport = _PoolPerPeer(self._make_pool)
        else:
            self._http_transport = http_transport
        # With TLS: https:// and wss://, peers verified, our certificate presented if asked.
        self._security = Security() if security is None else security
        self._ssl_context: ssl.SSLContext | None = None
        if self._security.tls is not None:
            self._ssl_context = self._security.tls.client_context()
        self._limiter = trio.CapacityLimiter(max_in_flight)
        contact = str(self_contact_point)
        self._headers = {
            CONTACT_POINT_HEADER: contact,
            "User-Agent": f"cluster-bootstrap/{__version__}",
            # The body is read with a size limit; a compressed one would defeat it.
            "Accept-Encoding": "identity",
        }
        self._websocket_headers = [(CONTACT_POINT_HEADER.encode(), contact.encode())]
        authorization = self._security.authorization()
        if authorization is not None:
            self._headers["Authorization"] = authorization
            self._websocket_headers.append((b"Authorization", authorization.encode("ascii")))
        self._peers: dict[ContactPoint, _Peer] = {}
        # Peers whose handshake was rejected (or that flooded a watch): polled from then on, even
        # after a stop and a new probe (after the decision and a failed join, say), so an Akka
        # node costs one extra connection in the process's life, not one per round.
        self._no_websocket: set[ContactPoint] = set()
        self._client: httpx.AsyncClient | None = None
        self._nursery: trio.Nursery | None = None
        self._started = False
        # counters
        self._connections_by_peer: dict[ContactPoint, int] = {}
        self._connections_opened = 0
        self._probes_sent = 0
        self._watch_messages = 0
        self._open_watches = 0
        self._failures: dict[str, int] = {}

    # --- public API ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own every peer's worker and the HTTP client; return (closing them all) when cancelled."""
        if self._started:
            raise UsageError("a Prober runs once: build a new one")
        self._started = True
        client = httpx.AsyncClient(
            transport=self._http_transport,
            # Our cancel scopes are the only timeout: a second clock would race them.
            timeout=None,
            # Never route a probe through an HTTP(S)_PROXY from the environment.
            trust_env=False,
            follow_redirects=False,
            headers=self._headers,
        )
        closing = trio.Event()
        try:
            # The client closes last: by then every worker has closed its own connections.
            async with client, trio.open_nursery() as nursery:
                self._client = client
                await nursery.start(self._host_workers, closing)
                task_status.started()
                try:
                    await trio.sleep_forever()
                finally:
                    # Stop every worker the way stop() does, so each closes its connections
                    # gracefully; the shielded host returns once they all have.
                    self.stop_all()
                    self._nursery = None
                    closing.set()
        finally:
            self._client = self._nursery = None

    async def _host_workers(
        self, closing: trio.Event, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        # Shielded: cancelling run() must not cancel the workers wholesale, or a websocket's
        # reader task dies before the close handshake it is needed for (and every watch's close
        # would wait out _CLOSE_TIMEOUT). Workers are only ever cancelled through stop().
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as workers:
                self._nursery = workers
                task_status.started()
                await closing.wait()

    def probe(self, contact_point: ContactPoint) -> None:
        """Probe ``contact_point`` now, in the background; its result is reported.

        If a probe of it is still in flight, this does nothing (the machine never asks for two).
        """
        nursery = self._nursery
        if nursery is None:
            raise UsageError("Prober.probe() needs Prober.run() running: nursery.start(prober.run)")
        peer = self._peers.get(contact_point)
        if peer is None:
            address = contact_point
            if address.port is None:
                address = address.with_port(self._settings.fallback_port)
            peer = _Peer(contact_point, address, self._trace_for(address), self._security.scheme)
            self._peers[contact_point] = peer
            nursery.start_soon(self._serve_peer, peer, name=f"probe {contact_point}")
        if peer.in_flight:
            logger.debug("%s: a probe is already in flight; not sending another", contact_point)
            return
        peer.in_flight = True
        peer.requested.set()

    def stop(self, contact_point: ContactPoint) -> None:
        """Stop probing ``contact_point``: cancel its probe, close its connection, forget it.

        Nothing more about it is reported, even a result already on its way. Probing it again
        later starts afresh.
        """
        peer = self._peers.pop(contact_point, None)
        if peer is None:
            return
        peer.stopped = True
        for scope in peer.scopes:
            scope.cancel()
        if self._pools is not None:
            # Detached now, closed by the worker as it ends: a new worker for the same contact
            # point (probed again right away) gets a new pool, never this closing one.
            peer.detached_pool = self._pools.detach(peer.address)

    def stop_all(self) -> None:
        """Stop probing every contact point (the machine decided)."""
        for contact_point in list(self._peers):
            self.stop(contact_point)

    def statistics(self) -> ProberStatistics:
        """A snapshot of the counters."""
        return ProberStatistics(
            connections_opened=self._connections_opened,
            connections_opened_by_peer=MappingProxyType(dict(self._connections_by_peer)),
            probes_sent=self._probes_sent,
            watch_messages_received=self._watch_messages,
            failures_by_kind=MappingProxyType(dict(self._failures)),
            peers=len(self._peers),
            open_watches=self._open_watches,
        )

    # --- connections --------------------------------------------------------------------------

    def _local_address(self, peer: ContactPoint) -> str | None:
        # Outgoing connections leave from this node's own address, so a peer sees us as the
        # contact point we advertise (and nodes sharing a host, like the demo's 127.0.0.x, stay
        # apart). Only an IP literal can be bound, and only to reach the same address family.
        own = self._self_contact_point
        if not own.is_ip:
            return None
        if peer.is_ip:
            own_version = ipaddress.ip_address(own.host).version
            if ipaddress.ip_address(peer.host).version != own_version:
                return None
        return own.host

    def _make_pool(self, address: ContactPoint) -> httpx.AsyncBaseTransport:
        if self._ssl_context is None:
            # Without TLS probes are plain HTTP; httpx still wants a context. One, shared.
            self._ssl_context = ssl.create_default_context()
        return httpx.AsyncHTTPTransport(
            verify=self._ssl_context,
            trust_env=False,
            local_address=self._local_address(address),
            limits=self._pool_limits(),
        )

    def _pool_limits(self) -> httpx.Limits:
        # One connection per peer, kept between probes (the benchmark's emulation of the anchor
        # overrides this to keep none).
        return httpx.Limits(
            max_connections=1,
            max_keepalive_connections=1,
            keepalive_expiry=self._keepalive_expiry,
        )

    def _connection_opened(self, address: ContactPoint) -> None:
        self._connections_opened += 1
        self._connections_by_peer[address] = self._connections_by_peer.get(address, 0) + 1
        logger.debug("%s: opened a connection", address)

    def _trace_for(self, address: ContactPoint) -> _TraceHook:
        # httpx exposes no network-backend hook, but httpcore reports each new TCP connection to
        # the request's ``trace`` extension; a reused connection reports none.
        async def trace(event_name: str, info: Mapping[str, Any]) -> None:
            if event_name == "connection.connect_tcp.complete":
                self._connection_opened(address)

        return trace

    async def _open_websocket(
        self,
        nursery: trio.Nursery,
        contact_point: ContactPoint,
        *,
        resource: str,
        extra_headers: list[tuple[bytes, bytes]],
        max_message_size: int,
    ) -> WatchConnection:
        # We open the TCP stream ourselves (rather than trio_websocket.connect_websocket) to bind
        # our own address and to count the connection.
        assert contact_point.port is not None  # the worker always passes its address
        stream = await trio.open_tcp_stream(
            contact_point.host,
            contact_point.port,
            local_address=self._local_address(contact_point),
        )
        self._connection_opened(contact_point)
        watched: trio.SocketStream | trio.SSLStream[trio.SocketStream] = stream
        try:
            if self._ssl_context is not None:
                watched = await open_tls_stream(stream, self._ssl_context, contact_point.host)
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
        return _OwnedWatch(connection, watched)

    # --- reporting ----------------------------------------------------------------------------

    def _deliver(self, peer: _Peer, event: Event) -> None:
        peer.in_flight = False
        peer.answered.set()
        self._report(event)

    def _fail(self, peer: _Peer, failure: _Failure) -> None:
        if peer.stopped:
            logger.debug("%s: dropping a late failure: %s", peer.contact_point, failure.reason)
            return
        self._failures[failure.kind] = self._failures.get(failure.kind, 0) + 1
        now = trio.current_time()
        # A peer that keeps failing the same way (a node not started yet: refused, every
        # backoff period) is logged when the kind of failure changes, or every 30 s.
        if failure.kind != peer.logged_kind or now - peer.logged_at >= _FAILURE_LOG_INTERVAL:
            peer.logged_kind, peer.logged_at = failure.kind, now
            logger.info("%s: probe failed: %s", peer.contact_point, failure.reason)
        else:
            logger.debug("%s: probe failed: %s", peer.contact_point, failure.reason)
        self._deliver(peer, ProbeFailed(peer.contact_point, failure.reason))

    def _on_document(self, peer: _Peer, data: bytes) -> None:
        if peer.stopped:
            logger.debug("%s: dropping a late answer", peer.contact_point)
            return
        try:
            doc: SeedNodesDocument = decode_seed_nodes(data)
        except ProtocolError as error:
            self._fail(peer, _Failure("protocol", f"protocol error: {error}"))
            return
        try:
            check_service_name(doc, self._service_name)
        except ProtocolError as error:
            self._fail(peer, _Failure("service_name", str(error)))
            return
        if peer.logged_kind is not None:
            logger.info("%s: answers again", peer.contact_point)
            peer.logged_kind, peer.logged_at = None, -math.inf
        logger.debug("%s: answered: %s", peer.contact_point, doc)
        self._deliver(
            peer,
            ProbeSucceeded(
                peer.contact_point,
                doc.self_node,
                [member.node for member in doc.seed_nodes],
                doc.cluster_id,
            ),
        )

    def _fail_with(self, peer: _Peer, error: BaseException) -> None:
        failure = _describe(error, peer.address)
        if failure.kind == "internal":
            logger.error("%s: probe failed unexpectedly", peer.contact_point, exc_info=error)
        self._fail(peer, failure)

    # --- the worker ---------------------------------------------------------------------------

    @contextmanager
    def _until_stopped(self, peer: _Peer) -> Iterator[None]:
        """A region of ``peer``'s worker that ``stop()`` cancels (at once if it already did).

        The worker is not one cancel scope, because a watch's close must not be cancelled with
        the watch: its websocket reader runs outside these regions and lives on to finish it.
        """
        with trio.CancelScope() as scope:
            if peer.stopped:
                scope.cancel()
            peer.scopes.add(scope)
            try:
                yield
            finally:
                peer.scopes.discard(scope)

    async def _serve_peer(self, peer: _Peer) -> None:
        try:
            while True:
                with self._until_stopped(peer):
                    await self._next_request(peer)
                    if self._transport == "poll" or peer.address in self._no_websocket:
                        await self._poll(peer)
                        continue
                if peer.stopped:
                    break
                if not await self._watch(peer):
                    # It just turned out to speak no websocket: the probe still in flight is
                    # answered by polling.
                    with self._until_stopped(peer):
                        await self._poll(peer)
                # Otherwise the watch has ended and reported why; the next probe reopens it.
        finally:
            if peer.detached_pool is not None:
                with trio.CancelScope(shield=True):
                    await peer.detached_pool.aclose()

    async def _next_request(self, peer: _Peer) -> None:
        await peer.requested.wait()
        peer.requested = trio.Event()

    # --- polling ------------------------------------------------------------------------------

    async def _poll(self, peer: _Peer) -> None:
        timeout = self._settings.probe_timeout
        async with self._limiter:
            with trio.move_on_after(timeout) as scope:
                try:
                    response, body = await self._get_seed_nodes(peer)
                except Exception as error:
                    self._fail_with(peer, error)
                    return
        if scope.cancelled_caught:
            self._fail(peer, _Failure("timeout", f"timed out after {float(timeout)} s"))
        elif response.status_code == 401:
            self._fail(peer, self._unauthorized(peer))
        elif (refused := _refused_answer(response, peer.address)) is not None:
            self._fail(peer, refused)
        elif body is None:
            reason = f"protocol error: document is over the limit of {MAX_DOCUMENT_BYTES} bytes"
            self._fail(peer, _Failure("protocol", reason))
        else:
            self._on_document(peer, body)

    async def _get_seed_nodes(self, peer: _Peer) -> tuple[httpx.Response, bytes | None]:
        client = self._client
        assert client is not None  # workers only run inside run()
        self._probes_sent += 1
        async with client.stream("GET", peer.url, extensions={"trace": peer.trace}) as response:
            encoding = response.headers.get("content-encoding", "identity").lower()
            if encoding != "identity":
                raise ProtocolError(f"document sent with Content-Encoding {encoding}, not asked")
            # Read even a non-200 (or wrongly typed) body, bounded: a finished response keeps
            # the connection, so a peer answering garbage still costs no reconnect per probe.
            body = await _read_bounded(response, MAX_DOCUMENT_BYTES)
        return response, body

    def _unauthorized(self, peer: _Peer) -> _Failure:
        secret_sent = self._security.secret is not None
        return _Failure("unauthorized", unauthorized_reason(peer.address, secret_sent=secret_sent))

    # --- watching -----------------------------------------------------------------------------

    async def _watch(self, peer: _Peer) -> bool:
        """Open a watch on ``peer`` and serve it until it ends; False if it speaks no websocket.

        The watch's failures are reported here; a rejected handshake is not a failure but a
        peer to poll, and is not reported (the caller polls to answer the probe in flight).
        """
        rejected: BaseException | None = None
        try:
            # The websocket's reader task runs in this nursery, outside the stoppable region, so
            # that after a stop() it still completes the close handshake promptly.
            async with trio.open_nursery() as nursery:
                with self._until_stopped(peer):
                    await self._open_and_serve_watch(peer, nursery)
                # What remains is the reader task, which has nothing left to read.
                nursery.cancel_scope.cancel()
        # trio-websocket raises a rejected handshake from its reader task, hence the groups.
        except* trio_websocket.ConnectionRejected as group:
            rejected = _first_leaf(group)
        except* Exception as group:
            self._fail_with(peer, _first_leaf(group))
        if not isinstance(rejected, trio_websocket.ConnectionRejected):
            return True
        if rejected.status_code == 401:
            # It speaks websocket but refuses us: a failure, not a reason to poll it forever.
            self._fail(peer, self._unauthorized(peer))
            return True
        self._no_websocket.add(peer.address)
        logger.info(
            "%s: speaks no websocket (HTTP %s to the watch handshake): polling it instead",
            peer.contact_point,
            rejected.status_code,
        )
        return False

    async def _open_and_serve_watch(self, peer: _Peer, nursery: trio.Nursery) -> None:
        timeout = self._settings.probe_timeout
        connection: WatchConnection | None = None
        try:
            # Opening the watch answers the probe in flight: the handshake and the first
            # document together get one probe_timeout.
            async with self._limiter:
                with trio.move_on_after(timeout) as opening:
                    self._probes_sent += 1
                    connection = await self._connect_websocket(
                        nursery,
                        peer.address,
                        resource=WATCH_PATH,
                        extra_headers=self._websocket_headers,
                        max_message_size=_MAX_WATCH_MESSAGE,
                    )
                    self._open_watches += 1
                    first = await connection.get_message()
            if opening.cancelled_caught or connection is None:
                waiting = "" if connection is None else " waiting for the watch"
                reason = f"timed out after {float(timeout)} s{waiting}"
                self._fail(peer, _Failure("timeout", reason))
                return
            self._on_watch_message(peer, first)
            await self._serve_watch(peer, connection)
        except trio_websocket.ConnectionClosed as closed:
            self._fail(peer, _watch_closed(closed))
        finally:
            if connection is not None:
                self._open_watches -= 1
                await self._close_watch(connection)

    async def _serve_watch(self, peer: _Peer, connection: WatchConnection) -> None:
        # Messages are counted per window of watch_push_interval (a fixed window: a server
        # keeping to the protocol stays far below the bound even across a window's edge). The
        # first document, read when the watch opened, starts the first window.
        window = self._settings.watch_push_interval
        window_start, in_window = trio.current_time(), 1
        async with trio.open_nursery() as nursery:
            session = _WatchSession(nursery.cancel_scope)
            nursery.start_soon(self._probe_over_watch, peer, connection, session)
            while True:
                try:
                    message = await connection.get_message()
                except trio_websocket.ConnectionClosed as closed:
                    self._end_watch(peer, session, _watch_closed(closed))
                    return
                now = trio.current_time()
                if now - window_start >= window:
                    window_start, in_window = now, 0
                in_window += 1
                if in_window > _MAX_WATCH_MESSAGES_PER_PUSH_INTERVAL:
                    self._watch_messages += 1  # received, though not decoded
                    self._end_flooded_watch(peer, session, window)
                    return
                self._on_watch_message(peer, message)

    def _end_flooded_watch(self, peer: _Peer, session: _WatchSession, window: float) -> None:
        # Polled from now on, like a peer without websocket: see _MAX_WATCH_MESSAGES_PER_PUSH_...
        self._no_websocket.add(peer.address)
        reason = (
            f"watch flooded: more than {_MAX_WATCH_MESSAGES_PER_PUSH_INTERVAL} messages within "
            f"{window:g} s (one watch push interval); closed it and polling the peer instead"
        )
        self._end_watch(peer, session, _Failure("flood", reason))

    async def _probe_over_watch(
        self, peer: _Peer, connection: WatchConnection, session: _WatchSession
    ) -> None:
        timeout = self._settings.probe_timeout
        while True:
            await self._next_request(peer)
            async with self._limiter:
                with trio.move_on_after(timeout) as waiting:
                    answered = peer.answered = trio.Event()
                    self._probes_sent += 1
                    try:
                        await connection.send_message(PROBE_MESSAGE)
                    except trio_websocket.ConnectionClosed as closed:
                        self._end_watch(peer, session, _watch_closed(closed))
                        return
                    # Any document answers it, pushed or asked for: the machine treats them alike.
                    await answered.wait()
            if waiting.cancelled_caught:
                # A watch that does not answer is presumed dead (a half-open connection looks
                # exactly like this); the next probe opens a new one.
                reason = f"timed out after {float(timeout)} s waiting for the watch"
                self._end_watch(peer, session, _Failure("timeout", reason))
                return

    def _end_watch(self, peer: _Peer, session: _WatchSession, failure: _Failure) -> None:
        # The reader and the prober task can both see the end (a failed send, then the close):
        # report it once.
        if not session.ended:
            session.ended = True
            self._fail(peer, failure)
            session.scope.cancel()

    def _on_watch_message(self, peer: _Peer, message: str | bytes) -> None:
        self._watch_messages += 1
        data = message.encode() if isinstance(message, str) else message
        self._on_document(peer, data)

    async def _close_watch(self, connection: WatchConnection) -> None:
        # Shielded: a stop() cancels the worker, and the close must still happen (once), but
        # bounded, because the close handshake waits for the peer.
        with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_TIMEOUT):
            try:
                await connection.aclose()
            except Exception as error:  # a broken connection is closed all the same
                logger.debug("closing a watch raised %r", error)
