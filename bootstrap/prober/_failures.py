"""What a probe came to (an :data:`Outcome`), and the reason an operator reads when it failed.

Rules:

* Every probe ends in one outcome: a :class:`Document` (the bytes a peer sent, judged by
  :func:`judge_document`) or a :class:`Failure` (a :data:`FailureKind` for the statistics and the
  log's rate limit, and a reason). The transports return or emit outcomes; only the worker
  reports them.
* Only what the network and peers can cause is a failure: :data:`PEER_ERRORS`. Any other
  exception is a bug on our side and propagates, crashing the node loudly (as trio's own
  ``open_tcp_stream`` does), instead of being reported as a failed probe that backs a healthy peer
  off, which under ``contact_with_all_contact_points`` stalls formation with one log line.
* A reason names what an operator can act on: the deepest OS error ("No route to host"), the TLS
  verdict, the HTTP status. Peer-supplied text is quoted with ``repr`` (no control characters
  reach a log) and cut to :data:`_MAX_QUOTED_CHARS`.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterable
from typing import Final

import attrs
import httpx
import trio
import trio_websocket

from ..core import ContactPoint, ProtocolError, SeedNodesDocument
from ..core.wire import MAX_DOCUMENT_BYTES, check_service_name, decode_seed_nodes
from ..error_chain import causes as error_causes
from ._types import FailureKind

__all__ = [
    "PEER_ERRORS",
    "Document",
    "Failure",
    "Outcome",
    "describe",
    "first_leaf",
    "judge_document",
    "no_slot_in_time",
    "over_the_limit",
    "refused_answer",
    "timed_out",
    "tls_failure_reason",
    "unauthorized",
    "unauthorized_reason",
    "watch_closed",
]

# Peer-supplied text quoted in a reason (a redirect's Location, a Content-Type) is cut to this.
_MAX_QUOTED_CHARS: Final = 200

#: What the network and peers can make a probe raise; everything else is our bug.
#: ``trio.ClosedResourceError`` is not among them: it means our own code used a stream it had
#: closed (trio-websocket turns a peer's close into ``ConnectionClosed``).
PEER_ERRORS: Final = (
    httpx.HTTPError,  # httpx's translation of every transport and HTTP protocol problem
    OSError,  # connecting: refused, reset, unreachable, DNS (socket.gaierror)
    ssl.SSLError,  # (an OSError too) a TLS handshake that failed
    trio.BrokenResourceError,  # a stream the peer broke, a TLS alert among them
    trio_websocket.HandshakeError,  # the watch handshake, ConnectionRejected included
    trio_websocket.ConnectionClosed,  # the watch ended
    ProtocolError,  # the peer's document broke the wire format
)


@attrs.frozen
class Failure:
    """A probe that failed: ``kind`` for the statistics, ``reason`` for the operator."""

    kind: FailureKind
    reason: str


@attrs.frozen
class Document:
    """What a peer sent as its seed-nodes document, not decoded yet."""

    data: bytes


#: A probe's outcome, and each message of a watch.
Outcome = Document | Failure


def judge_document(data: bytes, service_name: str | None) -> SeedNodesDocument | Failure:
    """The decoded document, or why it is refused (malformed, or another service's)."""
    try:
        document = decode_seed_nodes(data)
    except ProtocolError as error:
        return Failure("protocol", f"protocol error: {error}")
    try:
        check_service_name(document, service_name)
    except ProtocolError as error:
        return Failure("service_name", str(error))
    return document


def describe(error: BaseException, address: ContactPoint) -> Failure:
    """A reason an operator understands for ``error`` (one of :data:`PEER_ERRORS`) raised while
    probing ``address``."""
    if isinstance(error, trio_websocket.ConnectionClosed):
        return watch_closed(error)
    causes = list(error_causes(error))
    if any(isinstance(cause, ConnectionRefusedError) for cause in causes):
        return Failure("refused", "connection refused")
    tls_reason = tls_failure_reason(causes)
    if tls_reason is not None:
        return Failure("tls", tls_reason)
    if any(isinstance(cause, ConnectionResetError | BrokenPipeError) for cause in causes):
        return Failure("reset", "connection reset")
    for cause in causes:
        if isinstance(cause, socket.gaierror):
            return Failure("dns", f"cannot resolve {address.host}: {cause.strerror or cause}")
    # The deepest OS error says most: trio's "all attempts to connect failed" wraps one per
    # address tried ("No route to host", "local_address=... is incompatible with ...").
    os_errors = [cause for cause in causes if isinstance(cause, OSError)]
    detail = (os_errors[-1].strerror or str(os_errors[-1])) if os_errors else str(error)
    detail = detail or type(error).__name__
    if isinstance(error, httpx.ConnectError | OSError):
        return Failure("connect", f"cannot connect: {detail}")
    if isinstance(error, ProtocolError):
        return Failure("protocol", f"protocol error: {error}")
    if isinstance(error, httpx.RemoteProtocolError):
        return Failure("protocol", f"HTTP protocol error: {error}")
    if isinstance(error, trio_websocket.HandshakeError):
        return Failure("protocol", f"websocket handshake failed: {error!r}")
    # Any other transport error after connecting (a read that failed, a broken stream).
    return Failure("network", f"network error: {detail}")


def watch_closed(closed: trio_websocket.ConnectionClosed) -> Failure:
    """The end of a watch, with the close code and reason the peer gave."""
    reason = closed.reason
    if reason is None:
        return Failure("watch_closed", "watch closed")
    name = reason.name.lower().replace("_", " ")
    detail = f": {reason.reason}" if reason.reason else ""
    return Failure("watch_closed", f"watch closed ({reason.code} {name}{detail})")


def timed_out(timeout: float, waiting_for: str | None = None) -> Failure:
    """No answer within ``probe_timeout``; ``waiting_for`` says for what, if not the answer."""
    suffix = "" if waiting_for is None else f" waiting for {waiting_for}"
    return Failure("timeout", f"timed out after {float(timeout)} s{suffix}")


def no_slot_in_time(timeout: float, limiter: trio.CapacityLimiter) -> Failure:
    """A probe that waited all of ``probe_timeout`` for a slot (every one was in use)."""
    return timed_out(
        timeout, f"a free probe slot (all max_in_flight={limiter.total_tokens} in use)"
    )


def over_the_limit() -> Failure:
    """A body known to exceed the largest document any reader accepts."""
    reason = f"protocol error: document is over the limit of {MAX_DOCUMENT_BYTES} bytes"
    return Failure("protocol", reason)


def unauthorized(address: ContactPoint, *, secret_sent: bool) -> Failure:
    """A peer that answered 401, to a poll or to the watch handshake."""
    return Failure("unauthorized", unauthorized_reason(address, secret_sent=secret_sent))


def first_leaf(error: BaseException) -> BaseException:
    """The first exception in ``error`` that is not a group (trio raises groups from nurseries)."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def _quoted(text: str) -> str:
    """Peer-supplied ``text`` for a reason: repr'd (no control characters reach a log) and cut."""
    if len(text) > _MAX_QUOTED_CHARS:
        text = text[:_MAX_QUOTED_CHARS] + "..."
    return repr(text)


def refused_answer(response: httpx.Response, address: ContactPoint) -> Failure | None:
    """Why a seed-nodes response is not a document to decode (whatever its body), or None."""
    status = response.status_code
    location = response.headers.get("location")
    if 300 <= status < 400 and location is not None:
        # The client never follows redirects: a probe must reach the contact point it reports
        # on (an answer from elsewhere would be credited to it), and every hop would be one more
        # connection per probe.
        return Failure(
            "http_status",
            f"HTTP {status} from {address} redirects to {_quoted(location)}: "
            "redirects are not followed",
        )
    if status != 200:
        return Failure("http_status", f"HTTP {status} from {address}")
    content_type = response.headers.get("content-type")
    # No Content-Type says nothing (the strict decoder still judges the body); another one says
    # the peer serves something else: a proxy's login page, a web server's index, an error page.
    if content_type is not None:
        media_type = content_type.partition(";")[0].strip().lower()
        if media_type != "application/json":
            return Failure(
                "protocol",
                f"protocol error: document sent with Content-Type {_quoted(content_type)}, "
                "not application/json",
            )
    return None


def unauthorized_reason(address: ContactPoint, *, secret_sent: bool) -> str:
    """The probe-failure reason for a peer that answered 401."""
    if secret_sent:
        hint = "it refused our secret: every node of a cluster needs the same one"
    else:
        hint = "it requires a shared secret and this node has none"
    return f"HTTP 401 from {address}: {hint}"


def tls_failure_reason(causes: Iterable[BaseException]) -> str | None:
    """A reason an operator understands if a TLS error is among ``causes``, else None."""
    for cause in causes:
        if isinstance(cause, ssl.SSLCertVerificationError):
            detail = cause.verify_message or cause.reason or str(cause)
            return (
                f"TLS certificate verification failed: {detail} (is the peer's certificate "
                "issued by a CA in this node's CA bundle, for the contact point's host?)"
            )
        if isinstance(cause, ssl.SSLError):
            reason = cause.reason or str(cause)
            if "CERTIFICATE_REQUIRED" in reason:
                return (
                    f"TLS handshake refused ({reason}): the peer requires a client "
                    "certificate (mutual TLS) and this node presented none"
                )
            if any(alert in reason for alert in _DISTRUSTED_ALERTS):
                return (
                    f"TLS handshake refused ({reason}): the peer does not accept this node's "
                    "certificate (is it issued by a CA in the peer's CA bundle?)"
                )
            if "WRONG_VERSION_NUMBER" in reason or "RECORD_LAYER_FAILURE" in reason:
                return f"TLS handshake failed ({reason}): does the peer serve TLS?"
            return f"TLS error: {reason}"
    return None


# Alerts a server sends when it does not accept the client's certificate.
_DISTRUSTED_ALERTS: Final = ("UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_UNKNOWN")
