"""The benchmarks' measuring tools: /proc parsing against the real kernel, and node isolation.

Network namespace tests need root and iproute2 and are skipped (saying why) without them. Their
tags include our pid, so concurrent test runs and benchmarks never share a namespace name.
"""

from __future__ import annotations

import itertools
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from benchmarks import isolation, procfs
from benchmarks.isolation import (
    IsolationError,
    LoopbackIsolation,
    NetnsIsolation,
    exit_on_sigterm,
    netns_available,
    remove_stale_namespaces,
)
from benchmarks.procfs import ConnectionTracker, TcpSocket, parse_tcp_table

# --- parsing -------------------------------------------------------------------------------

IPV4_TABLE = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 41 1 0000000000000000 100 0 0 10 0
   1: 0201A8C0:C350 0101A8C0:1F90 01 00000000:00000000 02:000AF0AA 00000000  1000        0 42 2 0000000000000000 20 4 30 10 -1
   2: 0100007F:1F90 0100007F:D431 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
"""  # noqa: E501 -- the kernel's own line length

IPV6_TABLE = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 51 1 0000000000000000 100 0 0 10 0
   1: B80D0120000000000000000005000000:1F90 B80D012000000000000000000A000000:E2A4 01 00000000:00000000 02:00000A3C 00000000  1000        0 52 2 0000000000000000 20 4 31 10 -1
   2: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000200007F:9C40 06 00000000:00000000 03:000016A8 00000000     0        0 0 3 0000000000000000
   3: 00000000000000000000000001000000:0016 00000000000000000000000001000000:A0B1 08 00000000:00000000 00:00000000 00000000     0        0 53 1 0000000000000000 20 4 0 10 -1
"""  # noqa: E501


def test_parse_ipv4_table() -> None:
    """IPv4 rows: little-endian addresses, hex ports, LISTEN, ESTABLISHED and TIME_WAIT."""
    assert parse_tcp_table(IPV4_TABLE, ipv6=False) == [
        TcpSocket(local=("127.0.0.1", 8080), remote=("0.0.0.0", 0), state="LISTEN"),
        TcpSocket(local=("192.168.1.2", 50000), remote=("192.168.1.1", 8080), state="ESTABLISHED"),
        TcpSocket(local=("127.0.0.1", 8080), remote=("127.0.0.1", 54321), state="TIME_WAIT"),
    ]


def test_parse_ipv6_table() -> None:
    """IPv6 rows: four little-endian words; IPv4-mapped addresses come out as plain IPv4."""
    assert parse_tcp_table(IPV6_TABLE, ipv6=True) == [
        TcpSocket(local=("::", 8080), remote=("::", 0), state="LISTEN"),
        TcpSocket(local=("2001:db8::5", 8080), remote=("2001:db8::a", 58020), state="ESTABLISHED"),
        TcpSocket(local=("127.0.0.1", 8080), remote=("127.0.0.2", 40000), state="TIME_WAIT"),
        TcpSocket(local=("::1", 22), remote=("::1", 41137), state="CLOSE_WAIT"),
    ]


def test_parse_names_every_state_and_keeps_unknown_codes() -> None:
    """All eleven kernel states 01..0B have names; any other code is kept as it is."""
    assert len(procfs.TCP_STATES) == 11
    assert sorted(procfs.TCP_STATES) == [f"{code:02X}" for code in range(1, 12)]
    row = "   0: 0100007F:0050 0100007F:0051 {} 00000000:00000000 00:00000000 00000000 0 0 1"
    header = "  sl  local_address rem_address   st\n"
    assert parse_tcp_table(header + row.format("0B"), ipv6=False)[0].state == "CLOSING"
    assert parse_tcp_table(header + row.format("0C"), ipv6=False)[0].state == "0C"


def test_parse_empty_table_and_wrong_family() -> None:
    """A table of only its header has no sockets; an IPv6 row read as IPv4 is an error."""
    assert parse_tcp_table(IPV4_TABLE.splitlines()[0] + "\n", ipv6=False) == []
    with pytest.raises(ValueError, match="IPv4"):
        parse_tcp_table(IPV6_TABLE, ipv6=False)


def test_missing_tcp6_table_means_ipv4_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without IPv6 (no tcp6 table) the IPv4 sockets are still returned."""
    tables = {"/proc/net/tcp": IPV4_TABLE}

    def fake_read(path: str) -> str:
        if path not in tables:
            raise ProcessLookupError(path)
        return tables[path]

    monkeypatch.setattr(procfs, "_read", fake_read)
    assert len(procfs.tcp_sockets()) == 3
    tables = {f"/proc/{os.getpid()}/net/tcp": IPV4_TABLE}
    assert len(procfs.tcp_sockets(os.getpid())) == 3


# --- the real kernel -----------------------------------------------------------------------


def wait_for(condition: object, what: str, timeout: float = 5.0) -> None:
    """Poll ``condition()`` until it is true, failing after ``timeout`` seconds."""
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}")
        time.sleep(0.01)


def test_real_connection_then_time_wait_on_the_side_that_closed() -> None:
    """The kernel's table shows LISTEN and both ESTABLISHED ends, then TIME_WAIT on the closer."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        accepted, _ = server.accept()
        client_port = client.getsockname()[1]
        client_end = ("127.0.0.1", client_port)
        server_end = ("127.0.0.1", port)
        sockets = procfs.tcp_sockets()
        assert TcpSocket(local=server_end, remote=("0.0.0.0", 0), state="LISTEN") in sockets
        assert TcpSocket(local=server_end, remote=client_end, state="ESTABLISHED") in sockets
        assert TcpSocket(local=client_end, remote=server_end, state="ESTABLISHED") in sockets
        # The table is the namespace's: asking through our own pid reads the same one.
        assert TcpSocket(local=client_end, remote=server_end, state="ESTABLISHED") in (
            procfs.tcp_sockets(os.getpid())
        )

        # The server closes first, so the server's end is the one that lingers in TIME_WAIT.
        accepted.close()
        client.close()
        time_wait = TcpSocket(local=server_end, remote=client_end, state="TIME_WAIT")
        wait_for(lambda: time_wait in procfs.tcp_sockets(), "server end in TIME_WAIT")
        assert not any(
            s.local == client_end and s.remote == server_end for s in procfs.tcp_sockets()
        )

        # However often it is sampled, the connection counts once.
        tracker = ConnectionTracker(server_port=port)
        assert tracker.observe(procfs.tcp_sockets()) == {"127.0.0.1": 1}
        assert tracker.observe(procfs.tcp_sockets()) == {}
        assert tracker.total_by_client == {"127.0.0.1": 1}


def test_cpu_and_memory_of_a_live_process() -> None:
    """Our own process has used some CPU time and holds some resident memory."""
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        pass
    assert procfs.cpu_seconds(os.getpid()) > 0
    assert procfs.rss_bytes(os.getpid()) > 1024 * 1024
    assert procfs.netns_id(os.getpid()) == os.stat("/proc/self/ns/net").st_ino


def test_a_process_that_is_gone_raises_process_lookup_error() -> None:
    """Every reader raises ProcessLookupError for a pid that exited and was reaped."""
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait(timeout=30)
    for reader in (procfs.cpu_seconds, procfs.rss_bytes, procfs.netns_id, procfs.tcp_sockets):
        with pytest.raises(ProcessLookupError):
            reader(finished.pid)


# --- ConnectionTracker ---------------------------------------------------------------------

PORT = 8558


def sock(local: tuple[str, int], remote: tuple[str, int], state: str) -> TcpSocket:
    """A synthetic socket."""
    return TcpSocket(local=local, remote=remote, state=state)


def test_tracker_counts_a_connection_once_from_both_ends_and_over_samples() -> None:
    """One connection, seen from both ends and in later samples in other states, counts once."""
    tracker = ConnectionTracker(server_port=PORT)
    client, server = ("10.213.0.1", 40000), ("10.213.0.2", PORT)
    assert tracker.observe(
        [sock(client, server, "ESTABLISHED"), sock(server, client, "ESTABLISHED")]
    ) == {"10.213.0.1": 1}
    assert tracker.observe([sock(client, server, "TIME_WAIT")]) == {}
    assert tracker.observe([sock(server, client, "CLOSE_WAIT")]) == {}
    assert tracker.total_by_client == {"10.213.0.1": 1}


def test_tracker_ignores_listening_unanswered_and_unrelated_sockets() -> None:
    """LISTEN, SYN_SENT, CLOSE, other ports and server port on both ends count nothing."""
    tracker = ConnectionTracker(server_port=PORT)
    assert (
        tracker.observe(
            [
                sock(("0.0.0.0", PORT), ("0.0.0.0", 0), "LISTEN"),
                sock(("10.213.0.1", 40000), ("10.213.0.2", PORT), "SYN_SENT"),
                sock(("10.213.0.1", 40001), ("10.213.0.2", PORT), "CLOSE"),
                sock(("10.213.0.1", 40002), ("10.213.0.2", 22), "ESTABLISHED"),
                sock(("10.213.0.1", PORT), ("10.213.0.2", PORT), "ESTABLISHED"),
            ]
        )
        == {}
    )
    assert tracker.total_by_client == {}


def test_tracker_counts_clients_and_connections_separately() -> None:
    """Two clients are counted apart; a new port of the same client is a new connection."""
    tracker = ConnectionTracker(server_port=PORT)
    a, b, server = "10.213.0.1", "10.213.0.2", ("10.213.0.3", PORT)
    first = [sock((a, 40000), server, "ESTABLISHED"), sock(server, (b, 50000), "SYN_RECV")]
    assert tracker.observe(first) == {a: 1, b: 1}
    second = [
        *first,
        sock((a, 40001), server, "FIN_WAIT2"),
        sock((a, 40002), server, "LAST_ACK"),
        sock(server, (b, 50000), "ESTABLISHED"),
    ]
    assert tracker.observe(second) == {a: 2}
    assert tracker.total_by_client == {a: 3, b: 1}
    # The same client connecting to another server's port is another connection.
    assert tracker.observe([sock((a, 40000), ("10.213.0.4", PORT), "TIME_WAIT")]) == {a: 1}
    assert tracker.total_by_client == {a: 4, b: 1}


# --- isolation -----------------------------------------------------------------------------


def test_loopback_isolation() -> None:
    """Loopback nodes get 127.<subnet>.0.<i+1> in order and run without any prefix."""
    with LoopbackIsolation(3, subnet=7) as nodes:
        assert nodes.name == "loopback"
        assert nodes.addresses == ["127.7.0.1", "127.7.0.2", "127.7.0.3"]
        assert nodes.command_prefix(2) == []
    with pytest.raises(ValueError, match="subnet"):
        LoopbackIsolation(3, subnet=255)
    with pytest.raises(ValueError, match="nodes"):
        LoopbackIsolation(251, subnet=1)


def test_exit_on_sigterm_raises_keyboard_interrupt() -> None:
    """After exit_on_sigterm, SIGTERM arrives as KeyboardInterrupt, so finally blocks run."""
    cleaned_up = []

    def terminated() -> None:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        finally:
            cleaned_up.append(True)

    previous = signal.getsignal(signal.SIGTERM)
    try:
        exit_on_sigterm()
        with pytest.raises(KeyboardInterrupt):
            terminated()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert cleaned_up == [True]


NETNS_REASON = netns_available()
needs_netns = pytest.mark.skipif(
    NETNS_REASON is not None, reason=f"network namespaces unavailable: {NETNS_REASON}"
)


def namespaces() -> set[str]:
    """The names ``ip netns list`` shows now."""
    listing = subprocess.run(
        ["ip", "netns", "list"], check=True, capture_output=True, text=True, timeout=30
    ).stdout
    return {line.split()[0] for line in listing.splitlines() if line.strip()}


def tagged(tag: str) -> set[str]:
    """The namespaces named after ``tag``."""
    return {name for name in namespaces() if name.startswith(f"cbb-{tag}-")}


_tags = itertools.count()


@pytest.fixture
def tag() -> Iterator[str]:
    """A tag no concurrent run uses (our pid, then a counter); checks nothing of it is left."""
    name = f"t{os.getpid()}_{next(_tags)}"
    yield name
    leftovers = tagged(name)
    for namespace in leftovers:
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=30)
    assert not leftovers


SERVER = """
import socket, sys
with socket.create_server((sys.argv[1], int(sys.argv[2]))) as server:
    server.settimeout(20)
    connection, _ = server.accept()
    connection.sendall(b"ok " + connection.getpeername()[0].encode())
    connection.close()
"""

CLIENT = """
import socket, sys, time
deadline = time.monotonic() + 20
while True:
    try:
        connection = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
        break
    except ConnectionRefusedError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.02)
print(connection.recv(100).decode())
"""


@needs_netns
def test_netns_nodes_reach_each_other_over_the_bridge(tag: str) -> None:
    """Three namespaces on a bridge: node 0 connects to a server in node 2 and gets its reply."""
    with NetnsIsolation(3, tag=tag) as nodes:
        assert nodes.name == "netns"
        assert nodes.addresses == ["10.213.0.1", "10.213.0.2", "10.213.0.3"]
        assert tagged(tag) == {f"cbb-{tag}-0", f"cbb-{tag}-1", f"cbb-{tag}-2", f"cbb-{tag}-br"}
        assert nodes.command_prefix(1) == ["ip", "netns", "exec", f"cbb-{tag}-1"]
        eth0 = subprocess.run(
            [*nodes.command_prefix(0), "ip", "-o", "-4", "addr", "show", "dev", "eth0"],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        assert "inet 10.213.0.1/16" in eth0

        port = "8558"
        server = subprocess.Popen(
            [*nodes.command_prefix(2), sys.executable, "-c", SERVER, nodes.addresses[2], port],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            client = subprocess.run(
                [*nodes.command_prefix(0), sys.executable, "-c", CLIENT, nodes.addresses[2], port],
                capture_output=True,
                text=True,
                timeout=30,
            )
            _, server_errors = server.communicate(timeout=30)
        finally:
            server.kill()
            server.wait(timeout=30)
        assert client.returncode == 0, client.stderr
        assert server.returncode == 0, server_errors
        # The server saw the client's own address: a real hop between namespaces.
        assert client.stdout.strip() == "ok 10.213.0.1"
        # Each namespace has a table of its own: the host's shows none of this.
        assert not any(s.local[0].startswith("10.213.") for s in procfs.tcp_sockets())
    assert tagged(tag) == set()


@needs_netns
def test_netns_torn_down_when_the_block_raises(tag: str) -> None:
    """An exception inside the block still removes every namespace, and propagates."""

    def fail_inside() -> None:
        with NetnsIsolation(2, tag=tag):
            assert len(tagged(tag)) == 3
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_inside()
    assert tagged(tag) == set()


@needs_netns
def test_netns_torn_down_when_set_up_fails_halfway(tag: str) -> None:
    """A set-up that fails after creating namespaces removes them before raising."""

    class Failing(NetnsIsolation):
        def _set_up(self) -> None:
            super()._set_up()
            assert len(tagged(tag)) == 4
            raise IsolationError("failed halfway")

    with pytest.raises(IsolationError, match="halfway"), Failing(3, tag=tag):
        pytest.fail("entered a failed isolation")
    assert tagged(tag) == set()


@needs_netns
def test_stale_namespaces_go_live_ones_stay(tag: str) -> None:
    """Namespaces of a dead run are removed on entering; a live run's, and a busy tag, stay."""
    stale = f"cbb-{tag}x-0"
    subprocess.run(["ip", "netns", "add", stale], check=True, capture_output=True, timeout=30)
    try:
        with NetnsIsolation(1, tag=tag) as first:
            assert stale not in namespaces()
            with NetnsIsolation(1, tag=f"{tag}y"):
                # Entering another run does not take the first run's namespaces.
                assert first.namespaces[0] in namespaces()
                assert remove_stale_namespaces() == []
                assert len(tagged(tag)) == 2
            with pytest.raises(IsolationError, match="in use"), NetnsIsolation(1, tag=tag):
                pass
            assert len(tagged(tag)) == 2
    finally:
        subprocess.run(["ip", "netns", "del", stale], capture_output=True, timeout=30)
    assert tagged(tag) == set()
    assert tagged(f"{tag}y") == set()


HOLDER = """
import sys, time
from benchmarks.isolation import NetnsIsolation, exit_on_sigterm
exit_on_sigterm()
with NetnsIsolation(2, tag=sys.argv[1]):
    print("up", flush=True)
    time.sleep(60)
"""


def start_holder(tag: str) -> subprocess.Popen[str]:
    """A process that sets up a 2-node isolation tagged ``tag`` and holds it; once it is up."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, tag],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": root},
    )
    assert holder.stdout is not None
    ready, _, _ = select.select([holder.stdout], [], [], 30)
    if not ready or holder.stdout.readline() != "up\n":
        holder.kill()
        holder.communicate(timeout=30)
        pytest.fail("the holder did not set up")
    return holder


@needs_netns
def test_killed_run_leaves_namespaces_that_the_next_run_removes(tag: str) -> None:
    """A run killed outright keeps its namespaces only while it lives; then cleanup takes them."""
    with start_holder(tag) as holder:
        try:
            assert len(tagged(tag)) == 3
            # Alive: its lock is held, so another process's cleanup leaves its namespaces be.
            assert not set(remove_stale_namespaces()) & tagged(tag)
            assert len(tagged(tag)) == 3
        finally:
            holder.kill()
            holder.wait(timeout=30)
    assert len(tagged(tag)) == 3
    with NetnsIsolation(1, tag=f"{tag}n"):
        assert tagged(tag) == set()


@needs_netns
def test_sigterm_tears_down(tag: str) -> None:
    """A run stopped by SIGTERM (with exit_on_sigterm) removes its namespaces as it exits."""
    with start_holder(tag) as holder:
        try:
            assert len(tagged(tag)) == 3
            holder.terminate()
            assert holder.wait(timeout=30) != 0
        finally:
            holder.kill()
    assert tagged(tag) == set()


def test_failed_ip_command_names_itself_and_the_way_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An `ip` that is missing or fails raises IsolationError with the command and the hint."""
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(IsolationError, match="--isolation loopback"):
        isolation._ip(["netns", "list"])
    monkeypatch.undo()
    if NETNS_REASON is None:
        with pytest.raises(IsolationError, match=r"ip link show cbbnothere[\s\S]*cbbnothere"):
            isolation._ip(["link", "show", "cbbnothere"])
