"""Tests of the founding round in the drivers (DESIGN section 8): the proposal on the wire.

What is shown: a probe that carries a round sends it (the ``Bootstrap-Round`` header on a poll
and on the handshake that opens a watch, ``propose <r>`` on an open watch), and the answer's
founding fields reach ``ProbeSucceeded``; the server hands a proposal to the node before it
builds the answer, so the answer shows the promise, and ignores a bad round or a proposal from
nobody; the node feeds the proposal to its machine at once, serves the machine's advertisement
and pushes it to watchers when it changes; and real nodes on loopback form one cluster by
promises, or by the lowest-address rule when told to.

Testing policy (as ``test_prober.py`` and ``test_server.py``):

* Every test runs under an absolute ``trio.fail_after``, so a hang fails instead of blocking.
* In-memory tests run under ``MockClock(autojump_threshold=0)`` and assert exact virtual times:
  ``httpx.MockTransport`` (or ``httpx.ASGITransport`` onto the real app) for polls, a fake
  watch connection for the prober's watches, and ASGI messages over trio channels for the
  server's watch endpoint.
* Node tests use real sockets on 127.0.0.x with the real clock; their assertions are about
  outcomes, and the one timing bound (a watcher learns of a promise at once, not at the next
  periodic push 8 s later) has a margin of seconds.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import attrs
import httpx
import pytest
import trio
import trio.testing
import trio_websocket

from bootstrap import (
    ContactedBy,
    ContactPoint,
    Event,
    JoinSeedNodes,
    JoinSelf,
    ProbeSucceeded,
    Promise,
    SeedNodesDocument,
    Settings,
    UsageError,
)
from bootstrap.core.wire import MAX_ROUND, decode_seed_nodes, encode_seed_nodes
from bootstrap.discovery import StaticDiscovery
from bootstrap.membership import LocalMembership
from bootstrap.node import Node, open_node
from bootstrap.prober import Prober
from bootstrap.server import ManagementApp, Message
from tests.e2e.loopback import loopback_points
from tests.helpers.ports import free_port

SELF = ContactPoint("10.0.0.1", 8558)
PEER = ContactPoint("10.0.0.2", 8558)
SETTINGS = Settings(probe_interval=2.0, probe_jitter=0.5)  # watch_push_interval = 1.0
PUSH = SETTINGS.watch_push_interval
PEER_DOC = SeedNodesDocument("http://10.0.0.2:8558", (), service_name="svc", round=2)
PEER_DOC_BYTES = encode_seed_nodes(PEER_DOC)

AsyncTest = Callable[[], Awaitable[None]]


def run(test: AsyncTest, *, fake_clock: bool = True, seconds: float = 10.0) -> None:
    """Run ``test`` under trio with an absolute deadline (virtual time under the fake clock)."""

    async def main() -> None:
        with trio.fail_after(seconds):
            await test()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0) if fake_clock else None)


# --- the prober: the round goes out ------------------------------------------------------------


class Reports:
    """The prober's ``report`` callback: every event, with the virtual time it arrived."""

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[tuple[float, Event]](math.inf)

    def __call__(self, event: Event) -> None:
        self._send.send_nowait((trio.current_time(), event))

    async def next(self) -> tuple[float, Event]:
        return await self._receive.receive()


@asynccontextmanager
async def open_prober(
    *,
    transport: str = "poll",
    http_transport: httpx.AsyncBaseTransport | None = None,
    connect_websocket: Any = None,
) -> AsyncIterator[tuple[Prober, Reports]]:
    """A running prober on in-memory transports, and what it reports."""
    reports = Reports()
    prober = Prober(
        settings=SETTINGS,
        self_contact_point=SELF,
        service_name="svc",
        transport=transport,  # type: ignore[arg-type]
        report=reports,
        http_transport=http_transport,
        connect_websocket=connect_websocket,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(prober.run)
        yield prober, reports
        nursery.cancel_scope.cancel()


def answer(doc: SeedNodesDocument = PEER_DOC, **fields: Any) -> ProbeSucceeded:
    """The ``ProbeSucceeded`` the prober reports for ``doc`` served by ``PEER``."""
    return ProbeSucceeded(
        PEER,
        doc.self_node,
        [member.node for member in doc.seed_nodes],
        doc.cluster_id,
        round=doc.round,
        candidate=doc.candidate,
        promise=doc.promise,
        founding=doc.founding,
        **fields,
    )


def test_a_poll_with_a_round_sends_the_round_header() -> None:
    """Probe(round=3) is a GET with Bootstrap-Round: 3; a plain probe sends no such header."""
    seen: list[httpx.Request] = []
    promised = attrs.evolve(PEER_DOC, promise=Promise(SELF, 3))

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = promised if "bootstrap-round" in request.headers else PEER_DOC
        return httpx.Response(200, content=encode_seed_nodes(body))

    async def test() -> None:
        async with open_prober(http_transport=httpx.MockTransport(handler)) as (prober, reports):
            prober.probe(PEER, round=3)
            assert await reports.next() == (0.0, answer(promised))
            await trio.sleep(1)
            prober.probe(PEER)
            assert await reports.next() == (1.0, answer())
        proposal, plain = seen
        assert proposal.headers["Bootstrap-Round"] == "3"
        assert proposal.headers["Bootstrap-Contact-Point"] == "10.0.0.1:8558"
        assert "Bootstrap-Round" not in plain.headers

    run(test)


@pytest.mark.parametrize(
    "doc",
    [
        SeedNodesDocument("akka://svc@10.0.0.2:25520", ()),  # an Akka node: no round
        SeedNodesDocument("n", (), round=0),
        SeedNodesDocument("n", (), round=4, candidate=True),
        SeedNodesDocument("n", (), round=1, promise=Promise(ContactPoint("10.0.0.9", 1), 7)),
        SeedNodesDocument("n", (), round=1, founding=True),
    ],
)
def test_the_founding_fields_reach_probe_succeeded(doc: SeedNodesDocument) -> None:
    """round, candidate, promise and founding of the peer's document are reported as sent."""

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=encode_seed_nodes(doc))

    async def test() -> None:
        async with open_prober(http_transport=httpx.MockTransport(handler)) as (prober, reports):
            prober.probe(PEER)
            _, event = await reports.next()
        assert event == answer(doc)
        assert isinstance(event, ProbeSucceeded)
        assert (event.round, event.promise) == (doc.round, doc.promise)

    run(test)


@pytest.mark.parametrize("round", [-1, MAX_ROUND + 1, True, 1.0])
def test_probe_refuses_a_round_no_server_accepts(round: Any) -> None:
    """A round out of the wire's range is the caller's bug."""

    async def test() -> None:
        async with open_prober() as (prober, _):
            with pytest.raises(UsageError, match="round must be None or an integer in 0"):
                prober.probe(PEER, round=round)

    run(test)


class FakeWatchConnection:
    """A watch without a network: the test pushes documents, the prober's messages are kept."""

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[str | bytes](math.inf)
        self.sent: list[str | bytes] = []

    def push(self, message: str | bytes) -> None:
        self._send.send_nowait(message)

    async def get_message(self) -> str | bytes:
        try:
            return await self._receive.receive()
        except trio.ClosedResourceError:
            raise trio_websocket.ConnectionClosed(None) from None

    async def send_message(self, message: str | bytes) -> None:
        self.sent.append(message)
        self.push(PEER_DOC_BYTES)  # every probe and proposal is answered

    async def aclose(self) -> None:
        await self._receive.aclose()


def test_a_watch_carries_the_round_on_its_handshake_then_as_propose_messages() -> None:
    """The watch opened for Probe(round=1) sends Bootstrap-Round: 1 on its handshake (its first
    document answers it); later probes are `propose 2` or `probe` on the same connection."""
    connection = FakeWatchConnection()
    handshakes: list[list[tuple[bytes, bytes]]] = []

    async def connect(
        nursery: trio.Nursery, contact_point: ContactPoint, *, extra_headers: Any, **_: Any
    ) -> FakeWatchConnection:
        handshakes.append(extra_headers)
        connection.push(PEER_DOC_BYTES)
        return connection

    async def test() -> None:
        async with open_prober(transport="watch", connect_websocket=connect) as (prober, reports):
            prober.probe(PEER, round=1)
            assert await reports.next() == (0.0, answer())
            await trio.sleep(1)
            prober.probe(PEER, round=2)
            assert await reports.next() == (1.0, answer())
            await trio.sleep(1)
            prober.probe(PEER)
            assert await reports.next() == (2.0, answer())
        assert handshakes == [
            [(b"Bootstrap-Contact-Point", b"10.0.0.1:8558"), (b"Bootstrap-Round", b"1")]
        ]
        assert connection.sent == ["propose 2", "probe"]

    run(test)


def test_a_peer_speaking_no_websocket_gets_the_proposal_by_poll() -> None:
    """The proposal of a probe whose watch handshake is refused with 404 goes out by poll."""
    rounds: list[str | None] = []

    async def refuse(nursery: trio.Nursery, contact_point: ContactPoint, **_: Any) -> Any:
        raise trio_websocket.ConnectionRejected(404, (), b"Not Found")

    async def handler(request: httpx.Request) -> httpx.Response:
        rounds.append(request.headers.get("Bootstrap-Round"))
        return httpx.Response(200, content=PEER_DOC_BYTES)

    async def test() -> None:
        async with open_prober(
            transport="watch",
            connect_websocket=refuse,
            http_transport=httpx.MockTransport(handler),
        ) as (prober, reports):
            prober.probe(PEER, round=5)
            assert await reports.next() == (0.0, answer())
        assert rounds == ["5"]

    run(test)


# --- the server: a proposal is handed over before the answer is built -------------------------


@attrs.define
class PromisingNode:
    """The node side of the app, keeping what a machine would: the promise a proposal got.

    ``calls`` records the callbacks and each document built, in order.
    """

    promise: Promise | None = None
    calls: list[tuple[object, ...]] = attrs.field(factory=list)

    def document(self) -> SeedNodesDocument:
        self.calls.append(("document",))
        return SeedNodesDocument("http://10.0.0.1:8558", (), round=0, promise=self.promise)

    def on_contacted(self, contact_point: ContactPoint) -> None:
        self.calls.append(("contacted", contact_point))

    def on_proposal(self, contact_point: ContactPoint, round: int) -> None:
        self.calls.append(("proposal", contact_point, round))
        if self.promise is None:
            self.promise = Promise(contact_point, round)

    def app(self, *, proposals: bool = True) -> ManagementApp:
        return ManagementApp(
            settings=SETTINGS,
            self_contact_point=SELF,
            service_name=None,
            document=self.document,
            status=dict,
            ready=lambda: False,
            on_contacted=self.on_contacted,
            on_proposal=self.on_proposal if proposals else None,
        )

    def contacts(self) -> list[tuple[object, ...]]:
        """The callbacks, without the documents."""
        return [call for call in self.calls if call[0] != "document"]


async def get_seed_nodes(app: ManagementApp, headers: dict[bytes, bytes]) -> SeedNodesDocument:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        response = await http.get("/bootstrap/seed-nodes", headers=headers)
    assert response.status_code == 200
    return decode_seed_nodes(response.content)


def proposal_headers(round: bytes, contact_point: bytes = b"10.0.0.2:8558") -> dict[bytes, bytes]:
    return {b"Bootstrap-Contact-Point": contact_point, b"Bootstrap-Round": round}


def test_a_seed_nodes_request_with_a_round_is_answered_after_the_proposal() -> None:
    """on_proposal(cp, r) runs before the document is built, so the answer shows the promise."""
    node = PromisingNode()

    async def test() -> None:
        doc = await get_seed_nodes(node.app(), proposal_headers(b"3"))
        assert doc.promise == Promise(PEER, 3)
        assert node.calls == [("proposal", PEER, 3), ("document",)]

    run(test)


def test_a_proposal_from_nobody_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    """A round without a valid contact point (none, or a bad one) is no proposal, and no contact;
    the request is answered all the same, and the proposal is logged once at DEBUG."""
    caplog.set_level(logging.DEBUG, logger="bootstrap.server")
    node = PromisingNode()

    async def test() -> None:
        app = node.app()
        for headers in ({b"Bootstrap-Round": b"3"}, proposal_headers(b"3", b"no port")) * 2:
            assert (await get_seed_nodes(app, headers)).promise is None
        assert node.contacts() == []

    run(test)
    lines = [r.getMessage() for r in caplog.records if "ignoring a proposal for" in r.getMessage()]
    assert lines == [
        "ignoring a proposal for round 3: "
        "no valid Bootstrap-Contact-Point header names the proposer"
    ]


@pytest.mark.parametrize(
    "value",
    [b"", b"01", b"-1", b"+3", b" 3", b"3.0", b"1e3", b"x", b"9007199254740993", "٣".encode()],
)
def test_a_bad_round_header_is_ignored(value: bytes) -> None:
    """A round header that is not canonical digits in range is never a proposal: the request
    counts as a plain contact and is answered."""
    node = PromisingNode()

    async def test() -> None:
        doc = await get_seed_nodes(node.app(), proposal_headers(value))
        assert doc.promise is None
        assert node.contacts() == [("contacted", PEER)]

    run(test)


def test_a_bad_round_header_is_logged_once_per_value(caplog: pytest.LogCaptureFixture) -> None:
    """A peer repeating the same bad round produces one DEBUG line, not one per probe."""
    caplog.set_level(logging.DEBUG, logger="bootstrap.server")
    node = PromisingNode()

    async def test() -> None:
        app = node.app()
        for value in (b"x", b"x", b"x", b"-1"):
            await get_seed_nodes(app, proposal_headers(value))

    run(test)
    records = [r for r in caplog.records if "Bootstrap-Round" in r.getMessage()]
    assert [r.levelno for r in records] == [logging.DEBUG, logging.DEBUG]
    assert [r.getMessage() for r in records] == [
        "ignoring a proposal: Bootstrap-Round must be a decimal integer in "
        "0..9007199254740992, got 'x'",
        "ignoring a proposal: Bootstrap-Round must be a decimal integer in "
        "0..9007199254740992, got '-1'",
    ]


def test_an_app_without_on_proposal_counts_a_proposal_as_a_contact() -> None:
    """A node that cannot promise still learns the proposer is alive."""
    node = PromisingNode()

    async def test() -> None:
        doc = await get_seed_nodes(node.app(proposals=False), proposal_headers(b"3"))
        assert doc.promise is None
        assert node.contacts() == [("contacted", PEER)]

    run(test)


def test_the_prober_polling_the_app_gets_the_promise_in_its_answer() -> None:
    """Prober and server together, in memory: Probe(round=7) reports the promise it got."""
    node = PromisingNode()

    async def test() -> None:
        transport = httpx.ASGITransport(app=node.app())
        async with open_prober(http_transport=transport) as (prober, reports):
            prober.probe(PEER, round=7)
            _, event = await reports.next()
        assert isinstance(event, ProbeSucceeded)
        assert (event.round, event.promise) == (0, Promise(SELF, 7))

    run(test)


class Watch:
    """A websocket client speaking ASGI messages to the app through in-memory channels."""

    def __init__(self, app: ManagementApp, headers: dict[bytes, bytes]) -> None:
        self.app = app
        self.scope: dict[str, Any] = {
            "type": "websocket",
            "path": "/bootstrap/watch",
            "root_path": "",
            "headers": [(name.lower(), value) for name, value in headers.items()],
            "extensions": {"websocket.http.response": {}},
        }
        self._to_app_send, self._to_app = trio.open_memory_channel[Message](math.inf)
        self._from_app_send, self._from_app = trio.open_memory_channel[Message](math.inf)

    async def connect(self, nursery: trio.Nursery) -> None:
        nursery.start_soon(self.app, self.scope, self._to_app.receive, self._from_app_send.send)
        await self._to_app_send.send({"type": "websocket.connect"})
        assert await self._from_app.receive() == {"type": "websocket.accept"}

    async def says(self, text: str) -> None:
        await self._to_app_send.send({"type": "websocket.receive", "text": text})

    async def document(self) -> tuple[float, SeedNodesDocument]:
        """The next pushed document and the virtual time it arrived."""
        message = await self._from_app.receive()
        assert message["type"] == "websocket.send", message
        return trio.current_time(), decode_seed_nodes(message["text"].encode())


def test_a_watch_handshake_with_a_round_is_answered_by_its_first_document() -> None:
    """The handshake's proposal is handed over before the first push, which shows the promise."""
    node = PromisingNode()

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            watch = Watch(node.app(), proposal_headers(b"1"))
            await watch.connect(nursery)
            at, doc = await watch.document()
            assert (at, doc.promise) == (0.0, Promise(PEER, 1))
            assert node.calls[:2] == [("proposal", PEER, 1), ("document",)]
            nursery.cancel_scope.cancel()

    run(test)


def test_a_propose_message_is_answered_at_once_after_the_proposal() -> None:
    """`propose 5` hands over the proposal, then pushes the document at once, showing it."""
    node = PromisingNode()

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            watch = Watch(node.app(), {b"Bootstrap-Contact-Point": b"10.0.0.2:8558"})
            await watch.connect(nursery)
            assert (await watch.document())[1].promise is None
            await trio.sleep(0.25)
            await watch.says("propose 5")
            assert await watch.document() == (0.25, node.document())
            assert node.promise == Promise(PEER, 5)
            assert node.calls[:4] == [
                ("contacted", PEER),  # the handshake
                ("document",),
                ("proposal", PEER, 5),
                ("document",),
            ]
            nursery.cancel_scope.cancel()

    run(test)


def test_a_malformed_propose_is_answered_like_probe_and_others_are_ignored() -> None:
    """`propose x` and a bare `propose` get the document at once as plain contacts; `proposal 3`
    and `PROPOSE 3` are other messages: ignored."""
    node = PromisingNode()

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            watch = Watch(node.app(), {b"Bootstrap-Contact-Point": b"10.0.0.2:8558"})
            await watch.connect(nursery)
            await watch.document()
            for second, message in enumerate(["propose x", "propose", "propose 01"], start=1):
                await trio.sleep_until(second / 4)
                await watch.says(message)
                assert (await watch.document())[0] == second / 4
            await watch.says("proposal 3")
            await watch.says("PROPOSE 3")
            # Only the periodic push, a push interval after the last answer.
            assert (await watch.document())[0] == 0.75 + PUSH
            assert node.contacts() == [("contacted", PEER)] * 4
            assert node.promise is None
            nursery.cancel_scope.cancel()

    run(test)


def test_a_propose_on_a_watch_without_a_contact_point_is_no_proposal() -> None:
    """A watch that named nobody gets its answer, but its proposals reach no one."""
    node = PromisingNode()

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            watch = Watch(node.app(), {b"Bootstrap-Round": b"1"})
            await watch.connect(nursery)
            await watch.document()
            await trio.sleep(0.5)
            await watch.says("propose 2")
            assert await watch.document() == (0.5, node.document())
            assert node.contacts() == []
            nursery.cancel_scope.cancel()

    run(test)


# --- the node: the machine handles a proposal before the answer, watchers learn at once -------


def as_bytes(message: str | bytes) -> bytes:
    return message.encode() if isinstance(message, str) else message


# A long probe interval: the periodic push comes 8 s apart, so a push within a second is the
# one the advertisement's change caused.
SLOW = Settings(probe_interval=10.0, probe_backoff_max=15.0)


def test_the_node_answers_a_proposal_with_its_promise_and_pushes_it_to_watchers() -> None:
    """A real node: a GET proposing round 1 is answered with the promise; a watcher gets the
    new document at once; the status shows it."""

    async def test() -> None:
        me, other, watcher = loopback_points(3, free_port(), first=41)
        # `other` is discovered but never answers: this node cannot form, and stays free.
        discovery = StaticDiscovery([me, other])
        async with open_node(contact_point=me, discovery=discovery, settings=SLOW) as node:
            base = f"http://{me}"
            async with trio_websocket.open_websocket_url(
                f"ws://{me}/bootstrap/watch",
                extra_headers=[(b"Bootstrap-Contact-Point", str(watcher).encode())],
            ) as ws:
                first = decode_seed_nodes(as_bytes(await ws.get_message()))
                # Before any round, the round is where this process's counter started.
                first_round = node.machine.round_counts.first_round
                assert (first.round, first.promise) == (first_round, None)
                async with httpx.AsyncClient(trust_env=False) as http:
                    response = await http.get(
                        f"{base}/bootstrap/seed-nodes",
                        headers={"Bootstrap-Contact-Point": str(other), "Bootstrap-Round": "1"},
                    )
                    asked = trio.current_time()
                    assert decode_seed_nodes(response.content).promise == Promise(other, 1)
                    with trio.fail_after(1.0):
                        pushed = decode_seed_nodes(as_bytes(await ws.get_message()))
                    assert trio.current_time() - asked < 1.0
                    assert pushed.promise == Promise(other, 1)
                    status = (await http.get(f"{base}/bootstrap/status")).json()
            assert node.document().promise == Promise(other, 1)
        assert status["founding"] == {
            "formation": "promise",
            "round": first_round,
            "candidate": False,
            "promise": {"to": str(other), "round": 1},
            "founding": False,
            "firstRound": first_round,
            "roundsStarted": 0,
            "roundsWithdrawn": 0,
            "promisesGiven": 1,
        }

    run(test, fake_clock=False, seconds=20.0)


def test_a_lowest_address_node_serves_no_round_and_promises_nothing() -> None:
    """formation="lowest-address": the document carries no round, and a proposal gets none."""

    async def test() -> None:
        me, other = loopback_points(2, free_port(), first=45)
        settings = attrs.evolve(SLOW, formation="lowest-address")
        async with (
            open_node(contact_point=me, discovery=StaticDiscovery([me, other]), settings=settings),
            httpx.AsyncClient(trust_env=False) as http,
        ):
            response = await http.get(
                f"http://{me}/bootstrap/seed-nodes",
                headers={"Bootstrap-Contact-Point": str(other), "Bootstrap-Round": "1"},
            )
            status = (await http.get(f"http://{me}/bootstrap/status")).json()
        doc = decode_seed_nodes(response.content)
        assert (doc.round, doc.promise) == (None, None)
        assert b"round" not in response.content
        assert status["founding"] == {
            "formation": "lowest-address",
            "round": None,
            "candidate": False,
            "promise": None,
            "founding": False,
            "firstRound": None,
            "roundsStarted": 0,
            "roundsWithdrawn": 0,
            "promisesGiven": 0,
        }

    run(test, fake_clock=False, seconds=20.0)


# --- end to end: nodes on loopback form one cluster ---------------------------------------------

FAST = Settings(stable_margin=1.0, probe_interval=0.5, probe_backoff_max=2.0)
# Forming takes a while in a real membership (an Akka cluster's first gossip): meanwhile the
# founder's documents say `founding`, and the promisers join on that, their promise still held.
FORMING_TIME = 2.0


class SlowToForm(LocalMembership):
    """A membership that takes ``FORMING_TIME`` to form a new cluster."""

    async def join_self(self) -> None:
        await trio.sleep(FORMING_TIME)
        await super().join_self()


async def start_nodes(
    stack: AsyncExitStack, points: list[ContactPoint], settings: Settings, transport: str
) -> list[Node]:
    discovery = StaticDiscovery(points)
    nodes = []
    for point in points:
        self_node = f"http://{point}"
        node = await stack.enter_async_context(
            open_node(
                contact_point=point,
                discovery=discovery,
                self_node=self_node,
                membership=SlowToForm(self_node),
                settings=settings,
                transport=transport,  # type: ignore[arg-type]
            )
        )
        nodes.append(node)
    return nodes


async def statuses(nodes: list[Node]) -> list[dict[str, Any]]:
    """Each node's ``/bootstrap/status``, read over HTTP."""
    async with httpx.AsyncClient(trust_env=False) as http:
        return [
            (await http.get(f"http://{node.contact_point}/bootstrap/status")).json()
            for node in nodes
        ]


@pytest.mark.parametrize("transport", ["watch", "poll"])
def test_three_nodes_form_one_cluster_by_promises(transport: str) -> None:
    """formation="promise" (the default): the lowest node forms in round 1 on the promises of
    the two others, which join it; /bootstrap/status shows the round and the promises."""

    async def test() -> None:
        points = loopback_points(3, free_port(), first=51)
        async with AsyncExitStack() as stack:
            nodes = await start_nodes(stack, points, FAST, transport)
            for node in nodes:
                await node.wait_joined()
            founder, *others = await statuses(nodes)
        assert FAST.formation == "promise"
        assert founder["decision"] == {"kind": "join-self"}
        founder_first_round = founder["founding"]["firstRound"]
        assert founder["founding"] == {
            "formation": "promise",
            "round": founder_first_round + 1,  # its first round
            "candidate": False,
            "promise": None,
            "founding": False,  # its membership lists itself now
            "firstRound": founder_first_round,
            "roundsStarted": 1,
            "roundsWithdrawn": 0,
            "promisesGiven": 0,
        }
        for status in others:
            # Joined through the founder (a later joiner may list the first joiner as well).
            assert status["decision"]["kind"] == "join-seed-nodes"
            assert f"http://{points[0]}" in status["decision"]["seedNodes"]
            first_round = status["founding"]["firstRound"]
            assert status["founding"] == {
                "formation": "promise",
                "round": first_round,  # never a candidate
                "candidate": False,
                "promise": {"to": str(points[0]), "round": founder_first_round + 1},
                "founding": False,
                "firstRound": first_round,
                "roundsStarted": 0,
                "roundsWithdrawn": 0,
                "promisesGiven": 1,
            }
        assert [node.decision for node in nodes].count(JoinSelf()) == 1

    run(test, fake_clock=False, seconds=30.0)


def test_three_nodes_form_one_cluster_by_the_lowest_address() -> None:
    """formation="lowest-address" still forms one cluster, with no founding round at all."""

    async def test() -> None:
        points = loopback_points(3, free_port(), first=55)
        settings = attrs.evolve(FAST, formation="lowest-address")
        async with AsyncExitStack() as stack:
            nodes = await start_nodes(stack, points, settings, "watch")
            for node in nodes:
                await node.wait_joined()
            found = await statuses(nodes)
        decisions = [node.decision for node in nodes]
        assert decisions[0] == JoinSelf()
        for decision in decisions[1:]:
            assert isinstance(decision, JoinSeedNodes)
            assert f"http://{points[0]}" in decision.seed_nodes
        for status in found:
            assert status["founding"] == {
                "formation": "lowest-address",
                "round": None,
                "candidate": False,
                "promise": None,
                "founding": False,
                "firstRound": None,
                "roundsStarted": 0,
                "roundsWithdrawn": 0,
                "promisesGiven": 0,
            }

    run(test, fake_clock=False, seconds=30.0)


def test_a_machine_failing_on_the_servers_event_crashes_the_node() -> None:
    """The server's event is handled in the server's task, but a bug there still crashes the
    node loudly, from its driver loop (the answer in flight may be cut short)."""

    class MachineBug(Exception):
        pass

    me, other = loopback_points(2, free_port(), first=47)

    async def crash() -> None:
        discovery = StaticDiscovery([me, other])
        async with open_node(contact_point=me, discovery=discovery, settings=SLOW) as node:
            handle = node.machine.handle

            def failing_handle(event: Event, now: float) -> None:
                if isinstance(event, ContactedBy):
                    raise MachineBug("a bug in the machine")
                handle(event, now)

            node.machine.handle = failing_handle  # type: ignore[method-assign]
            async with httpx.AsyncClient(trust_env=False) as http:
                # The node may crash while it answers.
                with contextlib.suppress(httpx.TransportError):
                    await http.get(
                        f"http://{me}/bootstrap/seed-nodes",
                        headers={"Bootstrap-Contact-Point": str(other)},
                    )
            await trio.sleep_forever()

    async def test() -> None:
        with pytest.raises(MachineBug):
            await crash()

    run(test, fake_clock=False, seconds=20.0)


def test_on_proposal_raising_does_not_break_the_answer(caplog: pytest.LogCaptureFixture) -> None:
    """An exception from on_proposal is logged and the document is served all the same."""

    class FailingNode(PromisingNode):
        def on_proposal(self, contact_point: ContactPoint, round: int) -> None:
            raise RuntimeError("event queue closed")

    node = FailingNode()

    async def test() -> None:
        assert (await get_seed_nodes(node.app(), proposal_headers(b"3"))).promise is None

    run(test)
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert (
        record.getMessage() == "on_proposal(10.0.0.2:8558) raised; the request is answered anyway"
    )
    assert record.exc_info
