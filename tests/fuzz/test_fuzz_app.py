"""Fuzzing the management app's HTTP side, called directly through ASGI (no sockets).

Inputs: arbitrary paths (percent-encoded, very long, non-ASCII, under a root_path), methods,
headers (random names and values, Bootstrap-Contact-Point garbage, huge values,
Content-Length/Transfer-Encoding), bodies, client addresses, limits, and node callbacks that
raise or return what is not JSON.

Invariants, for every request: no exception escapes the app; it sends exactly one response
start, with a status from the known set, then one final body that is valid JSON, with
``content-type: application/json`` and a ``content-length`` equal to the body's length; a 200
from ``/bootstrap/seed-nodes`` decodes with ``decode_seed_nodes`` to the node's document; and
``on_contacted`` is called only for a GET of ``/bootstrap/seed-nodes`` that was not refused and
carries a valid ``Bootstrap-Contact-Point``, with exactly that contact point.
For concurrent requests: a client address is refused (429) exactly when it already has the limit
in flight, other addresses are unaffected, and the in-flight count returns to 0.
"""

from __future__ import annotations

import json
import math
from typing import Any

import trio
import trio.testing
from hypothesis import event, given
from hypothesis import strategies as st

from bootstrap import ContactPoint
from bootstrap.core.wire import decode_seed_nodes
from bootstrap.server import Message, ServerLimits
from tests.helpers.running import run

from . import FUZZ, JOINED, FakeNode

KNOWN_STATUSES = {200, 404, 405, 413, 426, 429, 431, 500, 503}
PATHS = ["/bootstrap/seed-nodes", "/bootstrap/watch", "/bootstrap/status", "/alive", "/ready"]

# --- strategies ---------------------------------------------------------------------------------

_percent_encoded = st.lists(
    st.sampled_from(
        ["%2F", "%00", "%ff", "%C3%A9", "%", "%2", "/", "bootstrap", "seed-nodes", ".."]
    ),
    max_size=8,
).map(lambda parts: "/" + "".join(parts))
paths = (
    st.sampled_from(PATHS)
    | st.sampled_from(PATHS).map(lambda p: p + "/")
    | st.sampled_from(PATHS).map(str.upper)
    | _percent_encoded
    | st.text(max_size=30)  # non-ASCII, control characters, lone surrogates, no leading slash
    | st.builds(
        lambda n, c: "/" + c * n, st.sampled_from([300, 5000, 70_000]), st.sampled_from("aé")
    )
)
root_paths = st.sampled_from(["", "/mgmt", "/bootstrap", "/"]) | st.text(max_size=8)
methods = st.sampled_from(
    ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "get", "PRI"]
) | st.text(max_size=8)

_contact_point_values = (
    st.sampled_from(
        [
            b"10.0.0.7:8558",
            b"[::1]:8558",
            b"node-3.example.com:9000",
            b"10.0.0.7",
            b"10.0.0.7:0",
            b"10.0.0.7:99999",
            b"[::1:8558",
            b"::1",
            b"h\xc3\xb6st:8558",
            b"",
            b" 10.0.0.7:8558 ",
            b"a" * 400 + b":1",
            b"x:y",
        ]
    )
    | st.binary(max_size=40)
    | st.text(max_size=30).map(lambda t: t.encode("utf-8", "surrogatepass"))
)
_names = st.sampled_from(
    [
        b"bootstrap-contact-point",
        b"Bootstrap-Contact-Point",
        b"content-length",
        b"transfer-encoding",
        b"host",
        b"connection",
        b"upgrade",
        b"",
    ]
) | st.binary(min_size=1, max_size=20)
_values = _contact_point_values | st.sampled_from(
    [b"0", b"5", b"-1", b"+0", b"chunked", b"1" * 30, b"close", b"websocket"]
)
_huge_values = st.builds(lambda n: b"v" * n, st.sampled_from([1000, 4000, 9000, 70_000]))
headers = st.lists(st.tuples(_names, _values), max_size=5)
clients = st.none() | st.sampled_from([("10.0.0.7", 40001), ("10.0.0.8", 1), ("::1", 2), ("", 0)])
limits = st.builds(
    ServerLimits,
    max_header_bytes=st.sampled_from([1024, 4096, 8192]),
    max_requests_per_client=st.integers(1, 4),
    max_watches_per_client=st.integers(1, 4),
    max_watch_messages_per_push_interval=st.integers(1, 12),
)
failures = st.sets(st.sampled_from(["document", "status", "ready", "on_contacted"]))
statuses = st.sampled_from(
    [{"phase": "probing"}, {"lastObservedAgo": math.nan}, {"when": object()}, {"x": "é" * 10}]
)
bodies = st.lists(st.binary(max_size=64), max_size=3)


@st.composite
def scopes(draw: st.DrawFn) -> dict[str, Any]:
    """Half shaped like a probe (GET of a known path, a contact point header), half anything."""
    root = draw(root_paths)
    probe_like = draw(st.booleans())
    if probe_like:
        path = draw(st.sampled_from(["/bootstrap/seed-nodes"] * 4 + PATHS))
        method = draw(st.sampled_from(["GET", "GET", "GET", "POST"]))
        valid = st.sampled_from([b"10.0.0.7:8558", b"[fe80::1]:1", b"Node-3.Example.COM.:9000"])
        request_headers = [(b"bootstrap-contact-point", draw(valid | _contact_point_values))]
        request_headers += draw(st.lists(st.tuples(_names, _values), max_size=2))
    else:
        path = draw(paths)
        method = draw(methods)
        request_headers = draw(headers)
    if draw(st.integers(0, 9)) == 0:  # now and then, one huge header
        request_headers.append((draw(_names), draw(_huge_values)))
    request_headers = draw(st.permutations(request_headers))
    if probe_like or draw(st.booleans()):
        path = root + path  # ASGI puts the mount point in path as well
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": draw(st.sampled_from(["1.0", "1.1", "2"])),
        "method": method,
        "scheme": "http",
        "path": path,
        "root_path": root,
        "query_string": draw(st.binary(max_size=20)),
        "headers": request_headers,
        "server": ("127.0.0.1", 8558),
    }
    raw_path = draw(st.sampled_from(["encoded", "absent", "none"]))
    if raw_path == "encoded":
        scope["raw_path"] = path.encode("utf-8", "surrogatepass")
    elif raw_path == "none":
        scope["raw_path"] = None
    client = draw(clients | st.just("absent"))
    if client != "absent":
        scope["client"] = client
    return scope


# --- the oracle ---------------------------------------------------------------------------------


def routed(scope: dict[str, Any]) -> str:
    path: str = scope["path"]
    root: str = scope["root_path"]
    return path[len(root) :] if root and path.startswith(root) else path


def head_bytes(scope: dict[str, Any]) -> int:
    target = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogatepass")
    size = len(scope["method"]) + len(target) + len(scope["query_string"])
    return size + sum(len(name) + len(value) + 4 for name, value in scope["headers"])


def announces_body(scope: dict[str, Any]) -> bool:
    for name, value in scope["headers"]:
        if name.lower() == b"transfer-encoding":
            return True
        if name.lower() == b"content-length":
            try:
                if int(value.decode("ascii")) != 0 or not value.strip().isdigit():
                    return True
            except (UnicodeDecodeError, ValueError):
                return True
    return False


def header_contact_point(scope: dict[str, Any]) -> ContactPoint | None:
    """What the spec says the header means: host:port, ASCII, <= 300 characters, or nothing."""
    for name, value in scope["headers"]:
        if name.lower() == b"bootstrap-contact-point":
            if len(value) > 300 or not value.isascii():
                return None
            try:
                contact_point = ContactPoint.parse(value.decode("ascii"))
            except ValueError:
                return None
            return contact_point if contact_point.port is not None else None
    return None


def check_response(sent: list[Message]) -> tuple[int, dict[bytes, bytes], bytes]:
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"], sent
    start, body_message = sent
    status = start["status"]
    assert status in KNOWN_STATUSES
    assert not body_message.get("more_body", False)
    body = body_message["body"]
    response_headers: dict[bytes, bytes] = {}
    for name, value in start["headers"]:
        assert isinstance(name, bytes)
        assert isinstance(value, bytes)
        assert name not in response_headers, f"duplicate response header {name!r}"
        response_headers[name] = value
    assert response_headers[b"content-type"] == b"application/json"
    assert response_headers[b"content-length"] == str(len(body)).encode()

    def no_constants(name: str) -> object:
        raise AssertionError(f"{name} in a response body")

    json.loads(body, parse_constant=no_constants)
    return status, response_headers, body


# --- properties ---------------------------------------------------------------------------------


@FUZZ
@given(scopes(), limits, failures, statuses, bodies, st.booleans())
def test_fuzz_http_requests(
    scope: dict[str, Any],
    server_limits: ServerLimits,
    fail: set[str],
    status: dict[str, object],
    body_chunks: list[bytes],
    ready: bool,
) -> None:
    """Any request gets exactly one well-formed JSON answer; contacts only from valid probes."""
    node = FakeNode(document=JOINED, status=status, ready=ready, fail=fail)
    app = node.app(limits=server_limits)
    sent: list[Message] = []
    chunks = list(body_chunks)

    async def receive() -> Message:
        if chunks:
            return {"type": "http.request", "body": chunks.pop(0), "more_body": bool(chunks)}
        await trio.sleep_forever()  # the client waits for its answer
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    run(lambda: app(scope, receive, send))
    status_code, response_headers, body = check_response(sent)
    event(f"status {status_code}")
    event("contact reported" if node.contacted else "no contact")
    path = routed(scope)
    refused = status_code in {413, 429, 431}
    if head_bytes(scope) > server_limits.max_header_bytes:
        assert status_code == 431
    elif announces_body(scope):
        assert status_code == 413
    else:
        assert not refused  # one request alone is never over the in-flight bound
    if refused:
        assert response_headers[b"connection" if status_code != 429 else b"retry-after"]
    if status_code == 200 and path == "/bootstrap/seed-nodes":
        assert decode_seed_nodes(body) == JOINED
    probe = scope["method"] == "GET" and path == "/bootstrap/seed-nodes" and not refused
    expected = header_contact_point(scope) if probe else None
    assert node.contacted == ([] if expected is None else [expected])
    stats = app.statistics()
    assert (stats.requests_served, stats.requests_in_flight) == (1, 0)
    assert sum(stats.requests_refused.values()) == int(refused)


@FUZZ
@given(
    st.lists(st.tuples(st.sampled_from(["10.0.0.7", "10.0.0.8", ""]), st.booleans()), max_size=20),
    st.integers(1, 4),
)
def test_fuzz_concurrent_requests_per_client(requests: list[tuple[str, bool]], limit: int) -> None:
    """429 exactly when the address already has `limit` requests in flight; counts return to 0."""
    node = FakeNode()
    app = node.app(limits=ServerLimits(max_requests_per_client=limit))
    release = trio.Event()
    in_flight: dict[str, int] = {}
    outcomes: list[int] = []

    async def request(host: str, stalls: bool) -> None:
        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                outcomes.append(message["status"])
                if stalls:  # a client that does not read its answer
                    await release.wait()

        async def receive() -> Message:
            await trio.sleep_forever()
            raise AssertionError("unreachable")

        scope: dict[str, Any] = {
            "type": "http",
            "method": "GET",
            "path": "/alive",
            "root_path": "",
            "query_string": b"",
            "headers": [],
            "client": (host, 1) if host else None,
        }
        await app(scope, receive, send)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for host, stalls in requests:
                before = len(outcomes)
                nursery.start_soon(request, host, stalls)
                await trio.testing.wait_all_tasks_blocked()
                assert len(outcomes) == before + 1
                expected = 429 if in_flight.get(host, 0) >= limit else 200
                assert outcomes[-1] == expected
                if expected == 200 and stalls:
                    in_flight[host] = in_flight.get(host, 0) + 1
                assert app.statistics().requests_in_flight == sum(in_flight.values())
            release.set()

    run(main)
    stats = app.statistics()
    assert stats.requests_in_flight == 0
    assert stats.requests_refused.get("requests-per-client", 0) == outcomes.count(429)
    event(f"refused {min(outcomes.count(429), 3)}+")
