"""Serving the management app with hypercorn's trio worker: its configuration and its lifetime.

Rules:

* Exactly the advertised address is bound, never a wildcard: a node must be reachable where
  it says.
* Connections (DESIGN section 5): the server must never close an idle probe connection before
  the client does, or every probe reconnects and the TIME_WAIT leak of the anchors comes back.
  hypercorn's keep-alive is :attr:`Settings.server_keep_alive_timeout
  <bootstrap.Settings.server_keep_alive_timeout>`, longer than the prober's, which is longer
  than the longest gap between two probes of one peer; and a connection is never closed for
  the number of requests it served.
* hypercorn bounds what the app cannot see (:class:`~.limits.ServerLimits`): incomplete heads,
  HTTP/2 header lists and streams, watch messages.
* With TLS only HTTPS is served, and a refused handshake still reaches the client as an alert
  (:mod:`.handshake_alert`); with a secret only requests carrying it reach the app
  (:class:`~.require_secret.RequireSecret`). The configuration is checked when built, so a bad
  file raises :class:`~bootstrap.security.TlsFileError` before anything listens.
"""

from __future__ import annotations

import functools
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, cast

import hypercorn.config
import hypercorn.trio
import trio

from ..core import ContactPoint, Settings, UsageError
from ..security import Security, TlsSettings
from .app import ManagementApp
from .handshake_alert import HandshakeAlertFirst
from .limits import MAX_CLIENT_MESSAGE_BYTES, ServerLimits
from .require_secret import RequireSecret
from .watch import CLOSE_ON_SHUTDOWN_TIMEOUT

if TYPE_CHECKING:
    from hypercorn.typing import ASGIFramework

__all__ = [
    "GRACEFUL_SHUTDOWN_TIMEOUT",
    "SHUTDOWN_TIMEOUT",
    "management_server_config",
    "serve_management",
]

# One logger for the whole server (docs/node.md names it), whichever module logs.
logger = logging.getLogger("bootstrap.server")

_DEFAULT_LIMITS: Final = ServerLimits()

# The server's part of the stop-timeout chain (bootstrap.node.STOP_TIMEOUT states it whole).
# A graceful shutdown (serve_management's shutdown_trigger) stops accepting, closes idle
# connections and every watch (1001) at once, and gives what is still in flight
# GRACEFUL_SHUTDOWN_TIMEOUT to finish: answers take milliseconds (a second of slack), and the
# watches closed at the trigger get as long for their close handshakes as a cancelled one
# would. Then hypercorn cancels what is left, and each watch cancelled says 1001 for at most
# CLOSE_ON_SHUTDOWN_TIMEOUT more, shielded: SHUTDOWN_TIMEOUT bounds the whole shutdown.
_IN_FLIGHT_SLACK: Final = 1.0
#: How long a graceful shutdown waits for what is in flight before cancelling it (hypercorn's
#: ``graceful_timeout``).
GRACEFUL_SHUTDOWN_TIMEOUT: Final = _IN_FLIGHT_SLACK + CLOSE_ON_SHUTDOWN_TIMEOUT
#: :func:`serve_management` returns within this of its ``shutdown_trigger`` returning.
SHUTDOWN_TIMEOUT: Final = GRACEFUL_SHUTDOWN_TIMEOUT + CLOSE_ON_SHUTDOWN_TIMEOUT


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
    config.keep_alive_timeout = settings.server_keep_alive_timeout
    # hypercorn closes a connection after 1000 requests by default: at a 1 s probe interval
    # that is a reconnect per peer every ~17 minutes while formation stalls. Probes reuse one
    # connection for as long as the client keeps it.
    config.keep_alive_max_requests = 2**62
    config.graceful_timeout = GRACEFUL_SHUTDOWN_TIMEOUT
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
        # Raises TlsFileError naming the file now, not from deep inside hypercorn's worker.
        _serve_tls_only(config, tls)
    return config


def _serve_tls_only(config: hypercorn.config.Config, tls: TlsSettings) -> None:
    """Make hypercorn serve only TLS, with ``tls``.

    The files are loaded now (:meth:`TlsSettings.server_context`). hypercorn is handed that
    context itself (its own fields are set too, for what reads them), because a failed
    handshake must still reach the client as a TLS alert and end the connection, which only a
    context with :class:`~.handshake_alert.HandshakeAlertFirst` does.
    """
    context = tls.server_context()
    context.sslobject_class = HandshakeAlertFirst
    context.set_alpn_protocols(config.alpn_protocols)
    config.certfile = tls.certfile
    config.keyfile = tls.keyfile
    if tls.require_client_certificate:
        config.ca_certs = tls.cafile
        config.verify_mode = ssl.CERT_REQUIRED
    config.create_ssl_context = lambda: context  # type: ignore[method-assign]


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
    responses in flight finish (for at most :data:`GRACEFUL_SHUTDOWN_TIMEOUT`, 2 s); then this
    returns, within :data:`SHUTDOWN_TIMEOUT` (3 s) of the trigger.

    ``task_status.started()`` is called once the socket listens. Binding errors (address in use,
    not a local address) raise ``OSError`` from ``nursery.start()``. With ``security``, only
    HTTPS is served (``security.tls``) and only requests carrying the secret reach ``app``
    (``security.secret``, see :class:`~bootstrap.server.RequireSecret`).
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
    """The one exception inside nested single-member groups (``error`` itself if none)."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error
