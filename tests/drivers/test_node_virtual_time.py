"""The node's driver loop under virtual time: exact decision times, with peers in memory.

Testing policy (as trio's own tests of ``open_tcp_stream``, STYLE.md):

* Every test runs under ``trio.testing.MockClock(autojump_threshold=0)`` within an absolute
  ``trio.fail_after`` (:func:`tests.helpers.running.run`). The clock moves only when every task
  is blocked, so "decided at start + 2.0" is the stable-margin deadline itself, not "about two
  seconds later": a driver that woke late, polled, or waited one loop too many would show.
* Assertions compare mappings (who was asked what, per peer), never the order in which peers
  were probed: trio randomises scheduling.

The node under test is a real :class:`bootstrap.node.Node` (the machine, the driver loop, the
prober and the management server); only its peers are fakes. A poll reaches an
``httpx.MockTransport`` whose async handler answers as each peer would; a watch reaches
:class:`tests.helpers.watch_peer.InMemoryWatchPeers`. The node's own server listens on
127.0.0.1, and nothing connects to it.

The peers are handed to :func:`bootstrap.node.open_node` through its public seam:
``http_transport=`` and ``connect_websocket=``, passed on to :class:`~bootstrap.prober.Prober`.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import attrs
import httpx
import pytest
import trio
import trio_websocket

from bootstrap import (
    ContactPoint,
    JoinSelf,
    Promise,
    SeedNodesDocument,
    Settings,
)
from bootstrap.core.settings import Formation
from bootstrap.core.wire import (
    ALIVE_PATH,
    CONTACT_POINT_HEADER,
    PROBE_MESSAGE,
    PROPOSE_MESSAGE,
    ROUND_HEADER,
    encode_seed_nodes,
    parse_round,
)
from bootstrap.discovery import Discovery, StaticDiscovery
from bootstrap.metrics import exposition
from bootstrap.node import STOP_TIMEOUT, STOPPED_WITHIN, Node, open_node
from bootstrap.prober import WATCH_CLOSE_TIMEOUT, Transport
from bootstrap.server import (
    CLOSE_ON_SHUTDOWN_TIMEOUT,
    GRACEFUL_SHUTDOWN_TIMEOUT,
    SHUTDOWN_TIMEOUT,
    management_server_config,
)
from tests.helpers.ports import free_port
from tests.helpers.running import autojump_clock, run
from tests.helpers.watch_peer import InMemoryWatchPeers

PORT = free_port()
SELF = ContactPoint("127.0.0.1", PORT)  # the lowest: the one that forms
PEERS = (ContactPoint("127.0.0.2", PORT), ContactPoint("127.0.0.3", PORT))
# Every delay is exact: no jitter. Probes every 0.6 s fall between the lookups (every 1.0 s) and
# away from the decision, so no count below depends on which of two simultaneous deadlines the
# driver served first.
SETTINGS = Settings(
    stable_margin=2.0,
    probe_interval=0.6,
    probe_jitter=0.0,
    discovery_jitter=0.0,
    formation="lowest-address",
)
VIRTUAL_TIMEOUT = 60.0


class DelayedDiscovery:
    """A static list that takes ``seconds`` of (virtual) time to look up."""

    def __init__(self, contact_points: list[ContactPoint], seconds: float) -> None:
        self._static = StaticDiscovery(contact_points)
        self._seconds = seconds

    async def lookup(self) -> list[ContactPoint]:
        await trio.sleep(self._seconds)
        return await self._static.lookup()


class Peers:
    """The peers' side: what each answers, and every probe it got.

    A peer forming by the lowest-address rule answers an empty document without a round (as an
    Akka node would); one that speaks the founding round answers ``round: 0`` and, to a probe
    that asks for a promise for round ``r``, a promise to the prober for ``r``.
    """

    def __init__(self, *, founding_round: bool) -> None:
        self.founding_round = founding_round
        #: (peer, how the prober named itself, the round it proposed or None), one per probe.
        self.probes: list[tuple[ContactPoint, str | None, int | None]] = []

    def answer(self, peer: ContactPoint, prober: str | None, proposed: int | None) -> bytes:
        self.probes.append((peer, prober, proposed))
        if not self.founding_round:
            return encode_seed_nodes(SeedNodesDocument(f"http://{peer}", ()))
        promise = None
        if proposed is not None and prober is not None:
            promise = Promise(ContactPoint.parse(prober), proposed)
        return encode_seed_nodes(SeedNodesDocument(f"http://{peer}", (), round=0, promise=promise))

    def probes_per_peer(self) -> dict[ContactPoint, int]:
        return dict(Counter(peer for peer, _, _ in self.probes))

    def proposals_per_peer(self) -> dict[ContactPoint, list[int]]:
        proposals: dict[ContactPoint, list[int]] = {}
        for peer, _, proposed in self.probes:
            if proposed is not None:
                proposals.setdefault(peer, []).append(proposed)
        return proposals

    def probers_seen(self) -> set[str | None]:
        return {prober for _, prober, _ in self.probes}

    async def handle(self, request: httpx.Request) -> httpx.Response:
        """The ``httpx.MockTransport`` handler: one poll of one peer."""
        assert request.url.path == "/bootstrap/seed-nodes", request.url
        peer = ContactPoint(request.url.host, request.url.port)
        round_header = request.headers.get(ROUND_HEADER)
        proposed = None if round_header is None else parse_round(round_header)
        body = self.answer(peer, request.headers.get(CONTACT_POINT_HEADER), proposed)
        return httpx.Response(200, content=body, headers={"content-type": "application/json"})


class WatchedPeers(InMemoryWatchPeers):
    """The same peers behind watches: a document on accepting, and one per probe message."""

    def __init__(self, nursery: trio.Nursery, peers: Peers) -> None:
        super().__init__(nursery)
        self.peers = peers

    async def serve(
        self, contact_point: ContactPoint, request: trio_websocket.WebSocketRequest
    ) -> None:
        headers = {name.decode().lower(): value.decode() for name, value in request.headers}
        prober = headers.get(CONTACT_POINT_HEADER.lower())
        round_header = headers.get(ROUND_HEADER.lower())
        proposed = None if round_header is None else parse_round(round_header)
        connection = await request.accept()
        try:
            await connection.send_message(self.peers.answer(contact_point, prober, proposed))
            while True:
                message = await connection.get_message()
                assert isinstance(message, str), message
                word, _, argument = message.partition(" ")
                if word == PROBE_MESSAGE:
                    proposed = None
                else:
                    assert word == PROPOSE_MESSAGE, message
                    proposed = parse_round(argument)
                await connection.send_message(self.peers.answer(contact_point, prober, proposed))
        except trio_websocket.ConnectionClosed:
            pass


@asynccontextmanager
async def open_in_memory_node(
    *,
    settings: Settings,
    discovery: Discovery,
    transport: Transport,
    peers: Peers,
) -> AsyncIterator[Node]:
    """A running node at :data:`SELF` whose peers are ``peers``, stopped gracefully on exit."""
    async with trio.open_nursery() as nursery:
        async with open_node(
            settings=settings,
            contact_point=SELF,
            discovery=discovery,
            transport=transport,
            rng=random.Random(0),
            http_transport=httpx.MockTransport(peers.handle),
            connect_websocket=WatchedPeers(nursery, peers).connect,
        ) as node:
            yield node
        # The graceful stop lets the node return; the watch servers' tasks are ours to end.
        nursery.cancel_scope.cancel()


def fresh_answers(node: Node) -> Mapping[ContactPoint, bool]:
    return {point.contact_point: point.fresh for point in node.status.contact_points}


@pytest.mark.parametrize("transport", ["poll", "watch"])
@pytest.mark.parametrize("lookup_seconds", [0.0, 0.5])
@pytest.mark.parametrize("formation", ["lowest-address", "promise"])
def test_the_lowest_node_forms_exactly_one_stable_margin_after_the_first_lookup(
    formation: Formation, transport: Transport, lookup_seconds: float
) -> None:
    """The lowest node decides JoinSelf at exactly start + first lookup + stable_margin, having
    probed each peer every probe_interval from the lookup on. By the lowest-address rule that
    is all; with formation="promise" it opens its first round at that instant and proposes it to
    each peer once, and the peers promise at once, so the round costs no time."""
    promise = formation == "promise"
    peers = Peers(founding_round=promise)
    discovery = DelayedDiscovery([SELF, *PEERS], lookup_seconds)
    settings = attrs.evolve(SETTINGS, formation=formation)

    async def test() -> None:
        start = trio.current_time()
        async with open_in_memory_node(
            settings=settings, discovery=discovery, transport=transport, peers=peers
        ) as node:
            assert await node.wait_decided() == JoinSelf()
            decided_at = trio.current_time()
            assert node.statistics().decided_at == decided_at
            assert decided_at - start == lookup_seconds + settings.stable_margin
            # Its first round: one past where this process's counter started (the clock).
            first = node.machine.round_counts.first_round + 1
            assert peers.proposals_per_peer() == (
                {peer: [first] for peer in PEERS} if promise else {}
            )
            # Probes at lookup + 0, 0.6, 1.2 and 1.8 before the decision at lookup + 2.0, and
            # the proposal at lookup + 2.0.
            assert peers.probes_per_peer() == dict.fromkeys(PEERS, 5 if promise else 4)
            assert fresh_answers(node) == dict.fromkeys([SELF, *PEERS], True)
            assert node.document().round == (first if promise else None)
            await node.wait_joined()
            assert node.statistics().joined_at == decided_at  # LocalMembership joins at once
        assert peers.probers_seen() == {str(SELF)}

    run(test, seconds=VIRTUAL_TIMEOUT, clock=autojump_clock())


@pytest.mark.parametrize(
    ("required", "expected", "warned"),
    [(2, 4, True), (1, 2, True), (3, 4, False), (2, 3, False), (2, None, False)],
)
def test_a_node_warns_at_start_when_required_is_no_majority_of_expected(
    caplog: pytest.LogCaptureFixture, required: int, expected: int | None, warned: bool
) -> None:
    """With expected_contact_points set and required_contact_points at most half of it, the
    node says at start that S1 does not hold and which value restores it; otherwise nothing."""
    settings = attrs.evolve(
        SETTINGS, required_contact_points=required, expected_contact_points=expected
    )

    async def test() -> None:
        async with open_in_memory_node(
            settings=settings,
            discovery=StaticDiscovery([SELF, *PEERS]),
            transport="poll",
            peers=Peers(founding_round=False),
        ):
            pass

    with caplog.at_level(logging.WARNING, logger="bootstrap.node"):
        run(test, seconds=VIRTUAL_TIMEOUT, clock=autojump_clock())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if not warned:
        assert warnings == []
        return
    assert expected is not None
    assert warnings == [
        f"{SELF}: required_contact_points={required} is not a majority of "
        f"expected_contact_points={expected}: guarantee S1 (at most one cluster whatever "
        "discovery returns to each node) does not hold; set required_contact_points to at "
        f"least {expected // 2 + 1}"
    ]


def test_past_the_formation_deadline_a_node_logs_once_and_is_not_alive(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A node that cannot form (it requires more contact points than there are) logs one ERROR
    at the deadline, however long it then waits; /alive turns 503 and the status says why."""
    settings = attrs.evolve(
        SETTINGS, required_contact_points=len(PEERS) + 2, formation_deadline=8.0
    )

    async def alive(node: Node) -> int:
        transport = httpx.ASGITransport(app=node.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            return (await client.get(ALIVE_PATH)).status_code

    async def test() -> None:
        start = trio.current_time()
        async with open_in_memory_node(
            settings=settings,
            discovery=StaticDiscovery([SELF, *PEERS]),
            transport="watch",
            peers=Peers(founding_round=True),
        ) as node:
            await trio.sleep_until(start + 7.9)
            assert (await alive(node), node.status_json()["formationOverdue"]) == (200, False)
            await trio.sleep_until(start + 8.0)
            await trio.sleep(0.001)  # the driver's turn: it woke at the deadline
            assert node.machine.formation_overdue
            assert [
                r.levelno for r in caplog.records if "formation deadline" in r.getMessage()
            ] == [logging.ERROR]
            await trio.sleep(30.0)
            assert await alive(node) == 503
            status = node.status_json()
            assert status["formationOverdue"] is True
            assert str(status["reason"]).startswith("no decision within the formation deadline")
            scraped = exposition(node.metrics_registry)[0]
            assert b"\ncluster_bootstrap_formation_overdue 1.0\n" in scraped

    with caplog.at_level(logging.INFO, logger="bootstrap.node"):
        run(test, seconds=VIRTUAL_TIMEOUT, clock=autojump_clock())
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{SELF}: no decision within the formation deadline (8 s): ")
    assert errors[0].endswith("; /alive now answers 503 until a decision is made")


def test_the_stop_timeouts_nest() -> None:
    """Each bound of the stop-timeout chain outlasts the one inside it, as node.py states."""
    assert CLOSE_ON_SHUTDOWN_TIMEOUT < GRACEFUL_SHUTDOWN_TIMEOUT < SHUTDOWN_TIMEOUT
    # hypercorn cancels after the graceful timeout; each cancelled watch then says 1001.
    assert SHUTDOWN_TIMEOUT >= GRACEFUL_SHUTDOWN_TIMEOUT + CLOSE_ON_SHUTDOWN_TIMEOUT
    # The node waits out the server's whole shutdown, so the server finishes on its own.
    assert STOP_TIMEOUT >= SHUTDOWN_TIMEOUT
    # After STOP_TIMEOUT the prober's watches still close, shielded, each within its bound.
    assert STOPPED_WITHIN >= STOP_TIMEOUT + WATCH_CLOSE_TIMEOUT
    config = management_server_config(bind=SELF, settings=SETTINGS)
    assert config.graceful_timeout == GRACEFUL_SHUTDOWN_TIMEOUT
