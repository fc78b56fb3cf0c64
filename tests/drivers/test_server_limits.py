"""Tests of the management server's limits on hostile input (``ServerLimits``).

Testing policy (as in ``test_server.py``):

* Every test runs under an absolute ``trio.fail_after`` (:func:`run`).
* Limits the app enforces (request bodies, requests and watches per client address, the watch
  message rate) are driven through the ASGI interface directly: a ``send`` that blocks stands
  in for a client that does not read, and the watch runs under
  ``trio.testing.MockClock(autojump_threshold=0)`` so rates are exact in virtual time.
* Limits hypercorn enforces (header size, the idle timer that ends slow loris connections) and
  the wiring of the app's answers to real connections (413 closes the connection, a refused
  handshake is a 429) run on 127.0.0.1 with real sockets and real time.
* Every refusal test also checks that the node keeps serving other clients, that nothing over a
  limit counts as a contact, and what ``statistics()`` says.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import logging
import math
from typing import Any

import attrs
import httpx
import pytest
import trio
import trio.testing
import trio_websocket

from bootstrap import ContactPoint, Settings, UsageError
from bootstrap.core.wire import decode_seed_nodes
from bootstrap.server import (
    ManagementApp,
    Message,
    ServerLimits,
    management_server_config,
    serve_management,
)
from tests.helpers.fake_node import EMPTY, PEER, SELF, SETTINGS, FakeNode
from tests.helpers.ports import free_port
from tests.helpers.running import autojump_clock, run

# The one piece of scaffolding still shared with a sibling module: a watch that decodes what is
# pushed. It belongs in tests/helpers/asgi_websocket.py (see the report of issue 10).
from .test_server import COLLECTS_UNCLOSED_SOCKETS, Watch

CLIENT_A = ("10.0.0.7", 40001)
CLIENT_B = ("10.0.0.8", 40002)
SMALL = ServerLimits(
    max_requests_per_client=3, max_watches_per_client=2, max_watch_messages_per_push_interval=4
)


def http_scope(
    path: str = "/bootstrap/seed-nodes",
    *,
    method: str = "GET",
    headers: list[tuple[bytes, bytes]] | None = None,
    client: tuple[str, int] | None = CLIENT_A,
) -> dict[str, Any]:
    return {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"bootstrap-contact-point", str(PEER).encode())]
        if headers is None
        else headers,
        "client": client,
        "server": ("127.0.0.1", 8558),
    }


@attrs.define
class Response:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


async def no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def call(app: ManagementApp, scope: dict[str, Any]) -> Response:
    """One HTTP request through the app; the single response it sent."""
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, no_body, send)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    headers = dict(sent[0]["headers"])
    body = sent[1]["body"]
    assert headers[b"content-length"] == str(len(body)).encode()
    assert headers[b"content-type"] == b"application/json"
    return Response(sent[0]["status"], headers, body)


def ws_client(app: ManagementApp, client: tuple[str, int], *, extension: bool = True) -> Watch:
    """A watch from ``client`` naming :data:`PEER`; ``extension``: may refuse with a response."""
    return Watch(app, header=str(PEER), client=client, extension=extension)


# --- the limits themselves ----------------------------------------------------------------------


def test_default_limits() -> None:
    """The documented defaults: 8 KiB headers; 32 requests, 16 watches per client; 10 messages."""
    limits = ServerLimits()
    assert limits.max_header_bytes == 8 * 1024
    assert limits.max_requests_per_client == 32
    assert limits.max_watches_per_client == 16
    assert limits.max_watch_messages_per_push_interval == 10


def test_config_applies_the_limits() -> None:
    """hypercorn gets the header bound (HTTP/1 and 2) and no read timeout (it would cut watches)."""
    limits = ServerLimits(max_header_bytes=4096, max_requests_per_client=7)
    config = management_server_config(bind=SELF, settings=SETTINGS, limits=limits)
    assert config.h11_max_incomplete_size == 4096
    assert config.h2_max_header_list_size == 4096
    assert config.h2_max_concurrent_streams == 7
    assert config.read_timeout is None
    assert config.keep_alive_timeout == SETTINGS.server_keep_alive_timeout
    default = management_server_config(bind=SELF, settings=SETTINGS)
    assert default.h11_max_incomplete_size == 8 * 1024


@pytest.mark.parametrize(
    "fields",
    [
        {"max_header_bytes": 512},
        {"max_header_bytes": 8192.0},
        {"max_requests_per_client": 0},
        {"max_watches_per_client": -1},
        {"max_watch_messages_per_push_interval": True},
        {"max_requests_per_client": 1.5},
    ],
)
def test_limits_refuse_nonsense(fields: dict[str, Any]) -> None:
    """A limit that is not a positive integer (or headers below 1 KiB) is a UsageError."""
    with pytest.raises(UsageError, match="ServerLimits"):
        ServerLimits(**fields)


# --- request heads ------------------------------------------------------------------------------


def test_a_request_head_over_the_bound_is_431() -> None:
    """A whole head over max_header_bytes (one hypercorn let through): 431, closed, no contact."""
    node = FakeNode()

    async def test() -> None:
        app = node.app(limits=ServerLimits(max_header_bytes=2048))
        fits = [(b"bootstrap-contact-point", str(PEER).encode()), (b"x-filler", b"a" * 1900)]
        assert (await call(app, http_scope(headers=fits))).status == 200
        too_big = [*fits, (b"x-more", b"a" * 100)]
        response = await call(app, http_scope(headers=too_big))
        assert response.status == 431
        assert response.headers[b"connection"] == b"close"
        assert "error" in json.loads(response.body)
        long_path = await call(app, http_scope("/" + "a" * 4096, headers=[]))
        assert long_path.status == 431
        assert dict(app.statistics().requests_refused) == {"header-size": 2}
        assert node.contacted == [PEER]  # the request that fitted

    run(test)


def test_a_handshake_head_over_the_bound_is_refused() -> None:
    """A websocket handshake over max_header_bytes is refused with 431 before it is accepted."""
    node = FakeNode()

    async def test() -> None:
        app = node.app(limits=ServerLimits(max_header_bytes=2048))
        watch = ws_client(app, CLIENT_A)
        watch.scope["headers"].append((b"x-filler", b"a" * 3000))
        await watch.send({"type": "websocket.connect"})
        await watch.run_app()
        start = await watch.next()
        assert (start["type"], start["status"]) == ("websocket.http.response.start", 431)
        assert "error" in json.loads((await watch.next())["body"])
        assert node.contacted == []
        assert dict(app.statistics().requests_refused) == {"header-size": 1}

    run(test, clock=autojump_clock())


def test_a_handshake_offering_compression_is_refused() -> None:
    """A watch handshake offering permessage-deflate is refused: inflation would be unbounded."""
    node = FakeNode()

    async def test() -> None:
        app = node.app(limits=ServerLimits())
        watch = ws_client(app, CLIENT_A)
        offer = (b"sec-websocket-extensions", b"permessage-deflate; client_max_window_bits")
        watch.scope["headers"].append(offer)
        await watch.send({"type": "websocket.connect"})
        await watch.run_app()
        start = await watch.next()
        assert (start["type"], start["status"]) == ("websocket.http.response.start", 400)
        assert "compression" in json.loads((await watch.next())["body"])["error"]
        assert node.contacted == []
        assert dict(app.statistics().requests_refused) == {"websocket-extensions": 1}
        assert app.statistics().watches_opened_total == 0

    run(test, clock=autojump_clock())


# --- request bodies -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "announce",
    [
        (b"content-length", b"5"),
        (b"Content-Length", b" 1 "),
        (b"content-length", b"garbage"),
        (b"content-length", b""),
        (b"transfer-encoding", b"chunked"),
        (b"Transfer-Encoding", b"identity"),
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("path", ["/bootstrap/seed-nodes", "/alive", "/nope", "/bootstrap/watch"])
def test_a_request_announcing_a_body_is_413(
    announce: tuple[bytes, bytes], method: str, path: str
) -> None:
    """Content-Length > 0 or Transfer-Encoding: 413 JSON, connection: close, no contact."""
    node = FakeNode()

    async def test() -> None:
        app = node.app(limits=ServerLimits())
        headers = [(b"bootstrap-contact-point", str(PEER).encode()), announce]
        response = await call(app, http_scope(path, method=method, headers=headers))
        assert response.status == 413
        assert response.headers[b"connection"] == b"close"
        assert "error" in json.loads(response.body)
        stats = app.statistics()
        assert dict(stats.requests_refused) == {"request-body": 1}
        assert (stats.requests_served, stats.requests_in_flight) == (1, 0)
        assert node.contacted == []

    run(test)


@pytest.mark.parametrize("length", [b"0", b"00", b" 0"])
def test_content_length_zero_is_no_body(length: bytes) -> None:
    """Content-Length: 0 announces no body: the probe is answered and counted as a contact."""
    node = FakeNode()

    async def test() -> None:
        app = node.app(limits=ServerLimits())
        headers = [(b"bootstrap-contact-point", str(PEER).encode()), (b"content-length", length)]
        response = await call(app, http_scope(headers=headers))
        assert response.status == 200
        assert decode_seed_nodes(response.body) == EMPTY
        assert node.contacted == [PEER]
        assert dict(app.statistics().requests_refused) == {}

    run(test)


# --- in-flight requests per client address ------------------------------------------------------


class BlockedClient:
    """Requests whose responses are stuck in send() (a client that does not read) until released."""

    def __init__(self, app: ManagementApp) -> None:
        self.app = app
        self.release = trio.Event()
        self.blocked = 0

    async def request(self, scope: dict[str, Any]) -> None:
        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.blocked += 1
                await self.release.wait()

        await self.app(scope, no_body, send)


def test_in_flight_requests_per_client_are_bounded() -> None:
    """Over the per-address bound: 429 JSON with retry-after, no contact; other clients served."""
    node = FakeNode()
    limit = SMALL.max_requests_per_client

    async def test() -> None:
        app = node.app(limits=SMALL)
        stuck = BlockedClient(app)
        async with trio.open_nursery() as nursery:
            for _ in range(limit):
                nursery.start_soon(stuck.request, http_scope("/alive", client=CLIENT_A))
            await trio.testing.wait_all_tasks_blocked()
            assert stuck.blocked == limit
            assert app.statistics().requests_in_flight == limit
            # Same address, another port (another connection): refused, twice.
            for port in (50001, 50002):
                refused = await call(app, http_scope(client=(CLIENT_A[0], port)))
                assert refused.status == 429
                assert refused.headers[b"retry-after"] == b"2"  # ceil(probe_interval = 2.0)
                assert "error" in json.loads(refused.body)
            assert node.contacted == []  # a valid header on a refused probe is not a contact
            # Another address is served meanwhile, and its probe is a contact.
            served = await call(app, http_scope(client=CLIENT_B))
            assert served.status == 200
            assert node.contacted == [PEER]
            stuck.release.set()
        stats = app.statistics()
        assert dict(stats.requests_refused) == {"requests-per-client": 2}
        assert stats.requests_in_flight == 0
        # Once the stuck ones are answered, the same address is served again.
        again = await call(app, http_scope(client=CLIENT_A))
        assert again.status == 200

    run(test)


def test_requests_without_a_client_address_share_one_budget() -> None:
    """A server that gives no client address (a unix socket) puts its clients in one budget."""

    async def test() -> None:
        app = FakeNode().app(limits=SMALL)
        stuck = BlockedClient(app)
        async with trio.open_nursery() as nursery:
            for _ in range(SMALL.max_requests_per_client):
                nursery.start_soon(stuck.request, http_scope("/alive", client=None))
            await trio.testing.wait_all_tasks_blocked()
            assert (await call(app, http_scope(client=None))).status == 429
            stuck.release.set()
        assert app.statistics().requests_in_flight == 0

    run(test)


def test_cancelled_requests_release_their_slot() -> None:
    """A request cancelled while stuck in send (client gone, shutdown) frees its slot."""

    async def test() -> None:
        app = FakeNode().app(limits=SMALL)
        stuck = BlockedClient(app)
        async with trio.open_nursery() as nursery:
            for _ in range(SMALL.max_requests_per_client):
                nursery.start_soon(stuck.request, http_scope("/alive"))
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        assert app.statistics().requests_in_flight == 0
        assert (await call(app, http_scope())).status == 200

    run(test)


# --- open watches per client address ------------------------------------------------------------


@pytest.mark.parametrize("extension", [True, False])
def test_open_watches_per_client_are_bounded(extension: bool) -> None:
    """Over the per-address bound a handshake is refused (429 JSON, or 403), with no contact."""
    node = FakeNode()
    limit = SMALL.max_watches_per_client

    async def test() -> None:
        app = node.app(limits=SMALL)
        async with trio.open_nursery() as nursery:
            open_watches = []
            for port in range(limit):
                watch = ws_client(app, (CLIENT_A[0], 41000 + port))
                await watch.open(nursery)
                await watch.document()
                open_watches.append(watch)
            assert node.contacted == [PEER] * limit
            refused = ws_client(app, (CLIENT_A[0], 42000), extension=extension)
            await refused.send({"type": "websocket.connect"})
            await refused.run_app()
            first = await refused.next()
            if extension:
                assert first["type"] == "websocket.http.response.start"
                assert first["status"] == 429
                headers = dict(first["headers"])
                assert headers[b"retry-after"] == b"2"
                body = (await refused.next())["body"]
                assert headers[b"content-length"] == str(len(body)).encode()
                assert "error" in json.loads(body)
            else:
                assert first == {"type": "websocket.close"}  # the server answers 403
            assert refused.pending() == 0
            assert node.contacted == [PEER] * limit
            # Another address still gets a watch; so does this one once a watch closes.
            other = ws_client(app, CLIENT_B)
            await other.open(nursery)
            await open_watches[0].send({"type": "websocket.disconnect", "code": 1000})
            await open_watches[0].finished.wait()
            again = ws_client(app, (CLIENT_A[0], 43000))
            await again.open(nursery)
            await trio.testing.wait_all_tasks_blocked()  # the app counts just after accepting
            stats = app.statistics()
            assert stats.watches_open == limit + 1
            assert dict(stats.requests_refused) == {"watches-per-client": 1}
            nursery.cancel_scope.cancel()
        assert app.statistics().watches_open == 0

    run(test, clock=autojump_clock())


# --- watch message rate -------------------------------------------------------------------------


def test_watch_message_burst_over_the_rate_is_closed_with_1008() -> None:
    """One message more than the bucket holds, at one instant, closes the watch with 1008."""
    node = FakeNode()
    burst = SMALL.max_watch_messages_per_push_interval

    async def test() -> None:
        app = node.app(limits=SMALL)
        async with trio.open_nursery() as nursery:
            watch = ws_client(app, CLIENT_A)
            await watch.open(nursery)
            await watch.document()
            for _ in range(burst):
                await watch.send({"type": "websocket.receive", "text": "hello"})
            await trio.testing.wait_all_tasks_blocked()
            assert watch.pending() == 0  # ignored messages, within the rate: nothing happens
            await watch.send({"type": "websocket.receive", "text": "probe"})
            assert await watch.next() == {"type": "websocket.close", "code": 1008}
            await watch.finished.wait()
        stats = app.statistics()
        assert dict(stats.requests_refused) == {"watch-message-rate": 1}
        assert stats.watches_open == 0
        assert node.contacted == [PEER]  # the handshake only: the over-rate probe is not one

    run(test, clock=autojump_clock())


def test_watch_messages_at_the_rate_are_served_indefinitely() -> None:
    """A client sending `probe` at the limit's pace for many intervals is never closed."""
    node = FakeNode()
    per_interval = SMALL.max_watch_messages_per_push_interval
    push = SETTINGS.watch_push_interval

    async def test() -> None:
        app = node.app(limits=SMALL)
        async with trio.open_nursery() as nursery:
            watch = ws_client(app, CLIENT_A)
            await watch.open(nursery)
            await watch.document()
            for _ in range(50):
                for _ in range(per_interval):
                    await watch.send({"type": "websocket.receive", "text": "probe"})
                    assert (await watch.next())["type"] == "websocket.send"
                await trio.sleep(push)
                while watch.pending():
                    assert (await watch.next())["type"] == "websocket.send"
            assert dict(app.statistics().requests_refused) == {}
            assert app.statistics().watches_open == 1
            nursery.cancel_scope.cancel()

    run(test, seconds=100.0, clock=autojump_clock())  # virtual time: 50 push intervals


def test_oversized_watch_message_is_counted_and_closed_with_1009() -> None:
    """The app's own size check (hypercorn's backstop) counts a refusal as well."""

    async def test() -> None:
        app = FakeNode().app(limits=SMALL)
        async with trio.open_nursery() as nursery:
            watch = ws_client(app, CLIENT_A)
            await watch.open(nursery)
            await watch.document()
            await watch.send({"type": "websocket.receive", "bytes": b"x" * 1025})
            assert await watch.next() == {"type": "websocket.close", "code": 1009}
        assert dict(app.statistics().requests_refused) == {"watch-message-size": 1}

    run(test, clock=autojump_clock())


# --- logging of refusals ------------------------------------------------------------------------


def test_refusals_are_logged_once_per_client_and_kind(caplog: pytest.LogCaptureFixture) -> None:
    """Each (address, kind) is logged once at WARNING; every refusal is counted."""
    caplog.set_level(logging.WARNING, logger="bootstrap.server")

    async def test() -> None:
        app = FakeNode().app(limits=SMALL)
        body = [(b"content-length", b"3")]
        for client in (CLIENT_A, CLIENT_A, (CLIENT_A[0], 1), CLIENT_B):
            await call(app, http_scope(headers=body, client=client))
        stuck = BlockedClient(app)
        async with trio.open_nursery() as nursery:
            for _ in range(SMALL.max_requests_per_client):
                nursery.start_soon(stuck.request, http_scope("/alive", client=CLIENT_A))
            await trio.testing.wait_all_tasks_blocked()
            for _ in range(3):
                await call(app, http_scope(client=CLIENT_A))
            stuck.release.set()
        assert dict(app.statistics().requests_refused) == {
            "request-body": 4,
            "requests-per-client": 3,
        }

    run(test)
    lines = [r.getMessage() for r in caplog.records if r.name == "bootstrap.server"]
    assert all(r.levelno == logging.WARNING for r in caplog.records)
    assert len(lines) == 3, lines
    assert sum("10.0.0.7 (request-body)" in line for line in lines) == 1
    assert sum("10.0.0.8 (request-body)" in line for line in lines) == 1
    assert sum("10.0.0.7 (requests-per-client)" in line for line in lines) == 1


def test_memory_of_offenders_is_bounded() -> None:
    """An attacker cycling through addresses cannot grow the record of logged offenders."""

    async def test() -> None:
        app = FakeNode().app(limits=SMALL)
        body = [(b"transfer-encoding", b"chunked")]
        for index in range(2000):
            client = (f"10.{index // 65536}.{index // 256 % 256}.{index % 256}", 1)
            await call(app, http_scope(headers=body, client=client))
        assert len(app._refusals.reported_offenders) <= 256
        assert dict(app.statistics().requests_refused) == {"request-body": 2000}

    logging.getLogger("bootstrap.server").disabled = True
    try:
        run(test)
    finally:
        logging.getLogger("bootstrap.server").disabled = False


def test_statistics_refusals_are_a_read_only_snapshot() -> None:
    """statistics().requests_refused cannot be changed, and later refusals do not change it."""

    async def test() -> None:
        app = FakeNode().app(limits=SMALL)
        await call(app, http_scope(headers=[(b"content-length", b"1")]))
        snapshot = app.statistics().requests_refused
        with pytest.raises(TypeError):
            snapshot["request-body"] = 0  # type: ignore[index]
        await call(app, http_scope(headers=[(b"content-length", b"1")]))
        assert dict(snapshot) == {"request-body": 1}
        assert dict(app.statistics().requests_refused) == {"request-body": 2}

    run(test)


# --- real sockets through hypercorn -------------------------------------------------------------


def address(bind: ContactPoint) -> tuple[str, int]:
    assert bind.port is not None
    return bind.host, bind.port


async def read_until_closed(stream: trio.SocketStream) -> tuple[bytes, bool]:
    """Everything the server sends until it closes; True if it ended with a reset."""
    data = b""
    while True:
        try:
            chunk = await stream.receive_some(65536)
        except trio.BrokenResourceError:
            return data, True
        if not chunk:
            return data, False
        data += chunk


OVERSIZED_REQUEST = (
    b"GET /bootstrap/seed-nodes HTTP/1.1\r\nHost: x\r\n"
    + f"Bootstrap-Contact-Point: {PEER}\r\n".encode()
    + b"".join(b"X-Filler-%d: %s\r\n" % (i, b"a" * 1000) for i in range(20))
    + b"\r\n"
)


async def send_in_pieces(stream: trio.SocketStream, data: bytes, piece: int) -> None:
    """Send ``data`` in pieces far enough apart that the server reads each one separately."""
    with contextlib.suppress(trio.BrokenResourceError):  # the server may refuse midway
        for start in range(0, len(data), piece):
            await stream.send_all(data[start : start + piece])
            await trio.sleep(0.02)


@pytest.mark.parametrize("whole", [True, False])
def test_real_oversized_headers_are_refused_and_the_node_keeps_serving(whole: bool) -> None:
    """20 KiB of headers get 431 and a closed connection, sent whole or trickled; never a contact.

    Trickled, hypercorn refuses the incomplete head (h11 buffers at most 8 KiB of it) and the app
    never sees it; sent whole, it arrives in one read, so the app refuses it (and counts it).
    """
    node = FakeNode()
    bind = ContactPoint("127.0.0.1", free_port())

    async def test() -> None:
        app = node.app(limits=ServerLimits())
        async with trio.open_nursery() as nursery:
            await nursery.start(
                functools.partial(serve_management, app, bind=bind, settings=SETTINGS)
            )
            stream = await trio.open_tcp_stream(*address(bind))
            piece = len(OVERSIZED_REQUEST) if whole else 1024
            await send_in_pieces(stream, OVERSIZED_REQUEST, piece)
            answer, reset = await read_until_closed(stream)
            await stream.aclose()
            assert answer.startswith(b"HTTP/1.1 431 ") or (reset and not whole), answer
            assert node.contacted == []
            refused = dict(app.statistics().requests_refused)
            assert refused == ({"header-size": 1} if whole else {})
            # Headers of a realistic size still pass, and the node answers everyone.
            async with httpx.AsyncClient(base_url=f"http://{bind}") as http:
                response = await http.get(
                    "/bootstrap/seed-nodes",
                    headers={"Bootstrap-Contact-Point": str(PEER), "X-Filler": "a" * 4000},
                )
            assert response.status_code == 200
            assert node.contacted == [PEER]
            nursery.cancel_scope.cancel()

    run(test)


def test_real_http2_is_bounded_too() -> None:
    """HTTP/2 by prior knowledge (hypercorn speaks it in cleartext): 431 and 413 as over HTTP/1."""
    node = FakeNode()
    bind = ContactPoint("127.0.0.1", free_port())

    async def test() -> None:
        app = node.app(limits=ServerLimits())
        async with trio.open_nursery() as nursery:
            await nursery.start(
                functools.partial(serve_management, app, bind=bind, settings=SETTINGS)
            )
            async with httpx.AsyncClient(
                base_url=f"http://{bind}", http1=False, http2=True
            ) as http:
                big = {"Bootstrap-Contact-Point": str(PEER), "X-Filler": "a" * 20_000}
                try:
                    response = await http.get("/bootstrap/seed-nodes", headers=big)
                except httpx.HTTPError:
                    pass  # hypercorn's HTTP/2 header list bound, once the client has its settings
                else:
                    assert (response.http_version, response.status_code) == ("HTTP/2", 431)
                # Connection-specific headers (connection: close) are stripped, not fatal.
                refused = await http.post("/bootstrap/seed-nodes", content=b"hello")
                assert (refused.http_version, refused.status_code) == ("HTTP/2", 413)
                response = await http.get(
                    "/bootstrap/seed-nodes", headers={"Bootstrap-Contact-Point": str(PEER)}
                )
                assert (response.http_version, response.status_code) == ("HTTP/2", 200)
            assert node.contacted == [PEER]
            assert app.statistics().requests_refused["request-body"] == 1
            nursery.cancel_scope.cancel()

    run(test)


def test_real_request_with_a_body_gets_413_and_its_connection_closed() -> None:
    """Over TCP a body gets 413 with connection: close, and the server does close it."""
    node = FakeNode()
    bind = ContactPoint("127.0.0.1", free_port())

    async def test() -> None:
        app = node.app(limits=ServerLimits())
        async with trio.open_nursery() as nursery:
            await nursery.start(
                functools.partial(serve_management, app, bind=bind, settings=SETTINGS)
            )
            stream = await trio.open_tcp_stream(*address(bind))
            await stream.send_all(
                b"GET /bootstrap/seed-nodes HTTP/1.1\r\nHost: x\r\n"
                + f"Bootstrap-Contact-Point: {PEER}\r\n".encode()
                + b"Content-Length: 5\r\n\r\nhello"
            )
            answer, reset = await read_until_closed(stream)  # returns: the server closed it
            await stream.aclose()
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 413 "), answer
            assert b"\r\nconnection: close" in head.lower()
            assert "error" in json.loads(body)
            assert not reset
            headers = {"Bootstrap-Contact-Point": str(PEER)}
            async with httpx.AsyncClient(base_url=f"http://{bind}", headers=headers) as http:
                posted = await http.post("/bootstrap/seed-nodes", content=b"{}")
                assert posted.status_code == 413
                assert posted.headers["connection"] == "close"
                probe = await http.get("/bootstrap/seed-nodes")
                assert probe.status_code == 200
            stats = app.statistics()
            assert dict(stats.requests_refused) == {"request-body": 2}
            assert stats.requests_served == 3
            assert node.contacted == [PEER]  # only the probe without a body
            nursery.cancel_scope.cancel()

    run(test)


@COLLECTS_UNCLOSED_SOCKETS
def test_real_watches_per_client_are_refused_with_429() -> None:
    """Over TCP the watch beyond the per-address bound is rejected 429; HTTP is still served."""
    node = FakeNode()
    bind = ContactPoint("127.0.0.1", free_port())

    async def test() -> None:
        app = node.app(limits=SMALL)
        async with trio.open_nursery() as nursery:
            await nursery.start(
                functools.partial(serve_management, app, bind=bind, settings=SETTINGS)
            )
            url = f"ws://{bind}/bootstrap/watch"
            header = [(b"Bootstrap-Contact-Point", str(PEER).encode())]
            async with (
                trio_websocket.open_websocket_url(url, extra_headers=header) as first,
                trio_websocket.open_websocket_url(url, extra_headers=header) as second,
            ):
                for ws in (first, second):
                    decode_seed_nodes(str(await ws.get_message()).encode())
                with pytest.raises(trio_websocket.ConnectionRejected) as rejected:
                    async with trio_websocket.open_websocket_url(url, extra_headers=header):
                        pass
                assert rejected.value.status_code == 429
                assert rejected.value.body is not None
                assert "error" in json.loads(rejected.value.body)
                async with httpx.AsyncClient(base_url=f"http://{bind}") as http:
                    assert (await http.get("/alive")).status_code == 200
            assert node.contacted == [PEER, PEER]
            assert dict(app.statistics().requests_refused) == {"watches-per-client": 1}
            nursery.cancel_scope.cancel()

    run(test)
    gc.collect()


@COLLECTS_UNCLOSED_SOCKETS
def test_real_watch_flooding_messages_is_closed_with_1008() -> None:
    """Over a real websocket, a client flooding messages is closed with 1008 (policy violation)."""
    bind = ContactPoint("127.0.0.1", free_port())
    # A 10 s push interval refills one message per second: the burst is sure to outrun it.
    settings = Settings(probe_interval=10.0, probe_jitter=0.0)
    burst = ServerLimits().max_watch_messages_per_push_interval

    async def test() -> None:
        app = FakeNode().app(settings)
        async with trio.open_nursery() as nursery:
            await nursery.start(
                functools.partial(serve_management, app, bind=bind, settings=settings)
            )
            async with trio_websocket.open_websocket_url(f"ws://{bind}/bootstrap/watch") as ws:
                await ws.get_message()

                async def flood() -> None:
                    # One more than the bucket holds, and no more: anything the server has not
                    # read when it closes would reset the connection before the close frame.
                    for _ in range(burst + 1):
                        await ws.send_message("hello")
                    while True:
                        await ws.get_message()

                with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                    await flood()
            assert closed.value.reason is not None
            assert closed.value.reason.code == 1008
            assert dict(app.statistics().requests_refused) == {"watch-message-rate": 1}
            assert app.statistics().watches_open == 0
            nursery.cancel_scope.cancel()

    run(test)
    gc.collect()


# Short probe periods, so the derived server keep-alive is a few seconds of real time:
# longest probe period 0.2 s, client keepalive_expiry 3.2 s, server keep-alive 6.2 s.
LORIS_SETTINGS = Settings(
    probe_interval=0.1, probe_jitter=0.0, probe_backoff_max=0.1, probe_timeout=0.1
)


def test_real_slow_loris_is_closed_by_the_idle_timer_but_probes_are_not() -> None:
    """A request trickled byte by byte is cut at keep-alive; an idle probe connection survives."""
    keep_alive = LORIS_SETTINGS.server_keep_alive_timeout
    idle = LORIS_SETTINGS.client_keepalive_expiry  # the longest a real client keeps it idle
    assert math.isclose(keep_alive, 6.2)
    node = FakeNode()
    bind = ContactPoint("127.0.0.1", free_port())
    request = b"GET /alive HTTP/1.1\r\nHost: x\r\n\r\n"

    async def loris(closed_after: list[float]) -> None:
        stream = await trio.open_tcp_stream(*address(bind))
        started = trio.current_time()

        async def trickle() -> None:
            # Never completes the request line: "GET /bootstrap/seed-nodes?aaaa..."
            try:
                await stream.send_all(b"GET /bootstrap/seed-nodes?")
                while True:
                    await trio.sleep(0.5)
                    await stream.send_all(b"a")
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trickle)
            answer, _reset = await read_until_closed(stream)
            closed_after.append(trio.current_time() - started)
            nursery.cancel_scope.cancel()
        await stream.aclose()
        assert answer == b""

    async def probe_connection() -> None:
        stream = await trio.open_tcp_stream(*address(bind))
        for attempt in range(2):
            if attempt:
                await trio.sleep(idle)
            await stream.send_all(request)
            response = b""
            while not response.endswith(b"true}"):
                chunk = await stream.receive_some(65536)
                assert chunk, "the server closed an idle probe connection"
                response += chunk
            assert response.startswith(b"HTTP/1.1 200 ")
        await stream.aclose()

    async def test() -> None:
        app = node.app(LORIS_SETTINGS, limits=ServerLimits())
        async with trio.open_nursery() as nursery:
            await nursery.start(
                functools.partial(serve_management, app, bind=bind, settings=LORIS_SETTINGS)
            )
            closed_after: list[float] = []
            async with trio.open_nursery() as clients:
                clients.start_soon(loris, closed_after)
                clients.start_soon(probe_connection)
            assert keep_alive - 0.5 <= closed_after[0] <= keep_alive + 2.0
            # The same connection served both probes; the trickled request never reached the app.
            assert app.statistics().requests_served == 2
            nursery.cancel_scope.cancel()

    run(test, seconds=20.0)
