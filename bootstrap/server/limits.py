"""What one client may make the management server hold, and how every refusal is accounted for.

Rules:

* A client is its IP address (``scope["client"][0]``, "" when the server gives none: such
  clients share one budget). The bounds are :class:`ServerLimits`; the defaults sit far above
  what honest probers need.
* A per-client count is checked and taken with no ``await`` in between (trio cannot interleave
  another request of that client there), and released however the request ends, cancellation
  included. An address whose count returns to 0 is forgotten, so memory follows the clients
  connected right now, not every address ever seen.
* Every refusal is counted by kind (the keys of :attr:`ServerStatistics.requests_refused`, the
  ``REFUSED_*`` constants) and logged at WARNING once per client address and kind. The record
  of who was logged is cleared when full, so an attacker cycling through addresses cannot grow
  memory (an offender may then be logged again).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import types
from collections.abc import Iterator, Mapping
from typing import Any, Final

import attrs

from ..core import Settings, UsageError

__all__ = [
    "MAX_CLIENT_MESSAGE_BYTES",
    "REFUSED_BODY",
    "REFUSED_EXTENSIONS",
    "REFUSED_HEADERS",
    "REFUSED_MESSAGE_RATE",
    "REFUSED_MESSAGE_SIZE",
    "REFUSED_REQUESTS",
    "REFUSED_WATCHES",
    "ClientCounts",
    "Refusals",
    "ServerLimits",
    "ServerStatistics",
    "retry_after_header",
]

# One logger for the whole server (docs/node.md names it), whichever module refuses.
logger = logging.getLogger("bootstrap.server")

#: The largest message a watch client may send: clients only ever send ``probe``.
MAX_CLIENT_MESSAGE_BYTES: Final = 1024

# Kinds of refusal, the keys of ServerStatistics.requests_refused (and named in the log line).
REFUSED_BODY: Final = "request-body"
REFUSED_REQUESTS: Final = "requests-per-client"
REFUSED_WATCHES: Final = "watches-per-client"
REFUSED_MESSAGE_RATE: Final = "watch-message-rate"
REFUSED_MESSAGE_SIZE: Final = "watch-message-size"
REFUSED_HEADERS: Final = "header-size"
REFUSED_EXTENSIONS: Final = "websocket-extensions"
#: Every kind of refusal (the metrics list each from the start).
REFUSAL_KINDS: Final = (
    REFUSED_HEADERS,
    REFUSED_BODY,
    REFUSED_REQUESTS,
    REFUSED_WATCHES,
    REFUSED_EXTENSIONS,
    REFUSED_MESSAGE_RATE,
    REFUSED_MESSAGE_SIZE,
)

# (client address, kind) pairs remembered so each offender is logged once per kind.
_MAX_REPORTED_OFFENDERS: Final = 256
# Below this a real probe (request line, Host, Bootstrap-Contact-Point, the websocket handshake's
# headers) could itself be refused.
_MIN_HEADER_BYTES: Final = 1024


def _positive_int(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"ServerLimits.{attribute.name} must be an integer >= 1, got {value!r}")


def _header_bytes(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < _MIN_HEADER_BYTES:
        raise UsageError(
            f"ServerLimits.{attribute.name} must be an integer of at least "
            f"{_MIN_HEADER_BYTES} (a probe's own request needs most of that), got {value!r}"
        )


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


@attrs.frozen(kw_only=True)
class ServerStatistics:
    """Counters of a :class:`~bootstrap.server.ManagementApp` (a snapshot).

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


class ClientCounts:
    """How many of one thing (requests in flight, open watches) each client address holds now."""

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: collections.Counter[str] = collections.Counter()

    def held_by(self, client: str) -> int:
        return self._counts[client]

    def total(self) -> int:
        return self._counts.total()

    @contextlib.contextmanager
    def holding(self, client: str) -> Iterator[None]:
        """Count one more for ``client`` while the block runs (the caller checked the bound)."""
        self._counts[client] += 1
        try:
            yield
        finally:
            self._counts[client] -= 1
            if self._counts[client] <= 0:
                del self._counts[client]


class Refusals:
    """The count of refusals by kind, and the record of which offenders were logged."""

    __slots__ = ("_by_kind", "reported_offenders")

    def __init__(self) -> None:
        self._by_kind: collections.Counter[str] = collections.Counter()
        self.reported_offenders: set[tuple[str, str]] = set()

    def refuse(self, kind: str, client: str, detail: str) -> None:
        """Count a refusal; log it at WARNING the first time this client is refused this way."""
        self._by_kind[kind] += 1
        offender = (client, kind)
        if offender in self.reported_offenders:
            return
        if len(self.reported_offenders) >= _MAX_REPORTED_OFFENDERS:
            self.reported_offenders.clear()
        self.reported_offenders.add(offender)
        logger.warning(
            "refused client %s (%s): %s; further %s refusals of this client are only counted",
            client or "(unknown address)",
            kind,
            detail,
            kind,
        )

    def by_kind(self) -> Mapping[str, int]:
        """A read-only snapshot: later refusals do not change it."""
        return types.MappingProxyType(dict(self._by_kind))


def retry_after_header(settings: Settings) -> tuple[bytes, bytes]:
    """The ``retry-after`` of a 429: a prober retries on its own schedule, one probe interval."""
    return (b"retry-after", str(max(1, math.ceil(settings.probe_interval))).encode("ascii"))
