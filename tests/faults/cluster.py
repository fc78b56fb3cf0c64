"""Helpers for the fault-injection tests: node processes in namespaces, faults, invariants.

    with FaultCluster(tmp_path, 5, node_args=FAST) as cluster:
        cluster.set_bridge_faults(partition=([0, 1, 2], [3, 4]))
        for i in range(5):
            cluster.start(i, *cluster.static_discovery(range(5)))
        statuses = cluster.wait_until("0-2 joined", cluster.joined([0, 1, 2]), timeout=30)
        cluster.heal()
        ...
        assert [c.founder for c in cluster.clusters()] == [0]

* **Where things run.** :class:`benchmarks.isolation.NetnsIsolation` gives node ``i`` the
  namespace ``cbb-<tag>-<i>`` with address ``10.213.0.<i+1>``, on a bridge in a namespace of its
  own. The tag holds our pid, so a concurrent benchmark or test run never shares a name. Every
  node listens on port 8558 of its own address (each namespace has its own port space).
* **Reading status.** The test process reads each node's ``/bootstrap/status`` from *inside the
  node's own namespace*: one worker thread per namespace has joined it with ``setns(2)`` (a
  network namespace is per thread, and sockets belong to the namespace of the thread that made
  them). The request goes over that namespace's loopback path, never over the bridge, so no
  fault on the bridge can hide or delay what a node says about itself. (``ip netns exec ...
  cluster-bootstrap status`` would do the same at ~0.3 s of interpreter start per read.)
* **Invariants, checked on every read** (:meth:`FaultCluster.poll`): a decision, once seen, is
  never replaced or lost while the node runs; ``joined`` never goes back; ``phase`` is
  ``decided`` exactly when there is a decision; a seed list never holds the node itself and
  has at most ``max_seed_nodes`` entries. And across nodes (:meth:`FaultCluster.clusters`):
  every seed node named is the ``selfNode`` of a node that had decided, and following seed
  nodes from any decided node reaches exactly one ``join-self`` node: its cluster's founder.
  So each cluster has exactly one founder; tests then assert how many clusters there are.
* **Faults.** Partitions and packet loss are an nftables table of family ``bridge`` in the
  bridge's namespace (``forward`` hook: frames between two ports; nothing else is touched).
  A peer whose answers arrive late is a delaying TCP proxy in its own namespace, in front of the
  node's unchanged contact point (see :meth:`FaultCluster.delay_answers`). DNS faults use
  dnsmasq (:class:`tests.dnsmasq.Dnsmasq`) or a silent socket in an extra namespace.
* **Clean-up always**: processes get SIGTERM, then SIGKILL; then the namespaces (and with them
  the veths, the bridge and every nftables table) are deleted.

Run as ``python -m tests.faults.cluster delay-proxy ...`` this module is the delaying proxy.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import itertools
import json
import math
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

import httpx
import pytest

from benchmarks.isolation import NetnsIsolation, netns_available

from ..dnsmasq import Dnsmasq, require_dnsmasq
from ..helpers.processes import running

__all__ = [
    "FAST",
    "PORT",
    "Blackhole",
    "Cluster",
    "FaultCluster",
    "InvariantViolation",
    "NamespacedDnsmasq",
    "Statuses",
    "require_fault_tools",
]

REPO = Path(__file__).resolve().parents[2]
PORT = 8558
MAX_SEED_NODES = 5  # the default; no test here changes it
#: Fast settings for every node (the scenario adds its own). observation_ttl = 0.6 + probe_timeout.
FAST = (
    "--probe-interval",
    "0.5",
    "--probe-backoff-max",
    "2",
    "--discovery-interval",
    "0.5",
    "--discovery-backoff-max",
    "2",
    "--stable-margin",
    "2",
)
POLL_INTERVAL = 0.25
STATUS_TIMEOUT = 2.0
TABLE = "cbfault"  # the nftables table of every fault (one per namespace that has one)

T = TypeVar("T")
Statuses = dict[int, dict[str, Any]]
_tags = itertools.count()


class InvariantViolation(AssertionError):
    """What the nodes said breaks an invariant of DESIGN section 6."""


@functools.cache
def _missing_fault_tools() -> str | None:
    if os.geteuid() != 0:
        return "not root"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not on PATH"
    if shutil.which("nft") is None:
        return "`nft` (nftables) is not on PATH"
    return netns_available()  # root may still lack the capability (a container)


def require_fault_tools() -> None:
    """Skip the module (fail under CI) unless root, ``ip``, ``nft`` and namespaces are usable."""
    reason = _missing_fault_tools()
    if reason is None:
        return
    message = f"fault-injection tests need root, iproute2 and nftables: {reason}"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message, allow_module_level=True)


# --- a thread inside a network namespace ------------------------------------------------------

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _enter_netns(namespace: str) -> None:
    """Move the calling thread (only it) into ``namespace`` (named by ``ip netns``)."""
    fd = os.open(f"/run/netns/{namespace}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, _CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns({namespace}): {os.strerror(errno)}")
    finally:
        os.close(fd)


class Namespace:
    """One worker thread living in a network namespace.

    Sockets it opens, and processes it starts, are in that namespace. It never leaves it: the
    thread ends when :meth:`close` shuts it down.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._local = threading.local()
        self._executor = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix=f"in-{name}",
            initializer=_enter_netns,
            initargs=(name,),
        )

    def submit(self, function: Callable[..., T], *args: object) -> Future[T]:
        return self._executor.submit(function, *args)

    def call(self, function: Callable[..., T], *args: object, timeout: float = 60.0) -> T:
        return self.submit(function, *args).result(timeout=timeout)

    def get_json(self, url: str) -> Future[Any]:
        """GET ``url`` from inside the namespace; the JSON body, or None if it failed."""
        return self.submit(self._get_json, url)

    def _get_json(self, url: str) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = httpx.Client(trust_env=False, timeout=STATUS_TIMEOUT)
        try:
            response = client.get(url)
            response.raise_for_status()
            return response.json()
        except (httpx.HTTPError, ValueError):
            return None

    def _close_client(self) -> None:
        client = getattr(self._local, "client", None)
        if client is not None:
            client.close()
            self._local.client = None

    def close(self) -> None:
        try:
            self.call(self._close_client, timeout=10)
        finally:
            self._executor.shutdown(wait=True, cancel_futures=True)


# --- what the nodes said ------------------------------------------------------------------------


@dataclass
class NodeRecord:
    """One node process and everything the test saw it say."""

    index: int
    incarnation: int  # 1 for the first process of this index, 2 after a restart...
    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]
    started_at: float
    killed: bool = False
    reachable_at: float | None = None
    decision: dict[str, Any] | None = None  # the first decision seen; never changes after
    decision_seen_at: float | None = None
    decision_seen_round: int | None = None  # which poll() first saw it
    joined: bool = False
    last: dict[str, Any] | None = None
    reads: int = 0


@dataclass(frozen=True)
class Cluster:
    """One cluster, by node index; a restarted node counts once per process (incarnation)."""

    founder: int  # the node that decided join-self
    members: tuple[int, ...]  # every node whose seed nodes lead to the founder (it included)


@dataclass
class FaultCluster:
    """Node processes in network namespaces, faults between them, and what they said."""

    tmp_path: Path
    count: int
    node_args: Sequence[str] = FAST
    #: Every node's selfNode (``--node-address``), ``{address}`` standing for the node's IP
    #: address; None: the default, ``http://`` and the contact point.
    node_address: str | None = None
    #: Whether a node's join may fail (a ``--join-command``): it then decides again, so a
    #: decision may change until the node has joined (and never after).
    joins_may_fail: bool = False
    isolation: NetnsIsolation = field(init=False)
    addresses: list[str] = field(init=False)
    nodes: dict[int, NodeRecord] = field(init=False, default_factory=dict)  # current processes
    retired: list[NodeRecord] = field(init=False, default_factory=list)  # killed, then restarted
    namespaces: list[Namespace] = field(init=False, default_factory=list)
    _cleanup: contextlib.ExitStack = field(init=False, default_factory=contextlib.ExitStack)
    _round: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        tag = f"f{os.getpid()}x{next(_tags)}"
        self.isolation = NetnsIsolation(self.count, tag=tag)
        self.addresses = self.isolation.addresses

    # --- names ---------------------------------------------------------------------------------

    def contact_point(self, index: int) -> str:
        return f"{self.addresses[index]}:{PORT}"

    def self_node(self, index: int) -> str:
        if self.node_address is not None:
            return self.node_address.format(address=self.addresses[index])
        return f"http://{self.contact_point(index)}"

    def index_of(self, self_node: str) -> int | None:
        for index in range(self.count):
            if self.self_node(index) == self_node:
                return index
        return None

    def static_discovery(self, indices: Iterable[int]) -> list[str]:
        return ["--contact-points", ",".join(self.contact_point(i) for i in indices)]

    # --- life cycle ----------------------------------------------------------------------------

    def __enter__(self) -> FaultCluster:
        self.isolation.__enter__()
        self._cleanup.callback(self.isolation.__exit__, None, None, None)
        try:
            for name in self.isolation.namespaces:
                namespace = Namespace(name)
                self._cleanup.callback(namespace.close)
                self.namespaces.append(namespace)
            # Processes stop before their namespaces go (LIFO): the nodes, then whatever else
            # still runs in a namespace (what a node's command started, outliving it).
            self._cleanup.callback(self.kill_leftovers)
            self._cleanup.callback(self.stop_all)
        except BaseException:
            self._cleanup.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._cleanup.close()

    def defer(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` on exit, before the nodes stop (last deferred runs first)."""
        self._cleanup.callback(callback)

    def spawn(self, index: int, command: Sequence[str], **popen: Any) -> subprocess.Popen[bytes]:
        """Start ``command`` in namespace ``index``; it is killed on exit if still running."""
        process: subprocess.Popen[bytes] = subprocess.Popen(
            [*self.isolation.command_prefix(index), *command], cwd=REPO, env=_env(), **popen
        )
        self.defer(lambda: _stop(process))
        return process

    def start(self, index: int, *args: str) -> NodeRecord:
        """Start node ``index`` with the common ``node_args`` and then ``args``.

        A node that was killed may be started again (the same contact point and selfNode, a
        new process): its earlier history is kept as an earlier incarnation.
        """
        previous = self.nodes.get(index)
        if previous is not None:
            assert previous.killed, f"node {index} is running"
            previous.log_file.close()
            self.retired.append(previous)
        incarnation = 1 + sum(1 for r in self.retired if r.index == index)
        suffix = "" if incarnation == 1 else f"-{incarnation}"
        log_path = self.tmp_path / f"node{index}{suffix}.log"
        log_file = open(log_path, "ab")  # noqa: SIM115 -- closed in stop_all
        try:
            process: subprocess.Popen[bytes] = subprocess.Popen(
                [
                    *self.isolation.command_prefix(index),
                    sys.executable,
                    "-m",
                    "bootstrap",
                    "node",
                    "--contact-point",
                    self.contact_point(index),
                    *(
                        ()
                        if self.node_address is None
                        else ("--node-address", self.self_node(index))
                    ),
                    *self.node_args,
                    *args,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                env=_env(),
            )
        except BaseException:
            log_file.close()
            raise
        record = NodeRecord(index, incarnation, process, log_path, log_file, time.monotonic())
        self.nodes[index] = record
        return record

    def kill(self, index: int) -> None:
        """kill -9 node ``index``; what it said before stays in the history."""
        record = self.nodes[index]
        record.killed = True
        record.process.kill()
        record.process.wait(timeout=10)

    def terminate(self, index: int) -> None:
        """Stop node ``index`` as an orchestrator stops a pod: SIGTERM, SIGKILL after 10 s.

        Like :meth:`kill`, what it said stays in the history, and the index may be started
        again. A stopped node is no failure: ``poll`` no longer reads it.
        """
        record = self.nodes[index]
        record.killed = True
        _stop(record.process)

    def stop_all(self) -> None:
        """SIGTERM every node still running, then SIGKILL what has not exited within 10 s."""
        for record in self.nodes.values():
            if record.process.poll() is None:
                record.process.send_signal(signal.SIGTERM)
        for record in self.nodes.values():
            _stop(record.process)
            record.log_file.close()

    def kill_namespace(self, index: int) -> list[int]:
        """kill -9 every process in namespace ``index`` (a machine that dies); their pids.

        Returns once none is running. A node among them counts as killed.
        """
        record = self.nodes.get(index)
        if record is not None and record.process.poll() is None:
            record.killed = True
        pids = _namespace_pids(self.isolation.namespaces[index])
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if record is not None and record.killed:
            record.process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(running(pid) for pid in pids):
            if time.monotonic() > deadline:
                raise AssertionError(f"namespace {index}: pids {pids} survived SIGKILL")
            time.sleep(0.05)
        return pids

    def kill_leftovers(self) -> None:
        """kill -9 whatever still runs in any namespace (a namespace outlives its deletion
        while a process is in it)."""
        for index in range(self.count):
            self.kill_namespace(index)

    def alive(self, index: int) -> bool:
        return self.nodes[index].process.poll() is None

    # --- reading status ------------------------------------------------------------------------

    def poll(self) -> Statuses:
        """Read every running node's status (in parallel) and check it against its history.

        Returns the statuses of the nodes that answered. A node that exited without being
        killed fails the test.
        """
        self._round += 1
        futures: dict[int, Future[Any]] = {}
        for index, record in self.nodes.items():
            if record.killed:
                continue
            if record.process.poll() is not None:
                raise AssertionError(
                    f"node {index} exited with {record.process.returncode}\n{self.describe()}"
                )
            url = f"http://{self.contact_point(index)}/bootstrap/status"
            futures[index] = self.namespaces[index].get_json(url)
        statuses: Statuses = {}
        for index, future in futures.items():
            status = future.result(timeout=STATUS_TIMEOUT + 10)
            if isinstance(status, dict):
                self._record(index, status)
                statuses[index] = status
        return statuses

    def _record(self, index: int, status: dict[str, Any]) -> None:
        record = self.nodes[index]
        now = time.monotonic()
        record.reads += 1
        if record.reachable_at is None:
            record.reachable_at = now

        def violation(what: str) -> InvariantViolation:
            return InvariantViolation(f"node {index}: {what}\nstatus: {status}\n{self.describe()}")

        if status.get("selfContactPoint") != self.contact_point(index):
            raise violation(f"selfContactPoint is not {self.contact_point(index)}")
        if status.get("selfNode") != self.self_node(index):
            raise violation(f"selfNode is not {self.self_node(index)}")
        decision = status.get("decision")
        if record.decision is not None and decision != record.decision:
            if not self.joins_may_fail or record.joined:
                raise violation(f"decision {record.decision} was replaced by {decision}")
            record.decision = None  # its join failed: the node decided, or decides, again
        if (status.get("phase") == "decided") != (decision is not None):
            raise violation("phase 'decided' and a decision go together")
        if record.joined and not status.get("joined"):
            raise violation("joined went back to false")
        if status.get("joined") and decision is None:
            raise violation("joined without a decision")
        if record.decision is None and decision is not None:
            kind = decision.get("kind")
            if kind == "join-seed-nodes":
                seeds = decision.get("seedNodes")
                if not isinstance(seeds, list) or not seeds:
                    raise violation("join-seed-nodes without seed nodes")
                if self.self_node(index) in seeds:
                    raise violation("joins itself as a seed node")
                if len(seeds) > MAX_SEED_NODES:
                    raise violation(f"more than {MAX_SEED_NODES} seed nodes")
            elif kind != "join-self":
                raise violation(f"unknown decision kind {kind!r}")
            record.decision = decision
            record.decision_seen_at = now
            record.decision_seen_round = self._round
        record.joined = bool(status.get("joined"))
        record.last = status

    def wait_until(
        self, what: str, condition: Callable[[Statuses], bool], *, timeout: float
    ) -> Statuses:
        """Poll until ``condition(statuses)`` holds; fail with every node's state if it does not."""
        deadline = time.monotonic() + timeout
        while True:
            statuses = self.poll()
            if condition(statuses):
                return statuses
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout} s\n{self.describe()}")
            time.sleep(POLL_INTERVAL)

    def hold(
        self, what: str, condition: Callable[[Statuses], bool], *, duration: float
    ) -> Statuses:
        """Poll for ``duration`` seconds; ``condition`` must hold at every read."""
        deadline = time.monotonic() + duration
        while True:
            statuses = self.poll()
            if not condition(statuses):
                raise AssertionError(f"{what}: broken\n{self.describe()}")
            if time.monotonic() > deadline:
                return statuses
            time.sleep(POLL_INTERVAL)

    # conditions for wait_until / hold

    @staticmethod
    def joined(indices: Iterable[int]) -> Callable[[Statuses], bool]:
        wanted = list(indices)
        return lambda statuses: all(statuses.get(i, {}).get("joined") for i in wanted)

    @staticmethod
    def decided(indices: Iterable[int]) -> Callable[[Statuses], bool]:
        wanted = list(indices)
        return lambda statuses: all(
            i in statuses and statuses[i]["decision"] is not None for i in wanted
        )

    @staticmethod
    def undecided(indices: Iterable[int]) -> Callable[[Statuses], bool]:
        wanted = list(indices)
        return lambda statuses: all(
            i in statuses and statuses[i]["decision"] is None for i in wanted
        )

    @staticmethod
    def hear_everyone(indices: Iterable[int], count: int) -> Callable[[Statuses], bool]:
        """Each of ``indices`` lists ``count`` contact points, each it probes with a fresh answer.

        (A node that cannot form probes only the ``probe_fanout`` lowest: DESIGN section 9. The
        lowest probes every one.)
        """
        wanted = list(indices)

        def hears_everyone(status: dict[str, Any]) -> bool:
            points = status.get("contactPoints") or []
            return len(points) == count and all(
                point["fresh"] for point in points if point["probed"]
            )

        return lambda statuses: all(hears_everyone(statuses.get(i, {})) for i in wanted)

    @staticmethod
    def reachable(indices: Iterable[int]) -> Callable[[Statuses], bool]:
        wanted = list(indices)
        return lambda statuses: all(i in statuses for i in wanted)

    # --- clusters --------------------------------------------------------------------------------

    def clusters(self) -> list[Cluster]:
        """The clusters the decisions seen so far form; raises if they break an invariant.

        Every seed node must be the ``selfNode`` of a node that had decided (and so advertised
        seed nodes); following seed nodes from a decided node must reach exactly one
        ``join-self``. A seed node names the process of that address that had decided by then
        (the latest incarnation whose decision was seen no later than the next read).
        """
        records = [*self.retired, *self.nodes.values()]
        decided = [r for r in records if r.decision is not None]
        edges: dict[int, list[NodeRecord]] = {}
        for record in decided:
            assert record.decision is not None
            assert record.decision_seen_round is not None
            edges[id(record)] = []
            for seed in record.decision.get("seedNodes", []):
                target = self.index_of(seed)
                if target is None or not any(r.index == target for r in records):
                    raise InvariantViolation(
                        f"node {record.index} joins seed node {seed}, which is no node of this "
                        f"run\n{self.describe()}"
                    )
                # Its decision may have been read one poll after the one that named it.
                candidates = [
                    r
                    for r in decided
                    if r.index == target
                    and r.decision_seen_round is not None
                    and r.decision_seen_round <= record.decision_seen_round + 1
                ]
                if not candidates:
                    raise InvariantViolation(
                        f"node {record.index} joins seed node {seed} (node {target}), which "
                        f"had not decided\n{self.describe()}"
                    )
                edges[id(record)].append(max(candidates, key=lambda r: r.incarnation))

        def founders(start: NodeRecord) -> list[NodeRecord]:
            found: dict[int, NodeRecord] = {}
            seen = {id(start)}
            pending = [start]
            while pending:
                record = pending.pop()
                if record.decision is not None and record.decision["kind"] == "join-self":
                    found[id(record)] = record
                for target in edges[id(record)]:
                    if id(target) not in seen:
                        seen.add(id(target))
                        pending.append(target)
            return list(found.values())

        members: dict[int, tuple[NodeRecord, list[int]]] = {}
        for record in sorted(decided, key=lambda r: (r.index, r.incarnation)):
            reached = founders(record)
            if len(reached) != 1:
                raise InvariantViolation(
                    f"node {record.index}'s seed nodes lead to {len(reached)} founders "
                    f"{sorted(r.index for r in reached)} (exactly one expected)\n{self.describe()}"
                )
            founder = reached[0]
            members.setdefault(id(founder), (founder, []))[1].append(record.index)
        return sorted(
            (Cluster(founder.index, tuple(indices)) for founder, indices in members.values()),
            key=lambda c: (c.founder, c.members),
        )

    def assert_one_cluster(self, *, founder: int, members: Iterable[int]) -> None:
        expected = [Cluster(founder, tuple(sorted(members)))]
        found = self.clusters()
        assert found == expected, f"clusters {found}, expected {expected}\n{self.describe()}"

    # --- reporting -------------------------------------------------------------------------------

    def describe(self, log_lines: int = 12) -> str:
        lines = []
        records = [*self.retired, *self.nodes.values()]
        for record in sorted(records, key=lambda r: (r.index, r.incarnation)):
            state = (
                "killed"
                if record.killed
                else ("running" if record.process.poll() is None else "EXITED")
            )
            last = record.last or {}
            lines.append(
                f"node {record.index} #{record.incarnation} {self.contact_point(record.index)} "
                f"[{state}] phase={last.get('phase')} decision={record.decision} "
                f"joined={record.joined} reason={last.get('reason')!r}"
            )
            for point in last.get("contactPoints", []):
                lines.append(f"    {point}")
            lines.extend(f"    | {line}" for line in _read_log(record).splitlines()[-log_lines:])
        return "\n".join(lines)

    def log(self, index: int) -> str:
        """The log of node ``index``'s current process."""
        return _read_log(self.nodes[index])

    # --- faults on the bridge --------------------------------------------------------------------

    def nft(self, namespace: str, script: str, *args: str) -> str:
        """Run ``nft -f -`` on ``script`` in ``namespace`` (or ``nft ARGS`` if ``args``)."""
        result = subprocess.run(
            ["ip", "netns", "exec", namespace, "nft", *(args or ("-f", "-"))],
            input=script,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"nft in {namespace} failed: {result.stderr.strip()}\n{script}")
        return result.stdout

    def set_bridge_faults(
        self,
        *,
        partition: tuple[Sequence[int], Sequence[int]] | None = None,
        loss_percent: int = 0,
    ) -> None:
        """Replace the bridge's faults (atomically): drop IP between two sides, and/or lose a share.

        Both act on frames the bridge forwards between two ports, in both directions; ARP and
        the test's own status reads (over each namespace's loopback) are untouched.
        """
        rules = []
        if partition is not None:
            left, right = (", ".join(self.addresses[i] for i in side) for side in partition)
            rules += [
                f"ip saddr {{ {left} }} ip daddr {{ {right} }} counter drop",
                f"ip saddr {{ {right} }} ip daddr {{ {left} }} counter drop",
            ]
        if loss_percent:
            assert 0 < loss_percent < 100
            rules.append(f"ether type ip numgen random mod 100 < {loss_percent} counter drop")
        body = "".join(f"        {rule}\n" for rule in rules)
        # Declaring the table first makes the delete valid whether or not it existed.
        self.nft(
            self.isolation.bridge_namespace,
            f"table bridge {TABLE} {{}}\ndelete table bridge {TABLE}\n"
            f"table bridge {TABLE} {{\n"
            "    chain forward {\n"
            "        type filter hook forward priority 0; policy accept;\n"
            f"{body}"
            "    }\n"
            "}\n",
        )

    def heal(self) -> None:
        """Remove every fault from the bridge."""
        self.nft(
            self.isolation.bridge_namespace,
            f"table bridge {TABLE} {{}}\ndelete table bridge {TABLE}\n",
        )

    def bridge_drops(self) -> int:
        """Packets the bridge's fault rules have dropped so far."""
        output = self.nft(
            self.isolation.bridge_namespace, "", "-j", "list", "table", "bridge", TABLE
        )
        document = json.loads(output)
        return sum(
            item["rule"]["expr"][i]["counter"]["packets"]
            for item in document["nftables"]
            if "rule" in item
            for i, expression in enumerate(item["rule"]["expr"])
            if "counter" in expression
        )

    # --- a peer whose answers arrive late --------------------------------------------------------

    def delay_answers(self, index: int, delay: float) -> Callable[[], None]:
        """Delay by ``delay`` seconds every byte node ``index`` sends to its peers' probes.

        The node keeps binding and advertising its contact point. In its namespace, an nftables
        ``nat`` rule redirects TCP from the bridge (``iifname eth0``) to that port to a proxy on
        the next port of the same address, which connects to the node (locally: the rule does
        not apply) and forwards requests at once but each chunk of the answer ``delay`` seconds
        after it came. A watch handshake or a GET therefore answers ``delay`` late. Returns the
        function that removes the delay: the rule goes, so new connections reach the node
        directly, and the proxy is killed, which closes the delayed connections.
        """
        address = self.addresses[index]
        log = self._cleanup.enter_context((self.tmp_path / "proxy.log").open("ab"))
        proxy = self.spawn(
            index,
            [
                sys.executable,
                "-m",
                "tests.faults.cluster",
                "delay-proxy",
                address,
                str(PORT + 1),
                address,
                str(PORT),
                str(delay),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
        )
        assert proxy.stdout is not None
        ready, _, _ = select.select([proxy.stdout], [], [], 30)
        line = proxy.stdout.readline() if ready else b""
        proxy.stdout.close()
        if line.strip() != b"ready":
            _stop(proxy)
            raise RuntimeError(f"the delay proxy did not start: {line!r}")
        namespace = self.isolation.namespaces[index]
        self.nft(
            namespace,
            f"table ip {TABLE} {{\n"
            "    chain prerouting {\n"
            "        type nat hook prerouting priority dstnat; policy accept;\n"
            f'        iifname "eth0" tcp dport {PORT} counter redirect to :{PORT + 1}\n'
            "    }\n"
            "}\n",
        )

        def remove() -> None:
            self.nft(namespace, f"table ip {TABLE} {{}}\ndelete table ip {TABLE}\n")
            _stop(proxy)

        return remove

    # --- DNS ---------------------------------------------------------------------------------

    def dnsmasq(self, index: int, host_records: Mapping[str, Sequence[str]]) -> NamespacedDnsmasq:
        """dnsmasq in namespace ``index`` (not a node's), answering on its address too."""
        require_dnsmasq()
        namespace = self.namespaces[index]
        server = Dnsmasq(
            local_ttl=0,
            host_records=host_records,
            extra_args=[f"--listen-address={self.addresses[index]}"],
        )
        namespace.call(server.start)
        self.defer(lambda: namespace.call(server.stop))
        return NamespacedDnsmasq(server, namespace, self.addresses[index], self.defer)

    def blackhole(self, index: int, port: int = 53) -> Blackhole:
        """A DNS server address in namespace ``index`` that reads every query and never answers."""
        namespace = self.namespaces[index]
        address = self.addresses[index]

        def bind() -> tuple[socket.socket, socket.socket]:
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind((address, port))
            udp.settimeout(0.2)
            # A TCP listener that never accepts: a fallback to TCP would hang just the same.
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((address, port))
            tcp.listen(16)
            return udp, tcp

        udp, tcp = namespace.call(bind)
        hole = Blackhole(f"{address}:{port}", udp, tcp)
        hole.start()
        self.defer(hole.stop)
        return hole


def _read_log(record: NodeRecord) -> str:
    if not record.log_file.closed:
        record.log_file.flush()
    return record.log_path.read_text(errors="replace")


def _namespace_pids(namespace: str) -> list[int]:
    listed = subprocess.run(
        ["ip", "netns", "pids", namespace], capture_output=True, text=True, check=False
    )
    return [int(word) for word in listed.stdout.split()]


def _env() -> dict[str, str]:
    # No BOOTSTRAP_* setting from the caller's environment may change a scenario.
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOTSTRAP_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


class NamespacedDnsmasq:
    """A :class:`Dnsmasq` running in a namespace; every call runs in that namespace's thread."""

    def __init__(
        self,
        server: Dnsmasq,
        namespace: Namespace,
        address: str,
        defer: Callable[[Callable[[], object]], None],
    ) -> None:
        self.server = server
        self.namespace = namespace
        self.address = f"{address}:{server.port}"
        self._defer = defer

    def set_hosts(self, filename: str, records: Mapping[str, Sequence[str]]) -> None:
        self.namespace.call(self.server.set_hosts, filename, records)

    def remove_hosts(self, filename: str) -> None:
        self.namespace.call(self.server.remove_hosts, filename)

    def flap(
        self, filename: str, records: Mapping[str, Sequence[str]], period: float
    ) -> Callable[[], int]:
        """Add and remove hosts file ``filename`` every ``period`` s, in the background.

        Returns the function that stops the flapping (leaving the records absent) and says how
        many times they changed. It also stops on exit (before dnsmasq stops), whatever happens:
        the loop occupies the namespace's only thread.
        """
        stop = threading.Event()

        def run() -> int:
            changes = 0
            while not stop.is_set():
                self.server.set_hosts(filename, records)
                changes += 1
                stop.wait(period)
                self.server.remove_hosts(filename)
                changes += 1
                stop.wait(period)
            return changes

        future = self.namespace.submit(run)

        def stop_flapping() -> int:
            stop.set()
            return future.result(timeout=30)

        self._defer(stop_flapping)
        return stop_flapping


class Blackhole:
    """A bound UDP socket (and TCP listener) that swallows DNS queries and counts them."""

    def __init__(self, address: str, udp: socket.socket, tcp: socket.socket) -> None:
        self.address = address
        self.received = 0
        self._udp = udp
        self._tcp = tcp
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="blackhole", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                self._udp.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.received += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._udp.close()
        self._tcp.close()


# --- the delaying proxy (runs as its own process, in the delayed node's namespace) -------------


async def _delay_proxy(
    listen_host: str, listen_port: int, target_host: str, target_port: int, delay: float
) -> None:
    import trio

    async def forward(source: trio.SocketStream, sink: trio.SocketStream, lag: float) -> None:
        # Each chunk goes out ``lag`` after it came in, in order; EOF likewise.
        send, receive = trio.open_memory_channel[tuple[float, bytes]](math.inf)

        async def deliver() -> None:
            async with receive:
                async for due, chunk in receive:
                    await trio.sleep_until(due)
                    if not chunk:
                        with contextlib.suppress(trio.BrokenResourceError, OSError):
                            await sink.send_eof()
                        return
                    await sink.send_all(chunk)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(deliver)
            async with send:
                while True:
                    chunk = await source.receive_some(65536)
                    send.send_nowait((trio.current_time() + lag, chunk))
                    if not chunk:
                        break

    async def handle(client: trio.SocketStream) -> None:
        try:
            upstream = await trio.open_tcp_stream(target_host, target_port)
        except OSError:
            await client.aclose()
            return
        async with client, upstream:
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(forward, client, upstream, 0.0)
                    nursery.start_soon(forward, upstream, client, delay)
            except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass

    listeners = await trio.open_tcp_listeners(listen_port, host=listen_host)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, handle, listeners)
            print("ready", flush=True)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


def main(argv: Sequence[str]) -> int:
    if len(argv) != 6 or argv[0] != "delay-proxy":
        print(
            "usage: python -m tests.faults.cluster delay-proxy "
            "LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT DELAY",
            file=sys.stderr,
        )
        return 2
    import trio

    _, listen_host, listen_port, target_host, target_port, delay = argv
    trio.run(
        _delay_proxy, listen_host, int(listen_port), target_host, int(target_port), float(delay)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
