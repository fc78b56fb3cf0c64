"""The management server: the endpoints peers probe, as an ASGI app on hypercorn's trio worker.

Endpoints (DESIGN section 4):

* ``GET /bootstrap/seed-nodes``: the seed-nodes document, ``application/json``.
* ``WS /bootstrap/watch``: the same document on connect, again whenever it changes, and at least
  every ``settings.watch_push_interval``; a client text message ``probe`` asks for it at once.
* ``GET /bootstrap/status``, ``GET /alive``, ``GET /ready`` (503 until joined).

Rules:

* The app only serves what the node hands it (``document()``, ``status()``, ``ready()``); it
  holds no bootstrap state of its own. The node calls :meth:`ManagementApp.notify_changed` when
  the document may have changed.
* A request or handshake carrying ``Bootstrap-Contact-Point: host:port`` tells us that peer is
  alive right now; the node turns ``on_contacted(cp)`` into ``ContactedBy``. A header we cannot
  parse is ignored: the request is still answered.
* Nothing a peer sends, and no exception from the node's callbacks, escapes the app: a callback
  that raises gives a JSON 500 (or closes the watch with 1011) and is logged.
* Connections (DESIGN section 5): the server must never close an idle probe connection before
  the client does, or every probe reconnects and the TIME_WAIT leak of the anchors comes back.
  :func:`server_keep_alive_timeout` > :func:`client_keepalive_expiry` > the longest gap between
  two probes of one peer, all derived from :class:`~bootstrap.Settings`.
* Hostile input (:class:`ServerLimits`): request heads are bounded (by hypercorn while
  incomplete, by the app once whole); a request announcing a body gets 413 and its connection
  closed; each client address may hold a bounded number of in-flight requests (429 beyond) and
  of open watches (handshake refused beyond); a watch client sending faster than any prober
  would is closed with 1008. Every refusal is counted in :meth:`ManagementApp.statistics` and
  logged once per client address and kind.
"""

from __future__ import annotations

import collections
import functools
import json
import logging
import math
import types
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Final, cast

import attrs
import hypercorn.config
import hypercorn.trio
import trio

from .core import ContactPoint, SeedNodesDocument, Settings, UsageError, encode_seed_nodes
from .security import RequireSecret, Security, TlsSettings

if TYPE_CHECKING:
    from hypercorn.typing import ASGIFramework

__all__ = [
    "ManagementApp",
    "ServerLimits",
    "ServerStatistics",
    "client_keepalive_expiry",
    "longest_probe_period",
    "management_server_config",
    "serve_management",
    "server_keep_alive_timeout",
]

logger = logging.getLogger("bootstrap.server")

# The ASGI 3 callables, typed loosely (as httpx's ASGITransport does): messages are plain dicts.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CONTACT_POINT_HEADER: Final = b"bootstrap-contact-point"
MAX_CLIENT_MESSAGE_BYTES: Final = 1024
# Longer than any host:port (a 253-character hostname, brackets, a port): reject before parsing.
_MAX_CONTACT_POINT_HEADER_CHARS: Final = 300
# Distinct bad header values remembered so each is logged once; a peer cycling through garbage
# must not grow memory, so the record is cleared when full (a value may then be logged again).
_MAX_REPORTED_BAD_HEADERS: Final = 128
# (client address, kind) pairs remembered so each offender is logged once per kind; cleared when
# full, like the bad headers, so an attacker cycling through addresses cannot grow memory.
_MAX_REPORTED_OFFENDERS: Final = 256
# An error body names the path it refuses; a very long path is shown cut to this many characters.
_MAX_ECHOED_PATH_CHARS: Final = 200

# Kinds of refusal, the keys of ServerStatistics.requests_refused (and named in the log line).
_REFUSED_BODY: Final = "request-body"
_REFUSED_REQUESTS: Final = "requests-per-client"
_REFUSED_WATCHES: Final = "watches-per-client"
_REFUSED_MESSAGE_RATE: Final = "watch-message-rate"
_REFUSED_MESSAGE_SIZE: Final = "watch-message-size"
_REFUSED_HEADERS: Final = "header-size"
_REFUSED_EXTENSIONS: Final = "websocket-extensions"

# A client's idle connection may outlive the longest probe period by this much: scheduling and
# network latency sit between "the probe fell due" and "the request reached the pool".
_CLIENT_KEEPALIVE_SLACK: Final = 3.0
# ... and the server's by this much more, so the client always closes first (TIME_WAIT then lands
# on the prober, bounded by its peers) and a request never races the server's close.
_SERVER_KEEPALIVE_MARGIN: Final = 3.0
# On shutdown a watch gets this long to say "going away" before its connection is dropped.
_CLOSE_ON_SHUTDOWN_TIMEOUT: Final = 1.0
# A graceful shutdown (serve_management's shutdown_trigger) stops accepting, closes idle
# connections and watches (1001) at once, and gives responses in flight this long to finish
# before what is left is cancelled. Answers take milliseconds; the rest is slack for a watch
# client slow to complete the close handshake.
_GRACEFUL_SHUTDOWN_TIMEOUT: Final = 2.0

_WS_GOING_AWAY: Final = 1001
_WS_POLICY_VIOLATION: Final = 1008
_WS_MESSAGE_TOO_BIG: Final = 1009
_WS_INTERNAL_ERROR: Final = 1011

_SEED_NODES_PATH: Final = "/bootstrap/seed-nodes"
_WATCH_PATH: Final = "/bootstrap/watch"
_STATUS_PATH: Final = "/bootstrap/status"
_ALIVE_PATH: Final = "/alive"
_READY_PATH: Final = "/ready"


# --- keep-alive derivation ----------------------------------------------------------------------


def longest_probe_period(settings: Settings) -> float:
    """The longest a probe connection to one peer can sit idle between two requests.

    The next probe falls due at most ``probe_interval * (1 + probe_jitter)`` after an answer, or
    ``probe_backoff_max`` after a failure (the backoff is capped there, jitter included), and a
    probe may take up to ``probe_timeout``.
    """
    return (
        max(settings.probe_backoff_max, settings.probe_interval * (1 + settings.probe_jitter))
        + settings.probe_timeout
    )


def client_keepalive_expiry(settings: Settings) -> float:
    """The prober's ``httpx`` ``keepalive_expiry``: longer than the longest probe period.

    httpx's default (5 s) closed the pooled connection before every probe once the probe period
    neared 5 s, which reintroduced the anchors' connection-per-probe leak.
    """
    return longest_probe_period(settings) + _CLIENT_KEEPALIVE_SLACK


def server_keep_alive_timeout(settings: Settings) -> float:
    """The server's idle keep-alive timeout: longer than the client's, which closes first."""
    return client_keepalive_expiry(settings) + _SERVER_KEEPALIVE_MARGIN


# --- limits -------------------------------------------------------------------------------------


def _positive_int(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"ServerLimits.{attribute.name} must be an integer >= 1, got {value!r}")


def _header_bytes(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < _MIN_HEADER_BYTES:
        raise UsageError(
            f"ServerLimits.{attribute.name} must be an integer of at least "
            f"{_MIN_HEADER_BYTES} (a probe's own request needs most of that), got {value!r}"
        )


# Below this a real probe (request line, Host, Bootstrap-Contact-Point, the websocket handshake's
# headers) could itself be refused.
_MIN_HEADER_BYTES: Final = 1024


@attrs.frozen(kw_only=True)
class ServerLimits:
    """What one client may make the management server hold; beyond it, the client is refused.

    The defaults sit far above what honest probers need, so they never refuse a real probe, and
    low enough that one misbehaving or hostile client cannot exhaust the node. A client is its
    IP address (``scope["client"][0]``): several nodes may share one (NAT, replicas on one host),
    which the per-client bounds allow for. docs/security.md tabulates them.
    """

    #: Request line plus headers, in bytes (hypercorn's ``h11_max_incomplete_size``, and the
    #: HTTP/2 header list size). A probe's request is < 1 KiB (GET, Host, Bootstrap-Contact-Point,
    #: httpx's few defaults; a websocket handshake adds four short headers), so 8 KiB is 8x
    #: headroom, and half of what hypercorn would otherwise buffer of an incomplete head. An
    #: offender gets 431 and a closed connection: from hypercorn while the head is incomplete
    #: (uncounted), from the app when it arrived whole (counted as ``header-size``).
    max_header_bytes: int = attrs.field(default=8 * 1024, validator=_header_bytes)
    #: HTTP requests from one client address being answered at once. A prober has at most one
    #: request in flight per peer, so even 16 nodes behind one address use 16; 32 is 2x that.
    #: An offender gets 429 with ``retry-after``.
    max_requests_per_client: int = attrs.field(default=32, validator=_positive_int)
    #: Open watches from one client address. A node keeps one watch per server, so this allows
    #: 16 nodes behind one address. An offender's handshake is refused (429, or 403 where the
    #: server cannot send a response body).
    max_watches_per_client: int = attrs.field(default=16, validator=_positive_int)
    #: Client messages a watch accepts per ``Settings.watch_push_interval`` (a token bucket of
    #: this size, refilled at this rate). A prober sends ``probe`` at most once per probe it is
    #: due, about once per push interval; 10x that is a client gone wrong. An offender's watch is
    #: closed with 1008 (policy violation).
    max_watch_messages_per_push_interval: int = attrs.field(default=10, validator=_positive_int)


_DEFAULT_LIMITS: Final = ServerLimits()


@attrs.frozen(kw_only=True)
class ServerStatistics:
    """Counters of a :class:`ManagementApp` (a snapshot).

    ``requests_refused`` counts refusals by kind: ``header-size`` (431), ``request-body`` (413),
    ``requests-per-client`` (429), ``watches-per-client`` (handshake refused),
    ``websocket-extensions`` (a handshake offering compression, refused with 400),
    ``watch-message-rate`` (1008) and ``watch-message-size`` (1009). A head still incomplete
    at :attr:`ServerLimits.max_header_bytes` is refused by hypercorn before the app sees it, and
    a message over 1 KiB is closed by hypercorn: those are not counted here.
    """

    requests_served: int  # HTTP responses sent, errors and refusals included
    watches_open: int
    watches_opened_total: int
    documents_pushed: int  # documents sent over watches
    requests_in_flight: int = 0  # HTTP requests being answered right now
    requests_refused: Mapping[str, int] = attrs.field(factory=lambda: types.MappingProxyType({}))


class _Watch:
    """One open watch: how the app and the client's reader wake its push loop."""

    __slots__ = ("probe_requested", "wake")

    def __init__(self) -> None:
        self.wake = trio.Event()
        self.probe_requested = False


class _Closing(Exception):
    """Internal: a watch task asks to close the websocket with ``code`` (None: the client left)."""

    def __init__(self, code: int | None) -> None:
        super().__init__(code)
        self.code = code


class ManagementApp:
    """The ASGI 3 application behind every management endpoint.

    The callbacks are the node's: ``document()`` and ``status()`` build what is served,
    ``ready()`` says whether the node has joined, and ``on_contacted(cp)`` is called for every
    seed-nodes request, watch handshake and watch ``probe`` message that carries a valid
    ``Bootstrap-Contact-Point`` header. Callbacks run in the server's trio tasks: keep them quick
    and non-blocking.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        self_contact_point: ContactPoint,
        service_name: str | None,
        document: Callable[[], SeedNodesDocument],
        status: Callable[[], dict[str, object]],
        ready: Callable[[], bool],
        on_contacted: Callable[[ContactPoint], None],
        limits: ServerLimits = _DEFAULT_LIMITS,
    ) -> None:
        self._settings = settings
        self._self_contact_point = self_contact_point
        self._service_name = service_name
        self._document = document
        self._status = status
        self._ready = ready
        self._on_contacted = on_contacted
        self._limits = limits
        self._watches: set[_Watch] = set()
        self._going_away = False
        self._reported_bad_headers: set[str] = set()
        self._requests_served = 0
        self._watches_opened_total = 0
        self._documents_pushed = 0
        # Per client address; an address is removed when its count returns to 0, so these hold
        # only the clients connected right now.
        self._requests_in_flight: collections.Counter[str] = collections.Counter()
        self._watches_by_client: collections.Counter[str] = collections.Counter()
        self._requests_refused: collections.Counter[str] = collections.Counter()
        self._reported_offenders: set[tuple[str, str]] = set()

    @property
    def self_contact_point(self) -> ContactPoint:
        """The contact point this app's node advertises (and the server binds)."""
        return self._self_contact_point

    @property
    def service_name(self) -> str | None:
        """The service whose documents this app serves, if named."""
        return self._service_name

    @property
    def limits(self) -> ServerLimits:
        """The bounds this app enforces (:func:`serve_management` also configures hypercorn)."""
        return self._limits

    def notify_changed(self) -> None:
        """The document may have changed: every open watch sends it now if it differs.

        Synchronous and cheap: each watch compares the current document with the last one it
        sent, in its own task, so the caller never waits on a slow client.
        """
        for watch in self._watches:
            watch.wake.set()

    def going_away(self) -> None:
        """The server is shutting down: close every watch, and any opened later, with 1001.

        A watch never ends on its own, so without this a graceful shutdown would wait out its
        timeout for each one; the peer reads "going away", not a broken connection.
        """
        self._going_away = True
        for watch in self._watches:
            watch.wake.set()

    def statistics(self) -> ServerStatistics:
        """Counters since the app was created."""
        return ServerStatistics(
            requests_served=self._requests_served,
            watches_open=len(self._watches),
            watches_opened_total=self._watches_opened_total,
            documents_pushed=self._documents_pushed,
            requests_in_flight=self._requests_in_flight.total(),
            requests_refused=types.MappingProxyType(dict(self._requests_refused)),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._serve_http(scope, send)
        elif kind == "websocket":
            await self._serve_websocket(scope, receive, send)
        elif kind == "lifespan":
            await self._serve_lifespan(receive, send)
        else:
            # The ASGI spec asks apps to raise on scope types they do not know.
            raise ValueError(f"unsupported ASGI scope type {kind!r}")

    # --- lifespan -------------------------------------------------------------------------------

    async def _serve_lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    # --- HTTP -----------------------------------------------------------------------------------

    async def _serve_http(self, scope: Scope, send: Send) -> None:
        client = _client_host(scope)
        if (size := _request_head_bytes(scope)) > self._limits.max_header_bytes:
            # hypercorn only bounds a head still incomplete when it looks (h11 buffers at most
            # max_header_bytes of it); one that arrives whole in a single read (up to 64 KiB),
            # or over HTTP/2, reaches us, so the bound is enforced here as well.
            self._refuse(_REFUSED_HEADERS, client, f"a {size}-byte request head")
            error = {"error": f"request headers over {self._limits.max_header_bytes} bytes"}
            await self._respond(send, 431, error, [(b"connection", b"close")])
            return
        if _announces_body(scope):
            # No endpoint takes a body, and we never read one: refuse it and close the
            # connection (h11 would otherwise have to read and discard it to reuse the
            # connection). HTTP/2 strips the connection-specific header; its stream just ends.
            self._refuse(_REFUSED_BODY, client, "a request announced a body")
            error = {"error": "management endpoints take no request body"}
            await self._respond(send, 413, error, [(b"connection", b"close")])
            return
        limit = self._limits.max_requests_per_client
        if self._requests_in_flight[client] >= limit:
            # Checked and counted with no await in between: trio cannot interleave another
            # request of this client here.
            self._refuse(_REFUSED_REQUESTS, client, f"more than {limit} requests at once")
            error = {"error": f"more than {limit} requests at once from {client}; retry later"}
            await self._respond(send, 429, error, [(b"retry-after", self._retry_after())])
            return
        self._requests_in_flight[client] += 1
        try:
            await self._answer_http(scope, send)
        finally:
            self._requests_in_flight[client] -= 1
            if self._requests_in_flight[client] <= 0:
                del self._requests_in_flight[client]

    def _retry_after(self) -> bytes:
        # A prober retries on its own schedule; one probe interval (whole seconds) is the hint.
        return str(max(1, math.ceil(self._settings.probe_interval))).encode("ascii")

    async def _answer_http(self, scope: Scope, send: Send) -> None:
        path = _route_path(scope)
        status: int
        body: object
        headers: list[tuple[bytes, bytes]] = []
        if path == _WATCH_PATH:
            status, body = 426, {"error": f"{_WATCH_PATH} is a websocket endpoint"}
            headers.append((b"upgrade", b"websocket"))
        elif path not in _HTTP_PATHS:
            status, body = 404, {"error": f"no endpoint at {_shown_path(path)}"}
        elif scope.get("method") != "GET":
            status, body = 405, {"error": f"{path} only answers GET"}
            headers.append((b"allow", b"GET"))
        else:
            status, body = self._answer_get(path, scope)
        await self._respond(send, status, body, headers)

    def _answer_get(self, path: str, scope: Scope) -> tuple[int, object]:
        """Status and body (JSON-ready, or bytes already encoded) for a GET of a known path."""
        if path == _SEED_NODES_PATH:
            # A contact counts even if we then fail to answer: the peer is alive all the same.
            self._note_contact(self._header_contact_point(scope))
        try:
            if path == _SEED_NODES_PATH:
                return 200, self._encoded_document()
            if path == _STATUS_PATH:
                return 200, self._status()
            if path == _READY_PATH:
                ready = bool(self._ready())
                return (200 if ready else 503), {"ready": ready}
            return 200, {"alive": True}
        except Exception:
            logger.exception("the node's callback failed while answering GET %s", path)
            return 500, {"error": f"internal error while answering {path}; see the server log"}

    async def _respond(
        self, send: Send, status: int, body: object, extra_headers: list[tuple[bytes, bytes]]
    ) -> None:
        if isinstance(body, bytes):
            data = body
        else:
            try:
                data = _json_bytes(body)
            except (TypeError, ValueError):
                # status() returned something that is not JSON-ready: the node's bug, not fatal.
                logger.exception("the %d response body is not JSON-serialisable", status)
                status = 500
                data = _json_bytes({"error": "internal error: response is not valid JSON"})
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(data)).encode("ascii")),
            # Every answer is a snapshot of a moving state: never serve it from a cache.
            (b"cache-control", b"no-store"),
            *extra_headers,
        ]
        # Counted before sending, so a client that has its answer also sees it counted.
        self._requests_served += 1
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data, "more_body": False})

    def _encoded_document(self) -> bytes:
        return encode_seed_nodes(self._document())

    # --- contact points ---------------------------------------------------------------------------

    def _header_contact_point(self, scope: Scope) -> ContactPoint | None:
        """The peer's contact point from its ``Bootstrap-Contact-Point`` header, if valid."""
        for name, value in scope.get("headers", ()):
            if bytes(name).lower() == CONTACT_POINT_HEADER:
                return self._parse_contact_point(bytes(value))
        return None

    def _parse_contact_point(self, raw: bytes) -> ContactPoint | None:
        problem: str | None = None
        contact_point: ContactPoint | None = None
        text = raw.decode("latin-1")  # total: any byte maps to one character, for the log line
        if len(raw) > _MAX_CONTACT_POINT_HEADER_CHARS:
            problem = f"longer than {_MAX_CONTACT_POINT_HEADER_CHARS} characters"
            text = text[:_MAX_CONTACT_POINT_HEADER_CHARS] + "..."
        elif not raw.isascii():
            problem = "not ASCII"
        else:
            try:
                contact_point = ContactPoint.parse(text)
            except ValueError as exc:  # UsageError, and anything else parse may refuse with
                problem = str(exc)
            else:
                # The wire format is host:port; guessing a port could credit the wrong node.
                if contact_point.port is None:
                    problem, contact_point = "it has no port", None
        if problem is not None:
            self._report_bad_header(text, problem)
        return contact_point

    def _report_bad_header(self, text: str, problem: str) -> None:
        # A misconfigured peer repeats its bad header on every probe: say it once, at DEBUG,
        # because it is the peer's problem and the request is answered regardless.
        if text in self._reported_bad_headers:
            return
        if len(self._reported_bad_headers) >= _MAX_REPORTED_BAD_HEADERS:
            self._reported_bad_headers.clear()
        self._reported_bad_headers.add(text)
        logger.debug("ignoring Bootstrap-Contact-Point header %r: %s", text, problem)

    def _note_contact(self, contact_point: ContactPoint | None) -> None:
        if contact_point is None:
            return
        try:
            self._on_contacted(contact_point)
        except Exception:
            logger.exception(
                "on_contacted(%s) raised; the request is answered anyway", contact_point
            )

    # --- refusals ---------------------------------------------------------------------------------

    def _refuse(self, kind: str, client: str, detail: str) -> None:
        """Count a refusal; log it at WARNING the first time this client is refused this way."""
        self._requests_refused[kind] += 1
        offender = (client, kind)
        if offender in self._reported_offenders:
            return
        if len(self._reported_offenders) >= _MAX_REPORTED_OFFENDERS:
            self._reported_offenders.clear()
        self._reported_offenders.add(offender)
        logger.warning(
            "refused client %s (%s): %s; further %s refusals of this client are only counted",
            client or "(unknown address)",
            kind,
            detail,
            kind,
        )

    # --- websocket --------------------------------------------------------------------------------

    async def _serve_websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return  # the client left during the handshake
        if (size := _request_head_bytes(scope)) > self._limits.max_header_bytes:
            self._refuse(_REFUSED_HEADERS, _client_host(scope), f"a {size}-byte handshake")
            error = f"request headers over {self._limits.max_header_bytes} bytes"
            await self._reject_websocket(scope, send, 431, error, [])
            return
        path = _route_path(scope)
        if path != _WATCH_PATH:
            error = f"no websocket endpoint at {_shown_path(path)}"
            await self._reject_websocket(scope, send, 404, error, [])
            return
        client = _client_host(scope)
        if _offers_websocket_extensions(scope):
            # hypercorn accepts permessage-deflate whenever a client offers it, and nothing
            # bounds how far a compressed message inflates before our 1 KiB check sees it: one
            # 194 KB frame grew a node by ~570 MiB. Our prober offers no extension.
            self._refuse(_REFUSED_EXTENSIONS, client, "a handshake offering websocket extensions")
            error = "websocket extensions (compression) are not accepted on the watch"
            await self._reject_websocket(scope, send, 400, error, [])
            return
        limit = self._limits.max_watches_per_client
        if self._watches_by_client[client] >= limit:
            # Refused before accepting, and before reading the header: no ContactedBy.
            self._refuse(_REFUSED_WATCHES, client, f"more than {limit} open watches")
            error = f"more than {limit} open watches from {client}; retry later"
            retry = [(b"retry-after", self._retry_after())]
            await self._reject_websocket(scope, send, 429, error, retry)
            return
        # Counted with no await since the check, so concurrent handshakes cannot overshoot.
        self._watches_by_client[client] += 1
        try:
            await self._serve_watch(scope, client, receive, send)
        finally:
            self._watches_by_client[client] -= 1
            if self._watches_by_client[client] <= 0:
                del self._watches_by_client[client]

    async def _serve_watch(self, scope: Scope, client: str, receive: Receive, send: Send) -> None:
        contact_point = self._header_contact_point(scope)
        self._note_contact(contact_point)
        await send({"type": "websocket.accept"})
        watch = _Watch()
        self._watches.add(watch)
        self._watches_opened_total += 1
        try:
            code = await self._run_watch(watch, contact_point, client, receive, send)
        except* trio.Cancelled:
            # The server is shutting down: tell the peer we are going away (a clean close, not
            # a broken connection), but never hold up the shutdown for a slow client. (except*:
            # the cancellation arrives grouped from the watch's nursery.)
            with trio.CancelScope(
                deadline=trio.current_time() + _CLOSE_ON_SHUTDOWN_TIMEOUT, shield=True
            ):
                await send({"type": "websocket.close", "code": _WS_GOING_AWAY})
            raise
        finally:
            self._watches.discard(watch)
        if code is not None:
            await send({"type": "websocket.close", "code": code})

    async def _run_watch(
        self,
        watch: _Watch,
        contact_point: ContactPoint | None,
        client: str,
        receive: Receive,
        send: Send,
    ) -> int | None:
        """Push documents and read the client until one side ends; the close code to send."""
        outcome: int | None = None

        async def run_until_closing(task: Callable[[], Awaitable[None]]) -> None:
            nonlocal outcome
            try:
                await task()
            except _Closing as closing:
                outcome = closing.code
                nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_until_closing, functools.partial(self._push, watch, send))
            nursery.start_soon(
                run_until_closing,
                functools.partial(self._read_client, watch, contact_point, client, receive),
            )
        return outcome

    async def _push(self, watch: _Watch, send: Send) -> None:
        interval = self._settings.watch_push_interval
        last_sent: bytes | None = None
        resend_at = -math.inf
        while True:
            # A fresh event before looking: a wake-up that arrives while we build or send the
            # document sets this one, so the next wait returns at once and nothing is missed.
            watch.wake = trio.Event()
            if self._going_away:
                raise _Closing(_WS_GOING_AWAY)
            now = trio.current_time()
            try:
                data = self._encoded_document()
            except Exception:
                logger.exception("could not build the seed-nodes document for a watch")
                raise _Closing(_WS_INTERNAL_ERROR) from None
            # The periodic resend happens even when nothing changed: it is the liveness signal
            # that keeps this node's answer fresh at the watching peer.
            if watch.probe_requested or data != last_sent or now >= resend_at:
                watch.probe_requested = False
                self._documents_pushed += 1
                await send({"type": "websocket.send", "text": data.decode("utf-8")})
                last_sent = data
                resend_at = now + interval
            with trio.move_on_at(resend_at):
                await watch.wake.wait()

    async def _read_client(
        self, watch: _Watch, contact_point: ContactPoint | None, client: str, receive: Receive
    ) -> None:
        # A token bucket: a burst of `capacity` messages, then `capacity` per push interval.
        capacity = float(self._limits.max_watch_messages_per_push_interval)
        refill_rate = capacity / self._settings.watch_push_interval
        tokens = capacity
        last = trio.current_time()
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                raise _Closing(None)
            if message["type"] != "websocket.receive":
                continue
            now = trio.current_time()
            tokens = min(capacity, tokens + (now - last) * refill_rate)
            last = now
            if tokens < 1.0:
                detail = f"a watch client sent more than {capacity:g} messages per push interval"
                self._refuse(_REFUSED_MESSAGE_RATE, client, detail)
                raise _Closing(_WS_POLICY_VIOLATION)
            tokens -= 1.0
            text = message.get("text")
            data = message.get("bytes")
            # surrogatepass: a server hands over valid text, but a size check must never raise.
            size = (
                len(text.encode("utf-8", "surrogatepass")) if text is not None else len(data or b"")
            )
            if size > MAX_CLIENT_MESSAGE_BYTES:
                # Clients only ever send "probe": anything big is a bug or abuse, not a request.
                # (hypercorn already closes with 1009 beyond the same size; this is the backstop.)
                detail = f"a watch client sent a {size}-byte message"
                self._refuse(_REFUSED_MESSAGE_SIZE, client, detail)
                raise _Closing(_WS_MESSAGE_TOO_BIG)
            if text == "probe":
                self._note_contact(contact_point)
                watch.probe_requested = True
                watch.wake.set()
            # Anything else is ignored: later protocol versions may send more kinds of messages.

    async def _reject_websocket(
        self,
        scope: Scope,
        send: Send,
        status: int,
        error: str,
        extra_headers: list[tuple[bytes, bytes]],
    ) -> None:
        """Refuse a handshake: ``status`` with a JSON error where the server can say so."""
        if "websocket.http.response" in (scope.get("extensions") or {}):
            data = _json_bytes({"error": error})
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode("ascii")),
                *extra_headers,
            ]
            await send(
                {"type": "websocket.http.response.start", "status": status, "headers": headers}
            )
            await send({"type": "websocket.http.response.body", "body": data})
        else:
            await send({"type": "websocket.close"})  # servers answer this with 403


_HTTP_PATHS: Final = frozenset({_SEED_NODES_PATH, _STATUS_PATH, _ALIVE_PATH, _READY_PATH})


def _client_host(scope: Scope) -> str:
    """The client's address, the key of the per-client limits ("" if the server gives none)."""
    client = scope.get("client")
    if not client:
        return ""  # e.g. a unix socket: such clients share one budget
    return str(client[0])


def _request_head_bytes(scope: Scope) -> int:
    """About the size of the request line and headers as sent (names, values, separators)."""
    target = scope.get("raw_path") or str(scope.get("path", "")).encode("utf-8", "surrogatepass")
    size = len(str(scope.get("method", "GET"))) + len(target) + len(scope.get("query_string", b""))
    for name, value in scope.get("headers", ()):
        size += len(name) + len(value) + 4  # ": " and CRLF
    return size


def _offers_websocket_extensions(scope: Scope) -> bool:
    return any(
        bytes(name).lower() == b"sec-websocket-extensions" and bytes(value).strip()
        for name, value in scope.get("headers", ())
    )


def _announces_body(scope: Scope) -> bool:
    """Whether the request says a body follows (Transfer-Encoding, or Content-Length not 0)."""
    for name, value in scope.get("headers", ()):
        lowered = bytes(name).lower()
        if lowered == b"transfer-encoding":
            return True
        if lowered == b"content-length":
            length = bytes(value).strip()
            if not (length.isdigit() and not length.strip(b"0")):
                return True
    return False


def _shown_path(path: str) -> str:
    """``path`` for an error body: a very long one is cut, so the answer stays small."""
    if len(path) <= _MAX_ECHOED_PATH_CHARS:
        return path
    return path[:_MAX_ECHOED_PATH_CHARS] + "..."


def _route_path(scope: Scope) -> str:
    path = str(scope.get("path", ""))
    root = str(scope.get("root_path", ""))
    # ASGI puts the mount point in both; a node served under a base path routes on the rest.
    if root and path.startswith(root):
        path = path[len(root) :]
    return path


def _json_bytes(body: object) -> bytes:
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode("utf-8")


# --- serving ------------------------------------------------------------------------------------


def management_server_config(
    *,
    bind: ContactPoint,
    settings: Settings,
    limits: ServerLimits = _DEFAULT_LIMITS,
    tls: TlsSettings | None = None,
) -> hypercorn.config.Config:
    """The hypercorn configuration :func:`serve_management` uses (HTTPS only, with ``tls``)."""
    if bind.port is None:
        raise UsageError(f"the management server needs a port to bind: got {bind}")
    config = hypercorn.config.Config()
    # Exactly the advertised address, never a wildcard: a node must be reachable where it says.
    config.bind = [str(bind)]
    config.keep_alive_timeout = server_keep_alive_timeout(settings)
    # hypercorn closes a connection after 1000 requests by default: at a 1 s probe interval
    # that is a reconnect per peer every ~17 minutes while formation stalls. Probes reuse one
    # connection for as long as the client keeps it.
    config.keep_alive_max_requests = 2**62
    config.graceful_timeout = _GRACEFUL_SHUTDOWN_TIMEOUT
    # Clients only send "probe" over a watch; hypercorn closes with 1009 beyond this.
    config.websocket_max_message_size = MAX_CLIENT_MESSAGE_BYTES
    # Hostile input (ServerLimits). Headers beyond this get 431 from hypercorn, before the app;
    # HTTP/2 (which hypercorn also speaks in cleartext, by prior knowledge or h2c upgrade) gets
    # the same bound on its header list, and no more streams per connection than one client
    # may have requests in flight.
    config.h11_max_incomplete_size = limits.max_header_bytes
    config.h2_max_header_list_size = limits.max_header_bytes
    config.h2_max_concurrent_streams = limits.max_requests_per_client
    # Slow clients: the keep-alive timer above also runs from accept until a request's headers
    # are complete, so a connection that never completes one (slow loris) is closed after
    # keep_alive_timeout. read_timeout is deliberately left unset (None): it would also cut
    # open watches, over which clients legitimately send nothing for minutes.
    # Logger objects, not the defaults: hypercorn would otherwise install its own stderr handler
    # on "hypercorn.error". Access lines are left off (None): a probe per peer per second is
    # noise; the app counts requests in statistics().
    config.accesslog = None
    config.errorlog = logging.getLogger("bootstrap.server.hypercorn")
    if tls is not None:
        # Raises UsageError naming the file now, not from deep inside hypercorn's worker.
        tls.configure_server(config)
    return config


async def serve_management(
    app: ManagementApp,
    *,
    bind: ContactPoint,
    settings: Settings,
    security: Security | None = None,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``bind`` until cancelled; start it with ``nursery.start()``.

    Cancelling stops at once. A graceful stop is ``shutdown_trigger`` returning: the socket stops
    listening, idle connections are closed, every watch is closed with 1001 (going away), and
    responses in flight finish (for at most 2 s); then this returns.

    ``task_status.started()`` is called once the socket listens. Binding errors (address in use,
    not a local address) raise ``OSError`` from ``nursery.start()``. With ``security``, only
    HTTPS is served (``security.tls``) and only requests carrying the secret reach ``app``
    (``security.secret``, see :class:`~bootstrap.security.RequireSecret`).
    """
    tls = None if security is None else security.tls
    config = management_server_config(bind=bind, settings=settings, limits=app.limits, tls=tls)
    served: ManagementApp | RequireSecret = app
    if security is not None and security.secret is not None:
        served = RequireSecret(app, secret=security.secret)
    # hypercorn types ASGI messages as TypedDicts; the app takes the plain mappings they are.
    framework = cast("ASGIFramework", served)
    trigger = None
    if shutdown_trigger is not None:
        wait_for_shutdown = shutdown_trigger

        async def trigger() -> None:
            await wait_for_shutdown()
            app.going_away()

    started = False
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(
                functools.partial(
                    hypercorn.trio.serve, framework, config, mode="asgi", shutdown_trigger=trigger
                )
            )
            started = True
            logger.info(
                "management server of %s listening on %s (keep-alive %.1f s)%s",
                app.self_contact_point,
                bind,
                config.keep_alive_timeout,
                _security_note(security),
            )
            task_status.started()
    except BaseExceptionGroup as group:
        # hypercorn binds inside two nested nurseries, so "address in use" arrives wrapped in
        # three exception groups; the caller of nursery.start() deserves the plain OSError.
        error = _sole_exception(group)
        if not started and isinstance(error, OSError):
            raise error from None
        raise


def _security_note(security: Security | None) -> str:
    """What the listening log line says about TLS and the secret."""
    if security is None:
        return ""
    notes = []
    if security.tls is not None:
        mutual = security.tls.require_client_certificate
        notes.append("HTTPS with client certificates required" if mutual else "HTTPS")
    if security.secret is not None:
        notes.append("secret required")
    return "".join(f", {note}" for note in notes)


def _sole_exception(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error
