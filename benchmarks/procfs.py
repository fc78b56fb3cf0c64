"""What the kernel says about a process, read from /proc (Linux only).

The benchmarks measure nodes from the outside rather than trusting their own counters: the CPU
time and memory the kernel charged to a node's process, and the TCP connections the kernel saw
it make. A node that miscounted its own traffic would otherwise report its own bug as a good
result.

Everything here raises :class:`ProcessLookupError` when the process is gone, whatever the
exact file that vanished, so that a caller sampling processes that may exit at any moment
handles one exception.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections import Counter
from collections.abc import Iterable

import attrs

# include/net/tcp_states.h; /proc prints the state as two hex digits.
TCP_STATES = {
    "01": "ESTABLISHED",
    "02": "SYN_SENT",
    "03": "SYN_RECV",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "06": "TIME_WAIT",
    "07": "CLOSE",
    "08": "CLOSE_WAIT",
    "09": "LAST_ACK",
    "0A": "LISTEN",
    "0B": "CLOSING",
}


@attrs.frozen(kw_only=True)
class TcpSocket:
    """One row of /proc/net/tcp or tcp6: its two ends as (host, port) and its state's name."""

    local: tuple[str, int]
    remote: tuple[str, int]
    state: str


def _host(hex_host: str) -> str:
    # The kernel prints the address's bytes as 32-bit words in the host's byte order (so
    # little-endian on x86 and ARM); converting each word back with the host's byte order
    # restores the address's bytes on any machine.
    raw = b"".join(
        int(hex_host[start : start + 8], 16).to_bytes(4, sys.byteorder)
        for start in range(0, len(hex_host), 8)
    )
    address = ipaddress.ip_address(raw)
    # An IPv4 peer of a dual-stack socket appears as ::ffff:a.b.c.d; print it as the IPv4
    # address it is, so one peer has one spelling whichever socket family saw it.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _end(hex_end: str, *, ipv6: bool) -> tuple[str, int]:
    hex_host, hex_port = hex_end.split(":")
    if len(hex_host) != (32 if ipv6 else 8):
        raise ValueError(f"not an {'IPv6' if ipv6 else 'IPv4'} /proc address: {hex_end!r}")
    return _host(hex_host), int(hex_port, 16)


def parse_tcp_table(text: str, *, ipv6: bool) -> list[TcpSocket]:
    """The sockets of one /proc/net/tcp (``ipv6=False``) or tcp6 (``ipv6=True``) table's text.

    The first line is the header. A state the table above does not name keeps its hex code.
    """
    sockets = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if not fields:
            continue
        sockets.append(
            TcpSocket(
                local=_end(fields[1], ipv6=ipv6),
                remote=_end(fields[2], ipv6=ipv6),
                state=TCP_STATES.get(fields[3].upper(), fields[3]),
            )
        )
    return sockets


def _read(path: str) -> str:
    try:
        with open(path) as file:
            return file.read()
    except FileNotFoundError as error:
        raise ProcessLookupError(f"no such process: {path} is gone") from error


def tcp_sockets(pid: int | None = None) -> list[TcpSocket]:
    """Every TCP socket (IPv4 and IPv6) of the network namespace process ``pid`` is in.

    ``None`` means our own namespace. The table is the namespace's, not the process's: every
    process of one namespace gives the same list, so read it once per namespace (see
    :func:`netns_id`). Without IPv6 (no tcp6 table) only the IPv4 sockets are returned.
    """
    base = "/proc/net" if pid is None else f"/proc/{pid}/net"
    sockets = parse_tcp_table(_read(f"{base}/tcp"), ipv6=False)
    try:
        sockets += parse_tcp_table(_read(f"{base}/tcp6"), ipv6=True)
    except ProcessLookupError:
        # tcp6 is missing with IPv6 disabled too; only a missing process is an error.
        if pid is not None and not os.path.exists(f"/proc/{pid}"):
            raise
    return sockets


def cpu_seconds(pid: int) -> float:
    """CPU time (user plus system) the kernel charged to the process so far, in seconds."""
    stat = _read(f"/proc/{pid}/stat")
    # The second field is the command name in parentheses, which may itself hold spaces and
    # parentheses; the fields after the last ')' are numbers, starting with field 3 (state).
    fields = stat[stat.rindex(")") + 1 :].split()
    utime, stime = int(fields[14 - 3]), int(fields[15 - 3])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Resident memory of the process in bytes (0 for one without memory: zombies, kernel)."""
    for line in _read(f"/proc/{pid}/status").splitlines():
        if line.startswith("VmRSS:"):
            # "VmRSS:     12345 kB": the kernel always prints kB here.
            return int(line.split()[1]) * 1024
    return 0


def netns_id(pid: int) -> int:
    """An id of the network namespace of the process: equal ids, same namespace."""
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except FileNotFoundError as error:
        raise ProcessLookupError(f"no such process: {pid}") from error


# Every state a connection that was accepted can be in on either end. SYN_SENT is left out: an
# attempt nobody answered is no connection, and one that was answered shows up in these.
# LISTEN and CLOSE sockets belong to no connection.
_CONNECTION_STATES = frozenset(
    {
        "ESTABLISHED",
        "SYN_RECV",
        "FIN_WAIT1",
        "FIN_WAIT2",
        "TIME_WAIT",
        "CLOSE_WAIT",
        "LAST_ACK",
        "CLOSING",
    }
)


class ConnectionTracker:
    """Counts, per client address, the TCP connections made to a management port, once each.

    This is the kernel's count of "new connections", independent of what the nodes report.
    It works by sampling: call :meth:`observe` about once a second with the tables of every
    namespace the connections' ends live in (with all nodes on loopback that is one table).
    A connection is visible there while it is open and, after it closes, for 60 s more on the
    side that closed it first, where it waits in TIME_WAIT (Linux's fixed 2*MSL). Whichever
    side closes, one of the sampled tables therefore shows the connection for at least 60 s,
    so one sample a second cannot miss it even if it opened and closed between two samples.

    A connection is identified by its 4-tuple (client address, client port, server address,
    server port), which is the same seen from either end; so a connection seen from both
    ends, or in many samples, counts once. The client is the end whose port is not
    ``server_port``; a socket with the server port on both ends or on neither is skipped.

    Two limits. A connection aborted by a reset (RST) rather than closed skips TIME_WAIT, so
    one opened and reset between two samples is missed; the nodes close their connections
    normally. And a 4-tuple counts once per tracker, so were a client to reuse the very same
    port to the very same server within one run, the second connection would go uncounted;
    Linux moves on through its ephemeral ports (about 28 000) for successive connections to
    one destination, so that takes far more connections than a benchmark makes.
    """

    def __init__(self, server_port: int) -> None:
        self.server_port = server_port
        self._seen: set[tuple[str, int, str, int]] = set()
        self._total: Counter[str] = Counter()

    def observe(self, sockets: Iterable[TcpSocket]) -> dict[str, int]:
        """Record one sample; return the number of connections first seen now, per client."""
        new: Counter[str] = Counter()
        for sock in sockets:
            if sock.state not in _CONNECTION_STATES:
                continue
            local_is_server = sock.local[1] == self.server_port
            if local_is_server == (sock.remote[1] == self.server_port):
                continue
            client, server = (
                (sock.remote, sock.local) if local_is_server else (sock.local, sock.remote)
            )
            key = (client[0], client[1], server[0], server[1])
            if key not in self._seen:
                self._seen.add(key)
                new[client[0]] += 1
        self._total.update(new)
        return dict(new)

    @property
    def total_by_client(self) -> dict[str, int]:
        """Every connection counted so far, per client address."""
        return dict(self._total)
