"""An emulation of the anchor (Akka Management's Cluster Bootstrap), built on this project's API.

The churn benchmark runs it beside our own node in the same run, on the same machine, with the
same HTTP stack, so the difference it measures is the anchor's *behaviour*, not a different
runtime. It uses only the library's public parts (the core's :class:`BootstrapMachine`, the
:class:`Prober` with an injected ``http_transport``, the :class:`ManagementApp` and
:func:`serve_management`); this module is the anchor's driver. What the emulation reproduces,
and what it does not, is listed in ``docs/benchmarks.md``; the rules:

* **A new TCP connection for every probe** (:class:`ConnectionPerProbe`): the prober's HTTP
  transport keeps no idle connection and asks for ``Connection: close``, so every probe
  connects anew and every connection ends in TIME_WAIT for the kernel's 60 s, at whichever end
  closed first (on loopback the prober, which closes as soon as it has read the answer).
* **The anchor's probe pace** (:class:`AnchorPace`): a contact point is probed at once when
  discovered, then ``interval x (1 + U(0, 0.2))`` after each answer *or failure* (the anchor
  has no backoff). The machine asks for probes at least that often (:func:`anchor_settings`);
  the driver holds each request until the anchor's time.
* **The anchor's freshness rule**, fixed rather than derived from the probe interval: an answer
  counts for 3 s (the JVM's ``probing-failure-timeout``) or ``interval + 3 s`` (the .NET
  port's fix). The machine's window is derived (``probe_interval x (1 + probe_jitter) +
  probe_timeout``), so :func:`anchor_settings` picks the probe settings that make it come out
  at exactly the anchor's window; the pace above, not those settings, decides when probes go
  out. Every answer therefore counts from the instant it arrived for exactly the anchor's
  window, as in the anchor.
* **No reaction to being probed**: our node re-probes at once a peer it was backing off from
  when that peer reaches it (``ContactedBy``); the anchor has no such signal, so this driver
  feeds the machine no ``ContactedBy`` (the app's ``on_contacted`` does nothing).
* Everything else (discovery, stable margin, lowest-address rule, joining) is this project's
  machine, so the decision rules are the same on both sides of the comparison.
"""

from __future__ import annotations

import functools
import logging
import math
import random
from collections.abc import Callable
from typing import Any

import httpx
import trio

from bootstrap.core import (
    BootstrapMachine,
    ContactPoint,
    ContactPointsDiscovered,
    Decision,
    DiscoveryFailed,
    Event,
    JoinFailed,
    JoinSelf,
    Lookup,
    Probe,
    ProbeFailed,
    ProbeSucceeded,
    SeedNodesDocument,
    Settings,
    StopProbing,
)
from bootstrap.discovery import Discovery, DiscoveryError
from bootstrap.membership import Membership, advertised_seed_nodes
from bootstrap.node import NodeStatistics, status_to_json
from bootstrap.prober import Prober
from bootstrap.server import ManagementApp, serve_management

__all__ = [
    "FRESHNESS_RULES",
    "AnchorNode",
    "AnchorPace",
    "ConnectionPerProbe",
    "anchor_settings",
]

logger = logging.getLogger("benchmarks.anchor")

#: How long the anchor counts an answer as fresh, by probe interval.
FRESHNESS_RULES: dict[str, Callable[[float], float]] = {
    "jvm": lambda interval: 3.0,
    "dotnet": lambda interval: interval + 3.0,
}

#: The anchor adds 0..20 % to every probe delay.
ANCHOR_JITTER = 0.2


def anchor_settings(*, probe_interval: float, freshness_rule: str, **common: Any) -> Settings:
    """Settings under which our machine judges freshness by the anchor's fixed window.

    ``observation_ttl`` is ``probe_interval x (1 + probe_jitter) + probe_timeout``: with no
    jitter, a probe interval ``asking`` and a probe timeout ``window - asking`` it is exactly
    the anchor's ``window``. ``asking`` is at most the anchor's shortest delay (``interval``),
    so the machine never asks for a probe later than the anchor would send it, and
    :class:`AnchorPace` decides the real pace; the backoff is capped at the same ``asking``, so
    failures change nothing either (the anchor has no backoff). Half the window at most, so the
    probe timeout is at least half the window too (1.5 s): far above a probe's round trip on a
    LAN, so no answer is lost to it.
    """
    window = FRESHNESS_RULES[freshness_rule](probe_interval)
    asking = min(probe_interval, window / 2)
    return Settings(
        probe_interval=asking,
        probe_jitter=0.0,
        probe_backoff_max=asking,
        probe_timeout=window - asking,
        # The anchor forms by the lowest-address rule: it knows no founding round.
        formation="lowest-address",
        # And every node probes every contact point (the full mesh; DESIGN section 9).
        probe_fanout=None,
        **common,
    )


class AnchorPace:
    """When the anchor probes each contact point: at once at first, then ``interval x (1 +
    U(0, 0.2))`` after each result, answer or failure alike.

    The machine asks (:meth:`ask`) at least as often; a request that comes before the anchor's
    time is held, and :meth:`release` hands it out once due. At most one request per contact
    point is held (the machine has at most one probe outstanding per contact point).
    """

    def __init__(self, interval: float, rng: random.Random) -> None:
        self._interval = interval
        self._rng = rng
        self._earliest: dict[ContactPoint, float] = {}  # the anchor's next probe, per peer
        self._held: dict[ContactPoint, tuple[float, int | None]] = {}  # due, round

    def result(self, contact_point: ContactPoint, now: float) -> None:
        """A probe of ``contact_point`` answered or failed at ``now``."""
        delay = self._interval * (1 + self._rng.uniform(0, ANCHOR_JITTER))
        self._earliest[contact_point] = now + delay

    def ask(self, contact_point: ContactPoint, round: int | None, now: float) -> bool:
        """The machine asks for a probe: True if it goes out now, False if it is held."""
        due = self._earliest.get(contact_point, -math.inf)
        if due <= now:
            return True
        self._held[contact_point] = (due, round)
        return False

    def cancel(self, contact_point: ContactPoint) -> None:
        """The machine stopped probing ``contact_point``: drop its held request, forget it."""
        self._held.pop(contact_point, None)
        self._earliest.pop(contact_point, None)

    def next_due(self) -> float:
        """When the first held request falls due (``inf`` if none is held)."""
        return min((due for due, _ in self._held.values()), default=math.inf)

    def release(self, now: float) -> list[tuple[ContactPoint, int | None]]:
        """The held requests due by ``now`` (no longer held): send them."""
        due_now = [(cp, round) for cp, (due, round) in self._held.items() if due <= now]
        for contact_point, _ in due_now:
            del self._held[contact_point]
        return due_now


class ConnectionPerProbe(httpx.AsyncBaseTransport):
    """Every request over a new TCP connection, closed once it is answered.

    Given to the :class:`Prober` as its ``http_transport``. The prober still counts each TCP
    connect (httpcore reports it to the request's ``trace`` extension, which passes through).
    Outgoing connections leave from ``local_address``, as our prober's own do.
    """

    def __init__(self, *, local_address: str | None) -> None:
        self._transport = httpx.AsyncHTTPTransport(
            trust_env=False,
            local_address=local_address,
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.headers["Connection"] = "close"
        return await self._transport.handle_async_request(request)

    async def aclose(self) -> None:
        await self._transport.aclose()


class AnchorNode:
    """The anchor's node: our machine, paced and fed the anchor's way (see the module's rules).

    The same surface as :class:`bootstrap.node.Node` where the benchmark reads it: ``run``,
    ``decision``, ``wait_decided``, ``wait_joined``, ``statistics()`` and ``app``. It stops only
    by being cancelled.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        probe_interval: float,
        contact_point: ContactPoint,
        self_node: str,
        discovery: Discovery,
        membership: Membership,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.contact_point = contact_point
        self.self_node = self_node
        self._discovery = discovery
        self._membership = membership
        rng = rng if rng is not None else random.Random()
        self.machine = BootstrapMachine(
            settings, self_contact_point=contact_point, self_node=self_node, rng=rng
        )
        self._pace = AnchorPace(probe_interval, rng)
        self._events_in, self._events_out = trio.open_memory_channel[Event](math.inf)
        local_address = contact_point.host if contact_point.is_ip else None
        self.prober = Prober(
            settings=settings,
            self_contact_point=contact_point,
            service_name=None,
            transport="poll",
            report=self._events_in.send_nowait,
            http_transport=ConnectionPerProbe(local_address=local_address),
        )
        self.app = ManagementApp(
            settings=settings,
            self_contact_point=contact_point,
            service_name=None,
            document=self.document,
            status=self.status_json,
            ready=lambda: self.joined,
            # Being probed tells the anchor nothing (see the module's rules).
            on_contacted=lambda peer: None,
        )
        self.joined = False
        self._decided = trio.Event()
        self._joined_event = trio.Event()
        self._lookups = 0
        self._decided_at: float | None = None
        self._joined_at: float | None = None

    @property
    def decision(self) -> Decision | None:
        return self.machine.decision

    async def wait_decided(self) -> Decision:
        await self._decided.wait()
        decision = self.machine.decision
        assert decision is not None  # set together with the event
        return decision

    async def wait_joined(self) -> None:
        await self._joined_event.wait()

    def statistics(self) -> NodeStatistics:
        return NodeStatistics(
            lookups=self._lookups,
            decided_at=self._decided_at,
            joined_at=self._joined_at,
            prober=self.prober.statistics(),
        )

    def document(self) -> SeedNodesDocument:
        """The membership's seed nodes, and nothing of a founding round (the anchor has none)."""
        seeds = advertised_seed_nodes(
            self._membership.members(),
            self_node=self.self_node,
            max_seed_nodes=self.settings.max_seed_nodes,
        )
        return SeedNodesDocument(self.self_node, seeds)

    def status_json(self) -> dict[str, object]:
        extra: dict[str, object] = {"selfContactPoint": str(self.contact_point)}
        return status_to_json(self.machine.status, now=trio.current_time(), extra=extra)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve, probe and decide until cancelled."""
        async with trio.open_nursery() as nursery:
            serve = functools.partial(
                serve_management, self.app, bind=self.contact_point, settings=self.settings
            )
            await nursery.start(serve)
            await nursery.start(self.prober.run)
            self.machine.start(trio.current_time())
            task_status.started()
            await self._drive(nursery)

    async def _drive(self, nursery: trio.Nursery) -> None:
        machine, pace = self.machine, self._pace
        while True:
            self._carry_out_actions(nursery)
            machine_deadline = machine.next_deadline()
            probe_due = pace.next_due()
            with trio.move_on_at(min(machine_deadline, probe_due)):
                item = await self._events_out.receive()
                now = trio.current_time()
                if isinstance(item, ProbeSucceeded | ProbeFailed):
                    pace.result(item.contact_point, now)
                machine.handle(item, now)
                continue
            now = trio.current_time()
            if machine_deadline <= probe_due:
                machine.handle_timer(max(machine_deadline, now))
            else:
                for contact_point, round in pace.release(max(probe_due, now)):
                    self.prober.probe(contact_point, round=round)

    def _carry_out_actions(self, nursery: trio.Nursery) -> None:
        while (action := self.machine.next_action()) is not None:
            if isinstance(action, Probe):
                if self._pace.ask(action.contact_point, action.round, trio.current_time()):
                    self.prober.probe(action.contact_point, round=action.round)
            elif isinstance(action, StopProbing):
                self._pace.cancel(action.contact_point)
                self.prober.stop(action.contact_point)
            elif isinstance(action, Lookup):
                self._lookups += 1
                nursery.start_soon(self._lookup)
            else:
                self._decided_at = trio.current_time()
                self._decided.set()
                nursery.start_soon(self._join, action)

    async def _lookup(self) -> None:
        timeout = self.settings.discovery_timeout
        event: Event = DiscoveryFailed(f"lookup timed out after {timeout} s")
        with trio.move_on_after(timeout):
            try:
                event = ContactPointsDiscovered(await self._discovery.lookup())
            except DiscoveryError as error:
                event = DiscoveryFailed(str(error))
        self._events_in.send_nowait(event)

    async def _join(self, decision: Decision) -> None:
        try:
            if isinstance(decision, JoinSelf):
                await self._membership.join_self()
            else:
                await self._membership.join(decision.seed_nodes)
        except Exception as error:
            logger.warning("%s: join failed: %r", self.contact_point, error)
            self._decided = trio.Event()  # a new decision will follow
            self._events_in.send_nowait(JoinFailed(f"{type(error).__name__}: {error}"))
            return
        self.joined = True
        self._joined_at = trio.current_time()
        self._joined_event.set()
        self.app.notify_changed()
