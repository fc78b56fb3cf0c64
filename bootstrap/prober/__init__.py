"""The prober: carries out the machine's ``Probe`` / ``StopProbing`` and reports what peers said.

This package is the reason the project exists. The anchor opened a new TCP connection for every
probe, so every node left ``60 s x peers / interval`` sockets in TIME_WAIT and exhausted its
ports; slowing the probe only divided the leak. Here (DESIGN sections 4 and 5):

* **One connection per peer for the life of the process.** With ``transport="watch"`` the first
  probe opens a websocket (``/bootstrap/watch``); the peer pushes its document on every change and
  at least every ``watch_push_interval``, and a later probe is the text message ``probe`` on that
  same connection. A peer that speaks no websocket (an Akka node answers the upgrade with 404) is
  remembered and polled instead. Polling (``transport="poll"``, or that fallback) is one ``GET
  /bootstrap/seed-nodes`` over a keep-alive connection that lives in a pool of its own per peer,
  so it is never evicted by other peers' connections and ``stop()`` can close exactly it.
* **Keep-alive outlives the probe period.** httpx closes an idle connection after 5 s by default,
  so any probe period near or above 5 s would reconnect every time. The pools keep a connection
  for ``settings.client_keepalive_expiry`` (the server's longer keep-alive is derived from it,
  ``settings.server_keep_alive_timeout``), and a configuration that would still reconnect per
  probe is refused when the prober is built (:class:`ConnectionChurnError`), not silently
  degraded.
* **We close.** Connections are closed by this side (after ``stop()``, ``stop_all()`` or when
  :meth:`Prober.run` ends), so TIME_WAIT lands on the prober, bounded by its peer count. Sockets
  are closed normally, never with ``SO_LINGER 0``.
* **A probe may ask for a promise** (DESIGN section 8): ``probe(cp, round=r)`` sends the
  ``Bootstrap-Round: <r>`` header on a poll or on the handshake that opens a watch, or the
  message ``propose <r>`` on an open watch; the answer's founding fields (``round``,
  ``candidate``, ``promise``, ``founding``) are reported in ``ProbeSucceeded``.
* **Timeouts are cancel scopes** of ``probe_timeout``: a timed-out request is really cancelled
  (httpx's own timeouts are off, so exactly one clock decides). In-flight probes are bounded
  globally by a :class:`trio.CapacityLimiter`, and the wait for a slot is inside the timeout;
  per peer at most one probe is in flight.
* **Every failure a peer can cause is an event.** Refused, reset, timed out, a non-200 status,
  a redirect (never followed), a body that is not ``application/json``, a malformed or oversized
  document (the size is enforced while reading, and a slow body is cut by ``probe_timeout``),
  another service's document, a watch flooded with messages: each becomes ``ProbeFailed`` with a
  reason an operator understands. One failure never stops the worker (the anchor's prober died
  on one timeout). Our own bugs are not failures: they propagate out of :meth:`Prober.run`.
* **Nothing late.** After ``stop(cp)`` nothing more about ``cp`` is reported, even a result that
  was already on its way.

The modules, one job each (each states its own rules):

* :mod:`._types`: the public types (:data:`Transport`, :data:`FailureKind`,
  :class:`ProberStatistics`, :class:`ConnectionChurnError`, the :class:`WatchConnection` and
  :class:`ConnectWebsocket` protocols) and the counters behind the statistics.
* :mod:`._failures`: a probe's outcome (a document or a failure), which exceptions are the
  peer's, and the reasons an operator reads.
* :mod:`._poll`: polling over HTTP, with a connection pool per peer.
* :mod:`._streams`: client streams for a watch (the TLS handshake, the websocket handshake).
* :mod:`._watch`: the websocket watch client.
* :mod:`._prober`: :class:`Prober`, its per-peer workers, and the one place outcomes are
  reported.

The paths, the header names and the watch's messages are the wire's
(:mod:`bootstrap.core.wire`), re-exported here.
"""

from ..core.wire import (
    CONTACT_POINT_HEADER,
    PROBE_MESSAGE,
    PROPOSE_MESSAGE,
    ROUND_HEADER,
    SEED_NODES_PATH,
    WATCH_PATH,
)
from ._failures import tls_failure_reason
from ._prober import Prober
from ._types import (
    ConnectionChurnError,
    ConnectWebsocket,
    FailureKind,
    ProberStatistics,
    Transport,
    WatchConnection,
)
from ._watch import WATCH_CLOSE_TIMEOUT

__all__ = [
    "CONTACT_POINT_HEADER",
    "PROBE_MESSAGE",
    "PROPOSE_MESSAGE",
    "ROUND_HEADER",
    "SEED_NODES_PATH",
    "WATCH_CLOSE_TIMEOUT",
    "WATCH_PATH",
    "ConnectWebsocket",
    "ConnectionChurnError",
    "FailureKind",
    "Prober",
    "ProberStatistics",
    "Transport",
    "WatchConnection",
    "tls_failure_reason",
]
