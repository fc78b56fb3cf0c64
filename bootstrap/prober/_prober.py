"""The prober itself: one worker per peer carries out ``Probe`` / ``StopProbing`` and reports.

Rules:

* **One worker per peer**, in the prober's nursery. ``probe()`` and ``stop()`` only flag the
  worker (they never block), so the node's driver loop can call them between two events. At most
  one probe per peer is in flight; in-flight probes are bounded globally by one
  :class:`trio.CapacityLimiter`, whose wait counts against ``probe_timeout``.
* **One place reports.** The transports return (polling) or emit (a watch) outcomes;
  :meth:`Prober._report_outcome` alone judges documents, counts and logs failures (a peer that
  keeps failing alike is logged at INFO when the kind changes or every 30 s) and hands the
  event to ``report``.
* **Nothing late.** After ``stop(cp)`` nothing more about ``cp`` is reported, even a result that
  was already on its way: ``_report_outcome`` drops it.
* **Which transport** (with ``transport="watch"``): a peer is watched, except

  - a peer that answered the watch handshake with a status other than 101 and 401 (an Akka
    node answers 404). That is no misbehaviour to wait out: the peer runs code that speaks no
    websocket and will not start to, so it is polled for the process's life, even after a stop
    and a new probe (after the decision and a failed join). An Akka node costs one extra
    connection in the process's life, not one per round or per retry; and polling is always
    correct (every server answers it), a watch only saves requests.

  - a peer that flooded its watch: it does speak websocket, and may have misbehaved only
    briefly (a burst of membership changes, a bug since fixed by a restart), so it is polled for
    ``settings.watch_retry_after`` and watched again after that. Reopening the watch at once
    would let a flooding peer make us reconnect on every probe, the churn this project exists to
    prevent; ``watch_retry_after`` bounds that to one reconnect per several minutes.

* **A probe may carry a founding round** (DESIGN section 8): ``probe(cp, round=r)`` asks the
  peer for a promise, with the ``Bootstrap-Round`` header on a poll or on the handshake that
  opens a watch, or the message ``propose <r>`` on an open watch. The answer is the same
  document either way; its founding fields go into ``ProbeSucceeded``.
* **Bugs crash.** Only what peers and the network can cause becomes a failure
  (:data:`~._failures.PEER_ERRORS`); any other exception propagates out of :meth:`Prober.run`.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import math
import ssl
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

import httpx
import trio

from .._version import __version__
from ..core import ContactPoint, Event, ProbeFailed, ProbeSucceeded, Settings, UsageError
from ..core.wire import CONTACT_POINT_HEADER, MAX_ROUND, SEED_NODES_PATH, SeedNodesDocument
from ..security import Security
from ._failures import Document, Failure, Outcome, judge_document
from ._poll import PoolPerPeer, TraceHook, poll
from ._types import (
    ConnectionChurnError,
    ConnectWebsocket,
    Counters,
    FailureKind,
    ProberStatistics,
    Transport,
)
from ._watch import OpenWatch, SpeaksNoWebsocket, WatchClient

__all__ = ["Prober"]

logger = logging.getLogger("bootstrap.prober")

# A peer that keeps failing the same way is logged at most this often (seconds).
_FAILURE_LOG_INTERVAL = 30.0


class _Peer:
    """One probed contact point and its worker's state."""

    __slots__ = (
        "address",
        "contact_point",
        "detached_pool",
        "in_flight",
        "logged_at",
        "logged_kind",
        "requested",
        "requested_round",
        "scopes",
        "stopped",
        "trace",
        "url",
    )

    def __init__(
        self,
        contact_point: ContactPoint,
        address: ContactPoint,
        trace: TraceHook,
        scheme: str = "http",
    ):
        self.contact_point = contact_point  # as the machine knows it: every report carries it
        self.address = address  # what we connect to (the fallback port applied)
        self.url = f"{scheme}://{address}{SEED_NODES_PATH}"
        self.trace = trace
        self.scopes: set[trio.CancelScope] = set()  # what stop() cancels (see _until_stopped)
        self.requested = trio.Event()  # set by probe(), replaced when the worker takes it
        self.requested_round: int | None = None  # the round that probe asks a promise for
        self.in_flight = False
        self.stopped = False
        self.detached_pool: httpx.AsyncBaseTransport | None = None
        self.logged_kind: FailureKind | None = None
        self.logged_at = -math.inf


class Prober:
    """Probes peers on the machine's behalf over one long-lived connection per peer.

    Start it with ``await nursery.start(prober.run)``; then ``probe(cp)`` for each ``Probe``
    action and ``stop(cp)`` for each ``StopProbing``. Results arrive through ``report`` as
    ``ProbeSucceeded`` / ``ProbeFailed`` (also unsolicited ones, pushed over a watch).
    ``http_transport`` and ``connect_websocket`` replace how peers are reached: in tests, peers
    in memory; in the benchmark, the anchor's connection per probe. An ``http_transport`` owns
    its connections, so ``stop(cp)`` cannot close one peer's: left out, each peer gets a pool of
    its own (one keep-alive connection, closed by ``stop``), as production needs. Requests
    carry httpcore's ``trace`` extension, by which the prober counts each new TCP connection.
    ``keepalive_expiry`` overrides ``settings.client_keepalive_expiry``; either way a value that
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
        expiry = settings.client_keepalive_expiry if keepalive_expiry is None else keepalive_expiry
        longest = settings.longest_probe_period
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
        self._counters = Counters()
        # Without per-peer pools (an injected transport, in tests) there is no per-peer
        # connection for stop() to close.
        self._pools: PoolPerPeer | None = None
        self._http_transport: httpx.AsyncBaseTransport
        if http_transport is None:
            self._pools = self._http_transport = PoolPerPeer(self._make_pool)
        else:
            self._http_transport = http_transport
        # With TLS: https:// and wss://, peers verified, our certificate presented if asked.
        self._security = Security() if security is None else security
        self._tls_context: ssl.SSLContext | None = None
        if self._security.tls is not None:
            self._tls_context = self._security.tls.client_context()
        # What httpx verifies with. Without TLS probes are plain HTTP, but httpx still wants a
        # context: one, shared, made when the first pool is (loading the trust store takes a
        # while). Kept apart from _tls_context, which alone decides whether a watch speaks TLS.
        self._http_verify: ssl.SSLContext | None = self._tls_context
        self._limiter = trio.CapacityLimiter(max_in_flight)
        contact = str(self_contact_point)
        http_headers = {
            CONTACT_POINT_HEADER: contact,
            "User-Agent": f"cluster-bootstrap/{__version__}",
            # The body is read with a size limit; a compressed one would defeat it.
            "Accept-Encoding": "identity",
        }
        websocket_headers = [(CONTACT_POINT_HEADER.encode(), contact.encode())]
        authorization = self._security.authorization()
        if authorization is not None:
            http_headers["Authorization"] = authorization
            websocket_headers.append((b"Authorization", authorization.encode("ascii")))
        # Every poll's headers, fixed from here on (an http_transport may add its own).
        self._http_headers: Mapping[str, str] = MappingProxyType(http_headers)
        if connect_websocket is None:
            connect_websocket = OpenWatch(
                local_address=self._local_address,
                tls_context=self._tls_context,
                connection_opened=self._connection_opened,
                connect_cancelled=self._connect_cancelled,
            )
        self._watch_client = WatchClient(
            connect=connect_websocket,
            headers=websocket_headers,
            settings=settings,
            limiter=self._limiter,
            counters=self._counters,
            secret_sent=self._security.secret is not None,
        )
        self._peers: dict[ContactPoint, _Peer] = {}
        # Peers polled instead of watched (see the module's rules): for good, and until a time.
        self._no_websocket: set[ContactPoint] = set()
        self._watch_again_at: dict[ContactPoint, float] = {}
        self._client: httpx.AsyncClient | None = None
        self._nursery: trio.Nursery | None = None
        self._started = False

    # --- public API ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own every peer's worker and the HTTP client; return (closing them all) when cancelled.

        An exception that no peer or network can cause (a bug) propagates from here.
        """
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
            headers=self._http_headers,
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
        # would wait out the close timeout). Workers are only ever cancelled through stop().
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as workers:
                self._nursery = workers
                task_status.started()
                await closing.wait()

    @property
    def transport(self) -> Transport:
        """How peers are probed: ``"watch"`` (falling back to polls per peer) or ``"poll"``."""
        return self._transport

    def probe(self, contact_point: ContactPoint, *, round: int | None = None) -> None:
        """Probe ``contact_point`` now, in the background; its result is reported.

        With ``round`` the probe asks the peer for a promise for that founding round. If a probe
        of it is still in flight, this does nothing (the machine never asks for two).
        """
        if round is not None and (
            isinstance(round, bool) or not isinstance(round, int) or not 0 <= round <= MAX_ROUND
        ):
            raise UsageError(f"round must be None or an integer in 0..{MAX_ROUND}, got {round!r}")
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
        peer.requested_round = round
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
        return self._counters.snapshot(peers=len(self._peers))

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
        if self._http_verify is None:
            self._http_verify = ssl.create_default_context()
        return httpx.AsyncHTTPTransport(
            verify=self._http_verify,
            trust_env=False,
            local_address=self._local_address(address),
            # One connection per peer, kept between probes.
            limits=httpx.Limits(
                max_connections=1,
                max_keepalive_connections=1,
                keepalive_expiry=self._keepalive_expiry,
            ),
        )

    def _connection_opened(self, address: ContactPoint) -> None:
        self._counters.connection_opened(address)
        logger.debug("%s: opened a connection", address)

    def _connect_cancelled(self) -> None:
        self._counters.connects_cancelled += 1

    def _trace_for(self, address: ContactPoint) -> TraceHook:
        # httpx exposes no network-backend hook, but httpcore reports each new TCP connection to
        # the request's ``trace`` extension; a reused connection reports none.
        async def trace(event_name: str, info: Mapping[str, Any]) -> None:
            if event_name == "connection.connect_tcp.complete":
                self._connection_opened(address)
            elif event_name == "connection.connect_tcp.failed" and isinstance(
                info.get("exception"), trio.Cancelled
            ):
                self._connect_cancelled()

        return trace

    # --- reporting ----------------------------------------------------------------------------

    def _report_outcome(self, peer: _Peer, outcome: Outcome) -> None:
        """The one place a probe's outcome becomes an event (or is dropped, after a stop)."""
        if peer.stopped:
            if isinstance(outcome, Failure):
                logger.debug("%s: dropping a late failure: %s", peer.contact_point, outcome.reason)
            else:
                logger.debug("%s: dropping a late answer", peer.contact_point)
            return
        judged: SeedNodesDocument | Failure
        if isinstance(outcome, Document):
            judged = judge_document(outcome.data, self._service_name)
        else:
            judged = outcome
        peer.in_flight = False
        if isinstance(judged, Failure):
            self._counters.failed(judged.kind)
            now = trio.current_time()
            # A peer that keeps failing the same way (a node not started yet: refused, every
            # backoff period) is logged when the kind of failure changes, or every 30 s.
            if judged.kind != peer.logged_kind or now - peer.logged_at >= _FAILURE_LOG_INTERVAL:
                peer.logged_kind, peer.logged_at = judged.kind, now
                logger.info("%s: probe failed: %s", peer.contact_point, judged.reason)
            else:
                logger.debug("%s: probe failed: %s", peer.contact_point, judged.reason)
            self._report(ProbeFailed(peer.contact_point, judged.reason, kind=judged.kind))
            return
        if peer.logged_kind is not None:
            logger.info("%s: answers again", peer.contact_point)
            peer.logged_kind, peer.logged_at = None, -math.inf
        logger.debug("%s: answered: %s", peer.contact_point, judged)
        self._report(
            ProbeSucceeded(
                peer.contact_point,
                judged.self_node,
                [member.node for member in judged.seed_nodes],
                judged.cluster_id,
                round=judged.round,
                candidate=judged.candidate,
                promise=judged.promise,
                founding=judged.founding,
                waiting=judged.waiting,
            )
        )

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
                round: int | None = None
                with self._until_stopped(peer):
                    round = await self._next_request(peer)
                    if not self._may_watch(peer.address):
                        await self._poll(peer, round)
                        continue
                if peer.stopped:
                    break
                end = await self._watch_client.watch(
                    peer.address,
                    round=round,
                    stoppable=functools.partial(self._until_stopped, peer),
                    next_request=functools.partial(self._next_request, peer),
                    emit=functools.partial(self._report_outcome, peer),
                )
                if end == "flooded":
                    retry_at = trio.current_time() + self._settings.watch_retry_after
                    self._watch_again_at[peer.address] = retry_at
                elif isinstance(end, SpeaksNoWebsocket):
                    self._no_websocket.add(peer.address)
                    logger.info(
                        "%s: speaks no websocket (HTTP %s to the watch handshake): "
                        "polling it instead",
                        peer.contact_point,
                        end.status_code,
                    )
                    # The probe still in flight (its proposal too) is answered by polling.
                    with self._until_stopped(peer):
                        await self._poll(peer, round)
                # Otherwise the watch has ended and emitted why; the next probe reopens it.
        finally:
            if peer.detached_pool is not None:
                with trio.CancelScope(shield=True):
                    await peer.detached_pool.aclose()

    def _may_watch(self, address: ContactPoint) -> bool:
        if self._transport == "poll" or address in self._no_websocket:
            return False
        retry_at = self._watch_again_at.get(address)
        if retry_at is None:
            return True
        if trio.current_time() < retry_at:
            return False
        del self._watch_again_at[address]
        return True

    async def _next_request(self, peer: _Peer) -> int | None:
        """Wait for the next probe of ``peer``; the round it proposes, if any."""
        await peer.requested.wait()
        peer.requested = trio.Event()
        round, peer.requested_round = peer.requested_round, None
        return round

    async def _poll(self, peer: _Peer, round: int | None) -> None:
        client = self._client
        assert client is not None  # workers only run inside run()
        outcome = await poll(
            client,
            url=peer.url,
            address=peer.address,
            round=round,
            trace=peer.trace,
            probe_timeout=self._settings.probe_timeout,
            limiter=self._limiter,
            counters=self._counters,
            secret_sent=self._security.secret is not None,
        )
        self._report_outcome(peer, outcome)
