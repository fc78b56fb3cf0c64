"""Tests of the management server: every endpoint in-process, the watch under a fake clock, then
real sockets through hypercorn.

Testing policy:

* Every test runs under an absolute ``trio.fail_after`` (:func:`tests.helpers.running.run`), so
  a hang is a failure with a traceback, never a stuck suite.
* Timed behaviour (watch pushes) runs under ``trio.testing.MockClock(autojump_threshold=0)``
  and asserts exact virtual times: the clock only moves when every task is blocked, so "pushed
  at t=1.0" means exactly the periodic deadline, not "roughly a second later".
* HTTP endpoints are exercised in-process through ``httpx.ASGITransport``; the watch by
  driving the ASGI websocket messages directly through in-memory trio channels
  (:class:`tests.helpers.asgi_websocket.AsgiWebsocket`). The node side of the app is
  :class:`tests.helpers.fake_node.FakeNode`.
* The real-socket tests bind 127.0.0.1 on a free port and use real time with short intervals;
  they check what only a real server shows: binding, keep-alive reuse, websocket framing, and
  a clean close on shutdown.
"""

from __future__ import annotations

import errno
import functools
import gc
import json
import logging
import math
import socket
from collections.abc import Mapping
from typing import Any

import httpx
import pytest
import trio
import trio.testing
import trio_websocket

from bootstrap import ContactPoint, Member, SeedNodesDocument, Settings, UsageError
from bootstrap.core.wire import CONTACT_POINT_HEADER, decode_seed_nodes, encode_seed_nodes
from bootstrap.server import (
    ManagementApp,
    Message,
    management_server_config,
    serve_management,
)
from tests.helpers.asgi_websocket import AsgiWebsocket
from tests.helpers.fake_node import EMPTY, PEER, SELF, SETTINGS, FakeNode
from tests.helpers.ports import free_port
from tests.helpers.running import autojump_clock, run

PUSH = SETTINGS.watch_push_interval
JOINED = SeedNodesDocument(
    "http://127.0.0.1:8558", (Member("http://127.0.0.1:8558"),), cluster_id="c1", service_name="svc"
)


def client(app: ManagementApp, *, root_path: str = "") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, root_path=root_path)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def get(
    app: ManagementApp, path: str, *, headers: Mapping[str, str] | None = None
) -> httpx.Response:
    async with client(app) as http:
        return await http.get(path, headers=headers)


# --- HTTP endpoints, in-process ----------------------------------------------------------------


def test_seed_nodes_serves_the_encoded_document() -> None:
    """GET /bootstrap/seed-nodes answers 200 JSON with exactly encode_seed_nodes(document())."""
    node = FakeNode(document=JOINED)

    async def test() -> None:
        response = await get(node.app(), "/bootstrap/seed-nodes")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.headers["cache-control"] == "no-store"
        assert response.content == encode_seed_nodes(JOINED)
        assert decode_seed_nodes(response.content) == JOINED

    run(test)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("10.0.0.7:8558", PEER),
        ("[::1]:8558", ContactPoint("::1", 8558)),
        ("Node-3.Example.COM.:9000", ContactPoint("node-3.example.com", 9000)),
    ],
)
def test_seed_nodes_reports_a_valid_contact_point_header(
    header: str, expected: ContactPoint
) -> None:
    """A valid Bootstrap-Contact-Point header on a seed-nodes request reaches on_contacted."""
    node = FakeNode()

    async def test() -> None:
        response = await get(
            node.app(), "/bootstrap/seed-nodes", headers={"Bootstrap-Contact-Point": header}
        )
        assert response.status_code == 200
        assert node.contacted == [expected]

    run(test)


@pytest.mark.parametrize(
    "header",
    [
        "not a host!:8558",
        "10.0.0.7",  # no port: the wire format is host:port
        "10.0.0.7:99999",
        "10.0.0.7:http",
        "[::1:8558",
        "",
        "a" * 400 + ":8558",
        "höst:8558",
    ],
)
def test_seed_nodes_ignores_an_invalid_contact_point_header(header: str) -> None:
    """An unparsable header is ignored: no contact, and the request is still answered."""
    node = FakeNode()

    async def test() -> None:
        async with client(node.app()) as http:
            # Bytes, so a non-ASCII value reaches the server as sent.
            response = await http.get(
                "/bootstrap/seed-nodes", headers={b"Bootstrap-Contact-Point": header.encode()}
            )
        assert response.status_code == 200
        assert response.content == encode_seed_nodes(EMPTY)
        assert node.contacted == []

    run(test)


def test_invalid_header_is_logged_once_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    """A peer repeating the same bad header produces one DEBUG line, not one per probe."""
    caplog.set_level(logging.DEBUG, logger="bootstrap.server")
    node = FakeNode()

    async def test() -> None:
        app = node.app()
        async with client(app) as http:
            for _ in range(3):
                await http.get("/bootstrap/seed-nodes", headers={"Bootstrap-Contact-Point": "x:y"})
            await http.get("/bootstrap/seed-nodes", headers={"Bootstrap-Contact-Point": "x:z"})

    run(test)
    records = [r for r in caplog.records if "Bootstrap-Contact-Point" in r.getMessage()]
    assert [r.levelno for r in records] == [logging.DEBUG, logging.DEBUG]
    assert "'x:y'" in records[0].getMessage()
    assert "'x:z'" in records[1].getMessage()


def test_contact_point_header_is_only_read_on_seed_nodes() -> None:
    """Status, alive and ready requests are not probes: their header is not a contact."""
    node = FakeNode()

    async def test() -> None:
        headers = {"Bootstrap-Contact-Point": str(PEER)}
        for path in ("/bootstrap/status", "/alive", "/ready"):
            await get(node.app(), path, headers=headers)
        assert node.contacted == []

    run(test)


def test_on_contacted_raising_does_not_break_the_answer(caplog: pytest.LogCaptureFixture) -> None:
    """An exception from on_contacted is logged and the document is served all the same."""
    node = FakeNode(fail={"on_contacted"})

    async def test() -> None:
        response = await get(
            node.app(), "/bootstrap/seed-nodes", headers={"Bootstrap-Contact-Point": str(PEER)}
        )
        assert response.status_code == 200
        assert response.content == encode_seed_nodes(EMPTY)

    run(test)
    assert node.contacted == [PEER]
    assert any(r.levelno == logging.ERROR and r.exc_info for r in caplog.records)


def test_document_raising_gives_a_json_500(caplog: pytest.LogCaptureFixture) -> None:
    """document() raising answers 500 with a JSON error, logs it, and still counts the contact."""
    node = FakeNode(fail={"document"})

    async def test() -> None:
        response = await get(
            node.app(), "/bootstrap/seed-nodes", headers={"Bootstrap-Contact-Point": str(PEER)}
        )
        assert response.status_code == 500
        assert response.headers["content-type"] == "application/json"
        assert "error" in response.json()

    run(test)
    assert node.contacted == [PEER]
    assert any("membership unavailable" in r.exc_text for r in caplog.records if r.exc_text)


def test_status_serves_the_node_status() -> None:
    """GET /bootstrap/status answers 200 with the node's JSON body."""
    node = FakeNode(status={"phase": "decided", "decision": {"kind": "join-self"}, "reason": "ok"})

    async def test() -> None:
        response = await get(node.app(), "/bootstrap/status")
        assert response.status_code == 200
        assert response.json() == node.status

    run(test)


@pytest.mark.parametrize(
    ("status", "fail"),
    [
        ({"phase": "probing"}, {"status"}),
        ({"lastObservedAgo": math.nan}, set()),  # not JSON
        ({"when": object()}, set()),  # not JSON-ready
    ],
)
def test_status_failures_give_a_json_500(status: dict[str, object], fail: set[str]) -> None:
    """status() raising or returning something that is not JSON answers 500 with a JSON error."""
    node = FakeNode(status=status, fail=fail)

    async def test() -> None:
        response = await get(node.app(), "/bootstrap/status")
        assert response.status_code == 500
        assert set(response.json()) == {"error"}

    run(test)


def test_alive() -> None:
    """GET /alive answers 200 {"alive": true} whatever the node's state."""
    node = FakeNode(fail={"document", "status", "ready"})

    async def test() -> None:
        response = await get(node.app(), "/alive")
        assert (response.status_code, response.json()) == (200, {"alive": True})

    run(test)


def test_ready_follows_the_node() -> None:
    """GET /ready answers 503 before the node has joined and 200 after."""
    node = FakeNode()

    async def test() -> None:
        app = node.app()
        before = await get(app, "/ready")
        node.ready = True
        after = await get(app, "/ready")
        assert (before.status_code, before.json()) == (503, {"ready": False})
        assert (after.status_code, after.json()) == (200, {"ready": True})

    run(test)


def test_ready_raising_gives_a_json_500() -> None:
    """ready() raising answers 500 with a JSON error, not a crash."""
    node = FakeNode(fail={"ready"})

    async def test() -> None:
        response = await get(node.app(), "/ready")
        assert response.status_code == 500
        assert "error" in response.json()

    run(test)


def test_metrics_are_served_as_given_in_their_own_content_type() -> None:
    """GET /metrics answers what the metrics callback encoded, with its content type."""
    exposition = (b"cluster_bootstrap_decided 1.0\n", "text/plain; version=1.0.0; charset=utf-8")

    async def test() -> None:
        response = await get(FakeNode().app(metrics=lambda: exposition), "/metrics")
        assert response.status_code == 200
        assert response.content == exposition[0]
        assert response.headers["content-type"] == exposition[1]
        assert response.headers["cache-control"] == "no-store"

    run(test)


def test_metrics_raising_gives_a_json_500_and_no_metrics_is_404() -> None:
    """A metrics callback that raises is the node's bug: a logged 500, not a crash. An app
    given no metrics has no such endpoint."""

    def broken() -> tuple[bytes, str]:
        raise RuntimeError("collector broke")

    async def test() -> None:
        failed = await get(FakeNode().app(metrics=broken), "/metrics")
        assert (failed.status_code, "error" in failed.json()) == (500, True)
        assert (await get(FakeNode().app(), "/metrics")).status_code == 404

    run(test)


@pytest.mark.parametrize(
    "path", ["/", "/nope", "/bootstrap", "/bootstrap/seed-nodes/", "/bootstrap/seed-nodesx"]
)
def test_unknown_paths_are_404(path: str) -> None:
    """Any other path answers 404 with a JSON error."""

    async def test() -> None:
        response = await get(FakeNode().app(), path)
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/json"
        assert "error" in response.json()

    run(test)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("path", ["/bootstrap/seed-nodes", "/bootstrap/status", "/alive", "/ready"])
def test_wrong_method_is_405(method: str, path: str) -> None:
    """Known paths answer only GET: anything else is 405 with an Allow header, and no contact."""
    node = FakeNode()

    async def test() -> None:
        async with client(node.app()) as http:
            response = await http.request(
                method, path, headers={"Bootstrap-Contact-Point": str(PEER)}
            )
        assert response.status_code == 405
        assert response.headers["allow"] == "GET"
        assert "error" in response.json()
        assert node.contacted == []

    run(test)


def test_plain_get_of_the_watch_endpoint_is_426() -> None:
    """GET /bootstrap/watch without a websocket upgrade answers 426 Upgrade Required."""

    async def test() -> None:
        response = await get(FakeNode().app(), "/bootstrap/watch")
        assert response.status_code == 426
        assert response.headers["upgrade"] == "websocket"

    run(test)


def test_routes_below_a_root_path() -> None:
    """Mounted under a base path, the app routes on the path below it."""

    async def test() -> None:
        async with client(FakeNode().app(), root_path="/mgmt") as http:
            response = await http.get("/mgmt/alive")
        assert response.status_code == 200

    run(test)


def test_statistics_count_requests() -> None:
    """Every HTTP response, errors included, counts as a request served."""
    node = FakeNode()

    async def test() -> None:
        app = node.app()
        async with client(app) as http:
            for path in ("/alive", "/ready", "/nope", "/bootstrap/seed-nodes"):
                await http.get(path)
        stats = app.statistics()
        assert stats.requests_served == 4
        assert (stats.watches_open, stats.watches_opened_total, stats.documents_pushed) == (0, 0, 0)

    run(test)


def test_lifespan_startup_and_shutdown() -> None:
    """The lifespan scope accepts startup and shutdown and then returns."""

    async def test() -> None:
        to_app_send, to_app = trio.open_memory_channel[Message](10)
        from_app_send, from_app = trio.open_memory_channel[Message](10)
        await to_app_send.send({"type": "lifespan.startup"})
        await to_app_send.send({"type": "lifespan.shutdown"})
        await FakeNode().app()({"type": "lifespan"}, to_app.receive, from_app_send.send)
        assert [await from_app.receive(), await from_app.receive()] == [
            {"type": "lifespan.startup.complete"},
            {"type": "lifespan.shutdown.complete"},
        ]

    run(test)


# --- the watch, in-process under a fake clock ---------------------------------------------------


class Watch(AsgiWebsocket):
    """A peer watching the app in-process: its handshake's contact header, then every push."""

    def __init__(
        self,
        app: ManagementApp,
        *,
        path: str = "/bootstrap/watch",
        header: str | None = None,
        client: tuple[str, int] | None = None,
        extension: bool = True,
    ) -> None:
        headers = None if header is None else {CONTACT_POINT_HEADER: header}
        super().__init__(app, path=path, headers=headers, client=client, extension=extension)

    async def open(self, nursery: trio.Nursery) -> None:
        """Run the app's side in ``nursery`` and complete the handshake (accepted)."""
        nursery.start_soon(self.run_app)
        await self.connect()
        assert await self.next() == {"type": "websocket.accept"}

    async def document(self) -> tuple[float, SeedNodesDocument]:
        """The next pushed document and the virtual time it arrived."""
        message = await self.next()
        assert message["type"] == "websocket.send", message
        return trio.current_time(), decode_seed_nodes(message["text"].encode())


def test_watch_pushes_on_connect_then_every_push_interval() -> None:
    """A watch gets the document at t=0, then again every watch_push_interval though unchanged."""
    node = FakeNode()

    async def test() -> None:
        app = node.app()
        async with trio.open_nursery() as nursery:
            watch = Watch(app)
            await watch.open(nursery)
            pushes = [await watch.document() for _ in range(4)]
            assert pushes == [(t * PUSH, EMPTY) for t in range(4)]
            nursery.cancel_scope.cancel()

    run(test, clock=autojump_clock())


def test_notify_changed_pushes_a_new_document_at_once() -> None:
    """notify_changed() with a new document pushes it at that instant; the period restarts."""
    node = FakeNode()

    async def test() -> None:
        app = node.app()
        async with trio.open_nursery() as nursery:
            watch = Watch(app)
            await watch.open(nursery)
            assert await watch.document() == (0.0, EMPTY)
            await trio.sleep(0.25)
            node.document = JOINED
            app.notify_changed()
            assert await watch.document() == (0.25, JOINED)
            assert await watch.document() == (0.25 + PUSH, JOINED)
            nursery.cancel_scope.cancel()

    run(test, clock=autojump_clock())


def test_notify_changed_without_a_change_pushes_nothing() -> None:
    """notify_changed() with the same document sends nothing extra: the period stands."""
    node = FakeNode()

    async def test() -> None:
        app = node.app()
        async with trio.open_nursery() as nursery:
            watch = Watch(app)
            await watch.open(nursery)
            assert await watch.document() == (0.0, EMPTY)
            await trio.sleep(0.25)
            app.notify_changed()
            assert await watch.document() == (PUSH, EMPTY)
            assert app.statistics().documents_pushed == 2
            nursery.cancel_scope.cancel()

    run(test, clock=autojump_clock())


def test_probe_message_pushes_at_once_and_counts_as_contact() -> None:
    """A client `probe` message gets the document at once and reports the handshake's contact."""
    node = FakeNode()

    async def test() -> None:
        app = node.app()
        async with trio.open_nursery() as nursery:
            watch = Watch(app, header=str(PEER))
            await watch.open(nursery)
            assert node.contacted == [PEER]  # the handshake itself
            assert await watch.document() == (0.0, EMPTY)
            await trio.sleep(0.5)
            await watch.send({"type": "websocket.receive", "text": "probe"})
            assert await watch.document() == (0.5, EMPTY)
            assert node.contacted == [PEER, PEER]
            assert await watch.document() == (0.5 + PUSH, EMPTY)
            nursery.cancel_scope.cancel()

    run(test, clock=autojump_clock())


def test_probe_without_a_contact_point_header_still_pushes() -> None:
    """A watch opened without (or with a bad) header is served; its probes report no contact."""
    node = FakeNode()

    async def test() -> None:
        app = node.app()
        async with trio.open_nursery() as nursery:
            watch = Watch(app, header="garbage")
            await watch.open(nursery)
            assert await watch.document() == (0.0, EMPTY)
            await trio.sleep(0.5)
            await watch.send({"type": "websocket.receive", "text": "probe"})
            assert await watch.document() == (0.5, EMPTY)
            assert node.contacted == []
            nursery.cancel_scope.cancel()

    run(test, clock=autojump_clock())


def test_other_client_messages_are_ignored() -> None:
    """Messages other than the text `probe` (other text, bytes) change nothing."""
    node = FakeNode()

    async def test() -> None:
        app = node.app()
        async with trio.open_nursery() as nursery:
            watch = Watch(app, header=str(PEER))
            await watch.open(nursery)
            assert await watch.document() == (0.0, EMPTY)
            await trio.sleep(0.5)
            for message in ({"text": "hello"}, {"bytes": b"probe"}, {"text": "PROBE"}):
                await watch.send({"type": "websocket.receive", **message})
            assert await watch.document() == (PUSH, EMPTY)
            assert node.contacted == [PEER]
            nursery.cancel_scope.cancel()

    run(test, clock=autojump_clock())


@pytest.mark.parametrize("message", [{"text": "x" * 1025}, {"bytes": b"x" * 1025}])
def test_oversized_client_message_closes_the_watch(message: dict[str, Any]) -> None:
    """A client message over 1 KiB closes the watch with 1009 (message too big)."""

    async def test() -> None:
        app = FakeNode().app()
        async with trio.open_nursery() as nursery:
            watch = Watch(app)
            await watch.open(nursery)
            await watch.document()
            await watch.send({"type": "websocket.receive", **message})
            assert await watch.next() == {"type": "websocket.close", "code": 1009}
            await watch.finished.wait()
        assert app.statistics().watches_open == 0

    run(test, clock=autojump_clock())


def test_client_disconnect_ends_the_watch() -> None:
    """websocket.disconnect ends the app call quietly, and the watch is no longer counted open."""

    async def test() -> None:
        app = FakeNode().app()
        async with trio.open_nursery() as nursery:
            watch = Watch(app)
            await watch.open(nursery)
            await watch.document()
            assert app.statistics().watches_open == 1
            await watch.send({"type": "websocket.disconnect", "code": 1000})
            await watch.finished.wait()
        assert watch.pending() == 0  # no close sent back: the client already left
        stats = app.statistics()
        assert (stats.watches_open, stats.watches_opened_total, stats.documents_pushed) == (0, 1, 1)
        assert stats.requests_served == 0

    run(test, clock=autojump_clock())


def test_document_raising_closes_the_watch_with_1011(caplog: pytest.LogCaptureFixture) -> None:
    """document() raising during a watch closes it with 1011 (internal error) and logs why."""
    node = FakeNode()

    async def test() -> None:
        app = node.app()
        async with trio.open_nursery() as nursery:
            watch = Watch(app)
            await watch.open(nursery)
            await watch.document()
            node.fail.add("document")
            app.notify_changed()
            assert await watch.next() == {"type": "websocket.close", "code": 1011}
            await watch.finished.wait()

    run(test, clock=autojump_clock())
    assert any("membership unavailable" in r.exc_text for r in caplog.records if r.exc_text)


def test_server_shutdown_closes_the_watch_with_1001() -> None:
    """Cancelling the server (shutdown) sends a going-away close to every open watch."""

    async def test() -> None:
        app = FakeNode().app()
        watch = Watch(app)
        with trio.CancelScope() as server:
            async with trio.open_nursery() as nursery:
                await watch.open(nursery)
                await watch.document()
                server.cancel()
        assert await watch.next() == {"type": "websocket.close", "code": 1001}
        assert app.statistics().watches_open == 0

    run(test, clock=autojump_clock())


def test_notify_changed_reaches_every_watch() -> None:
    """notify_changed() pushes the new document to every open watch at the same instant."""
    node = FakeNode()

    async def test() -> None:
        app = node.app()
        async with trio.open_nursery() as nursery:
            watches = [Watch(app), Watch(app)]
            for watch in watches:
                await watch.open(nursery)
                assert await watch.document() == (0.0, EMPTY)
            await trio.sleep(0.5)
            node.document = JOINED
            app.notify_changed()
            for watch in watches:
                assert await watch.document() == (0.5, JOINED)
            stats = app.statistics()
            assert (stats.watches_open, stats.watches_opened_total) == (2, 2)
            nursery.cancel_scope.cancel()

    run(test, clock=autojump_clock())


@pytest.mark.parametrize("with_extension", [True, False])
def test_websocket_on_another_path_is_refused(with_extension: bool) -> None:
    """A websocket handshake to any other path is refused (404 JSON where the server can say so)."""
    node = FakeNode()

    async def test() -> None:
        watch = Watch(node.app(), path="/bootstrap/seed-nodes", header=str(PEER))
        if not with_extension:
            del watch.scope["extensions"]
        await watch.send({"type": "websocket.connect"})
        await watch.run_app()
        first = await watch.next()
        if with_extension:
            assert first["type"] == "websocket.http.response.start"
            assert first["status"] == 404
            body = await watch.next()
            assert "error" in json.loads(body["body"])
        else:
            assert first == {"type": "websocket.close"}
        assert node.contacted == []

    run(test, clock=autojump_clock())


# --- keep-alive, derived by the settings and configured in hypercorn ----------------------------


@pytest.mark.parametrize(
    "settings",
    [
        Settings(),
        Settings(probe_interval=5.0, probe_backoff_max=5.0),
        Settings(probe_interval=10.0, probe_jitter=0.5, probe_backoff_max=12.0),
        Settings(probe_interval=0.1, probe_jitter=0.0, probe_backoff_max=0.1, probe_timeout=0.1),
        Settings(probe_interval=30.0, probe_jitter=0.9, probe_timeout=20.0, probe_backoff_max=30.0),
    ],
)
def test_keep_alive_outlasts_every_probe_period(settings: Settings) -> None:
    """server keep-alive > client keepalive_expiry > longest probe period, for any settings."""
    longest = max(settings.probe_backoff_max, settings.probe_interval * (1 + settings.probe_jitter))
    assert settings.longest_probe_period >= longest + settings.probe_timeout
    assert settings.client_keepalive_expiry > settings.longest_probe_period
    assert settings.server_keep_alive_timeout > settings.client_keepalive_expiry
    config = management_server_config(bind=SELF, settings=settings)
    assert config.keep_alive_timeout == settings.server_keep_alive_timeout


def test_default_keep_alive_beats_the_library_defaults() -> None:
    """At default settings both timeouts exceed the 5 s httpx/hypercorn defaults that leaked."""
    assert Settings().client_keepalive_expiry > 5.0
    assert Settings().server_keep_alive_timeout > Settings().client_keepalive_expiry


@pytest.mark.parametrize(
    ("bind", "expected"),
    [
        (ContactPoint("127.0.0.1", 8558), "127.0.0.1:8558"),
        (ContactPoint("::1", 9000), "[::1]:9000"),
        (ContactPoint("10.1.2.3", 1), "10.1.2.3:1"),
    ],
)
def test_config_binds_exactly_the_contact_point(bind: ContactPoint, expected: str) -> None:
    """hypercorn binds the advertised address and port only, IPv6 bracketed, never a wildcard."""
    config = management_server_config(bind=bind, settings=SETTINGS)
    assert config.bind == [expected]
    assert config.insecure_bind == []
    assert config.accesslog is None
    assert config.websocket_max_message_size == 1024
    # Probe connections must never be recycled after a request count either.
    assert config.keep_alive_max_requests > 10**9


def test_config_refuses_a_contact_point_without_port() -> None:
    """A bind address without a port is a usage error, not a silent default."""
    with pytest.raises(UsageError, match="port"):
        management_server_config(bind=ContactPoint("127.0.0.1"), settings=SETTINGS)


# --- real sockets through hypercorn -------------------------------------------------------------


def free_ipv6_port() -> int | None:
    """A port free on ``::1`` right now, or None where there is no IPv6 loopback."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
            return int(sock.getsockname()[1])
    except OSError:
        return None


async def next_document(ws: trio_websocket.WebSocketConnection) -> SeedNodesDocument:
    """The next document pushed over a real watch (always a text message)."""
    message = await ws.get_message()
    assert isinstance(message, str)
    return decode_seed_nodes(message.encode())


async def drain(ws: trio_websocket.WebSocketConnection) -> None:
    """Receive until the connection closes (raises ConnectionClosed)."""
    while True:
        await ws.get_message()


def test_real_server_answers_every_endpoint() -> None:
    """Over TCP: every endpoint answers, the header is seen, and one connection serves them all."""
    node = FakeNode(document=JOINED, ready=True)
    bind = ContactPoint("127.0.0.1", free_port())

    async def test() -> None:
        app = node.app()
        async with trio.open_nursery() as nursery:
            await nursery.start(
                functools.partial(serve_management, app, bind=bind, settings=SETTINGS)
            )
            headers = {"Bootstrap-Contact-Point": str(PEER)}
            local_ports = set()
            async with httpx.AsyncClient(base_url=f"http://{bind}", headers=headers) as http:
                answers = {}
                for path in (
                    "/bootstrap/seed-nodes",
                    "/bootstrap/status",
                    "/alive",
                    "/ready",
                    "/nope",
                ):
                    response = await http.get(path)
                    answers[path] = response.status_code
                    stream = response.extensions["network_stream"]
                    local_ports.add(stream.get_extra_info("client_addr")[1])
                    if path == "/bootstrap/seed-nodes":
                        assert decode_seed_nodes(response.content) == JOINED
                response = await http.post("/alive")
                answers["POST /alive"] = response.status_code
            assert answers == {
                "/bootstrap/seed-nodes": 200,
                "/bootstrap/status": 200,
                "/alive": 200,
                "/ready": 200,
                "/nope": 404,
                "POST /alive": 405,
            }
            # Keep-alive: every request rode the same TCP connection.
            assert len(local_ports) == 1
            assert node.contacted == [PEER]
            assert app.statistics().requests_served == 6
            nursery.cancel_scope.cancel()

    run(test)


def test_real_watch_pushes_documents_and_answers_probe() -> None:
    """Over a real websocket: documents arrive periodically, on probe, and after a change."""
    node = FakeNode()
    bind = ContactPoint("127.0.0.1", free_port())
    # A 0.1 s push period keeps the real-time test short.
    settings = Settings(probe_interval=0.2, probe_jitter=0.5)

    async def test() -> None:
        app = node.app(settings)
        async with trio.open_nursery() as nursery:
            await nursery.start(
                functools.partial(serve_management, app, bind=bind, settings=settings)
            )
            url = f"ws://{bind}/bootstrap/watch"
            header = [(b"Bootstrap-Contact-Point", str(PEER).encode())]
            async with trio_websocket.open_websocket_url(url, extra_headers=header) as ws:
                first = await next_document(ws)
                second = await next_document(ws)
                assert first == second == EMPTY
                await ws.send_message("probe")
                node.document = JOINED
                app.notify_changed()
                documents = {await next_document(ws)}
                while JOINED not in documents:
                    documents.add(await next_document(ws))
            assert node.contacted[:2] == [PEER, PEER]  # handshake, then the probe
            assert app.statistics().watches_opened_total == 1
            nursery.cancel_scope.cancel()

    run(test)


# trio_websocket 0.12 does not close its socket when the server refuses the handshake or closes
# the connection first; such tests collect it themselves, under their own filter, so that the
# expected ResourceWarning is not raised in whichever later test the garbage collector runs.
COLLECTS_UNCLOSED_SOCKETS = pytest.mark.filterwarnings("ignore::ResourceWarning")


@COLLECTS_UNCLOSED_SOCKETS
def test_real_watch_closes_too_big_messages() -> None:
    """hypercorn enforces the 1 KiB bound on client messages: the watch closes with 1009."""
    bind = ContactPoint("127.0.0.1", free_port())

    async def test() -> None:
        app = FakeNode().app()
        async with trio.open_nursery() as nursery:
            await nursery.start(
                functools.partial(serve_management, app, bind=bind, settings=SETTINGS)
            )
            url = f"ws://{bind}/bootstrap/watch"
            async with trio_websocket.open_websocket_url(url) as ws:
                await ws.get_message()
                await ws.send_message("x" * 2048)
                with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                    await drain(ws)
            assert closed.value.reason is not None
            assert closed.value.reason.code == 1009
            nursery.cancel_scope.cancel()

    run(test)
    gc.collect()


@COLLECTS_UNCLOSED_SOCKETS
def test_real_shutdown_closes_watches_cleanly() -> None:
    """Cancelling serve_management closes an open watch with 1001 (going away), not a reset."""
    bind = ContactPoint("127.0.0.1", free_port())

    async def test() -> None:
        app = FakeNode().app()
        async with trio.open_nursery() as nursery:
            server = trio.CancelScope()

            async def serve(task_status: trio.TaskStatus[None]) -> None:
                with server:
                    await serve_management(
                        app, bind=bind, settings=SETTINGS, task_status=task_status
                    )

            await nursery.start(serve)
            url = f"ws://{bind}/bootstrap/watch"
            async with trio_websocket.open_websocket_url(url) as ws:
                await ws.get_message()
                server.cancel()
                with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                    await drain(ws)
            assert closed.value.reason is not None
            assert closed.value.reason.code == 1001

    run(test)
    gc.collect()


@pytest.mark.skipif(free_ipv6_port() is None, reason="no IPv6 loopback here")
def test_real_server_on_ipv6_loopback() -> None:
    """An IPv6 contact point is bound as [::1]:port and answers."""
    port = free_ipv6_port()
    assert port is not None
    bind = ContactPoint("::1", port)

    async def test() -> None:
        app = FakeNode().app()
        async with trio.open_nursery() as nursery:
            await nursery.start(
                functools.partial(serve_management, app, bind=bind, settings=SETTINGS)
            )
            async with httpx.AsyncClient() as http:
                response = await http.get(f"http://{bind}/alive")
            assert response.status_code == 200
            nursery.cancel_scope.cancel()

    run(test)


@COLLECTS_UNCLOSED_SOCKETS
def test_real_bind_conflict_raises_from_start() -> None:
    """A port already in use fails nursery.start() with a plain OSError (EADDRINUSE)."""

    async def test() -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            bind = ContactPoint("127.0.0.1", taken.getsockname()[1])
            async with trio.open_nursery() as nursery:
                with pytest.raises(OSError, match="in use") as raised:
                    await nursery.start(
                        functools.partial(
                            serve_management, FakeNode().app(), bind=bind, settings=SETTINGS
                        )
                    )
        assert raised.value.errno == errno.EADDRINUSE

    # hypercorn 0.18 does not close the socket whose bind failed; collected here, where its
    # ResourceWarning is expected (COLLECTS_UNCLOSED_SOCKETS).
    run(test)
    gc.collect()
