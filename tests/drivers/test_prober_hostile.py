"""Tests of the prober against hostile or broken peers: every bad input ends as ``ProbeFailed``.

Testing policy (as in ``test_prober.py``, whose helpers these tests share): each test is a sync
function running ``trio.run`` under an absolute ``trio.fail_after``, on ``MockClock`` with exact
virtual times; the network is in memory (``httpx.MockTransport`` with an async handler, and
trio-websocket over ``trio.testing.memory_stream_pair`` or a fake watch connection).

What a peer controls, and what it must never get from us: an unbounded read (the size cap is
enforced while reading), a probe that outlives ``probe_timeout`` (a trickling body), a request
to somewhere else (redirects), a decoded document of the wrong kind (Content-Type, JSON shape),
unbounded work over a watch (a flood), or an exception out of the prober.
"""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest
import trio
import trio.testing
import trio_websocket

from bootstrap.core import (
    ContactPoint,
    Event,
    ProbeFailed,
    ProbeSucceeded,
    SeedNodesDocument,
    Settings,
    encode_seed_nodes,
)
from bootstrap.core.wire import MAX_DOCUMENT_BYTES

from .test_prober import ANSWER, DOC_BYTES, PEER, SETTINGS, open_prober, respond, trio_test

LIMIT = MAX_DOCUMENT_BYTES  # 65536
OVER_THE_LIMIT = ProbeFailed(PEER, "protocol error: document is over the limit of 65536 bytes")


class EndlessBody(httpx.AsyncByteStream):
    """A response body that never ends: ``chunk`` bytes per read, optionally ``delay`` apart.

    A plain iterator, not an async generator, so that stopping early leaves nothing for trio's
    finalizer to complain about; ``aclose`` records that the response was closed.
    """

    def __init__(self, chunk: int = 4096, delay: float = 0.0) -> None:
        self.chunk = chunk
        self.delay = delay
        self.reads = 0
        self.closed = False

    def __aiter__(self) -> EndlessBody:
        return self

    async def __anext__(self) -> bytes:
        if self.delay:
            await trio.sleep(self.delay)
        self.reads += 1
        return b" " * self.chunk

    async def aclose(self) -> None:
        self.closed = True


def json_response(body: bytes = DOC_BYTES, headers: dict[str, str] | None = None) -> httpx.Response:
    headers = {"content-type": "application/json", **(headers or {})}
    return httpx.Response(200, content=body, headers=headers)


async def first_failure(reports: Any) -> ProbeFailed:
    event = await reports.next_event()
    assert isinstance(event, ProbeFailed), event
    return event


# --- HTTP bodies ---------------------------------------------------------------------------------


@trio_test()
async def test_an_endless_body_is_cut_while_reading_at_the_size_limit() -> None:
    """A 200 whose body never ends fails 'over the limit' at once; the body was read no further
    than the limit plus one chunk, and the response was closed (the worker lives on)."""
    body = EndlessBody(chunk=4096)

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=body, headers={"content-type": "application/json"})

    async with open_prober(handler=handler) as (prober, reports):
        prober.probe(PEER)
        assert await reports.next() == (0.0, OVER_THE_LIMIT)
        # 16 chunks fill the limit exactly; the 17th goes over it, and nothing more is read.
        assert body.reads == LIMIT // 4096 + 1
        assert body.closed
        assert dict(prober.statistics().failures_by_kind) == {"protocol": 1}
        prober.probe(PEER)
        assert await reports.next_event() == OVER_THE_LIMIT


@trio_test()
async def test_an_announced_oversized_body_is_not_read_at_all() -> None:
    """A Content-Length over the limit fails the probe before a single byte of body is read."""
    body = EndlessBody(chunk=4096)

    async def handler(request: httpx.Request) -> httpx.Response:
        headers = {"content-type": "application/json", "content-length": str(10 * LIMIT)}
        return httpx.Response(200, stream=body, headers=headers)

    async with open_prober(handler=handler) as (prober, reports):
        prober.probe(PEER)
        assert await reports.next() == (0.0, OVER_THE_LIMIT)
    assert (body.reads, body.closed) == (0, True)


@trio_test()
async def test_a_trickling_body_is_cut_at_exactly_probe_timeout() -> None:
    """A body arriving one byte every 0.25 s, forever, fails the probe at 3.0 s, not later."""
    body = EndlessBody(chunk=1, delay=0.25)

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=body, headers={"content-type": "application/json"})

    async with open_prober(handler=handler) as (prober, reports):
        prober.probe(PEER)
        assert await reports.next() == (3.0, ProbeFailed(PEER, "timed out after 3.0 s"))
        reads_at_timeout = body.reads
        await trio.sleep(10)
        assert body.reads == reads_at_timeout == 11  # the twelfth read was cancelled
        assert body.closed
        assert dict(prober.statistics().failures_by_kind) == {"timeout": 1}


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_reported_and_never_followed(status: int) -> None:
    """A 3xx with Location fails naming the status, the target and that redirects are not
    followed; the target is never requested."""
    target = "http://10.0.0.99:8558/bootstrap/seed-nodes"
    requested: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        requested.append(str(request.url))
        return httpx.Response(status, headers={"location": target}, content=b"moved")

    @trio_test()
    async def run() -> None:
        async with open_prober(handler=handler) as (prober, reports):
            prober.probe(PEER)
            assert await reports.next_event() == ProbeFailed(
                PEER,
                f"HTTP {status} from 10.0.0.2:8558 redirects to '{target}': "
                "redirects are not followed",
            )
            await trio.sleep(10)
            assert dict(prober.statistics().failures_by_kind) == {"http_status": 1}

    run()
    assert requested == ["http://10.0.0.2:8558/bootstrap/seed-nodes"]


@trio_test()
async def test_a_long_redirect_target_is_quoted_cut_short() -> None:
    """The peer's Location is quoted and cut to 200 characters in the reason."""
    target = "http://elsewhere/" + "x" * 5000

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"location": target})

    async with open_prober(handler=handler) as (prober, reports):
        prober.probe(PEER)
        event = await first_failure(reports)
    shown = repr(target[:200] + "...")
    assert event.reason == (
        f"HTTP 302 from 10.0.0.2:8558 redirects to {shown}: redirects are not followed"
    )


@pytest.mark.parametrize(
    "content_type",
    ["text/html; charset=utf-8", "text/plain", "application/octet-stream", "application/jsonp"],
)
def test_a_document_that_is_not_application_json_is_a_protocol_error(content_type: str) -> None:
    """A valid document sent with another Content-Type fails the probe, naming the type."""

    @trio_test()
    async def run() -> None:
        async def handler(request: httpx.Request) -> httpx.Response:
            return json_response(headers={"content-type": content_type})

        async with open_prober(handler=handler) as (prober, reports):
            prober.probe(PEER)
            assert await reports.next_event() == ProbeFailed(
                PEER,
                f"protocol error: document sent with Content-Type '{content_type}', "
                "not application/json",
            )
            assert dict(prober.statistics().failures_by_kind) == {"protocol": 1}

    run()


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "Application/JSON;charset=UTF-8", None],
)
def test_application_json_with_parameters_or_no_content_type_is_accepted(
    content_type: str | None,
) -> None:
    """application/json (any case, with parameters) is accepted; so is a missing Content-Type,
    which says nothing (the strict decoder still judges the body)."""

    @trio_test()
    async def run() -> None:
        async def handler(request: httpx.Request) -> httpx.Response:
            headers = {} if content_type is None else {"content-type": content_type}
            return httpx.Response(200, content=DOC_BYTES, headers=headers)

        async with open_prober(handler=handler) as (prober, reports):
            prober.probe(PEER)
            assert await reports.next_event() == ANSWER

    run()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'"a string"', "document must be a JSON object, got a string"),
        (b'{"selfNode": "", "seedNodes": []}', "selfNode must be a non-empty string, got an empty"),
        (b'{"selfNode": "a", "seedNodes": null}', "seedNodes must be an array, got null"),
        (b'{"selfNode": "a", "seedNodes": [1]}', "seedNodes[0] must be an object, got an integer"),
        (
            b'{"selfNode": "a", "seedNodes": [{"node": "b", "nodeUid": "7"}]}',
            "seedNodes[0].nodeUid must be an integer, got a string",
        ),
        (
            b'{"selfNode": "a", "seedNodes": [{"node": "b", "nodeUid": 18446744073709551616}]}',
            "seedNodes[0].nodeUid is 18446744073709551616, outside the signed 64-bit range",
        ),
        (
            b'{"selfNode": "a", "seedNodes": [{"node": "b", "roles": "r"}]}',
            "seedNodes[0].roles must be an array, got a string",
        ),
        (
            b'{"selfNode": "a", "seedNodes": [], "serviceName": 5}',
            "serviceName must be a string, got an integer",
        ),
        (b'{"selfNode": "a", "seedNodes": [], "x": NaN}', "document contains NaN"),
    ],
)
def test_valid_json_of_the_wrong_shape_is_a_protocol_error(body: bytes, reason: str) -> None:
    """Parseable JSON that is not a seed-nodes document fails naming the offending field."""

    @trio_test()
    async def run() -> None:
        async def handler(request: httpx.Request) -> httpx.Response:
            return json_response(body)

        async with open_prober(handler=handler) as (prober, reports):
            prober.probe(PEER)
            event = await first_failure(reports)
            assert event.reason.startswith(f"protocol error: {reason}"), event
            assert dict(prober.statistics().failures_by_kind) == {"protocol": 1}

    run()


# --- watch floods --------------------------------------------------------------------------------

DOC_TEXT = DOC_BYTES.decode()
FLOODED = ProbeFailed(
    PEER,
    "watch flooded: more than 20 messages within 0.8 s (one watch push interval); "
    "closed it and polling the peer instead",
)


class FloodingPeer:
    """A watch server on in-memory streams, through real trio-websocket handshakes, that pushes
    ``count`` documents as fast as it can right after accepting."""

    def __init__(self, nursery: trio.Nursery, count: int) -> None:
        self._nursery = nursery
        self.count = count
        self.connects = 0
        self.close_code: int | None = None
        self.closed = trio.Event()

    async def connect(
        self,
        nursery: trio.Nursery,
        contact_point: ContactPoint,
        *,
        resource: str,
        extra_headers: list[tuple[bytes, bytes]],
        max_message_size: int,
    ) -> trio_websocket.WebSocketConnection:
        self.connects += 1
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
        connection = await request.accept()
        try:
            for _ in range(self.count):
                await connection.send_message(DOC_TEXT)
            await connection.get_message()  # until the client closes
        except trio_websocket.ConnectionClosed as closed:
            self.close_code = None if closed.reason is None else closed.reason.code
        self.closed.set()


@trio_test()
async def test_a_peer_flooding_its_watch_is_cut_off_and_polled_instead() -> None:
    """1000 documents pushed at once: 20 are taken (one push interval's bound), the 21st closes
    the watch (code 1000, by us) with a 'flood' failure, and the peer is polled from then on."""
    polls = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal polls
        polls += 1
        return json_response()

    async with trio.open_nursery() as nursery:
        peer = FloodingPeer(nursery, 1000)
        async with open_prober(
            transport="watch", connect_websocket=peer.connect, handler=handler
        ) as (prober, reports):
            prober.probe(PEER)
            events = [await reports.next() for _ in range(21)]
            assert events == [(0.0, ANSWER)] * 20 + [(0.0, FLOODED)]
            await peer.closed.wait()
            assert peer.close_code == 1000
            stats = prober.statistics()
            assert dict(stats.failures_by_kind) == {"flood": 1}
            assert (stats.watch_messages_received, stats.open_watches) == (21, 0)
            # Polled from now on: one request, one answer; no new watch.
            prober.probe(PEER)
            assert await reports.next_event() == ANSWER
            prober.stop(PEER)
            prober.probe(PEER)
            assert await reports.next_event() == ANSWER
            assert (peer.connects, polls) == (1, 2)
            await trio.sleep(10)
            assert reports.drain() == []
        nursery.cancel_scope.cancel()


@trio_test(seconds=600)
async def test_a_flooded_peer_is_polled_for_watch_retry_after_then_watched_again() -> None:
    """After a flood the peer is polled, not watched, for settings.watch_retry_after (180 s
    here), even across a stop; the first probe after that opens a watch again."""
    flooding, calm = ScriptedWatch(), ScriptedWatch()
    flooding.push(DOC_TEXT, 21)
    calm.push(DOC_TEXT)
    connects: list[float] = []
    polls: list[float] = []

    async def connect(nursery: trio.Nursery, contact_point: ContactPoint, **_: Any) -> Any:
        connects.append(trio.current_time())
        return flooding if len(connects) == 1 else calm

    async def handler(request: httpx.Request) -> httpx.Response:
        polls.append(trio.current_time())
        return json_response()

    retry = SETTINGS.watch_retry_after
    assert retry == 180.0  # 10 x (probe_backoff_max 15 s + probe_timeout 3 s)
    async with open_prober(transport="watch", connect_websocket=connect, handler=handler) as (
        prober,
        reports,
    ):
        prober.probe(PEER)
        assert [await reports.next_event() for _ in range(21)] == [ANSWER] * 20 + [FLOODED]
        for at in (1.0, retry - 1.0):
            await trio.sleep_until(at)
            prober.stop(PEER)  # a stop does not clear the record
            prober.probe(PEER)
            assert await reports.next() == (at, ANSWER)
        await trio.sleep_until(retry)
        prober.probe(PEER)
        assert await reports.next() == (retry, ANSWER)
        stats = prober.statistics()
    assert connects == [0.0, retry]
    assert polls == [1.0, retry - 1.0]
    assert (stats.open_watches, dict(stats.failures_by_kind)) == (1, {"flood": 1})


class ScriptedWatch:
    """A watch connection without a network: the test pushes; ``probe`` is answered with DOC."""

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[str | bytes](math.inf)
        self.closes = 0

    def push(self, message: str | bytes, times: int = 1) -> None:
        for _ in range(times):
            self._send.send_nowait(message)

    def close_from_the_peer(self) -> None:
        self._send.close()

    async def get_message(self) -> str | bytes:
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            reason = trio_websocket.CloseReason(1011, "boom")
            raise trio_websocket.ConnectionClosed(reason) from None

    async def send_message(self, message: str | bytes) -> None:
        self.push(DOC_TEXT)

    async def aclose(self) -> None:
        self.closes += 1
        await self._receive.aclose()


@trio_test()
async def test_the_flood_bound_is_per_push_interval_and_exactly_20() -> None:
    """20 messages in each 0.8 s push interval, for several intervals, are no flood; a 21st
    within one interval is."""
    watch = ScriptedWatch()
    watch.push(DOC_TEXT, 20)

    async def connect(nursery: trio.Nursery, contact_point: ContactPoint, **_: Any) -> Any:
        return watch

    async with open_prober(transport="watch", connect_websocket=connect, handler=respond()) as (
        prober,
        reports,
    ):
        prober.probe(PEER)
        for _ in range(3):
            assert [await reports.next_event() for _ in range(20)] == [ANSWER] * 20
            await trio.sleep(1.0)  # past the interval: a new window
            watch.push(DOC_TEXT, 20)
        assert [await reports.next_event() for _ in range(20)] == [ANSWER] * 20
        assert prober.statistics().failures_by_kind == {}
        watch.push(DOC_TEXT)
        assert await reports.next() == (3.0, FLOODED)
        await trio.testing.wait_all_tasks_blocked()
        assert watch.closes == 1


# --- many bad peers at once ----------------------------------------------------------------------


def peer(n: int) -> ContactPoint:
    return ContactPoint(f"10.0.0.{n}", 8558)


GOOD_POLLED, GOOD_WATCHED = peer(10), peer(11)
OTHER_SERVICE = encode_seed_nodes(SeedNodesDocument("akka://x@10.0.0.29:1", [], service_name="x"))

# peer -> what it does wrong; the first ProbeFailed about it must start with the reason.
POLLED_BAD: dict[ContactPoint, tuple[str, str]] = {
    peer(20): ("endless body", "protocol error: document is over the limit of 65536 bytes"),
    peer(21): ("trickling body", "timed out after 3.0 s"),
    peer(22): ("redirect", "HTTP 302 from 10.0.0.22:8558 redirects to 'http://10.0.0.10:8558/"),
    peer(23): ("HTML", "protocol error: document sent with Content-Type 'text/html; charset"),
    peer(24): ("malformed JSON", "protocol error: document is not valid JSON"),
    peer(25): ("wrong shape", "protocol error: seedNodes[0] must be an object"),
    peer(26): ("HTTP 500", "HTTP 500 from 10.0.0.26:8558"),
    peer(27): ("reset mid-answer", "connection reset"),
    peer(28): ("nothing listening", "connection refused"),
    peer(29): ("another service", "peer serves service 'x', expected 'svc'"),
    peer(30): ("compressed", "protocol error: document sent with Content-Encoding gzip"),
}
WATCHED_BAD: dict[ContactPoint, tuple[str, str]] = {
    peer(40): ("flood", "watch flooded: more than 20 messages"),
    peer(41): ("hanging handshake", "timed out after 3.0 s"),
    peer(42): ("closes its watch", "watch closed (1011 internal error: boom)"),
    peer(43): ("garbage over the watch", "protocol error: document is not valid UTF-8"),
}


async def hostile_http(request: httpx.Request) -> httpx.Response:
    """Every polled peer's behaviour, by host."""
    host = ContactPoint(request.url.host, request.url.port)
    if host in (GOOD_POLLED, peer(40)):
        return json_response()
    what = POLLED_BAD[host][0]
    if what == "endless body":
        return httpx.Response(200, stream=EndlessBody())
    if what == "trickling body":
        return httpx.Response(200, stream=EndlessBody(chunk=1, delay=0.25))
    if what == "redirect":
        return httpx.Response(302, headers={"location": f"http://{GOOD_POLLED}/bootstrap/x"})
    if what == "HTML":
        return httpx.Response(200, html="<html>login</html>")
    if what == "malformed JSON":
        return json_response(b"{not json")
    if what == "wrong shape":
        return json_response(b'{"selfNode": "a", "seedNodes": ["b"]}')
    if what == "HTTP 500":
        return httpx.Response(500, content=b"oops")
    if what == "reset mid-answer":
        raise httpx.ReadError("reset") from ConnectionResetError(104, "Connection reset by peer")
    if what == "nothing listening":
        raise httpx.ConnectError("refused") from ConnectionRefusedError(111, "refused")
    if what == "another service":
        return json_response(OTHER_SERVICE)
    assert what == "compressed"
    return json_response(b"\x1f\x8b", headers={"content-encoding": "gzip"})


@trio_test()
async def test_many_bad_peers_at_once_each_fail_alone_and_a_good_peer_is_still_served() -> None:
    """Fifteen peers misbehaving in fifteen ways at once, beside two good ones: each bad one
    ends as ProbeFailed with its reason, nothing escapes the prober, and the good peers are
    answered every round."""
    good_watch = ScriptedWatch()
    good_watch.push(DOC_TEXT)
    closing = ScriptedWatch()
    closing.push(DOC_TEXT)
    closing.close_from_the_peer()
    garbage = ScriptedWatch()
    garbage.push(b"\xff\xfe")

    async with trio.open_nursery() as nursery:
        flooding = FloodingPeer(nursery, 1000)

        async def connect(nursery: trio.Nursery, contact_point: ContactPoint, **kw: Any) -> Any:
            if contact_point == GOOD_WATCHED:
                return good_watch
            if contact_point == peer(40):
                return await flooding.connect(nursery, contact_point, **kw)
            if contact_point == peer(41):
                await trio.sleep_forever()
            if contact_point == peer(42):
                return closing
            if contact_point == peer(43):
                return garbage
            raise trio_websocket.ConnectionRejected(404, (), b"Not Found")  # polled instead

        async with open_prober(
            transport="watch", connect_websocket=connect, handler=hostile_http
        ) as (prober, reports):
            everyone = [GOOD_POLLED, GOOD_WATCHED, *POLLED_BAD, *WATCHED_BAD]
            for contact_point in everyone:
                prober.probe(contact_point)
            await trio.sleep(5)  # past every probe_timeout
            first = reports.drain()
            by_peer: dict[ContactPoint, list[Event]] = {}
            for event in first:
                by_peer.setdefault(event.contact_point, []).append(event)  # type: ignore[union-attr]
            assert set(by_peer) == set(everyone)
            for good in (GOOD_POLLED, GOOD_WATCHED):
                assert by_peer[good] == [answer_from(good)]
            for bad, (what, reason) in {**POLLED_BAD, **WATCHED_BAD}.items():
                failures = [e for e in by_peer[bad] if isinstance(e, ProbeFailed)]
                assert failures, (what, by_peer[bad])
                assert failures[0].reason.startswith(reason), (what, failures[0].reason)
            kinds = dict(prober.statistics().failures_by_kind)
            assert set(kinds) == {
                "protocol",
                "timeout",
                "http_status",
                "reset",
                "refused",
                "service_name",
                "flood",
                "watch_closed",
            }
            # Every worker lives on: the good peers are answered again, the bad ones fail again.
            for _ in range(3):
                for contact_point in everyone:
                    prober.probe(contact_point)
                await trio.sleep(5)
                again = reports.drain()
                answered = {e.contact_point for e in again if isinstance(e, ProbeSucceeded)}
                assert {GOOD_POLLED, GOOD_WATCHED, peer(40)} <= answered  # 40: polled now
                failed = {e.contact_point for e in again if isinstance(e, ProbeFailed)}
                assert set(POLLED_BAD) <= failed
        nursery.cancel_scope.cancel()


def answer_from(contact_point: ContactPoint) -> ProbeSucceeded:
    return ProbeSucceeded(contact_point, ANSWER.self_node, ANSWER.seed_nodes, ANSWER.cluster_id)


def test_settings_used_here_give_a_push_interval_of_0_8_s() -> None:
    """The flood reasons above assume the default 1 s probe interval and 0.2 jitter."""
    assert Settings() == SETTINGS
    assert SETTINGS.watch_push_interval == pytest.approx(0.8)
