"""The node runner: one nursery running the server, discovery, the prober and the machine.

The runner is a thin driver (DESIGN section 2): it feeds the machine ``trio.current_time()``
and the events its helpers report, and carries out the actions the machine queues. Every policy
(when to look up, whom to probe, when to decide) stays in the core. Drivers own only I/O,
timeouts as cancel scopes, and concurrency.

Events from the prober and our own tasks queue for the driver loop. A ``ContactedBy`` from the
server is handled at once instead, in the server's task, because the server builds its answer
right after: a proposal's answer must show the promise it got (DESIGN section 8). The driver
loop is then woken to carry out what that queued and to re-arm its timer. The document served is
the membership's seed nodes plus the machine's ``advertisement``; whenever a machine call changes
the advertisement, the server is told, so watchers get the new document at once.

    async with open_node(settings=..., contact_point=..., discovery=...) as node:
        decision = await node.wait_decided()

No task outlives the context manager. Leaving it stops the node gracefully (:meth:`Node.stop`):
probing stops and each probe connection is closed once, the server stops listening, says "going
away" (1001) on every watch and finishes the responses in flight, and a join already started
completes while none starts any more; all within ``STOP_TIMEOUT``, after which what is left is
cancelled. A caller that is itself cancelled gets the prompt stop: everything is cancelled, and
the probe connections and watches are still closed cleanly, once.
"""

from __future__ import annotations

import functools
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Final

import attrs
import httpx
import trio

from .core import (
    Advertisement,
    BootstrapMachine,
    ContactedBy,
    ContactPoint,
    ContactPointsDiscovered,
    Decision,
    DiscoveryFailed,
    Event,
    JoinFailed,
    JoinSeedNodes,
    JoinSelf,
    Lookup,
    Probe,
    Settings,
    Status,
    StopProbing,
)
from .core.founding import RoundCounts
from .core.wire import SeedNodesDocument
from .discovery import Discovery, DiscoveryError
from .membership import LocalMembership, Membership, advertised_seed_nodes
from .metrics import MetricsSnapshot, exposition, metrics_registry
from .prober import (
    WATCH_CLOSE_TIMEOUT,
    ConnectWebsocket,
    Prober,
    ProberStatistics,
    Transport,
)
from .security import Security
from .server import SHUTDOWN_TIMEOUT, ManagementApp, serve_management

__all__ = [
    "STOPPED_WITHIN",
    "STOP_TIMEOUT",
    "Node",
    "NodeStatistics",
    "open_node",
    "settings_to_json",
    "status_to_json",
]

logger = logging.getLogger("bootstrap.node")

# The stop-timeout chain, each bound computed from the one it must outlast, so changing one
# keeps the others consistent (a test asserts the ordering):
#
#   server.CLOSE_ON_SHUTDOWN_TIMEOUT (1 s)   a cancelled watch's shielded "going away" (1001)
#   < server.GRACEFUL_SHUTDOWN_TIMEOUT (2 s)  responses in flight and watches' close handshakes
#   < server.SHUTDOWN_TIMEOUT (3 s)           graceful, then the cancelled watches' 1001
#   <= STOP_TIMEOUT (3 s)                     the node waits out the server's whole shutdown
#   < STOP_TIMEOUT + prober.WATCH_CLOSE_TIMEOUT (4 s): Node.stop() returns within this; after
#     STOP_TIMEOUT the prober is cancelled and each watch's close runs shielded for up to that.
#
#: Longest a graceful :meth:`Node.stop` waits (seconds) for the server to finish its responses in
#: flight and for a join already started, before cancelling what is left: the server's whole
#: shutdown (``bootstrap.server.SHUTDOWN_TIMEOUT``), so the server finishes on its own. Closing
#: the probe connections runs alongside; a watch's close is bounded by ``WATCH_CLOSE_TIMEOUT``.
STOP_TIMEOUT: Final = SHUTDOWN_TIMEOUT
#: :meth:`Node.run` returns within this of :meth:`Node.stop`.
STOPPED_WITHIN: Final = STOP_TIMEOUT + WATCH_CLOSE_TIMEOUT


@attrs.frozen
class _Handled:
    """Queued for the driver loop after the server fed the machine an event itself.

    The loop carries out the actions it queued and re-arms its timer (the deadline may have
    moved), or, if the machine raised, raises ``error`` there: a bug crashes the node loudly.
    """

    error: Exception | None = None


@attrs.frozen(kw_only=True)
class NodeStatistics:
    """Counters of one node, for logs, the demo table and the benchmark."""

    lookups: int
    decided_at: float | None
    joined_at: float | None
    prober: ProberStatistics


def founding_to_json(
    settings: Settings, document: SeedNodesDocument, counts: RoundCounts
) -> dict[str, object]:
    """The status's ``founding`` object: the formation rule, what the documents say of the
    founding round (DESIGN section 8) exactly as served, and how this life's rounds went."""
    promise = document.promise
    return {
        "formation": settings.formation,
        "round": document.round,
        "candidate": document.candidate,
        "promise": None if promise is None else {"to": str(promise.to), "round": promise.round},
        "founding": document.founding,
        # Under lowest-address the node speaks no rounds, so it has no counter to show.
        "firstRound": None if document.round is None else counts.first_round,
        "roundsStarted": counts.rounds_started,
        "roundsWithdrawn": counts.rounds_withdrawn,
        "promisesGiven": counts.promises_given,
    }


def settings_to_json(settings: Settings) -> dict[str, object]:
    """The settings a reader of the status needs to explain a wait (``doctor`` above all)."""
    return {
        "requiredContactPoints": settings.required_contact_points,
        "contactWithAllContactPoints": settings.contact_with_all_contact_points,
        "newClusterEnabled": settings.new_cluster_enabled,
        "formation": settings.formation,
        "stableMargin": settings.stable_margin,
        "probeInterval": settings.probe_interval,
        "formationDeadline": settings.formation_deadline,
    }


def status_to_json(status: Status, *, now: float, extra: dict[str, object]) -> dict[str, object]:
    """The ``/bootstrap/status`` body (DESIGN section 4) for ``status`` observed at ``now``."""
    decision = status.decision
    decision_json: dict[str, object] | None
    if isinstance(decision, JoinSelf):
        decision_json = {"kind": "join-self"}
    elif isinstance(decision, JoinSeedNodes):
        decision_json = {"kind": "join-seed-nodes", "seedNodes": list(decision.seed_nodes)}
    else:
        decision_json = None
    return {
        "phase": status.phase.value,
        "decision": decision_json,
        "reason": status.reason,
        "waitingOn": status.waiting_on,
        **extra,
        "contactPoints": [
            {
                "contactPoint": str(point.contact_point),
                "fresh": point.fresh,
                "lastObservedAgo": (
                    None
                    if point.last_observed_at is None
                    else round(now - point.last_observed_at, 3)
                ),
                "seedNodes": list(point.seed_nodes),
                "consecutiveFailures": point.consecutive_failures,
                "probed": point.probed,
                "lastFailure": point.last_failure,
                "lastFailureKind": point.last_failure_kind,
            }
            for point in status.contact_points
        ],
    }


def _first_round() -> int:
    """Where this process's founding-round counter starts: wall-clock milliseconds.

    A process restarted on the same contact point in the middle of a round must show its old
    promisers a round past the one they promised, or they wait for it for ever (the machine's
    ``first_round``). Wall-clock time is the one counter that survives the restart; a round takes
    at least one probe period, far more than a millisecond, so a later life starts past every
    round of an earlier one unless the clock was set back between them.
    """
    return time.time_ns() // 1_000_000


class Node:
    """A running bootstrap node: the live status and a way to wait for the decision.

    Usually built by :func:`open_node`, which documents the parameters.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        contact_point: ContactPoint,
        self_node: str,
        discovery: Discovery,
        membership: Membership,
        service_name: str | None,
        transport: Transport,
        rng: random.Random | None,
        security: Security | None = None,
        http_transport: httpx.AsyncBaseTransport | None = None,
        connect_websocket: ConnectWebsocket | None = None,
    ) -> None:
        self.settings = settings
        self.contact_point = contact_point
        self.self_node = self_node
        self.service_name = service_name
        self.security = security
        self._discovery = discovery
        self._membership = membership
        self.machine = BootstrapMachine(
            settings,
            self_contact_point=contact_point,
            self_node=self_node,
            rng=rng,
            first_round=_first_round(),
        )
        self._events_in, self._events_out = trio.open_memory_channel[Event | _Handled](math.inf)
        self.prober = Prober(
            settings=settings,
            self_contact_point=contact_point,
            service_name=service_name,
            transport=transport,
            report=self._report,
            http_transport=http_transport,
            connect_websocket=connect_websocket,
            security=security,
        )
        self.app = ManagementApp(
            settings=settings,
            self_contact_point=contact_point,
            service_name=service_name,
            document=self.document,
            status=self.status_json,
            ready=self._ready,
            on_contacted=lambda peer: self._report(ContactedBy(peer)),
            on_proposal=lambda peer, round: self._report(ContactedBy(peer, proposal_round=round)),
            metrics=lambda: exposition(self.metrics_registry),
            # Past the formation deadline undecided: not alive, so the orchestrator restarts it.
            alive=lambda: not self.machine.formation_overdue,
        )
        #: This node's Prometheus series (``GET /metrics``), in a registry of its own.
        self.metrics_registry = metrics_registry(self.metrics_snapshot)
        self.joined = False
        self._decided = trio.Event()
        self._joined_event = trio.Event()
        self._lookups = 0
        self._lookup_failures = 0
        self._join_failures = 0
        self._started_at: float | None = None
        self._decided_at: float | None = None
        self._joined_at: float | None = None
        self._logged_state: tuple[str, str] | None = None
        self._logged_overdue = False
        # A graceful stop (stop()): the driver loop ends, then run() winds down (_wind_down).
        self._stopping = trio.Event()
        self._driving: trio.CancelScope | None = None
        self._driver_running = False  # the driver loop runs: the server may feed the machine
        self._advertised: Advertisement | None = None  # as the watchers were last told
        self._served = trio.Event()  # serve_management has returned
        self._joining: trio.Event | None = None  # set when the join last started has ended

    # --- what the outside sees ----------------------------------------------------------------

    @property
    def status(self) -> Status:
        return self.machine.status

    @property
    def decision(self) -> Decision | None:
        return self.machine.decision

    async def wait_decided(self) -> Decision:
        """Wait until the machine has decided (and the join was started); return the decision."""
        await self._decided.wait()
        decision = self.machine.decision
        assert decision is not None  # set together with the event
        return decision

    def _ready(self) -> bool:
        # A membership may report that its member failed after joining (a CommandMembership
        # whose command exited with an error): the node stays joined, but is no longer ready.
        return self.joined and getattr(self._membership, "failure", None) is None

    async def wait_joined(self) -> None:
        """Wait until the membership join has completed."""
        await self._joined_event.wait()

    def statistics(self) -> NodeStatistics:
        return NodeStatistics(
            lookups=self._lookups,
            decided_at=self._decided_at,
            joined_at=self._joined_at,
            prober=self.prober.statistics(),
        )

    def metrics_snapshot(self) -> MetricsSnapshot:
        """What ``/metrics`` shows now, read from where each figure is counted."""
        machine = self.machine
        contact_points = machine.status.contact_points
        decided_at, started_at = self._decided_at, self._started_at
        return MetricsSnapshot(
            phase=machine.phase,
            decided=machine.decision is not None,
            formed_cluster=isinstance(machine.decision, JoinSelf),
            joined=self.joined,
            decision_seconds=(
                None if decided_at is None or started_at is None else decided_at - started_at
            ),
            contact_points_discovered=len(contact_points),
            contact_points_fresh=sum(1 for point in contact_points if point.fresh),
            clusters_at_decision=machine.clusters_at_decision,
            formation_overdue=machine.formation_overdue,
            lookups=self._lookups,
            lookup_failures=self._lookup_failures,
            join_failures=self._join_failures,
            rounds=machine.round_counts,
            prober=self.prober.statistics(),
            server=self.app.statistics(),
        )

    def document(self) -> SeedNodesDocument:
        """The seed-nodes document this node serves now.

        The seed nodes are the membership's; the founding round's fields the machine's
        advertisement, ``founding`` only while the membership lists no seed nodes (from then on
        they say it: DESIGN section 8, point 5).
        """
        seeds = advertised_seed_nodes(
            self._membership.members(),
            self_node=self.self_node,
            max_seed_nodes=self.settings.max_seed_nodes,
        )
        advertisement = self.machine.advertisement
        return SeedNodesDocument(
            self.self_node,
            seeds,
            service_name=self.service_name,
            round=advertisement.round,
            candidate=advertisement.candidate,
            promise=advertisement.promise,
            founding=advertisement.founding and not seeds,
            waiting=self.machine.founder_waiting,
        )

    def status_json(self) -> dict[str, object]:
        return status_to_json(
            self.machine.status,
            now=trio.current_time(),
            extra={
                "selfContactPoint": str(self.contact_point),
                "selfNode": self.self_node,
                "joined": self.joined,
                "formationOverdue": self.machine.formation_overdue,
                "settings": settings_to_json(self.settings),
                "founding": founding_to_json(
                    self.settings, self.document(), self.machine.round_counts
                ),
            },
        )

    # --- the driver ---------------------------------------------------------------------------

    def _report(self, event: Event) -> None:
        # Called from the prober, the server and our own tasks. Events queue for the driver
        # loop (unbounded: at most a few per peer), except the server's: see _handle_at_once.
        if isinstance(event, ContactedBy) and self._driver_running:
            self._handle_at_once(event)
            return
        self._events_in.send_nowait(event)

    def _handle_at_once(self, event: ContactedBy) -> None:
        """Feed ``event`` to the machine now, in the server's task, not through the queue.

        The server builds its answer as soon as this returns, and the answer to a proposal must
        show whether this node promised. The machine is synchronous and trio switches tasks
        only at an await, so no call of the driver loop is interleaved with this one.
        """
        try:
            self.machine.handle(event, trio.current_time())
        except Exception as error:
            self._events_in.send_nowait(_Handled(error))
            return
        self._advertise_changes()
        self._events_in.send_nowait(_Handled())

    def _advertise_changes(self) -> None:
        """Tell the server if the machine's advertisement changed: watchers get it at once."""
        advertisement = self.machine.advertisement
        if advertisement != self._advertised:
            self._advertised = advertisement
            self.app.notify_changed()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the node until cancelled (everything stops at once) or :meth:`stop` (gracefully)."""
        _warn_if_not_a_majority(self.settings, self.contact_point)
        async with trio.open_nursery() as nursery:
            serve = functools.partial(
                serve_management,
                self.app,
                bind=self.contact_point,
                settings=self.settings,
                security=self.security,
                shutdown_trigger=self._stopping.wait,
            )
            await nursery.start(self._serve_until_stopped, serve)
            await nursery.start(self.prober.run)
            self._started_at = trio.current_time()
            self.machine.start(self._started_at)
            task_status.started()
            with trio.CancelScope() as self._driving:
                if self._stopping.is_set():
                    self._driving.cancel()
                self._driver_running = True
                try:
                    await self._drive(nursery)
                finally:
                    # From here on the server's events only queue: nothing handles them.
                    self._driver_running = False
            # Only stop() ends the driver loop: no action is carried out from here on.
            with trio.move_on_after(STOP_TIMEOUT) as winding_down:
                await self._wind_down()
            if winding_down.cancelled_caught:
                logger.warning(
                    "%s: stopping took over %.1f s: cancelling what is left",
                    self.contact_point,
                    STOP_TIMEOUT,
                )
            # Lookups, and the prober, whose run() closes its connections on the way out.
            nursery.cancel_scope.cancel()

    def stop(self) -> None:
        """Stop gracefully; :meth:`run` returns once done (within ``STOPPED_WITHIN``, 4 s).

        No probe, lookup or decision follows, and each probe connection is closed once. The
        server stops listening, closes idle connections and every watch (1001, going away), and
        finishes the responses in flight. A join already started is waited for; one not started
        yet never starts. Idempotent; cancelling :meth:`run` instead stops everything at once.
        """
        self._stopping.set()
        if self._driving is not None:
            self._driving.cancel()

    async def _serve_until_stopped(
        self,
        serve: Callable[..., Awaitable[None]],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            await serve(task_status=task_status)
        finally:
            self._served.set()

    async def _wind_down(self) -> None:
        logger.info("%s: stopping", self.contact_point)
        # The workers close their connections now; the prober's run() waits for them when it is
        # cancelled, after this.
        self.prober.stop_all()
        await self._served.wait()  # the server got its trigger from self._stopping
        if self._joining is not None:
            await self._joining.wait()

    async def _drive(self, nursery: trio.Nursery) -> None:
        machine = self.machine
        while True:
            # After every machine call (start, an event, a timer, or the server's own call).
            self._carry_out_actions(nursery)
            self._log_state_change()
            self._advertise_changes()
            deadline = machine.next_deadline()
            with trio.move_on_at(deadline):
                item = await self._events_out.receive()
                if isinstance(item, _Handled):
                    if item.error is not None:
                        raise item.error
                else:
                    machine.handle(item, trio.current_time())
                continue
            machine.handle_timer(max(deadline, trio.current_time()))

    def _carry_out_actions(self, nursery: trio.Nursery) -> None:
        while (action := self.machine.next_action()) is not None:
            if isinstance(action, Probe):
                self.prober.probe(action.contact_point, round=action.round)
            elif isinstance(action, StopProbing):
                self.prober.stop(action.contact_point)
            elif isinstance(action, Lookup):
                self._lookups += 1
                nursery.start_soon(self._lookup)
            else:
                self._decided_at = trio.current_time()
                logger.info("%s: decided: %s", self.contact_point, self.machine.reason)
                self._decided.set()
                nursery.start_soon(self._join, action)

    def _log_state_change(self) -> None:
        # Runs after every machine call: read only what is O(1), not the whole status (which
        # lists every contact point, thousands for a founder).
        machine = self.machine
        state = (machine.phase.value, machine.waiting_on)
        if state != self._logged_state:
            self._logged_state = state
            if machine.decision is None:  # the decision has a log line of its own
                logger.info("%s: %s: %s", self.contact_point, state[0], machine.reason)
        if machine.formation_overdue and not self._logged_overdue:
            self._logged_overdue = True  # once in the node's life, however often it is so
            logger.error(
                "%s: %s; /alive now answers 503 until a decision is made",
                self.contact_point,
                machine.reason,
            )

    async def _lookup(self) -> None:
        timeout = self.settings.discovery_timeout
        event: Event
        with trio.move_on_after(timeout) as scope:
            try:
                event = ContactPointsDiscovered(await self._discovery.lookup())
            except DiscoveryError as error:
                event = DiscoveryFailed(str(error))
            except Exception as error:  # a backend bug must not kill the node
                logger.exception("%s: discovery backend raised", self.contact_point)
                event = DiscoveryFailed(f"discovery backend raised {error!r}")
        if scope.cancelled_caught:
            event = DiscoveryFailed(f"lookup timed out after {timeout} s")
        if isinstance(event, DiscoveryFailed):
            self._lookup_failures += 1
        self._report(event)

    async def _join(self, decision: Decision) -> None:
        # A join is never cut in half by a graceful stop, nor started once stopping: stop() waits
        # for this event (bounded), and a join task that starts after stop() returns at once.
        if self._stopping.is_set():
            logger.info("%s: stopping: not starting the join", self.contact_point)
            return
        self._joining = joining = trio.Event()
        try:
            await self._join_now(decision)
        finally:
            joining.set()

    async def _join_now(self, decision: Decision) -> None:
        try:
            if isinstance(decision, JoinSelf):
                await self._membership.join_self()
            else:
                await self._membership.join(decision.seed_nodes)
        except Exception as error:
            logger.warning("%s: join failed: %r", self.contact_point, error)
            self._join_failures += 1
            self._decided = trio.Event()  # a new decision will follow
            self._report(JoinFailed(f"{type(error).__name__}: {error}"))
            return
        self.joined = True
        self._joined_at = trio.current_time()
        self._joined_event.set()
        self.app.notify_changed()  # watchers learn of the cluster now, not at the next push
        logger.info("%s: joined", self.contact_point)


def _warn_if_not_a_majority(settings: Settings, contact_point: ContactPoint) -> None:
    """Warn when the settings name the deployment's size but ask for no majority of it.

    ``expected_contact_points`` says how many nodes there are; S1 (at most one cluster whatever
    discovery returns to each node, DESIGN section 8) needs ``required_contact_points`` above
    half of them. A configuration that gives the size and then requires half or less is most
    likely a mistake, so it is said once, at start, with the value that restores S1.
    """
    expected = settings.expected_contact_points
    required = settings.required_contact_points
    if expected is None or required > expected // 2:
        return
    logger.warning(
        "%s: required_contact_points=%d is not a majority of expected_contact_points=%d: "
        "guarantee S1 (at most one cluster whatever discovery returns to each node) does not "
        "hold; set required_contact_points to at least %d",
        contact_point,
        required,
        expected,
        expected // 2 + 1,
    )


@asynccontextmanager
async def open_node(
    *,
    settings: Settings | None = None,
    contact_point: ContactPoint,
    discovery: Discovery,
    self_node: str | None = None,
    membership: Membership | None = None,
    service_name: str | None = None,
    transport: Transport = "watch",
    rng: random.Random | None = None,
    security: Security | None = None,
    http_transport: httpx.AsyncBaseTransport | None = None,
    connect_websocket: ConnectWebsocket | None = None,
) -> AsyncIterator[Node]:
    """Run a bootstrap node for the duration of the ``async with`` block.

    ``self_node`` defaults to ``http://{contact_point}``; ``membership`` to a
    :class:`LocalMembership`. The management server is listening when the block is entered.
    ``security`` (a shared secret, TLS) applies to the server and the prober alike; every node
    of a cluster needs the same. ``http_transport`` and ``connect_websocket`` replace how the
    prober reaches its peers (polls and watches; see :class:`~bootstrap.prober.Prober`): for
    tests with peers in memory, and for the benchmark's emulation of the anchor's connection
    per probe. Left out, the prober keeps one connection per peer, as it must in production.
    """
    settings = settings if settings is not None else Settings()
    if contact_point.port is None:
        contact_point = contact_point.with_port(settings.fallback_port)
    self_node = self_node if self_node is not None else f"http://{contact_point}"
    node = Node(
        settings=settings,
        contact_point=contact_point,
        self_node=self_node,
        discovery=discovery,
        membership=membership if membership is not None else LocalMembership(self_node),
        service_name=service_name,
        transport=transport,
        rng=rng,
        security=security,
        http_transport=http_transport,
        connect_websocket=connect_websocket,
    )
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            try:
                yield node
            finally:
                # Graceful (bounded inside run()); if the caller is being cancelled, the nursery
                # is too, and the node stops at once.
                node.stop()
    except BaseExceptionGroup as group:
        # The nurseries wrap a single failure (a port already in use at start-up, or the
        # caller's own exception from the block) in groups; hand back the exception itself.
        sole = _sole_exception(group)
        if sole is None:
            raise
        raise sole from None


def _sole_exception(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        error = pending.pop()
        if isinstance(error, BaseExceptionGroup):
            pending.extend(error.exceptions)
        else:
            leaves.append(error)
    return leaves[0] if len(leaves) == 1 else None
