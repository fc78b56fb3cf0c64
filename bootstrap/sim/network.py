"""The simulated network: TCP connections whose losses show up as delay, and partitions.

Model (kept deliberately simple; every rule here is what the tests pin down):

* Every message travels over a TCP connection. Each transmission attempt of a segment is lost
  independently with probability ``loss``; a lost attempt is retransmitted after the
  retransmission timeout, which doubles on every retry (Linux: data segments start at the
  200 ms minimum RTO, which is what a LAN round trip of a few milliseconds yields; SYN and
  SYN-ACK start at 1 s). So loss never drops a message: it delays it by
  ``rto * (2**k - 1)`` after ``k`` lost attempts. ACK loss is not modelled (cumulative ACKs
  make it mostly harmless).
* The delay of the attempt that gets through is one draw from the scenario's latency
  distribution.
* Messages on one connection arrive in order, per direction: a message never overtakes the one
  sent before it (head-of-line blocking after a retransmission).
* A partition loses every message whose ends are separated when it is sent or when it would
  arrive. The connection then *stalls*: it carries nothing more in either direction, as a TCP
  stream with a hole delivers nothing after it. The prober notices only by its own timeout.
* Closing is instant at both ends (a FIN or RST is not modelled as a message), except that a
  node which stops resets its connections: the peer learns it one latency draw later, and
  nothing is served on them meanwhile, even if the node has started again.
"""

from __future__ import annotations

import math
import random

from .scenario import Latency, Partition

__all__ = ["DATA_RTO", "MAX_RTO", "SYN_RTO", "Connection", "Network"]

DATA_RTO = 0.2  # Linux TCP_RTO_MIN: the first retransmission timeout of a data segment
SYN_RTO = 1.0  # Linux TCP_TIMEOUT_INIT: the first retransmission timeout of a SYN / SYN-ACK
MAX_RTO = 120.0  # Linux TCP_RTO_MAX


class Connection:
    """One TCP connection from a prober (``client``) to a peer's management endpoint."""

    __slots__ = (
        "accepted",
        "client",
        "deadline",
        "last_down",
        "last_up",
        "last_used",
        "open",
        "push_due",
        "request",
        "server",
        "server_stopped",
        "stalled",
        "watch_ready",
        "watched",
    )

    def __init__(self, client: int, server: int, now: float) -> None:
        self.client = client
        self.server = server
        self.open = True
        # The server accepted it: a real connection exists (a refused attempt is not one).
        self.accepted = False
        # The server's process stopped: nothing more is served on this connection (a restarted
        # process on the same contact point is a different endpoint; the RST is on its way).
        self.server_stopped = False
        self.stalled = False
        # Arrival time of the last message in each direction (in-order delivery).
        self.last_up = now  # client -> server
        self.last_down = now  # server -> client
        self.last_used = now
        # The outstanding request (a token), and when the prober gives up on it.
        self.request: int | None = None
        self.deadline = math.inf
        # Watch transport: the server registered the watch / the client got the first document.
        self.watched = False
        self.watch_ready = False
        # When the server's next periodic push is due (lazy timer: stale entries are ignored).
        self.push_due = math.inf


class Network:
    """Latency draws, TCP retransmission delays and partitions for one run."""

    __slots__ = ("_high", "_latency", "_loss", "_low", "_mean", "_partitions", "_rng", "messages")

    def __init__(
        self,
        *,
        latency: Latency,
        loss: float,
        partitions: tuple[Partition, ...],
        rng: random.Random,
    ) -> None:
        self._latency = latency
        # Unpacked: a draw happens for every message, so it is inlined in transmission_delay.
        self._low, self._high, self._mean = latency.low, latency.high, latency.mean_extra
        self._loss = loss
        self._partitions = partitions
        self._rng = rng
        self.messages = 0

    def latency(self) -> float:
        """One one-way latency draw (no loss): an RST, or a local step such as a join."""
        return self._latency.draw(self._rng)

    def transmission_delay(self, first_rto: float) -> float:
        """Delay of one segment: retransmission timeouts of the lost attempts, then a latency."""
        delay = 0.0
        loss = self._loss
        random = self._rng.random
        if loss:
            rto = first_rto
            while random() < loss:
                delay += rto
                rto = min(rto * 2, MAX_RTO)
        mean = self._mean
        if mean is None:
            return delay + self._low + (self._high - self._low) * random()
        latency = self._low - mean * math.log(1.0 - random())  # Latency.draw, inlined
        return delay + (latency if latency < self._high else self._high)

    def separated(self, a: int, b: int, when: float) -> bool:
        """True if a partition active at ``when`` puts ``a`` and ``b`` in different groups."""
        for partition in self._partitions:
            if partition.start <= when < partition.end and partition.separates(a, b):
                return True
        return False

    def _lost(self, a: int, b: int, sent: float, arrival: float) -> bool:
        return bool(self._partitions) and (
            self.separated(a, b, sent) or self.separated(a, b, arrival)
        )

    def send_up(self, connection: Connection, now: float, first_rto: float = DATA_RTO) -> float:
        """Send client -> server; return the arrival time, or ``math.inf`` if it never arrives."""
        return self._send(connection, now, first_rto, upstream=True)

    def send_down(self, connection: Connection, now: float, first_rto: float = DATA_RTO) -> float:
        """Send server -> client; return the arrival time, or ``math.inf`` if it never arrives."""
        return self._send(connection, now, first_rto, upstream=False)

    def _send(
        self, connection: Connection, now: float, first_rto: float, *, upstream: bool
    ) -> float:
        self.messages += 1
        if connection.stalled:
            return math.inf
        sender, receiver = (
            (connection.client, connection.server)
            if upstream
            else (connection.server, connection.client)
        )
        arrival = now + self.transmission_delay(first_rto)
        if self._lost(sender, receiver, now, arrival):
            connection.stalled = True
            return math.inf
        # TCP delivers in order: a message never overtakes the previous one in its direction.
        previous = connection.last_up if upstream else connection.last_down
        arrival = max(arrival, previous)
        if upstream:
            connection.last_up = arrival
        else:
            connection.last_down = arrival
        return arrival

    def reset_arrival(self, connection: Connection, now: float) -> float:
        """When the client learns that the server reset the connection (after what is in flight)."""
        if connection.stalled:
            return math.inf
        arrival = now + self.latency()
        if self._lost(connection.server, connection.client, now, arrival):
            return math.inf
        return max(arrival, connection.last_down)
