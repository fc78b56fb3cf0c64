"""End to end: ``cluster-bootstrap node`` stops gracefully on SIGTERM (and SIGINT).

What "gracefully" means here (``Node.stop``): probing stops and each probe connection is closed
once, never reopened; the server stops listening, says "going away" (1001) on every watch and
finishes the responses in flight; a decision already acted on is not repeated, and an
``--on-decided`` command is never started after the signal; the process exits 0 within
``STOP_BOUND``. A second signal during the shutdown changes nothing and prints no traceback.

Policy: real processes and sockets on 127.0.0.x (a free port each), and one test in process
(a slow ``Membership``, which the command line cannot plug in); every wait has a deadline, and
every process is killed on the way out. ``STOP_BOUND`` is a correctness bound (3 s of
``STOP_TIMEOUT`` plus the interpreter's exit), not a benchmark. Connections are read from the
kernel's table, not from the node's own counters.
"""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import trio

from bootstrap import ContactPoint, Settings
from bootstrap.discovery import StaticDiscovery
from bootstrap.membership import LocalMembership
from bootstrap.node import STOP_TIMEOUT, open_node
from tests.helpers.ports import free_port
from tests.helpers.running import run

from .loopback import kernel_tcp_sockets, loopback_points, outgoing_connections

STOP_BOUND = 5.0  # seconds from the signal to the process's exit
START_DEADLINE = 20.0  # seconds for nodes to start and reach the state a test needs


class NodeProcess:
    """One ``cluster-bootstrap node`` process, its output in a file."""

    def __init__(self, point: ContactPoint, args: list[str], log: Path) -> None:
        self.point = point
        self.url = f"http://{point}"
        self.log_path = log
        with log.open("w") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bootstrap", "node", "--contact-point", str(point), *args],
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return self.log_path.read_text()

    def status(self) -> dict[str, Any] | None:
        try:
            answer: dict[str, Any] = httpx.get(f"{self.url}/bootstrap/status", timeout=2).json()
        except httpx.HTTPError:
            return None
        return answer

    def signal_and_wait(self, *signals: signal.Signals) -> tuple[int, float]:
        """Send SIGTERM, then each of ``signals`` while it is still stopping; its exit status
        and how long it took from the first signal."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        for later in signals:
            # Once the node says it is stopping, and before it has exited: during the shutdown.
            wait_until(lambda: "received SIGTERM: stopping" in self.log(), 2.0, poll=0.002)
            assert self.process.poll() is None, "exited before the second signal could be sent"
            self.process.send_signal(later)
        status = self.process.wait(timeout=STOP_BOUND + 10)
        return status, time.monotonic() - started


def wait_until(done: Callable[[], object], timeout: float, *, poll: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out after {timeout} s"
        time.sleep(poll)


@contextmanager
def running_nodes(
    tmp_path: Path, args: dict[ContactPoint, list[str]]
) -> Iterator[list[NodeProcess]]:
    nodes = [
        NodeProcess(point, point_args, tmp_path / f"{point.host}.log")
        for point, point_args in args.items()
    ]
    try:
        yield nodes
    finally:
        for node in nodes:
            if node.process.poll() is None:
                node.process.kill()
            node.process.wait(timeout=10)


def stalled_cluster(first: int) -> tuple[list[ContactPoint], list[str]]:
    """Four contact points of which a test starts three: formation stalls (4 required), so every
    node keeps watching the two others."""
    points = loopback_points(4, free_port(), first=first)
    args = [
        *("--contact-points", ",".join(map(str, points))),
        *("--required-contact-points", "4", "--probe-interval", "0.5", "--stable-margin", "1"),
    ]
    return points, args


def watching_each_other(nodes: list[NodeProcess]) -> bool:
    """Every node has a fresh answer from every other one."""
    for node in nodes:
        status = node.status()
        if status is None:
            return False
        fresh = {cp["contactPoint"] for cp in status["contactPoints"] if cp["fresh"]}
        if not {str(other.point) for other in nodes if other is not node} <= fresh:
            return False
    return True


def established(host: str, port: int) -> set[tuple[tuple[str, int], tuple[str, int]]]:
    """ESTABLISHED connections with ``host`` at either end and ``port`` at one end."""
    return {
        (local, remote)
        for local, remote, state in kernel_tcp_sockets()
        if state == "ESTABLISHED"
        and host in (local[0], remote[0])
        and port in (local[1], remote[1])
    }


def test_sigterm_with_open_watches_exits_0_promptly_and_closes_each_connection_once(
    tmp_path: Path,
) -> None:
    """A node watched by two peers and watching them: SIGTERM exits 0 within the bound, its two
    probe connections are closed and none is reopened, the peers see their watches end with 1001
    (going away), and its --on-decided command, never due, never ran."""
    points, common = stalled_cluster(first=161)
    marker = tmp_path / "decided"
    hook = ["--on-decided", f"sh -c {shlex.quote(f'echo decided >> {marker}')}"]
    args = {point: list(common) for point in points[:3]}
    args[points[0]] += hook
    with running_nodes(tmp_path, args) as nodes:
        stopped, peers = nodes[0], nodes[1:]
        wait_until(lambda: watching_each_other(nodes), START_DEADLINE)
        host, port = stopped.point.host, stopped.point.port
        assert port is not None
        # One watch each way between the stopped node and each peer, nothing else.
        wait_until(lambda: len(established(host, port)) == 4 * 2, START_DEADLINE)
        opened_before = outgoing_connections(host, port)
        assert {remote for _, remote, _ in opened_before} == {p.point.host for p in peers}
        assert len(opened_before) == 2
        peer_logs_before = [len(peer.log()) for peer in peers]

        status, took = stopped.signal_and_wait()

        assert status == 0, stopped.log()
        assert took < STOP_BOUND
        # Every connection of the stopped node is closed, on both sides, and it opened no new
        # one while stopping (a closed connection stays listed in TIME_WAIT for 60 s).
        assert established(host, port) == set()
        assert outgoing_connections(host, port) <= opened_before
        # The peers read "going away" as the first failure about it, not a broken connection.
        failed = f"{stopped.point}: probe failed"
        for peer, before in zip(peers, peer_logs_before, strict=True):

            def failure_logged(peer: NodeProcess = peer, before: int = before) -> bool:
                return failed in peer.log()[before:]

            wait_until(failure_logged, 5)
            after = peer.log()[before:]
            first_failure = after[after.index(failed) :].splitlines()[0]
            assert first_failure == f"{failed}: watch closed (1001 going away)", after
        log = stopped.log()
        assert "Traceback" not in log
        assert "stopping" in log
        assert "decided:" not in log
        assert not marker.exists()  # no decision: the hook was never started


def test_a_second_signal_during_the_shutdown_changes_nothing(tmp_path: Path) -> None:
    """SIGTERM then SIGTERM, and SIGTERM then SIGINT, sent while the node is stopping: each
    still exits 0 within the bound, with no traceback."""
    points, common = stalled_cluster(first=171)
    with running_nodes(tmp_path, dict.fromkeys(points[:3], common)) as nodes:
        wait_until(lambda: watching_each_other(nodes), START_DEADLINE)
        for node, second in zip(nodes, [signal.SIGTERM, signal.SIGINT], strict=False):
            status, took = node.signal_and_wait(second)
            log = node.log()
            assert (status, "Traceback" in log, "KeyboardInterrupt" in log) == (0, False, False)
            assert took < STOP_BOUND


def test_responses_in_flight_at_sigterm_complete_and_none_is_truncated(tmp_path: Path) -> None:
    """24 clients hammer a node (kept-alive and fresh connections) while it gets SIGTERM: every
    response that started is a complete, valid 200; the others failed before any response (the
    socket closed), which is what a client may retry."""
    point, other = loopback_points(2, free_port(), first=181)
    args = ["--contact-points", f"{point},{other}", "--required-contact-points", "2"]
    outcomes: dict[str, int] = {}
    truncated: list[str] = []

    async def client_loop(client: httpx.AsyncClient, path: str, stopped: trio.Event) -> None:
        while True:
            got_headers = False
            try:
                async with client.stream("GET", f"http://{point}{path}") as response:
                    got_headers = True
                    body = await response.aread()
                if response.status_code != 200:
                    kind = f"HTTP {response.status_code}"
                    outcomes[kind] = outcomes.get(kind, 0) + 1
                    continue
                assert len(body) == int(response.headers["content-length"])
                response.json()
                kind = "complete after the signal" if stopped.is_set() else "complete"
            except (httpx.TransportError, ValueError, AssertionError) as error:
                if got_headers:
                    truncated.append(repr(error))
                if not stopped.is_set():
                    raise
                outcomes[type(error).__name__] = outcomes.get(type(error).__name__, 0) + 1
                return  # the server is going: this client is done
            outcomes[kind] = outcomes.get(kind, 0) + 1

    async def load(node: NodeProcess) -> int:
        stopped = trio.Event()
        fresh = httpx.Limits(max_keepalive_connections=0)
        async with (
            httpx.AsyncClient(timeout=10) as kept_alive,
            httpx.AsyncClient(timeout=10, limits=fresh) as one_shot,
            trio.open_nursery() as nursery,
        ):
            for index in range(24):
                client = kept_alive if index % 2 else one_shot
                path = "/bootstrap/seed-nodes" if index % 4 < 2 else "/bootstrap/status"
                nursery.start_soon(client_loop, client, path, stopped)
            await trio.sleep(0.5)
            stopped.set()
            node.process.send_signal(signal.SIGTERM)
        return await trio.to_thread.run_sync(node.process.wait)

    with running_nodes(tmp_path, {point: args}) as [node]:
        wait_until(lambda: node.status() is not None, START_DEADLINE)
        status = run(lambda: load(node), seconds=STOP_BOUND + 10)
        assert status == 0, node.log()
    assert truncated == []
    assert outcomes.get("complete", 0) > 0, outcomes
    assert set(outcomes) <= {
        "complete",
        "complete after the signal",
        "ConnectError",  # refused: the socket no longer listens
        "RemoteProtocolError",  # closed before a response: idle, or never read
        "ReadError",  # reset before a response
    }, outcomes
    assert "Traceback" not in node.log()


def test_a_decision_is_neither_lost_nor_repeated_across_sigterm(tmp_path: Path) -> None:
    """Four nodes form one cluster. A node whose --on-decided command already ran exits 0 on
    SIGTERM with the command's line written once; a node whose command is still running when
    SIGTERM comes hands it SIGTERM once, waits for it, and exits 0; neither decides again, and
    the remaining two still show one cluster with exactly one join-self."""
    points = loopback_points(4, free_port(), first=191)
    common = [
        *("--contact-points", ",".join(map(str, points)), "--required-contact-points", "4"),
        *("--stable-margin", "0.5", "--probe-interval", "0.2"),
    ]
    done_file, running_file = tmp_path / "done", tmp_path / "running"
    quick = f'echo "$BOOTSTRAP_DECISION" >> {done_file}'
    slow = (
        f"echo started >> {running_file}; "
        f"trap 'kill $!; echo stopped >> {running_file}; exit 0' TERM; sleep 30 & wait"
    )
    args = {point: list(common) for point in points}
    args[points[2]] += ["--on-decided", f"sh -c {shlex.quote(quick)}"]
    args[points[3]] += ["--on-decided", f"sh -c {shlex.quote(slow)}"]
    with running_nodes(tmp_path, args) as nodes:
        wait_until(
            lambda: (
                all((s := n.status()) and s["joined"] for n in nodes)
                and done_file.exists()
                and running_file.exists()
            ),
            START_DEADLINE,
        )
        quick_node, slow_node = nodes[2], nodes[3]
        wait_until(lambda: "--on-decided command exited with status 0" in quick_node.log(), 5)

        status, took = quick_node.signal_and_wait()
        assert (status, lines(done_file)) == (0, ["join-seed-nodes"])
        assert took < STOP_BOUND
        status, took = slow_node.signal_and_wait()
        assert (status, lines(running_file)) == (0, ["started", "stopped"])
        assert took < STOP_BOUND
        for node in (quick_node, slow_node):
            log = node.log()
            assert (log.count("decided:"), log.count(": joined")) == (1, 1), log
            assert "Traceback" not in log
        assert quick_node.log().count("--on-decided command exited with status 0") == 1
        assert slow_node.log().count("sending SIGTERM to the --on-decided command") == 1
        assert "--on-decided command exited" not in slow_node.log()
        remaining = [node.status() for node in nodes[:2]]
        assert [s["decision"]["kind"] for s in remaining if s] == ["join-self", "join-seed-nodes"]
        assert all(s and s["joined"] for s in remaining)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


class SlowMembership(LocalMembership):
    """Joining takes a second (an application's cluster join over the network, say)."""

    started = completed = 0

    async def join_self(self) -> None:
        self.started += 1
        await trio.sleep(1.0)
        await super().join_self()
        self.completed += 1


def test_leaving_open_node_during_a_join_waits_for_it_to_complete_once() -> None:
    """In process: leaving the open_node block while the join runs completes that join, once,
    and returns within STOP_TIMEOUT; the node's decision and join are not repeated."""
    point = ContactPoint("127.0.0.236", free_port())
    membership = SlowMembership(f"http://{point}")
    settings = Settings(required_contact_points=1, stable_margin=0.2, probe_interval=0.2)

    async def main() -> None:
        async with open_node(
            contact_point=point,
            discovery=StaticDiscovery([point]),
            settings=settings,
            membership=membership,
        ) as node:
            await node.wait_decided()
            await trio.sleep(0.3)
            assert (membership.started, membership.completed, node.joined) == (1, 0, False)
            left_at = trio.current_time()
        took = trio.current_time() - left_at
        assert (membership.started, membership.completed, node.joined) == (1, 1, True)
        assert 0.5 < took < STOP_TIMEOUT

    run(main, seconds=10)
