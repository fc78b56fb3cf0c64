"""Fuzzing the watch (websocket) handler through ASGI, under a fake clock.

Several watches run at once against one app with small random limits (so the per-address
bound and the message rate are hit often); each plays a script of client messages (``probe``,
other text, bytes, oversized messages, unexpected message types, pauses, a disconnect at any
point), while the node's document changes and its ``document()`` may start failing; the run
ends with every client disconnecting, or with the server shutting down.

Invariants: no exception escapes the app; every app call ends within bounded virtual time;
each watch gets a well-formed conversation (accepted then documents then at most one close
with a code in {1000, 1001, 1008, 1009, 1011}, or a refused handshake, or nothing if the client
left first); every pushed text decodes as a seed-nodes document the node served; 1008 and 1009
only follow a client that sent too many or too big messages; refusals are counted; and
afterwards no watch is open and every address may open a watch again.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import trio
import trio.testing
from hypothesis import event, given
from hypothesis import strategies as st

from bootstrap.core.wire import decode_seed_nodes
from bootstrap.server import MAX_CLIENT_MESSAGE_BYTES, ManagementApp, Message, ServerLimits
from tests.helpers.running import autojump_clock, run

from . import EMPTY, FUZZ, JOINED, PEER, SETTINGS, FakeNode

VIRTUAL_TIMEOUT = 10_000.0
HOSTS = ["10.0.0.7", "10.0.0.8"]
CLOSE_CODES = {1000, 1001, 1008, 1009, 1011}

# --- scripts ------------------------------------------------------------------------------------

_texts = st.sampled_from(["probe", "probe", "PROBE", "", "hello"]) | st.text(max_size=12)
_oversized = st.builds(
    lambda n, c: c * n,
    st.sampled_from([MAX_CLIENT_MESSAGE_BYTES, 1025, 600, 5000]),
    st.sampled_from("xé"),
)
client_messages = st.one_of(
    _texts.map(lambda text: {"type": "websocket.receive", "text": text}),
    st.binary(max_size=12).map(lambda data: {"type": "websocket.receive", "bytes": data}),
    _oversized.map(lambda text: {"type": "websocket.receive", "text": text}),
    _oversized.map(lambda text: {"type": "websocket.receive", "bytes": text.encode()}),
    st.sampled_from(
        [
            {"type": "websocket.receive", "text": "probe", "bytes": None},
            {"type": "websocket.receive"},  # neither text nor bytes
            {"type": "websocket.connect"},  # again
            {"type": "websocket.unknown"},
        ]
    ),
)
steps = st.one_of(
    client_messages.map(lambda message: ("send", message)),
    st.sampled_from([0.0, 0.01, 0.1, 0.5, 1.0, 2.5]).map(lambda dt: ("sleep", dt)),
    st.just(("change", None)),
    st.sampled_from([None, 1000, 1001, 1006]).map(lambda code: ("disconnect", code)),
)


@attrs.frozen
class Client:
    host: str
    path: str
    header: bytes | None
    extension: bool
    first: str  # "connect" or "disconnect": the client may leave during the handshake
    script: tuple[tuple[str, Any], ...]


clients = st.builds(
    Client,
    host=st.sampled_from(HOSTS),
    path=st.sampled_from(["/bootstrap/watch"] * 6 + ["/bootstrap/seed-nodes", "/x"]),
    header=st.sampled_from([str(PEER).encode(), b"garbage", None, b"h" * 9000]),
    extension=st.booleans(),
    first=st.sampled_from(["connect"] * 8 + ["disconnect"]),
    script=st.lists(steps, max_size=15).map(tuple),
)
limits = st.builds(
    ServerLimits,
    max_header_bytes=st.just(8192),
    max_requests_per_client=st.just(32),
    max_watches_per_client=st.integers(1, 3),
    max_watch_messages_per_push_interval=st.integers(1, 6),
)


# --- driving one client -------------------------------------------------------------------------


class Conversation:
    """One client's side of a watch: its script, and everything the app sent it."""

    def __init__(self, app: ManagementApp, client: Client, node: FakeNode) -> None:
        self.app = app
        self.client = client
        self.node = node
        headers = [] if client.header is None else [(b"bootstrap-contact-point", client.header)]
        self.scope: dict[str, Any] = {
            "type": "websocket",
            "path": client.path,
            "root_path": "",
            "query_string": b"",
            "headers": headers,
            "client": (client.host, 40000),
        }
        if client.extension:
            self.scope["extensions"] = {"websocket.http.response": {}}
        self._to_app_send, self._to_app = trio.open_memory_channel[Message](math.inf)
        self.received: list[Message] = []
        self.finished = trio.Event()
        self.server = trio.CancelScope()  # cancelled: the server shuts down
        self.started_at = 0.0
        # (virtual time, size) of each websocket.receive sent while the app may still read
        self.read_log: list[tuple[float, int]] = []
        self.left = False

    async def send_to_app(self, message: Message) -> None:
        await self._to_app_send.send(message)

    async def receive_from_client(self) -> Message:
        return await self._to_app.receive()

    async def send_to_client(self, message: Message) -> None:
        assert not self.finished.is_set()
        self.received.append(message)

    async def run_app(self) -> None:
        with self.server:
            await self.app(self.scope, self.receive_from_client, self.send_to_client)
        self.finished.set()

    async def play(self) -> None:
        self.started_at = trio.current_time()
        await self.send_to_app({"type": f"websocket.{self.client.first}"})
        for action, argument in self.client.script:
            if action == "send":
                if argument["type"] == "websocket.receive" and not self.left:
                    text, data = argument.get("text"), argument.get("bytes")
                    size = (
                        len(text.encode("utf-8", "surrogatepass"))
                        if text is not None
                        else len(data or b"")
                    )
                    self.read_log.append((trio.current_time(), size))
                await self.send_to_app(argument)
            elif action == "sleep":
                await trio.sleep(argument)
            elif action == "change":
                self.node.document = JOINED if self.node.document == EMPTY else EMPTY
                self.app.notify_changed()
            else:
                self.left = True
                await self.send_to_app({"type": "websocket.disconnect", "code": argument})

    async def leave(self) -> None:
        await self.send_to_app({"type": "websocket.disconnect", "code": 1000})


def refused_for_a_limit(conversation: Conversation) -> bool:
    """The handshake was refused for a limit (429/431, or 403 without the extension)."""
    received = conversation.received
    if not received or received[0]["type"] == "websocket.accept":
        return False
    head_too_big = len(conversation.client.header or b"") > conversation.app.limits.max_header_bytes
    return conversation.client.path == "/bootstrap/watch" or head_too_big


UNKNOWN = -1


def expected_limit_close(conversation: Conversation, fail_at: float | None) -> int | None:
    """The spec's verdict on the client's messages: 1008 (over the rate: a token bucket of
    `limit` messages refilled at `limit` per push interval), 1009 (over 1 KiB), None (neither),
    or UNKNOWN when document() started failing first (1011 may win the race)."""
    capacity = float(conversation.app.limits.max_watch_messages_per_push_interval)
    rate = capacity / SETTINGS.watch_push_interval
    tokens, last = capacity, conversation.started_at
    for at, size in conversation.read_log:
        if fail_at is not None and at >= conversation.started_at + fail_at:
            return UNKNOWN
        tokens = min(capacity, tokens + (at - last) * rate)
        last = at
        if tokens < 1.0:
            return 1008
        tokens -= 1.0
        if size > MAX_CLIENT_MESSAGE_BYTES:
            return 1009
    return None


def check_conversation(
    conversation: Conversation, *, shut_down: bool, fail_at: float | None
) -> str:
    """The app's side of one conversation is well formed; what kind it was."""
    received = conversation.received
    kinds = [m["type"] for m in received]
    if not kinds:
        return "nothing (client left during the handshake)"
    if kinds[0] == "websocket.http.response.start":
        assert kinds == ["websocket.http.response.start", "websocket.http.response.body"]
        status = received[0]["status"]
        assert status in {404, 429, 431}
        headers = dict(received[0]["headers"])
        assert headers[b"content-length"] == str(len(received[1]["body"])).encode()
        return f"refused {status}"
    if kinds == ["websocket.close"]:
        assert "code" not in received[0]  # a handshake refused without the extension: 403
        return "refused 403"
    assert kinds[0] == "websocket.accept"
    body = kinds[1:]
    closes = [m for m in received if m["type"] == "websocket.close"]
    assert len(closes) <= 1
    if closes:
        assert body[-1] == "websocket.close", "nothing may follow a close"
    assert set(body) <= {"websocket.send", "websocket.close"}
    for message in received:
        if message["type"] == "websocket.send":
            assert decode_seed_nodes(message["text"].encode()) in {EMPTY, JOINED}
    code = closes[0].get("code", 1000) if closes else None
    assert code is None or code in CLOSE_CODES
    expected = expected_limit_close(conversation, fail_at)
    if expected != UNKNOWN:
        # Both ways: closed for a limit exactly when the client went over it.
        assert (code if code in {1008, 1009} else None) == expected
    if code == 1001:
        assert shut_down
    if code == 1011:
        assert fail_at is not None
    return "client left" if code is None else f"closed {code}"


# --- the property -------------------------------------------------------------------------------


@FUZZ
@given(
    st.lists(clients, min_size=1, max_size=5),
    limits,
    st.booleans(),
    st.one_of(st.none(), st.sampled_from([0.0, 0.5, 3.0])),
)
def test_fuzz_watches(
    scripted: list[Client], server_limits: ServerLimits, shut_down: bool, fail_at: float | None
) -> None:
    """Any mix of watch clients and scripts: well-formed conversations, nothing left open."""
    node = FakeNode()
    app = node.app(limits=server_limits)
    conversations = [Conversation(app, client, node) for client in scripted]

    async def fail_documents_later(delay: float) -> None:
        await trio.sleep(delay)
        node.fail.add("document")
        app.notify_changed()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            if fail_at is not None:
                nursery.start_soon(fail_documents_later, fail_at)
            async with trio.open_nursery() as apps:
                for conversation in conversations:
                    apps.start_soon(conversation.run_app)
                async with trio.open_nursery() as players:
                    for conversation in conversations:
                        players.start_soon(conversation.play)
                await trio.sleep(1.5)  # let the scripts' effects play out
                if shut_down:
                    for conversation in conversations:
                        conversation.server.cancel()
                else:
                    for conversation in conversations:
                        await conversation.leave()
            nursery.cancel_scope.cancel()
        # Nothing left behind: no watch open, every address may watch again.
        assert app.statistics().watches_open == 0
        node.fail.clear()
        for host in HOSTS:
            again = Conversation(
                app, Client(host, "/bootstrap/watch", None, True, "connect", ()), node
            )
            async with trio.open_nursery() as nursery:
                nursery.start_soon(again.run_app)
                await again.send_to_app({"type": "websocket.connect"})
                await trio.testing.wait_all_tasks_blocked()
                assert again.received[0]["type"] == "websocket.accept"
                await again.leave()

    run(main, seconds=VIRTUAL_TIMEOUT, clock=autojump_clock())
    for conversation in conversations:
        assert conversation.finished.is_set()
        kind = check_conversation(conversation, shut_down=shut_down, fail_at=fail_at)
        event(kind)
    stats = app.statistics()
    assert stats.watches_open == 0
    refused = stats.requests_refused
    limit_refusals = sum(map(refused_for_a_limit, conversations))
    assert refused.get("watches-per-client", 0) + refused.get("header-size", 0) == limit_refusals
    rate_closes = sum(
        {"type": "websocket.close", "code": 1008} in c.received for c in conversations
    )
    assert refused.get("watch-message-rate", 0) == rate_closes
