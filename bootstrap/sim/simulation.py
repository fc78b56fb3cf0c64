"""The simulation proper: one ``BootstrapMachine`` per node, driven exactly as a real driver would.

Each node's driver does what the trio driver does, against the simulated world:

* it starts the machine at the node's start time, drains every action after every call, and
  wakes the machine with ``handle_timer(max(deadline, now))`` (one lazy wake-up per node: a new
  one is scheduled only when the deadline moves earlier; stale ones are ignored);
* a node that stops loses its machine, its connections and its cluster membership; one that
  starts again (``Scenario.restarts``) is a new process: a fresh machine with a fresh random
  stream, no connections, no promise, no cluster. Whatever was scheduled for its old life
  (a lookup result, a wake-up, a join) is ignored;
* ``Lookup`` asks :class:`~bootstrap.sim.discovery.DiscoveryService` (lookup latency, failures,
  the discovery timeout); ``Probe`` goes over the scenario's transport; ``StopProbing`` cancels
  anything in flight to that peer and closes its connection, so a late answer is never fed;
  decisions go to :class:`~bootstrap.sim.membership.Membership`;
* as a server it feeds ``ContactedBy(prober)`` (with the round of a proposal) for every
  request, handshake and ``probe`` message it receives, and answers with the document it
  advertises at that moment: its membership's seed nodes and the founding-round fields of
  ``machine.advertisement``, pushed to its watchers whenever either changes.

Every ``JoinSelf`` is recorded with the facts it was taken on (:class:`FounderReport`), and
every change of a node's promise (:class:`PromiseRecord`), so the report can say which rule
let each founder form and, when two clusters coexist, by which mechanism.

Transports:

``poll``
    Each ``Probe`` is one HTTP request over a keep-alive connection to that peer (opened if
    none is open). The answer, or ``ProbeFailed`` at exactly ``send + probe_timeout``.
``watch``
    The first ``Probe`` opens a connection and a websocket watch; the server sends its document
    on connect, on every change and every ``settings.watch_push_interval``; each document
    reaches the prober as ``ProbeSucceeded`` (solicited or not). Later ``Probe`` actions are
    ``probe`` messages on the watch, answered by the next document.

A request whose answer would arrive later than ``probe_timeout`` after it was sent fails as
``"timed out"`` at exactly that instant, and the connection is closed (it is broken: the next
probe opens a new one). The simulation checks the machine's contract as it goes and reports
every breach as a violation (see :meth:`Simulation.report`).
"""

from __future__ import annotations

import itertools
import math
import random
import time
from collections.abc import Callable
from typing import Any

import attrs

from bootstrap.core.contact_point import ContactPoint
from bootstrap.core.events import (
    ContactedBy,
    ContactPointsDiscovered,
    DiscoveryFailed,
    Event,
    JoinFailed,
    JoinSeedNodes,
    JoinSelf,
    Lookup,
    Probe,
    ProbeFailed,
    ProbeSucceeded,
    Promise,
    StopProbing,
)
from bootstrap.core.founding import Advertisement
from bootstrap.core.machine import BootstrapMachine

from .discovery import DiscoveryService
from .membership import Membership
from .network import SYN_RTO, Connection, Network
from .report import DecisionKind, FounderReport, NodeReport, PromiseRecord, SimulationReport
from .scenario import Scenario
from .scheduler import Scheduler

__all__ = ["Simulation", "Trace", "contact_point_of", "node_name", "run_simulation"]

# A machine whose deadline does not move past ``now`` after handle_timer(now) would make the
# driver spin at one instant forever; the simulation records a violation and retries this much
# later instead, so virtual time (and therefore the run) always advances.
_GUARD_STEP = 0.01
# Keep the report readable when one bug fires thousands of times.
_MESSAGES_PER_KIND = 5


def contact_point_of(index: int) -> ContactPoint:
    """Node ``index``'s contact point: ``10.0.{index // 250}.{index % 250 + 1}:8558``."""
    return ContactPoint(f"10.0.{index // 250}.{index % 250 + 1}", 8558)


def node_name(index: int, nodes: int) -> str:
    """Node ``index``'s ``self_node``; zero-padded so that name order is index order."""
    return f"sim://node-{index:0{len(str(max(nodes - 1, 0)))}d}"


Trace = Callable[[float, int, str, object], None]
"""Observer of a run: ``(now, node, kind, item)``; kind is ``"event"`` (fed to the machine),
``"action"`` (drained from it), ``"start"``, ``"stop"`` or ``"joined"`` (item: the cluster id)."""


class _Violations:
    """Breaches of the machine's contract or of the invariants, grouped by kind."""

    def __init__(self) -> None:
        self._messages: dict[str, list[str]] = {}
        self._counts: dict[str, int] = {}

    def add(self, kind: str, message: str) -> None:
        count = self._counts.get(kind, 0)
        self._counts[kind] = count + 1
        if count < _MESSAGES_PER_KIND:
            self._messages.setdefault(kind, []).append(message)

    def counts(self) -> tuple[tuple[str, int], ...]:
        return tuple(self._counts.items())

    def lines(self) -> tuple[str, ...]:
        lines: list[str] = []
        for kind, messages in self._messages.items():
            lines.extend(messages)
            extra = self._counts[kind] - len(messages)
            if extra:
                lines.append(f"... and {extra} more of kind {kind!r}")
        return tuple(lines)


class _Node:
    """A simulated node: its machine, its connections and its counters."""

    __slots__ = (
        "advertised",
        "closed_how",
        "conns",
        "contact_point",
        "contacted_by",
        "decided_at",
        "decision",
        "decision_open",
        "decision_serial",
        "discovered",
        "discovered_at",
        "document",
        "incoming",
        "index",
        "joined_at",
        "joins_failed",
        "life",
        "lives",
        "lookup_outstanding",
        "lookups",
        "machine",
        "max_open",
        "name",
        "opened_after_expiry",
        "opened_after_failure",
        "opened_after_stop",
        "opened_first",
        "outstanding",
        "peers_connected",
        "probes",
        "proposals",
        "pushes",
        "refused",
        "requests",
        "running",
        "started_at",
        "stopped_at",
        "wake_at",
    )

    def __init__(self, index: int, contact_point: ContactPoint, name: str) -> None:
        self.index = index
        self.contact_point = contact_point
        self.name = name
        self.machine: BootstrapMachine | None = None
        self.life = -1  # which life is running or ran last (0: the first)
        self.lives: list[tuple[float, float | None]] = []
        self.running = False
        self.started_at: float | None = None
        self.stopped_at: float | None = None
        self.wake_at = math.inf  # the pending live wake-up, if any
        # Driver bookkeeping that the violation checks read.
        self.lookup_outstanding = False
        self.outstanding: set[int] = set()  # peers with a Probe in flight
        self.discovered: tuple[ContactPoint, ...] = ()  # the last lookup result fed
        self.decision: DecisionKind | None = None
        self.decision_open = False  # a decision was made and no JoinFailed followed
        self.decision_serial = 0  # invalidates a pending join when a new decision replaces it
        self.decided_at: float | None = None
        self.joined_at: float | None = None
        self.discovered_at: float | None = None
        # Connections this node opened (by peer) and the ones peers opened to it (by prober).
        self.conns: dict[int, Connection] = {}
        self.incoming: dict[int, Connection] = {}
        self.closed_how: dict[int, str] = {}  # peer -> how the last accepted connection ended
        # What the node advertises, as the event its probers are fed; and its ContactedBy.
        self.document = ProbeSucceeded(contact_point, name, ())
        self.contacted_by = ContactedBy(contact_point)
        # The founding-round fields of its document (DESIGN section 8), as last advertised, and
        # the round each outstanding Probe proposes (by peer; None: a plain probe).
        self.advertised: Advertisement | None = None
        self.proposals: dict[int, int | None] = {}
        # Counters.
        self.probes = self.requests = self.pushes = self.lookups = self.joins_failed = 0
        self.opened_first = self.opened_after_failure = self.opened_after_stop = 0
        self.opened_after_expiry = self.refused = self.max_open = 0
        self.peers_connected = 0


class Simulation:
    """One run of a :class:`Scenario`. Use :func:`run_simulation` unless you need the internals."""

    def __init__(self, scenario: Scenario, *, trace: Trace | None = None) -> None:
        if not isinstance(scenario, Scenario):
            raise TypeError(f"expected a Scenario, got {scenario!r}")
        self.scenario = scenario
        self._trace = trace
        self.settings = settings = scenario.settings
        self.clock = Scheduler()
        count = scenario.nodes
        seed = scenario.seed
        contact_points = [contact_point_of(index) for index in range(count)]
        names = [node_name(index, count) for index in range(count)]
        self.nodes = [_Node(index, contact_points[index], names[index]) for index in range(count)]
        self._index_of_contact_point = {cp: index for index, cp in enumerate(contact_points)}
        self._index_of_name = {name: index for index, name in enumerate(names)}
        # Independent streams, so e.g. a change in discovery draws does not reshuffle latencies.
        self._discovery_rng = random.Random(f"{seed}/discovery")
        self._membership_rng = random.Random(f"{seed}/membership")
        self.network = Network(
            latency=scenario.latency,
            loss=scenario.loss,
            partitions=scenario.partitions,
            rng=random.Random(f"{seed}/network"),
        )
        lives = scenario.resolved_lifetimes()
        register, deregister = scenario.register_lag, scenario.deregister_lag
        self.discovery = DiscoveryService(
            contact_points=contact_points,
            registered_at=[node_lives[0][0] + register for node_lives in lives],
            deregistered_at=[node_lives[0][1] + deregister for node_lives in lives],
            views=dict(scenario.discovery_views),
            later_registrations=[
                (index, start + register, stop + deregister)
                for index, node_lives in enumerate(lives)
                for start, stop in node_lives[1:]
            ],
            pair_lags=scenario.pair_lags if scenario.pair_lag is not None else None,
            lags_from=scenario.lags_from,
        )
        self._view_lags = list(scenario.resolved_view_lags())
        self.membership = Membership(
            names,
            max_seed_nodes=settings.max_seed_nodes,
            on_document_changed=self._document_changed,
        )
        self.violations = _Violations()
        self._tokens = itertools.count(1)
        self._watch = scenario.transport == "watch"
        self._probe_timeout = settings.probe_timeout
        self._push_interval = settings.watch_push_interval
        self._lookup_failed = DiscoveryFailed("lookup failed")
        self._lookup_timed_out = DiscoveryFailed(
            f"lookup timed out after {settings.discovery_timeout} s"
        )
        self._handlers: dict[type, Callable[[_Node, Any], None]] = {
            Lookup: self._on_lookup,
            Probe: self._on_probe,
            StopProbing: self._on_stop_probing,
            JoinSelf: self._on_join_self,
            JoinSeedNodes: self._on_join_seed_nodes,
        }
        self.formation_time: float | None = None
        self.last_join_time: float | None = None
        # Every JoinSelf (mutable until the run ends: its cluster id is known one latency
        # later) and every change of a node's promise.
        self._founders: list[dict[str, Any]] = []
        self._promise_log: list[PromiseRecord] = []
        # Node -> (life, promise) it holds, or held when its process stopped (a promise lost
        # with its process still counted for the candidate that had received it).
        self._promised: dict[int, tuple[int, Promise]] = {}
        # The run ends early once every running node joined and no start or stop is pending.
        self._unjoined_running = 0
        self._pending_lifecycle = 0
        # First lives, then final stops, then restarts: the order ties at one instant run in.
        for index, node_lives in enumerate(lives):
            self._pending_lifecycle += 1
            self.clock.at(node_lives[0][0], self._start_node, self.nodes[index])
        for index, stop in scenario.stop_times:
            self._pending_lifecycle += 1
            self.clock.at(stop, self._stop_node, self.nodes[index])
        for index, stop, start in scenario.restarts:
            self._pending_lifecycle += 2
            self.clock.at(stop, self._stop_node, self.nodes[index])
            self.clock.at(start, self._start_node, self.nodes[index])

    # --- running ----------------------------------------------------------------------------

    def run(self) -> SimulationReport:
        """Run until everyone joined, ``max_time`` or ``max_events``; return the report."""
        began = time.perf_counter()
        end_reason = self.clock.run(
            until=self.scenario.max_time, max_events=self.scenario.max_events
        )
        wall = time.perf_counter() - began
        if end_reason == "finished":
            end_reason = "all-joined"
        return self.report(end_reason=end_reason, wall_seconds=wall)

    def _check_finished(self) -> None:
        if self._unjoined_running == 0 and self._pending_lifecycle == 0:
            self.clock.finished = True

    def _start_node(self, node: _Node) -> None:
        now = self.clock.now
        self._pending_lifecycle -= 1
        self._unjoined_running += 1
        node.life += 1
        node.lives.append((now, None))
        node.running = True
        node.started_at = now
        if node.life:
            self._forget_past_life(node)
        if self._trace is not None:
            self._trace(now, node.index, "start", None)
        stream = f"{self.scenario.seed}/machine/{node.index}"
        machine = node.machine = BootstrapMachine(
            self.settings,
            self_contact_point=node.contact_point,
            self_node=node.name,
            # The first life keeps the stream it always had; later lives draw afresh.
            rng=random.Random(stream if node.life == 0 else f"{stream}/{node.life}"),
            # As the node seeds its round counter from wall-clock milliseconds; the first life
            # starts at 0 so a simulation's rounds read 1, 2, 3 in reports and tests.
            first_round=0 if node.life == 0 else math.ceil(now * 1000),
        )
        try:
            machine.start(now)
        except Exception as error:
            self._machine_failed(node, "start()", error)
            return
        self._drain(node, machine, False)

    def _stop_node(self, node: _Node) -> None:
        """The process exits: its machine is dropped and its connections break."""
        now = self.clock.now
        self._pending_lifecycle -= 1
        if node.joined_at is None:
            self._unjoined_running -= 1
        node.running = False
        node.machine = None
        node.stopped_at = now
        node.lives[-1] = (node.lives[-1][0], now)
        if self._trace is not None:
            self._trace(now, node.index, "stop", None)
        advertised = node.advertised
        if advertised is not None and advertised.promise is not None:
            self._log_promise(node, None, advertised.promise, stopped=True)
        node.advertised = None
        node.outstanding.clear()
        for conn in list(node.conns.values()):
            self._close(conn, "stop")
        for conn in list(node.incoming.values()):
            # Its probers learn from a reset, which arrives after whatever is in flight. The
            # process is gone: nothing more is served on this connection, even by a new one.
            conn.server_stopped = True
            arrival = self.network.reset_arrival(conn, now)
            if arrival != math.inf:
                self.clock.at(arrival, self._reset, conn)
        node.incoming.clear()
        self.membership.leave(node.index)
        self._check_finished()

    def _forget_past_life(self, node: _Node) -> None:
        """A restarted node is a new process: only its counters carry over."""
        node.wake_at = math.inf
        node.stopped_at = None
        node.lookup_outstanding = False
        node.outstanding.clear()
        node.discovered = ()
        node.decision = None
        node.decision_open = False
        node.decided_at = None
        node.joined_at = None
        node.discovered_at = None
        node.proposals.clear()
        # Its first connection to each peer is a first one again (invariant 6 per process).
        node.closed_how.clear()
        self.membership.restarted(node.index)

    # --- the machine ------------------------------------------------------------------------

    def _feed(self, node: _Node, event: Event) -> None:
        machine = node.machine
        if machine is None:
            return
        if self._trace is not None:
            self._trace(self.clock.now, node.index, "event", event)
        try:
            machine.handle(event, self.clock.now)
        except Exception as error:
            self._machine_failed(node, f"handle({event!r})", error)
            return
        self._drain(node, machine, False)

    def _wake(self, node: _Node, when: float, life: int) -> None:
        machine = node.machine
        if machine is None or node.wake_at != when or node.life != life:
            return  # stale: the node stopped, or an earlier wake-up replaced this one
        node.wake_at = math.inf
        try:
            machine.handle_timer(self.clock.now)
        except Exception as error:
            self._machine_failed(node, "handle_timer()", error)
            return
        self._drain(node, machine, True)

    def _drain(self, node: _Node, machine: BootstrapMachine, after_timer: bool) -> None:
        """Carry out every queued action, then re-arm the node's wake-up."""
        handlers = self._handlers
        trace = self._trace
        while True:
            try:
                action = machine.next_action()
            except Exception as error:
                self._machine_failed(node, "next_action()", error)
                return
            if action is None:
                break
            if trace is not None:
                trace(self.clock.now, node.index, "action", action)
            handlers[type(action)](node, action)
        try:
            deadline = machine.next_deadline()
        except Exception as error:
            self._machine_failed(node, "next_deadline()", error)
            return
        if machine.advertisement != node.advertised:
            # A promise given, a round opened or withdrawn, founding: the document changed.
            self._document_changed(node.index)
        now = self.clock.now
        if not (deadline > now or (deadline == now and not after_timer)):
            deadline = self._repair_deadline(node, deadline, now, after_timer)
        if deadline < node.wake_at:
            node.wake_at = deadline
            self.clock.at(deadline, self._wake, node, deadline, node.life)

    def _repair_deadline(
        self, node: _Node, deadline: float, now: float, after_timer: bool
    ) -> float:
        """Record a deadline that breaks invariant 3 and return one that keeps time moving."""
        if deadline == now:
            # handle_timer(now) left work due now undone: waking again at once would spin.
            self.violations.add(
                "deadline-stuck",
                f"node {node.index}: next_deadline() is still {deadline!r} after "
                f"handle_timer({now!r})",
            )
            return now + _GUARD_STEP
        if deadline != deadline:
            self.violations.add(
                "deadline-nan", f"node {node.index}: next_deadline() is NaN at {now!r}"
            )
            return now + _GUARD_STEP
        self.violations.add(
            "deadline-past",
            f"node {node.index}: next_deadline() {deadline!r} is in the past at {now!r}",
        )
        return now + _GUARD_STEP if after_timer else now

    def _machine_failed(self, node: _Node, call: str, error: Exception) -> None:
        self.violations.add(
            "machine-raised",
            f"node {node.index}: {call} at {self.clock.now!r} raised {error!r}",
        )
        # Stop driving it (the node keeps serving its document); a real driver would crash.
        node.machine = None
        for conn in list(node.conns.values()):
            self._close(conn, "stop")

    # --- actions ----------------------------------------------------------------------------

    def _on_lookup(self, node: _Node, action: Lookup) -> None:
        node.lookups += 1
        now = self.clock.now
        if node.lookup_outstanding:
            self.violations.add(
                "lookup-outstanding",
                f"node {node.index}: Lookup at {now!r} while one is outstanding",
            )
        node.lookup_outstanding = True
        scenario = self.scenario
        delay = scenario.lookup_latency.draw(self._discovery_rng)
        timeout = self.settings.discovery_timeout
        life = node.life
        if delay > timeout:
            self.clock.at(now + timeout, self._lookup_done, node, life, self._lookup_timed_out)
        elif (
            scenario.discovery_failure and self._discovery_rng.random() < scenario.discovery_failure
        ):
            self.clock.at(now + delay, self._lookup_done, node, life, self._lookup_failed)
        else:
            self.clock.at(now + delay, self._lookup_done, node, life, None)

    def _lookup_done(self, node: _Node, life: int, failure: DiscoveryFailed | None) -> None:
        if node.machine is None or node.life != life:
            return
        node.lookup_outstanding = False
        if failure is not None:
            self._feed(node, failure)
            return
        now = self.clock.now
        event: ContactPointsDiscovered = self.discovery.lookup(
            node.index, now, self._view_lags[node.index]
        )
        node.discovered = event.contact_points
        if node.discovered_at is None and any(
            cp != node.contact_point for cp in event.contact_points[:2]
        ):
            node.discovered_at = now
        self._feed(node, event)

    def _on_probe(self, node: _Node, action: Probe) -> None:
        node.probes += 1
        peer = self._index_of_contact_point.get(action.contact_point)
        if peer is None or peer == node.index:
            self.violations.add(
                "probe-unknown",
                f"node {node.index}: Probe({action.contact_point}) is not a peer",
            )
            return
        if peer in node.outstanding:
            self.violations.add(
                "probe-outstanding",
                f"node {node.index}: Probe({action.contact_point}) at {self.clock.now!r} while "
                "one is outstanding",
            )
        node.outstanding.add(peer)
        node.proposals[peer] = action.round
        node.requests += 1
        if self._watch:
            self._watch_probe(node, peer)
        else:
            self._poll_probe(node, peer)

    def _on_stop_probing(self, node: _Node, action: StopProbing) -> None:
        peer = self._index_of_contact_point.get(action.contact_point)
        if peer is None:
            return
        machine = node.machine
        if (
            machine is not None
            and machine.decision is None
            and machine.probes(action.contact_point)
        ):
            self.violations.add(
                "stop-probing",
                f"node {node.index}: StopProbing({action.contact_point}) at "
                f"{self.clock.now!r} without a decision while it still probes it",
            )
        node.outstanding.discard(peer)
        conn = node.conns.get(peer)
        if conn is not None:
            self._close(conn, "stop")

    def _record_decision(self, node: _Node, kind: DecisionKind) -> None:
        now = self.clock.now
        if node.decision_open:
            self.violations.add(
                "second-decision",
                f"node {node.index}: {kind} at {now!r} after {node.decision} at "
                f"{node.decided_at!r} without JoinFailed in between",
            )
        node.decision_open = True
        node.decision = kind
        node.decided_at = now
        node.decision_serial += 1

    def _on_join_self(self, node: _Node, action: JoinSelf) -> None:
        self._record_decision(node, "join-self")
        now = self.clock.now
        if self.formation_time is None:
            self.formation_time = now
        self._record_founder(node)
        delay = self.scenario.latency.draw(self._membership_rng)
        self.clock.at(
            now + delay, self._complete_join_self, node, node.decision_serial, len(self._founders)
        )

    def _record_founder(self, node: _Node) -> None:
        """Keep the facts this JoinSelf was taken on: the rule, the round, the view, the answers."""
        machine = node.machine
        assert machine is not None  # a decision was just drained from it
        now = self.clock.now
        status = machine.status
        advertised = machine.advertisement
        index_of = self._index_of_contact_point
        promisers: tuple[tuple[int, int], ...] = ()
        if advertised.round is not None:
            promise = Promise(node.contact_point, advertised.round)
            promisers = tuple(
                sorted(
                    (peer, life) for peer, (life, held) in self._promised.items() if held == promise
                )
            )
        partitioned: tuple[int, ...] = ()
        if self.scenario.partitions:
            separated = self.network.separated
            partitioned = tuple(
                peer.index
                for peer in self.nodes
                if peer is not node and separated(node.index, peer.index, now)
            )
        self._founders.append(
            {
                "node": node.index,
                "life": node.life,
                "decided_at": now,
                "formation": self.settings.formation,
                "round": advertised.round,
                "reason": status.reason,
                "discovered": tuple(
                    sorted(index_of[cp] for cp in node.discovered if cp in index_of)
                ),
                "fresh": tuple(
                    (index_of[entry.contact_point], entry.last_observed_at)
                    for entry in status.contact_points
                    if entry.fresh
                    and entry.last_observed_at is not None
                    and entry.contact_point != node.contact_point
                    and entry.contact_point in index_of
                ),
                "promisers": promisers,
                "partitioned_from": partitioned,
                "cluster_id": None,
            }
        )

    def _complete_join_self(self, node: _Node, serial: int, founder: int) -> None:
        if not node.running or serial != node.decision_serial:
            return
        cluster_id = self.membership.create(node.index, life=node.life)
        self._founders[founder - 1]["cluster_id"] = cluster_id
        self._joined(node)

    def _on_join_seed_nodes(self, node: _Node, action: JoinSeedNodes) -> None:
        self._record_decision(node, "join-seed-nodes")
        seeds = action.seed_nodes
        now = self.clock.now
        if node.name in seeds:
            self.violations.add(
                "join-self-node", f"node {node.index}: JoinSeedNodes{seeds} contains itself"
            )
        if len(seeds) > self.settings.max_seed_nodes:
            self.violations.add(
                "too-many-seeds",
                f"node {node.index}: JoinSeedNodes with {len(seeds)} seed nodes > "
                f"max_seed_nodes {self.settings.max_seed_nodes}",
            )
        if not seeds:
            self.violations.add(
                "no-seeds", f"node {node.index}: JoinSeedNodes() without seed nodes at {now!r}"
            )
        # The join handshake with a seed node: one round trip.
        rtt = self.scenario.latency.draw(self._membership_rng) + self.scenario.latency.draw(
            self._membership_rng
        )
        self.clock.at(now + rtt, self._complete_join, node, node.decision_serial, seeds, now)

    def _complete_join(
        self, node: _Node, serial: int, seeds: tuple[str, ...], decided_at: float
    ) -> None:
        if not node.running or serial != node.decision_serial:
            return
        now = self.clock.now
        for name in seeds:
            seed = self._index_of_name.get(name)
            if seed is None or seed == node.index:
                continue
            cluster_id = self.membership.cluster_of[seed]
            if (
                cluster_id is not None
                and self.nodes[seed].running
                and not self.network.separated(node.index, seed, now)
            ):
                self.membership.join(node.index, cluster_id)
                self._joined(node)
                return
        # Nobody answered the join: it fails as a real one would, after the timeout.
        fail_at = max(now, decided_at + self._probe_timeout)
        self.clock.at(fail_at, self._join_failed, node, serial)

    def _join_failed(self, node: _Node, serial: int) -> None:
        if not node.running or serial != node.decision_serial:
            return
        node.decision_open = False
        node.joins_failed += 1
        self._feed(node, JoinFailed("no seed node reachable"))

    def _joined(self, node: _Node) -> None:
        now = self.clock.now
        node.joined_at = now
        self.last_join_time = now
        if self._trace is not None:
            self._trace(now, node.index, "joined", self.membership.cluster_of[node.index])
        self._unjoined_running -= 1
        self._check_finished()

    def _document_changed(self, index: int) -> None:
        node = self.nodes[index]
        membership = self.membership
        machine = node.machine
        previous = node.advertised
        advertised = node.advertised = None if machine is None else machine.advertisement
        if advertised is not None:
            before = None if previous is None else previous.promise
            if advertised.promise != before:
                self._log_promise(node, advertised.promise, before)
        seed_nodes = membership.seed_nodes(index)
        node.document = ProbeSucceeded(
            node.contact_point,
            node.name,
            seed_nodes,
            membership.cluster_of[index],
            round=None if advertised is None else advertised.round,
            candidate=advertised is not None and advertised.candidate,
            promise=None if advertised is None else advertised.promise,
            # A founder says so until its membership lists seed nodes (DESIGN 8.5).
            founding=advertised is not None and advertised.founding and not seed_nodes,
        )
        if self._watch and node.running:
            for conn in list(node.incoming.values()):
                if conn.watched:
                    self._push(conn)

    def _served(self, node: _Node) -> ProbeSucceeded:
        """``node``'s document as served now: with what it waits for, if it is the would-be
        founder (DESIGN section 9), worded as of now (the drivers build it per request too)."""
        machine = node.machine
        waiting = None if machine is None else machine.founder_waiting
        if waiting is None:
            return node.document
        return attrs.evolve(node.document, waiting=waiting)

    def _log_promise(
        self, node: _Node, promise: Promise | None, before: Promise | None, *, stopped: bool = False
    ) -> None:
        if promise is not None:
            self._promised[node.index] = (node.life, promise)
        elif not stopped:
            self._promised.pop(node.index, None)  # released
        index_of = self._index_of_contact_point
        self._promise_log.append(
            PromiseRecord(
                time=self.clock.now,
                node=node.index,
                life=node.life,
                to=None if promise is None else index_of.get(promise.to),
                round=None if promise is None else promise.round,
                previous=None if before is None else index_of.get(before.to),
                previous_discovered=before is not None and before.to in node.discovered,
                stopped=stopped,
            )
        )

    # --- connections ------------------------------------------------------------------------

    def _step(self, conn: Connection, arrival: float, callback: Callable[..., None]) -> None:
        """Schedule the next step of ``conn``'s request, or its timeout if that comes first."""
        token = conn.request
        if arrival > conn.deadline:
            self.clock.at(conn.deadline, self._timeout, conn, token)
        else:
            self.clock.at(arrival, callback, conn, token)

    def _connect(self, node: _Node, peer: int) -> None:
        now = self.clock.now
        conn = Connection(node.index, peer, now)
        conn.request = next(self._tokens)
        conn.deadline = now + self._probe_timeout
        node.conns[peer] = conn
        if len(node.conns) > node.max_open:
            node.max_open = len(node.conns)
        self._step(conn, self.network.send_up(conn, now, SYN_RTO), self._syn_arrived)

    def _syn_arrived(self, conn: Connection, token: int) -> None:
        if not conn.open or conn.request != token:
            return
        now = self.clock.now
        server = self.nodes[conn.server]
        network = self.network
        if not server.running:
            # Nobody listens: an RST comes straight back.
            self._step(conn, now + network.latency(), self._refused)
            return
        conn.accepted = True
        server.incoming[conn.client] = conn
        self._count_open(self.nodes[conn.client], conn.server)
        established = network.send_down(conn, now, SYN_RTO)  # the SYN-ACK
        if established > conn.deadline:
            self._step(conn, established, self._request_arrived)
            return
        # The request (HTTP GET or websocket upgrade) leaves with the handshake's final ACK.
        arrival = network.send_up(conn, established)
        self._step(conn, arrival, self._upgrade_arrived if self._watch else self._request_arrived)

    def _count_open(self, node: _Node, peer: int) -> None:
        how = node.closed_how.get(peer)
        if how is None:
            node.opened_first += 1
            node.peers_connected += 1
        elif how == "failure":
            node.opened_after_failure += 1
        elif how == "expiry":
            node.opened_after_expiry += 1
        else:
            node.opened_after_stop += 1

    def _close(self, conn: Connection, how: str) -> None:
        """Close ``conn`` at both ends; ``how``: "failure", "stop" or "expiry"."""
        if not conn.open:
            return
        conn.open = False
        conn.request = None
        client = self.nodes[conn.client]
        if client.conns.get(conn.server) is conn:
            del client.conns[conn.server]
        if conn.accepted:
            client.closed_how[conn.server] = how
            server = self.nodes[conn.server]
            if server.incoming.get(conn.client) is conn:
                del server.incoming[conn.client]

    def _fail(self, conn: Connection, reason: str) -> None:
        client = self.nodes[conn.client]
        self._close(conn, "failure")
        client.outstanding.discard(conn.server)
        self._feed(client, ProbeFailed(self.nodes[conn.server].contact_point, reason))

    def _timeout(self, conn: Connection, token: int | None) -> None:
        if conn.open and token is not None and conn.request == token:
            self._fail(conn, f"timed out after {self._probe_timeout} s")

    def _refused(self, conn: Connection, token: int) -> None:
        if conn.open and conn.request == token:
            self.nodes[conn.client].refused += 1
            self._fail(conn, "connection refused")

    def _reset(self, conn: Connection) -> None:
        """The server stopped; the client learns it now."""
        if not conn.open:
            return
        if self._watch or conn.request is not None:
            self._fail(conn, "connection reset")
        else:
            # An idle keep-alive connection: the pool just drops it; nothing was asked.
            self._close(conn, "failure")

    # --- poll transport ---------------------------------------------------------------------

    def _poll_probe(self, node: _Node, peer: int) -> None:
        now = self.clock.now
        conn = node.conns.get(peer)
        expiry = self.scenario.keepalive_expiry
        if conn is not None and expiry is not None and now - conn.last_used > expiry:
            self._close(conn, "expiry")
            conn = None
        if conn is None:
            self._connect(node, peer)
            return
        conn.request = next(self._tokens)
        conn.deadline = now + self._probe_timeout
        self._step(conn, self.network.send_up(conn, now), self._request_arrived)

    def _request_arrived(self, conn: Connection, token: int) -> None:
        if not conn.open or conn.request != token:
            return
        server = self.nodes[conn.server]
        if not server.running or conn.server_stopped:
            # The reset scheduled when it stopped answers this request; if a partition ate
            # that reset, the request times out.
            self.clock.at(conn.deadline, self._timeout, conn, token)
            return
        self._feed(server, self._contacted_by(conn))
        document = self._served(server)
        arrival = self.network.send_down(conn, self.clock.now)
        if arrival > conn.deadline:
            self.clock.at(conn.deadline, self._timeout, conn, token)
        else:
            self.clock.at(arrival, self._response_arrived, conn, token, document)

    def _response_arrived(self, conn: Connection, token: int, document: ProbeSucceeded) -> None:
        if not conn.open or conn.request != token:
            return  # cancelled (StopProbing) or timed out: a late answer is never fed
        conn.request = None
        conn.deadline = math.inf
        conn.last_used = self.clock.now
        client = self.nodes[conn.client]
        client.outstanding.discard(conn.server)
        self._feed(client, document)

    # --- watch transport --------------------------------------------------------------------

    def _watch_probe(self, node: _Node, peer: int) -> None:
        conn = node.conns.get(peer)
        if conn is None:
            self._connect(node, peer)
            return
        now = self.clock.now
        conn.request = next(self._tokens)
        conn.deadline = now + self._probe_timeout
        self._step(conn, self.network.send_up(conn, now), self._watch_probe_arrived)

    def _upgrade_arrived(self, conn: Connection, token: int) -> None:
        if not conn.open or conn.request != token:
            return
        server = self.nodes[conn.server]
        if not server.running or conn.server_stopped:
            self.clock.at(conn.deadline, self._timeout, conn, token)
            return
        conn.watched = True
        self._feed(server, self._contacted_by(conn))
        if conn.open:
            self._push(conn)

    def _watch_probe_arrived(self, conn: Connection, token: int) -> None:
        if not conn.open:
            return
        server = self.nodes[conn.server]
        if not server.running or conn.server_stopped:
            self.clock.at(conn.deadline, self._timeout, conn, token)
            return
        self._feed(server, self._contacted_by(conn))
        if conn.open:
            self._push(conn)

    def _contacted_by(self, conn: Connection) -> ContactedBy:
        """What the server of ``conn`` learns from the request that just arrived."""
        client = self.nodes[conn.client]
        proposal = client.proposals.get(conn.server)
        if proposal is None:
            return client.contacted_by
        return ContactedBy(client.contact_point, proposal_round=proposal)

    def _push(self, conn: Connection) -> None:
        """The server sends its current document on the watch and re-arms its periodic push."""
        now = self.clock.now
        arrival = self.network.send_down(conn, now)
        if arrival != math.inf:
            self.clock.at(arrival, self._push_arrived, conn, self._served(self.nodes[conn.server]))
            due = conn.push_due = now + self._push_interval
            self.clock.at(due, self._push_timer, conn, due)
        # else the connection stalled: nothing more gets through, so stop pushing into it.
        if conn.request is not None and arrival > conn.deadline:
            self.clock.at(conn.deadline, self._timeout, conn, conn.request)

    def _push_timer(self, conn: Connection, due: float) -> None:
        if conn.open and conn.push_due == due and not conn.server_stopped:
            self._push(conn)

    def _push_arrived(self, conn: Connection, document: ProbeSucceeded) -> None:
        if not conn.open:
            return
        conn.watch_ready = True
        client = self.nodes[conn.client]
        client.pushes += 1
        if conn.request is not None:
            # Any document that arrives after a probe was sent answers it.
            conn.request = None
            conn.deadline = math.inf
            client.outstanding.discard(conn.server)
        self._feed(client, document)

    # --- report -----------------------------------------------------------------------------

    def report(self, *, end_reason: str, wall_seconds: float) -> SimulationReport:
        """Build the report and run the end-of-run checks.

        Violations found as the run went: a ``Lookup`` or ``Probe`` while one is outstanding;
        a second decision without ``JoinFailed``; ``JoinSeedNodes`` naming this node, more than
        ``max_seed_nodes`` or none; ``StopProbing`` of a contact point the machine still probes
        before a decision; ``next_deadline()`` NaN, in the past, or not past ``now`` after
        ``handle_timer(now)``; an exception out of the machine. Checked here: more than one
        cluster; a running node not joined (unless ``expect_formation`` is off); connections
        opened beyond peers + reconnects after failures or ``StopProbing`` (invariant 6);
        the event cap reached.
        """
        violations = self.violations
        membership = self.membership
        created = membership.created
        coexisting = tuple(
            (earlier, later) for later in created for earlier in membership.coexisting[later]
        )
        if coexisting:
            # Clusters formed one after another (the first gone before the next: a full
            # restart) are no split; two that had running members at once are.
            together = sorted(
                {cluster for pair in coexisting for cluster in pair}, key=created.index
            )
            violations.add(
                "clusters",
                f"{len(together)} clusters formed: {', '.join(together)} (expected exactly one)",
            )
        if end_reason == "max-events":
            violations.add(
                "max-events",
                f"the run hit max_events ({self.scenario.max_events}) at {self.clock.now!r}",
            )
        nodes = []
        for node in self.nodes:
            if node.running and node.joined_at is None and self.scenario.expect_formation:
                started = "not started" if node.machine is None else "not joined"
                violations.add(
                    "not-joined",
                    f"node {node.index} {started} by the end ({self.clock.now:.3f} s): "
                    f"{self._reason(node)}",
                )
            allowed = node.peers_connected + node.opened_after_failure + node.opened_after_stop
            opened = allowed + node.opened_after_expiry
            if opened > allowed:
                violations.add(
                    "connections",
                    f"node {node.index} opened {opened} connections to "
                    f"{node.peers_connected} peers with {node.opened_after_failure} reconnects "
                    f"after failures and {node.opened_after_stop} after StopProbing "
                    "(invariant 6)",
                )
            nodes.append(self._node_report(node, opened))
        return SimulationReport(
            nodes=tuple(nodes),
            transport=self.scenario.transport,
            seed=self.scenario.seed,
            probe_interval=self.settings.probe_interval,
            clusters_formed=len(created),
            cluster_ids=tuple(created),
            formation_time=self.formation_time,
            all_joined_time=self.last_join_time if end_reason == "all-joined" else None,
            end_reason=end_reason,
            simulated_seconds=self.clock.now,
            events_processed=self.clock.events_processed,
            messages=self.network.messages,
            violations=violations.lines(),
            violation_counts=violations.counts(),
            wall_seconds=wall_seconds,
            coexisting=coexisting,
            founders=tuple(FounderReport(**founder) for founder in self._founders),
            promises=tuple(self._promise_log),
        )

    def _reason(self, node: _Node) -> str:
        if not node.running and node.stopped_at is None:
            return "not started"
        if node.joined_at is not None:
            return f"joined {self.membership.cluster_of[node.index] or '(cluster stopped)'}"
        if node.machine is None:
            return "stopped" if not node.running else "machine failed"
        # The reason alone (the status is O(contact points)), for the nodes that matter.
        return node.machine.reason

    def _node_report(self, node: _Node, opened: int) -> NodeReport:
        return NodeReport(
            index=node.index,
            contact_point=str(node.contact_point),
            self_node=node.name,
            started_at=node.started_at,
            stopped_at=node.stopped_at,
            decision=node.decision,
            decided_at=node.decided_at,
            joined_at=node.joined_at,
            cluster_id=self.membership.cluster_of[node.index],
            discovered_at=node.discovered_at,
            probes_sent=node.probes,
            requests_sent=node.requests,
            pushes_received=node.pushes,
            lookups=node.lookups,
            joins_failed=node.joins_failed,
            connections_opened=opened,
            connections_first=node.opened_first,
            reconnects_after_failure=node.opened_after_failure,
            reconnects_after_stop=node.opened_after_stop,
            reconnects_after_expiry=node.opened_after_expiry,
            connections_refused=node.refused,
            peers_connected=node.peers_connected,
            max_open_connections=node.max_open,
            reason=self._reason(node),
            lives=tuple(node.lives),
        )


def run_simulation(scenario: Scenario, *, trace: Trace | None = None) -> SimulationReport:
    """Run ``scenario`` to the end and return its report (deterministic but for wall time)."""
    return Simulation(scenario, trace=trace).run()
