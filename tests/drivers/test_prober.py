"""Tests of the prober: one connection per peer, every failure an event with a readable reason.

Testing policy (after trio-websocket's):

* Every test runs under an absolute ``trio.fail_after``, so a hang fails instead of blocking.
* Anything timed runs under ``MockClock(autojump_threshold=0)`` and asserts exact virtual times;
  the network is in memory: ``httpx.MockTransport`` with an async handler for HTTP (it ignores
  httpx timeouts, so a slow handler proves our cancel scopes enforce ``probe_timeout``), and
  trio-websocket over ``trio.testing.memory_stream_pair`` (or a fake connection) for watches.
* A few tests use real sockets on loopback (real clock) against a hypercorn stand-in for the
  management server, and count TCP connections on both sides: that is the property this project
  exists for.
* No pytest-trio plugin: each test is a sync function whose body runs in ``trio.run``.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import httpx
import pytest
import trio
import trio.testing
import trio_websocket

from bootstrap.core import (
    ContactPoint,
    Event,
    Member,
    ProbeFailed,
    ProbeSucceeded,
    SeedNodesDocument,
    Settings,
    UsageError,
    encode_seed_nodes,
)
from bootstrap.prober import ConnectionChurnError, Prober
from bootstrap.server import ManagementApp, serve_management

SELF = ContactPoint("10.0.0.1", 8558)
PEER = ContactPoint("10.0.0.2", 8558)
SETTINGS = Settings()  # probe_timeout 3.0
DOC = SeedNodesDocument(
    "akka://svc@10.0.0.2:25520",
    [Member("akka://svc@10.0.0.3:25520", 7)],
    cluster_id="c-1",
    service_name="svc",
)
DOC_BYTES = encode_seed_nodes(DOC)
ANSWER = ProbeSucceeded(PEER, DOC.self_node, ["akka://svc@10.0.0.3:25520"], "c-1")

AsyncTest = Callable[[], Awaitable[None]]


def trio_test(*, seconds: float = 60.0, real_clock: bool = False) -> Callable[[AsyncTest], Any]:
    """Turn an async test into a sync one run by ``trio.run`` under ``fail_after(seconds)``."""

    def decorate(test: AsyncTest) -> Callable[[], None]:
        def run_test() -> None:
            async def main() -> None:
                with trio.fail_after(seconds):
                    await test()

            clock = None if real_clock else trio.testing.MockClock(autojump_threshold=0)
            trio.run(main, clock=clock)

        run_test.__name__ = test.__name__
        run_test.__qualname__ = test.__qualname__
        run_test.__doc__ = test.__doc__
        return run_test

    return decorate


class Reports:
    """The prober's ``report`` callback: every event with the virtual time it arrived."""

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[tuple[float, Event]](math.inf)

    def __call__(self, event: Event) -> None:
        self._send.send_nowait((trio.current_time(), event))

    async def next(self) -> tuple[float, Event]:
        return await self._receive.receive()

    async def next_event(self) -> Event:
        return (await self.next())[1]

    def drain(self) -> list[Event]:
        events = []
        while True:
            try:
                events.append(self._receive.receive_nowait()[1])
            except trio.WouldBlock:
                return events


Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


@asynccontextmanager
async def open_prober(
    *,
    handler: Handler | None = None,
    transport: str = "poll",
    connect_websocket: Any = None,
    settings: Settings = SETTINGS,
    self_contact_point: ContactPoint = SELF,
    service_name: str | None = "svc",
    max_in_flight: int = 64,
) -> AsyncIterator[tuple[Prober, Reports]]:
    """A running prober (with in-memory transports unless none are given) and its reports."""
    reports = Reports()
    prober = Prober(
        settings=settings,
        self_contact_point=self_contact_point,
        service_name=service_name,
        transport=transport,  # type: ignore[arg-type]
        report=reports,
        http_transport=None if handler is None else httpx.MockTransport(handler),
        connect_websocket=connect_websocket,
        max_in_flight=max_in_flight,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(prober.run)
        yield prober, reports
        nursery.cancel_scope.cancel()


def respond(body: bytes = DOC_BYTES, status: int = 200) -> Handler:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body)

    return handler


# --- polling over HTTP (in memory) ---------------------------------------------------------------


@trio_test()
async def test_poll_reports_the_document_as_an_answer() -> None:
    """A 200 document becomes ProbeSucceeded with its self node, seed nodes and cluster id."""
    requests: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, content=DOC_BYTES)

    async with open_prober(handler=handler) as (prober, reports):
        prober.probe(PEER)
        assert await reports.next() == (0.0, ANSWER)
    [request] = requests
    assert request.method == "GET"
    assert str(request.url) == "http://10.0.0.2:8558/bootstrap/seed-nodes"
    assert request.headers["Bootstrap-Contact-Point"] == "10.0.0.1:8558"
    stats = prober.statistics()
    assert (stats.probes_sent, dict(stats.failures_by_kind)) == (1, {})


@trio_test()
async def test_poll_brackets_ipv6_and_applies_the_fallback_port() -> None:
    """IPv6 hosts are bracketed in the URL and the header; a port-less contact point gets 8558."""
    seen: list[tuple[str, str]] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append((str(request.url), request.headers["Bootstrap-Contact-Point"]))
        return httpx.Response(200, content=DOC_BYTES)

    own = ContactPoint("fd00::1", 8558)
    async with open_prober(handler=handler, self_contact_point=own) as (prober, reports):
        prober.probe(ContactPoint("fd00::2", 9000))
        prober.probe(ContactPoint("fd00::3"))
        events = [await reports.next_event(), await reports.next_event()]
    assert {type(event) for event in events} == {ProbeSucceeded}
    assert sorted(seen) == [
        ("http://[fd00::2]:9000/bootstrap/seed-nodes", "[fd00::1]:8558"),
        ("http://[fd00::3]:8558/bootstrap/seed-nodes", "[fd00::1]:8558"),
    ]
    # The report carries the contact point exactly as the machine gave it.
    assert {event.contact_point for event in events} == {
        ContactPoint("fd00::2", 9000),
        ContactPoint("fd00::3"),
    }


@trio_test()
async def test_a_slow_peer_times_out_at_exactly_probe_timeout() -> None:
    """MockTransport ignores httpx timeouts: our cancel scope fails the probe at 3.0 s and
    really cancels the request."""
    cancelled = trio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        try:
            await trio.sleep(10)
        finally:
            cancelled.set()
        raise AssertionError("not reached")

    async with open_prober(handler=handler) as (prober, reports):
        prober.probe(PEER)
        at, event = await reports.next()
        assert (at, event) == (3.0, ProbeFailed(PEER, "timed out after 3.0 s"))
        assert isinstance(event, ProbeFailed)
        assert event.kind == "timeout"  # as counted:
        assert cancelled.is_set()
        assert dict(prober.statistics().failures_by_kind) == {"timeout": 1}


@trio_test()
async def test_a_non_200_status_names_status_and_peer() -> None:
    """HTTP 503 becomes 'HTTP 503 from 10.0.0.2:8558'."""
    async with open_prober(handler=respond(b"starting", 503)) as (prober, reports):
        prober.probe(PEER)
        assert await reports.next_event() == ProbeFailed(PEER, "HTTP 503 from 10.0.0.2:8558")


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (ConnectionRefusedError(111, "Connection refused"), "connection refused"),
        (ConnectionResetError(104, "Connection reset by peer"), "connection reset"),
        (
            socket.gaierror(-2, "Name or service not known"),
            "cannot resolve 10.0.0.2: Name or service not known",
        ),
        (OSError(113, "No route to host"), "cannot connect: No route to host"),
    ],
)
def test_connection_errors_are_named_by_their_cause(error: OSError, reason: str) -> None:
    """The OS error under httpx's ConnectError decides the reason (refused, reset, DNS, ...)."""

    @trio_test()
    async def body() -> None:
        async def handler(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("all attempts to connect failed") from error

        async with open_prober(handler=handler) as (prober, reports):
            prober.probe(PEER)
            assert await reports.next_event() == ProbeFailed(PEER, reason)

    body()


@trio_test()
async def test_other_transport_errors_have_readable_reasons() -> None:
    """A disconnect mid-exchange and a bare ConnectError still read as sentences."""
    errors: list[Exception] = [
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ConnectError("no usable address"),
        httpx.ReadError(""),
    ]

    async def handler(request: httpx.Request) -> httpx.Response:
        raise errors.pop(0)

    async with open_prober(handler=handler) as (prober, reports):
        reasons = []
        for _ in range(3):
            prober.probe(PEER)
            event = await reports.next_event()
            assert isinstance(event, ProbeFailed)
            reasons.append(event.reason)
    assert reasons == [
        "HTTP protocol error: Server disconnected without sending a response.",
        "cannot connect: no usable address",
        "network error: ReadError",
    ]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{not json", "protocol error: document is not valid JSON"),
        (b"[]", "protocol error: document must be a JSON object, got an array"),
        (b'{"seedNodes": []}', "protocol error: selfNode is missing"),
        (
            b'{"selfNode": "a", "seedNodes": [{"nodeUid": 1}]}',
            "protocol error: seedNodes[0].node is missing",
        ),
        (b'{"selfNode": "a", "seedNodes": {}}', "protocol error: seedNodes must be an array"),
        (b"\xff\xfe", "protocol error: document is not valid UTF-8"),
        (b"[" * 100_000, "protocol error: document is over the limit of 65536 bytes"),
    ],
)
def test_bad_documents_become_protocol_errors(body: bytes, expected: str) -> None:
    """Malformed, wrongly shaped and oversized bodies fail the probe; nothing escapes."""

    @trio_test()
    async def run() -> None:
        async with open_prober(handler=respond(body)) as (prober, reports):
            prober.probe(PEER)
            event = await reports.next_event()
            assert isinstance(event, ProbeFailed)
            assert event.reason.startswith(expected), event.reason
            # The worker survives: the next probe is served.
            prober.probe(PEER)
            assert isinstance(await reports.next_event(), ProbeFailed)

    run()


@trio_test()
async def test_a_compressed_body_is_refused() -> None:
    """We ask for identity and read a bounded raw body; a compressed one is a protocol error."""

    async def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["Accept-Encoding"] == "identity"
        return httpx.Response(200, content=b"\x1f\x8b", headers={"Content-Encoding": "gzip"})

    async with open_prober(handler=handler) as (prober, reports):
        prober.probe(PEER)
        event = await reports.next_event()
    assert event == ProbeFailed(
        PEER, "protocol error: document sent with Content-Encoding gzip, not asked"
    )


@trio_test()
async def test_another_services_document_is_refused() -> None:
    """A recycled address serving another service fails with both names in the reason."""
    other = encode_seed_nodes(SeedNodesDocument("akka://x@10.0.0.2:1", [], service_name="x"))
    async with open_prober(handler=respond(other), service_name="svc") as (prober, reports):
        prober.probe(PEER)
        event = await reports.next_event()
    assert isinstance(event, ProbeFailed)
    assert event.reason.startswith("peer serves service 'x', expected 'svc'")
    assert dict(prober.statistics().failures_by_kind) == {"service_name": 1}


@trio_test()
async def test_an_akka_document_without_service_name_is_accepted() -> None:
    """An Akka node sends no serviceName (and no clusterId): it is accepted."""
    body = json.dumps({"selfNode": "akka://svc@10.0.0.2:25520", "seedNodes": []}).encode()
    async with open_prober(handler=respond(body)) as (prober, reports):
        prober.probe(PEER)
        assert await reports.next_event() == ProbeSucceeded(
            PEER, "akka://svc@10.0.0.2:25520", [], None
        )


@trio_test()
async def test_one_failure_never_kills_the_worker() -> None:
    """A probe the network broke is a failure; the peer's next probe is served."""
    outcomes: list[Any] = [httpx.ReadError("boom"), DOC_BYTES]

    async def handler(request: httpx.Request) -> httpx.Response:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return httpx.Response(200, content=outcome)

    async with open_prober(handler=handler) as (prober, reports):
        prober.probe(PEER)
        assert await reports.next_event() == ProbeFailed(PEER, "network error: boom")
        prober.probe(PEER)
        assert await reports.next_event() == ANSWER


class BuggyWatch:
    """A watch whose first document arrives, and whose next read hits a bug of ours."""

    def __init__(self) -> None:
        self.reads = 0

    async def get_message(self) -> str | bytes:
        self.reads += 1
        if self.reads == 1:
            return DOC_BYTES
        raise TypeError("a bug")

    async def send_message(self, message: str | bytes) -> None:
        pass

    async def aclose(self) -> None:
        pass


@pytest.mark.parametrize("where", ["http transport", "watch handshake", "watch reader"])
def test_a_bug_is_not_a_failed_probe_it_propagates_out_of_run(where: str) -> None:
    """A TypeError (our bug, not the peer's) is never reported as a failed probe that would
    back a healthy peer off: it propagates out of Prober.run, as trio's open_tcp_stream lets
    its bugs propagate."""

    async def handler(request: httpx.Request) -> httpx.Response:
        raise TypeError("a bug")

    async def connect(nursery: trio.Nursery, contact_point: ContactPoint, **_: Any) -> Any:
        if where == "watch handshake":
            raise TypeError("a bug")
        return BuggyWatch()

    seen: list[Reports] = []

    async def probe_once_and_wait() -> None:
        async with open_prober(
            handler=handler,
            transport="poll" if where == "http transport" else "watch",
            connect_websocket=connect,
        ) as (prober, reports):
            seen.append(reports)
            prober.probe(PEER)
            await trio.sleep_forever()

    @trio_test()
    async def run() -> None:
        with pytest.raises(ExceptionGroup) as caught:
            await probe_once_and_wait()
        assert caught.group_contains(TypeError, match="a bug")
        assert trio.current_time() == 0.0

    run()
    [reports] = seen
    events = reports.drain()
    assert [e for e in events if isinstance(e, ProbeFailed)] == []
    assert events == ([] if where != "watch reader" else [ANSWER])


@trio_test()
async def test_a_second_probe_while_one_is_in_flight_is_ignored() -> None:
    """At most one probe is in flight per peer: a second request sends nothing more."""
    calls = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        await trio.sleep(1)
        return httpx.Response(200, content=DOC_BYTES)

    async with open_prober(handler=handler) as (prober, reports):
        prober.probe(PEER)
        await trio.sleep(0.5)
        prober.probe(PEER)
        assert await reports.next() == (1.0, ANSWER)
        await trio.sleep(5)
        assert reports.drain() == []
    assert calls == 1


@trio_test()
async def test_in_flight_probes_are_bounded_globally() -> None:
    """With max_in_flight=2, five 1 s probes finish at 1, 1, 2, 2 and 3 s (all answered: the
    probe_timeout of 5 s, which includes the wait for a slot, is not reached)."""

    async def handler(request: httpx.Request) -> httpx.Response:
        await trio.sleep(1)
        return httpx.Response(200, content=DOC_BYTES)

    peers = [ContactPoint(f"10.0.0.{i}", 8558) for i in range(2, 7)]
    settings = Settings(probe_timeout=5.0)
    async with open_prober(handler=handler, max_in_flight=2, settings=settings) as (
        prober,
        reports,
    ):
        for peer in peers:
            prober.probe(peer)
        arrivals = [await reports.next() for _ in peers]
    assert [at for at, _ in arrivals] == [1.0, 1.0, 2.0, 2.0, 3.0]
    assert {event.contact_point for _, event in arrivals} == set(peers)  # type: ignore[union-attr]
    assert all(isinstance(event, ProbeSucceeded) for _, event in arrivals), arrivals


NO_SLOT = "timed out after 3.0 s waiting for a free probe slot (all max_in_flight=1 in use)"
BEHIND = ContactPoint("10.0.0.3", 8558)


async def hang_http(request: httpx.Request) -> httpx.Response:
    await trio.sleep_forever()
    raise AssertionError("not reached")


async def hang_watch(nursery: trio.Nursery, contact_point: ContactPoint, **_: Any) -> Any:
    await trio.sleep_forever()


@pytest.mark.parametrize("transport", ["poll", "watch"])
def test_a_probe_behind_a_slow_one_answers_or_fails_within_probe_timeout(transport: str) -> None:
    """max_in_flight=1, peers that answer in 2.5 s: a probe asked at 0.5 s, behind another's,
    fails at 3.5 s, probe_timeout after it was asked. (It used to wait for the slot outside
    the timeout and answer at 5.0 s, later than observation_ttl assumes.)"""

    async def handler(request: httpx.Request) -> httpx.Response:
        await trio.sleep(2.5)
        return httpx.Response(200, content=DOC_BYTES)

    async def connect(nursery: trio.Nursery, contact_point: ContactPoint, **_: Any) -> Any:
        await trio.sleep(2.5)
        connection = FakeWatchConnection()
        connection.push(DOC_BYTES)
        return connection

    @trio_test()
    async def run() -> None:
        async with open_prober(
            handler=handler, transport=transport, connect_websocket=connect, max_in_flight=1
        ) as (prober, reports):
            prober.probe(PEER)
            await trio.sleep(0.5)
            prober.probe(BEHIND)
            assert [await reports.next(), await reports.next()] == [
                (2.5, ANSWER),
                (3.5, ProbeFailed(BEHIND, "timed out after 3.0 s")),
            ]
            # The slot is free again: the peer behind is answered on its next probe.
            prober.probe(BEHIND)
            answer = ProbeSucceeded(BEHIND, ANSWER.self_node, ANSWER.seed_nodes, ANSWER.cluster_id)
            assert await reports.next() == (6.0, answer)

    run()


@pytest.mark.parametrize("transport", ["poll", "watch"])
def test_a_probe_that_never_gets_a_slot_fails_at_probe_timeout_saying_so(transport: str) -> None:
    """max_in_flight=1 and two peers asked at once that never answer: the one holding the slot
    times out at 3.0 s, and so does the one waiting for it, with a reason naming the wait (it
    used to get the slot at 3.0 s and time out only at 6.0 s)."""

    @trio_test()
    async def run() -> None:
        async with open_prober(
            handler=hang_http, transport=transport, connect_websocket=hang_watch, max_in_flight=1
        ) as (prober, reports):
            prober.probe(PEER)
            await trio.testing.wait_all_tasks_blocked()  # PEER's probe holds the slot
            prober.probe(BEHIND)
            arrivals = [await reports.next(), await reports.next()]
            stats = prober.statistics()
        by_peer = {event.contact_point: (at, event) for at, event in arrivals}  # type: ignore[union-attr]
        assert by_peer == {
            PEER: (3.0, ProbeFailed(PEER, "timed out after 3.0 s")),
            BEHIND: (3.0, ProbeFailed(BEHIND, NO_SLOT)),
        }
        assert (dict(stats.failures_by_kind), stats.probes_sent) == ({"timeout": 2}, 1)

    run()


@trio_test()
async def test_a_probe_over_a_watch_gets_no_longer_than_probe_timeout_for_its_slot() -> None:
    """A 'probe' message over an open watch waits for its slot inside probe_timeout too: with the
    only slot held by a hanging handshake, it fails at probe_timeout after it was asked, without
    sending 'probe', and the watch ends."""
    watched = FakeWatchConnection()
    watched.push(DOC_BYTES)

    async def connect(nursery: trio.Nursery, contact_point: ContactPoint, **_: Any) -> Any:
        if contact_point == BEHIND:
            await trio.sleep_forever()
        return watched

    async with open_prober(transport="watch", connect_websocket=connect, max_in_flight=1) as (
        prober,
        reports,
    ):
        prober.probe(PEER)
        assert await reports.next() == (0.0, ANSWER)
        await trio.sleep(1)
        prober.probe(BEHIND)  # holds the only slot until its own timeout, at 4.0 s
        await trio.testing.wait_all_tasks_blocked()
        prober.probe(PEER)
        arrivals = [await reports.next(), await reports.next()]
        by_peer = {event.contact_point: (at, event) for at, event in arrivals}  # type: ignore[union-attr]
        assert by_peer == {
            BEHIND: (4.0, ProbeFailed(BEHIND, "timed out after 3.0 s")),
            PEER: (4.0, ProbeFailed(PEER, NO_SLOT)),
        }
        assert watched.sent == []
        await trio.testing.wait_all_tasks_blocked()
        assert watched.closes == 1


@trio_test()
async def test_stop_cancels_the_probe_and_suppresses_its_result() -> None:
    """stop() really cancels the request in flight, and nothing about the peer is reported."""
    cancelled = trio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        try:
            await trio.sleep(1)
        except trio.Cancelled:
            cancelled.set()
            raise
        return httpx.Response(200, content=DOC_BYTES)

    async with open_prober(handler=handler) as (prober, reports):
        prober.probe(PEER)
        await trio.sleep(0.5)
        prober.stop(PEER)
        prober.stop(PEER)  # idempotent
        await trio.sleep(10)
        assert cancelled.is_set()
        assert reports.drain() == []
        assert prober.statistics().peers == 0
        # Probing it again starts afresh.
        prober.probe(PEER)
        assert await reports.next() == (11.5, ANSWER)


@trio_test()
async def test_stop_all_forgets_every_peer() -> None:
    """stop_all() stops every worker; nothing is reported afterwards."""

    async def handler(request: httpx.Request) -> httpx.Response:
        await trio.sleep(1)
        return httpx.Response(200, content=DOC_BYTES)

    async with open_prober(handler=handler) as (prober, reports):
        for i in range(2, 6):
            prober.probe(ContactPoint(f"10.0.0.{i}", 8558))
        assert prober.statistics().peers == 4
        prober.stop_all()
        await trio.sleep(5)
        assert reports.drain() == []
        assert prober.statistics().peers == 0


def poll_prober(**overrides: Any) -> Prober:
    """A polling prober with the module's settings, not running."""
    return Prober(
        settings=SETTINGS,
        self_contact_point=SELF,
        service_name=None,
        transport="poll",
        report=Reports(),
        **overrides,
    )


@trio_test()
async def test_probe_needs_run_and_run_runs_once() -> None:
    """probe() before run() and a second run() are usage errors."""
    prober = poll_prober(http_transport=httpx.MockTransport(respond()))
    with pytest.raises(UsageError, match=r"needs Prober\.run\(\) running"):
        prober.probe(PEER)
    async with trio.open_nursery() as nursery:
        await nursery.start(prober.run)
        with pytest.raises(UsageError, match="runs once"):
            await prober.run()
        nursery.cancel_scope.cancel()


def test_bad_arguments_are_usage_errors() -> None:
    """An unknown transport or a max_in_flight below 1 is refused when the prober is built."""
    common: dict[str, Any] = {
        "settings": SETTINGS,
        "self_contact_point": SELF,
        "service_name": None,
        "report": Reports(),
    }
    with pytest.raises(UsageError, match="transport must be"):
        Prober(transport="carrier-pigeon", **common)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="max_in_flight"):
        Prober(transport="poll", max_in_flight=0, **common)


def test_keepalive_outlives_the_longest_probe_period() -> None:
    """The default keep-alive exceeds the longest idle gap (15 s backoff + 3 s timeout) and
    is well above httpx's 5 s default, which would reconnect on every slow probe."""
    assert SETTINGS.client_keepalive_expiry > 15.0 + 3.0
    slow = Settings(probe_interval=10.0, probe_backoff_max=60.0)
    assert slow.client_keepalive_expiry > 60.0 + 3.0


def test_a_keepalive_that_would_reconnect_per_probe_is_an_error() -> None:
    """httpx's 5 s default against a 15 s backoff is refused with a message saying why."""
    with pytest.raises(ConnectionChurnError, match="every probe would open a new connection"):
        Prober(
            settings=SETTINGS,
            self_contact_point=SELF,
            service_name=None,
            transport="poll",
            report=Reports(),
            keepalive_expiry=5.0,
        )
    assert issubclass(ConnectionChurnError, ValueError)


def test_failures_are_logged_when_their_kind_changes_or_every_30_s(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A peer that keeps failing alike is logged at INFO once per 30 s, DEBUG in between."""
    kinds = iter(["refused"] * 3 + ["503"] + ["refused"] * 2 + ["ok", "refused"])

    async def handler(request: httpx.Request) -> httpx.Response:
        kind = next(kinds)
        if kind == "refused":
            raise httpx.ConnectError("refused") from ConnectionRefusedError(111, "refused")
        return httpx.Response(503 if kind == "503" else 200, content=DOC_BYTES)

    @trio_test(seconds=120)
    async def run() -> None:
        async with open_prober(handler=handler) as (prober, reports):
            for delay in [0, 10, 10, 1, 1, 40, 1, 1]:
                await trio.sleep(delay)
                prober.probe(PEER)
                await reports.next()

    with caplog.at_level(logging.DEBUG, logger="bootstrap.prober"):
        run()
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert info == [
        "10.0.0.2:8558: probe failed: connection refused",  # t=0
        "10.0.0.2:8558: probe failed: HTTP 503 from 10.0.0.2:8558",  # kind changed
        "10.0.0.2:8558: probe failed: connection refused",  # kind changed again
        "10.0.0.2:8558: probe failed: connection refused",  # 40 s later
        "10.0.0.2:8558: answers again",
        "10.0.0.2:8558: probe failed: connection refused",  # a new run of failures
    ]


# --- watching (in memory) ------------------------------------------------------------------------


class FakeWatchServer:
    """The server side of watches on in-memory streams, through real trio-websocket handshakes.

    ``connect`` is what the prober is given as ``connect_websocket``.
    """

    def __init__(
        self, nursery: trio.Nursery, *, reject: int | None = None, answer_probes: bool = True
    ) -> None:
        self._nursery = nursery
        self.reject = reject
        self.answer_probes = answer_probes
        self.calls: list[tuple[ContactPoint, str, list[tuple[bytes, bytes]], int]] = []
        self.request_headers: list[dict[bytes, bytes]] = []
        self.connections: list[trio_websocket.WebSocketConnection] = []
        self.probes_received = 0
        self.closed = 0

    async def connect(
        self,
        nursery: trio.Nursery,
        contact_point: ContactPoint,
        *,
        resource: str,
        extra_headers: list[tuple[bytes, bytes]],
        max_message_size: int,
    ) -> trio_websocket.WebSocketConnection:
        self.calls.append((contact_point, resource, extra_headers, max_message_size))
        client, server = trio.testing.memory_stream_pair()
        self._nursery.start_soon(self._serve, server)
        return await trio_websocket.wrap_client_stream(
            nursery,
            client,  # type: ignore[arg-type]
            str(contact_point),
            resource,
            extra_headers=extra_headers,
            max_message_size=max_message_size,
        )

    async def _serve(self, stream: trio.abc.Stream) -> None:
        request = await trio_websocket.wrap_server_stream(self._nursery, stream)
        self.request_headers.append(dict(request.headers))
        if self.reject is not None:
            await request.reject(self.reject, body=b"Not Found")
            return
        connection = await request.accept()
        self.connections.append(connection)
        await connection.send_message(DOC_BYTES.decode())
        try:
            while True:
                message = await connection.get_message()
                assert message == "probe"
                self.probes_received += 1
                if self.answer_probes:
                    await connection.send_message(DOC_BYTES.decode())
        except trio_websocket.ConnectionClosed:
            self.closed += 1


@trio_test()
async def test_a_watch_turns_every_pushed_document_into_an_answer() -> None:
    """The first probe opens the watch; its first and every later push are ProbeSucceeded."""
    async with trio.open_nursery() as nursery:
        server = FakeWatchServer(nursery)
        async with open_prober(transport="watch", connect_websocket=server.connect) as (
            prober,
            reports,
        ):
            prober.probe(PEER)
            assert await reports.next() == (0.0, ANSWER)
            joined = SeedNodesDocument("akka://svc@10.0.0.2:25520", [Member("n1"), Member("n2")])
            await trio.sleep(1)
            await server.connections[0].send_message(encode_seed_nodes(joined))  # bytes too
            assert await reports.next() == (
                1.0,
                ProbeSucceeded(PEER, "akka://svc@10.0.0.2:25520", ["n1", "n2"], None),
            )
            stats = prober.statistics()
        nursery.cancel_scope.cancel()
    [(address, resource, headers, max_size)] = server.calls
    assert (address, resource) == (PEER, "/bootstrap/watch")
    assert headers == [(b"Bootstrap-Contact-Point", b"10.0.0.1:8558")]
    assert server.request_headers[0][b"bootstrap-contact-point"] == b"10.0.0.1:8558"
    assert 64 * 1024 < max_size <= 80 * 1024
    assert (stats.watch_messages_received, stats.probes_sent, stats.open_watches) == (2, 1, 1)


@trio_test()
async def test_a_later_probe_of_a_watched_peer_is_a_probe_message() -> None:
    """Further probes go over the same watch as the text message 'probe'."""
    async with trio.open_nursery() as nursery:
        server = FakeWatchServer(nursery)
        async with open_prober(transport="watch", connect_websocket=server.connect) as (
            prober,
            reports,
        ):
            for second in range(5):
                prober.probe(PEER)
                assert await reports.next() == (float(second), ANSWER)
                await trio.sleep(1)
            assert server.probes_received == 4
            assert len(server.calls) == 1
            assert prober.statistics().probes_sent == 5
        nursery.cancel_scope.cancel()


@trio_test()
async def test_a_watch_that_does_not_answer_is_closed_and_reopened() -> None:
    """No document within probe_timeout of a 'probe': ProbeFailed, the watch is closed, and
    the next probe opens a new one."""
    async with trio.open_nursery() as nursery:
        server = FakeWatchServer(nursery, answer_probes=False)
        async with open_prober(transport="watch", connect_websocket=server.connect) as (
            prober,
            reports,
        ):
            prober.probe(PEER)
            assert await reports.next() == (0.0, ANSWER)
            await trio.sleep(1)
            prober.probe(PEER)
            assert await reports.next() == (
                4.0,
                ProbeFailed(PEER, "timed out after 3.0 s waiting for the watch"),
            )
            await trio.sleep(1)
            assert server.closed == 1
            assert prober.statistics().open_watches == 0
            prober.probe(PEER)
            assert await reports.next() == (5.0, ANSWER)
            assert len(server.calls) == 2
        nursery.cancel_scope.cancel()


@trio_test()
async def test_a_peer_that_closes_its_watch_is_reported_and_reopened() -> None:
    """A watch closed by the peer is ProbeFailed with the close code; the next probe reopens."""
    async with trio.open_nursery() as nursery:
        server = FakeWatchServer(nursery)
        async with open_prober(transport="watch", connect_websocket=server.connect) as (
            prober,
            reports,
        ):
            prober.probe(PEER)
            await reports.next()
            await trio.sleep(1)
            await server.connections[0].aclose(1001, "restarting")
            assert await reports.next() == (
                1.0,
                ProbeFailed(PEER, "watch closed (1001 going away: restarting)"),
            )
            prober.probe(PEER)
            assert await reports.next_event() == ANSWER
            assert len(server.calls) == 2
            assert dict(prober.statistics().failures_by_kind) == {"watch_closed": 1}
        nursery.cancel_scope.cancel()


@trio_test()
async def test_a_bad_pushed_document_fails_but_keeps_the_watch() -> None:
    """Garbage over a watch is a protocol error; the watch stays and the next push is fine."""
    async with trio.open_nursery() as nursery:
        server = FakeWatchServer(nursery)
        async with open_prober(transport="watch", connect_websocket=server.connect) as (
            prober,
            reports,
        ):
            prober.probe(PEER)
            await reports.next()
            await server.connections[0].send_message('{"selfNode": 1}')
            event = await reports.next_event()
            assert isinstance(event, ProbeFailed)
            assert event.reason.startswith("protocol error: selfNode must be a non-empty string")
            await server.connections[0].send_message(DOC_BYTES)
            assert await reports.next_event() == ANSWER
            assert len(server.calls) == 1
        nursery.cancel_scope.cancel()


@trio_test()
async def test_an_oversized_watch_message_closes_the_watch() -> None:
    """A message far over 64 KiB is refused by the websocket layer with 1009, and reported."""
    async with trio.open_nursery() as nursery:
        server = FakeWatchServer(nursery)
        async with open_prober(transport="watch", connect_websocket=server.connect) as (
            prober,
            reports,
        ):
            prober.probe(PEER)
            await reports.next()
            await server.connections[0].send_message("x" * 200_000)
            event = await reports.next_event()
        nursery.cancel_scope.cancel()
    assert isinstance(event, ProbeFailed)
    assert event.reason.startswith("watch closed (1009 message too big: Exceeded maximum")


@trio_test()
async def test_a_rejected_handshake_falls_back_to_polling_for_good() -> None:
    """A peer answering the upgrade with 404 (an Akka node) is polled over HTTP from then on,
    and the probe in flight is answered by the first poll."""
    polls = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal polls
        polls += 1
        assert request.headers["Bootstrap-Contact-Point"] == "10.0.0.1:8558"
        return httpx.Response(200, content=DOC_BYTES)

    async with trio.open_nursery() as nursery:
        server = FakeWatchServer(nursery, reject=404)
        async with open_prober(
            transport="watch", connect_websocket=server.connect, handler=handler
        ) as (prober, reports):
            prober.probe(PEER)
            assert await reports.next() == (0.0, ANSWER)
            await trio.sleep(1)
            prober.probe(PEER)
            assert await reports.next() == (1.0, ANSWER)
            # Even after a stop (the decision, then a failed join) it is not asked again.
            prober.stop(PEER)
            prober.probe(PEER)
            assert await reports.next_event() == ANSWER
        nursery.cancel_scope.cancel()
    assert (len(server.calls), polls) == (1, 3)


@trio_test(seconds=3600)
async def test_a_peer_without_websocket_stays_polled_past_watch_retry_after() -> None:
    """Unlike a flooding peer, a peer that answered the handshake with 404 speaks no websocket:
    it is still polled long after settings.watch_retry_after (it would cost a connection per
    retry for nothing)."""
    polls = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal polls
        polls += 1
        return httpx.Response(200, content=DOC_BYTES)

    later = 2 * SETTINGS.watch_retry_after
    async with trio.open_nursery() as nursery:
        server = FakeWatchServer(nursery, reject=404)
        async with open_prober(
            transport="watch", connect_websocket=server.connect, handler=handler
        ) as (prober, reports):
            prober.probe(PEER)
            assert await reports.next() == (0.0, ANSWER)
            await trio.sleep_until(later)
            prober.probe(PEER)
            assert await reports.next() == (later, ANSWER)
        nursery.cancel_scope.cancel()
    assert (len(server.calls), polls) == (1, 2)


@trio_test()
async def test_a_refused_watch_is_reported_and_retried() -> None:
    """A watch that cannot connect fails like a poll would, and the next probe tries again."""
    attempts = 0

    async def refuse(nursery: trio.Nursery, contact_point: ContactPoint, **_: Any) -> Any:
        nonlocal attempts
        attempts += 1
        error = OSError(f"all attempts to connect to {contact_point} failed")
        raise error from ExceptionGroup("attempts", [ConnectionRefusedError(111, "refused")])

    async with open_prober(transport="watch", connect_websocket=refuse) as (prober, reports):
        prober.probe(PEER)
        assert await reports.next_event() == ProbeFailed(PEER, "connection refused")
        prober.probe(PEER)
        event = await reports.next_event()
        assert event == ProbeFailed(PEER, "connection refused")
        assert isinstance(event, ProbeFailed)
        assert event.kind == "refused"
    assert attempts == 2


@trio_test()
async def test_a_watch_that_never_connects_times_out() -> None:
    """A handshake that hangs fails the probe at exactly probe_timeout."""

    async def hang(nursery: trio.Nursery, contact_point: ContactPoint, **_: Any) -> Any:
        await trio.sleep_forever()

    async with open_prober(transport="watch", connect_websocket=hang) as (prober, reports):
        prober.probe(PEER)
        assert await reports.next() == (3.0, ProbeFailed(PEER, "timed out after 3.0 s"))


@trio_test()
async def test_stop_and_the_end_of_run_close_watches_gracefully_at_once() -> None:
    """Closing a watch (stop, or run() ending) completes the close handshake with code 1000
    without waiting out any timeout: the websocket's reader outlives the cancelled session."""
    async with trio.open_nursery() as nursery:
        server = FakeWatchServer(nursery)
        second = ContactPoint("10.0.0.3", 8558)
        async with open_prober(transport="watch", connect_websocket=server.connect) as (
            prober,
            reports,
        ):
            prober.probe(PEER)
            prober.probe(second)
            await reports.next()
            await reports.next()
            prober.stop(PEER)
            await trio.testing.wait_all_tasks_blocked()
            assert prober.statistics().open_watches == 1
            assert server.closed == 1
        # open_prober has cancelled run() and waited for it to return.
        assert trio.current_time() == 0.0
        assert server.closed == 2
        assert [c.closed.code for c in server.connections] == [1000, 1000]  # type: ignore[union-attr]
        nursery.cancel_scope.cancel()


class FakeWatchConnection:
    """A watch connection without a network: the test pushes, the prober reads."""

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[str | bytes](math.inf)
        self.sent: list[str | bytes] = []
        self.closes = 0

    def push(self, message: str | bytes) -> None:
        self._send.send_nowait(message)

    async def get_message(self) -> str | bytes:
        try:
            return await self._receive.receive()
        except trio.ClosedResourceError:
            raise trio_websocket.ConnectionClosed(None) from None

    async def send_message(self, message: str | bytes) -> None:
        self.sent.append(message)

    async def aclose(self) -> None:
        self.closes += 1
        await self._receive.aclose()


@trio_test()
async def test_stop_closes_the_watch_once_and_drops_late_pushes() -> None:
    """stop() closes the watch exactly once; a document pushed after it is not reported."""
    connection = FakeWatchConnection()
    connection.push(DOC_BYTES)

    async def connect(nursery: trio.Nursery, contact_point: ContactPoint, **_: Any) -> Any:
        return connection

    async with open_prober(transport="watch", connect_websocket=connect) as (prober, reports):
        prober.probe(PEER)
        assert await reports.next_event() == ANSWER
        prober.stop(PEER)
        connection.push(DOC_BYTES)
        await trio.sleep(5)
        assert connection.closes == 1
        assert reports.drain() == []
        prober.stop_all()
        await trio.sleep(1)
        assert connection.closes == 1
        assert prober.statistics().open_watches == 0


@trio_test()
async def test_stop_during_the_probe_wait_drops_its_timeout() -> None:
    """A stop while a 'probe' awaits its answer reports nothing, not even the timeout."""
    connection = FakeWatchConnection()
    connection.push(DOC_BYTES)

    async def connect(nursery: trio.Nursery, contact_point: ContactPoint, **_: Any) -> Any:
        return connection

    async with open_prober(transport="watch", connect_websocket=connect) as (prober, reports):
        prober.probe(PEER)
        await reports.next()
        prober.probe(PEER)
        await trio.sleep(1)
        assert connection.sent == ["probe"]
        prober.stop(PEER)
        await trio.sleep(10)
        assert reports.drain() == []
        assert connection.closes == 1


# --- real sockets on loopback ---------------------------------------------------------------------

# Outgoing connections bind the node's own address, so it must be one of this host's.
LOOPBACK = ContactPoint("127.0.0.1", 8558)


class StandInServer:
    """A management-endpoint stand-in on hypercorn: serves the document, optionally watches.

    ``clients`` records the peer address of every request and websocket: one TCP connection
    is one (host, port) pair, so its size counts accepted connections.
    """

    def __init__(self, *, websocket: bool, close_watches: bool = False) -> None:
        self.websocket = websocket
        self.close_watches = close_watches  # close each watch right after its first document
        self.clients: list[tuple[str, int]] = []
        self.requests = 0
        self.watch_probes = 0
        self.watch_disconnects = 0
        self.watch_disconnected = trio.Event()
        self.contact_point_headers: set[str] = set()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        self.clients.append(tuple(scope["client"]))
        headers = dict(scope["headers"])
        self.contact_point_headers.add(headers[b"bootstrap-contact-point"].decode())
        if scope["type"] == "http":
            self.requests += 1
            status = 200 if scope["path"] == "/bootstrap/seed-nodes" else 404
            await send({"type": "http.response.start", "status": status, "headers": []})
            await send({"type": "http.response.body", "body": DOC_BYTES})
            return
        await receive()  # websocket.connect
        if not self.websocket or scope["path"] != "/bootstrap/watch":
            await send({"type": "websocket.close"})  # before accepting: HTTP 403
            return
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": DOC_BYTES.decode()})
        if self.close_watches:
            await send({"type": "websocket.close", "code": 1001, "reason": "restarting"})
            return
        while (await receive())["type"] == "websocket.receive":
            self.watch_probes += 1
            await send({"type": "websocket.send", "text": DOC_BYTES.decode()})
        self.watch_disconnects += 1
        self.watch_disconnected.set()

    def connections(self) -> int:
        return len(set(self.clients))


@asynccontextmanager
async def serve_stand_in(server: StandInServer) -> AsyncIterator[ContactPoint]:
    from hypercorn.config import Config
    from hypercorn.trio import serve

    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.keep_alive_timeout = 120.0  # above our keep-alive, as DESIGN section 5 asks
    async with trio.open_nursery() as nursery:
        binds: Sequence[str] = await nursery.start(serve, server, config)
        yield ContactPoint.parse(binds[0].removeprefix("http://"))
        nursery.cancel_scope.cancel()


async def probe_repeatedly(
    prober: Prober, reports: Reports, peers: Sequence[ContactPoint], rounds: int
) -> list[Event]:
    """Probe each peer ``rounds`` times, 0.05 s apart, as the machine would, after each answer."""
    events = []
    for _ in range(rounds):
        for peer in peers:
            prober.probe(peer)
        events.extend([await reports.next_event() for _ in peers])
        await trio.sleep(0.05)
    return events


@trio_test(seconds=20, real_clock=True)
async def test_polling_over_loopback_opens_one_connection() -> None:
    """20 polls at a 0.05 s interval use one TCP connection, from the node's own address."""
    server = StandInServer(websocket=False)
    own = ContactPoint("127.0.0.2", 8558)  # the source address we bind, seen by the server
    async with (
        serve_stand_in(server) as address,
        open_prober(self_contact_point=own) as (prober, reports),
    ):
        events = await probe_repeatedly(prober, reports, [address], 20)
        stats = prober.statistics()
    assert all(isinstance(event, ProbeSucceeded) for event in events), events
    assert server.requests == 20
    assert server.connections() == 1
    assert {host for host, _ in server.clients} == {"127.0.0.2"}
    assert server.contact_point_headers == {"127.0.0.2:8558"}
    assert stats.connections_opened == 1
    assert dict(stats.connections_opened_by_peer) == {address: 1}


@trio_test(seconds=20, real_clock=True)
async def test_a_stopped_peer_gets_a_new_connection_when_probed_again() -> None:
    """stop() closes the pooled connection: probing again opens exactly one new one."""
    server = StandInServer(websocket=False)
    async with (
        serve_stand_in(server) as address,
        open_prober(self_contact_point=LOOPBACK) as (prober, reports),
    ):
        await probe_repeatedly(prober, reports, [address], 3)
        prober.stop(address)
        await probe_repeatedly(prober, reports, [address], 3)
        stats = prober.statistics()
    assert (server.connections(), stats.connections_opened) == (2, 2)


@trio_test(seconds=20, real_clock=True)
async def test_watching_over_loopback_opens_one_connection_per_peer() -> None:
    """Two watched peers, 20 probes each: two connections in all, closed by us on stop."""
    servers = [StandInServer(websocket=True), StandInServer(websocket=True)]
    async with (
        serve_stand_in(servers[0]) as first,
        serve_stand_in(servers[1]) as second,
        open_prober(transport="watch", self_contact_point=LOOPBACK) as (prober, reports),
    ):
        events = await probe_repeatedly(prober, reports, [first, second], 20)
        stats = prober.statistics()
        prober.stop_all()
        for server in servers:  # we close: the server sees the watch go
            await server.watch_disconnected.wait()
    assert all(isinstance(event, ProbeSucceeded) for event in events), events
    assert [server.connections() for server in servers] == [1, 1]
    assert [server.watch_disconnects for server in servers] == [1, 1]
    assert [server.watch_probes for server in servers] == [19, 19]
    assert stats.connections_opened == 2
    assert stats.open_watches == 2


@trio_test(seconds=20, real_clock=True)
async def test_a_peer_without_websocket_is_polled_on_one_more_connection() -> None:
    """A peer that rejects the watch handshake costs one extra connection, then is polled."""
    server = StandInServer(websocket=False)
    async with (
        serve_stand_in(server) as address,
        open_prober(transport="watch", self_contact_point=LOOPBACK) as (prober, reports),
    ):
        events = await probe_repeatedly(prober, reports, [address], 10)
        stats = prober.statistics()
    assert all(isinstance(event, ProbeSucceeded) for event in events), events
    assert (server.requests, server.connections(), stats.connections_opened) == (10, 2, 2)


def test_watches_closed_by_the_peer_leave_no_socket_open() -> None:
    """A peer that closes each watch: every close is reported, and we close each TCP stream
    (trio-websocket's own aclose() skips it once the peer has closed)."""

    @trio_test(seconds=20, real_clock=True)
    async def run() -> None:
        server = StandInServer(websocket=True, close_watches=True)
        async with (
            serve_stand_in(server) as address,
            open_prober(transport="watch", self_contact_point=LOOPBACK) as (prober, reports),
        ):
            for _ in range(3):
                prober.probe(address)
                assert await reports.next_event() == ProbeSucceeded(
                    address, ANSWER.self_node, ANSWER.seed_nodes, ANSWER.cluster_id
                )
                assert await reports.next_event() == ProbeFailed(
                    address, "watch closed (1001 going away: restarting)"
                )
            assert prober.statistics().connections_opened == 3

    run()
    gc.collect()  # an unclosed socket would raise ResourceWarning here (an error under pytest)


@trio_test(seconds=20, real_clock=True)
async def test_polling_one_peer_does_not_turn_later_watches_into_tls() -> None:
    """Without TLS, a watch opened after some peer was polled is still plain websocket (the
    context httpx is given for plain HTTP once made every later watch attempt a TLS
    handshake: 'WRONG_VERSION_NUMBER: does the peer serve TLS?')."""
    servers = [StandInServer(websocket=False), StandInServer(websocket=True)]
    async with (
        serve_stand_in(servers[0]) as akka,
        serve_stand_in(servers[1]) as ours,
        open_prober(transport="watch", self_contact_point=LOOPBACK) as (prober, reports),
    ):
        polled = await probe_repeatedly(prober, reports, [akka], 2)
        watched = await probe_repeatedly(prober, reports, [ours], 2)
        stats = prober.statistics()
    assert all(isinstance(event, ProbeSucceeded) for event in polled + watched), polled + watched
    assert (servers[0].requests, servers[1].watch_probes) == (2, 1)
    assert stats.open_watches == 1


@trio_test(seconds=20, real_clock=True)
async def test_a_closed_port_is_connection_refused() -> None:
    """Nothing listening: both transports report 'connection refused'."""
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connecting is refused
        peer = ContactPoint("127.0.0.1", port)
        for transport in ("poll", "watch"):
            async with open_prober(transport=transport, self_contact_point=LOOPBACK) as (
                prober,
                reports,
            ):
                prober.probe(peer)
                assert await reports.next_event() == ProbeFailed(peer, "connection refused")


class CountingManagementApp(ManagementApp):
    """The project's own management app, recording the client address of every request."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.clients: list[tuple[str, int]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            self.clients.append(tuple(scope["client"]))
        await super().__call__(scope, receive, send)


@pytest.mark.parametrize("transport", ["poll", "watch"])
def test_against_the_real_management_server_one_connection(transport: str) -> None:
    """Our prober against our server (its real keep-alive config): 20 probes, one connection."""
    contacted: set[ContactPoint] = set()
    own = ContactPoint("127.0.0.2", 8558)

    @trio_test(seconds=20, real_clock=True)
    async def run() -> None:
        with trio.socket.socket() as sock:  # a free port on the server's loopback address
            await sock.bind(("127.0.0.3", 0))
            bind = ContactPoint("127.0.0.3", sock.getsockname()[1])
        app = CountingManagementApp(
            settings=SETTINGS,
            self_contact_point=bind,
            service_name="svc",
            document=lambda: DOC,
            status=dict,
            ready=lambda: False,
            on_contacted=contacted.add,
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(serve_management, app, bind=bind, settings=SETTINGS))
            async with open_prober(transport=transport, self_contact_point=own) as (
                prober,
                reports,
            ):
                events = await probe_repeatedly(prober, reports, [bind], 20)
                stats = prober.statistics()
            nursery.cancel_scope.cancel()
        answer = ProbeSucceeded(bind, ANSWER.self_node, ANSWER.seed_nodes, ANSWER.cluster_id)
        assert all(event == answer for event in events), events
        assert len(set(app.clients)) == 1
        assert {host for host, _ in app.clients} == {"127.0.0.2"}
        assert stats.connections_opened == 1

    run()
    assert contacted == {own}


# --- connects cut short (connects_cancelled) -------------------------------------------------


async def _cancelled_error() -> trio.Cancelled:
    """A real ``trio.Cancelled``, as a cancelled connect would raise it."""
    with trio.CancelScope() as scope:
        scope.cancel()
        try:
            await trio.sleep(1)
        except trio.Cancelled as cancelled:
            return cancelled
    raise AssertionError("not cancelled")


def test_a_watch_connect_cancelled_in_flight_is_counted_apart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bootstrap.prober._watch import OpenWatch

    async def hang(*args: object, **kwargs: object) -> trio.SocketStream:
        await trio.sleep_forever()
        raise AssertionError("not reached")

    monkeypatch.setattr(trio, "open_tcp_stream", hang)
    opened: list[ContactPoint] = []
    cancelled: list[None] = []
    connect = OpenWatch(
        local_address=lambda point: None,
        tls_context=None,
        connection_opened=opened.append,
        connect_cancelled=lambda: cancelled.append(None),
    )

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            with trio.move_on_after(1):
                await connect(nursery, PEER, resource="/", extra_headers=[], max_message_size=1024)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert (opened, len(cancelled)) == ([], 1)


def test_an_http_connect_cancelled_in_flight_is_counted_apart() -> None:
    async def main() -> None:
        prober = poll_prober()
        trace = prober._trace_for(PEER)  # the hook httpcore calls for each request
        await trace("connection.connect_tcp.failed", {"exception": await _cancelled_error()})
        await trace("connection.connect_tcp.failed", {"exception": ConnectionRefusedError()})
        statistics = prober.statistics()
        assert (statistics.connections_opened, statistics.connects_cancelled) == (0, 1)
        await trace("connection.connect_tcp.complete", {})
        assert prober.statistics().connections_opened == 1

    trio.run(main)
