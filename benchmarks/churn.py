"""Connection churn and formation time: our node beside the anchor, emulated and real, in one run.

Reproduces the lab experiment that exposed the anchor's port exhaustion (Akka.NET issue 2571:
about 1,100 TCP sockets per node at a 1 s probe interval while formation stalled) and runs our
node (watch and poll transports) through the same scenarios on the same machine:

* **stalled**: N nodes discovered, ``required_contact_points = N``, only ``up`` of them started,
  for ``--duration`` seconds; sockets, new connections, CPU and memory sampled every second
  per node from the node's own network namespace (``/proc/<pid>/net/tcp``);
* **late arrival** (the tail of every stalled run): the missing nodes start; time from the last
  start (its server listening) to every node joined;
* **formation**: all N start in random order within ``--spread`` seconds; time from the last
  start to every node joined.

Strategies: ``ours-watch`` and ``ours-poll`` (our node), ``ours-mesh`` (``ours-watch`` with the
full mesh of the first release: every node probes every peer), ``anchor`` and ``anchor-dotnet`` (the
emulation of ``benchmarks/anchor.py``, which stands for the .NET port), and ``pekko``: real
Apache Pekko Management nodes, one JVM each (``benchmarks/pekko``), given the scenario's probe
interval and stable margin (at 1 s and 5 s, Pekko's own defaults) and the same contact points;
it needs ``--isolation netns``, since on loopback its probes leave from 127.0.0.1.

Each node is its own process (``benchmarks/node_processes.py``), by default in its own network
namespace on a bridge (root and iproute2 needed; everything created is removed on exit, also on
Ctrl-C or SIGTERM). ``--isolation loopback`` runs them on 127.x.0.y instead, each run on fresh
addresses so one run's TIME_WAIT sockets are never counted in the next.

    sudo python benchmarks/churn.py --quick          # N=8, 6 up, 30 s, 1 s interval: < 3 minutes
    sudo python benchmarks/churn.py                  # the full run of docs/benchmarks.md
    nox -s bench -- --quick                          # the same, in a venv nox prepares

Writes ``churn.json`` (every series and the summaries) and PNG charts into ``--output``.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import platform
import random
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as a script: make the repository importable (``bootstrap`` and ``benchmarks``).
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import procfs
from benchmarks.churn_node import STRATEGIES as CHURN_NODE_STRATEGIES
from benchmarks.handshakes import HandshakeCounters
from benchmarks.isolation import Isolation, exit_on_sigterm, fresh_isolation, netns_available
from benchmarks.node_processes import (
    PEKKO_REMOTE_PORT,
    ChurnNodeProcess,
    NodeProcess,
    PekkoProcess,
)
from benchmarks.pekko.driver import PekkoNodeConfig, build_jar, java_available, write_contact_points
from bootstrap.core.wire import METRICS_PATH

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "churn"
MANAGEMENT_PORT = 8558
#: ``pekko``: real Pekko Management nodes, one JVM each (``benchmarks/pekko``).
STRATEGIES = (*CHURN_NODE_STRATEGIES, "pekko")
# A JVM takes 2-3 s of CPU to start; twenty of them starting at once on 2 cores take ~30 s.
LISTEN_TIMEOUT = {"pekko": 120.0}
DEFAULT_LISTEN_TIMEOUT = 30.0
# Sockets and connections are judged after the first probe round: the first seconds are the
# same for every strategy (each peer is connected once).
WARM_UP = 5.0
#: Scrape, kernel, scrape: taken again while a node's two scrapes differ, at most this often.
_CROSS_CHECK_ATTEMPTS = 5
METRICS = (
    "tcp_sockets",
    "established",
    "time_wait",
    "new_connections_driver",
    "new_connections_kernel",
    "cpu_seconds",
    "rss_bytes",
    "requests_served",
)


# --- one run: a strategy at one interval in one scenario --------------------------------------


class Run:
    """Starts nodes, samples them every second, and keeps every series."""

    def __init__(
        self,
        *,
        scenario: str,
        strategy: str,
        interval: float,
        isolation: Isolation,
        args: argparse.Namespace,
        log_dir: Path,
    ) -> None:
        self.scenario = scenario
        self.strategy = strategy
        self.interval = interval
        self.isolation = isolation
        self.args = args
        self.log_dir = log_dir
        self.addresses = isolation.addresses
        self.nodes: dict[int, NodeProcess] = {}
        self.tracker = procfs.ConnectionTracker(server_port=args.port)
        self.started_at = time.time()
        self.t: list[float] = []
        self.per_node: dict[str, dict[str, list[float | None]]] = {
            address: {metric: [] for metric in METRICS} for address in self.addresses
        }
        self._driver_seen: dict[str, int] = {}
        self._stop_sampling = threading.Event()
        self._sampler = threading.Thread(target=self._sample_every_second, daemon=True)
        # The kernel's exact count of each node's connections, where root and nft allow.
        self.handshakes = HandshakeCounters.install(isolation, args.port)

    # nodes

    def start_node(self, index: int) -> NodeProcess:
        address = self.addresses[index]
        endpoints = [f"{peer}:{self.args.port}" for peer in self.addresses]
        name = f"{self.scenario}-{self.strategy}-{self.interval:g}s"
        log = self.log_dir / f"{name}-{index}.log"
        prefix = self.isolation.command_prefix(index)
        node: NodeProcess
        if self.strategy == "pekko":
            contact_points = self.log_dir / f"{name}.contact-points"
            write_contact_points(contact_points, endpoints)
            config = PekkoNodeConfig(
                host=address,
                remote_port=PEKKO_REMOTE_PORT,
                management_port=self.args.port,
                contact_points_file=contact_points,
                required_contact_points=len(self.addresses),
                # Pekko's defaults are a 1 s probe interval and a 5 s margin, the scenario's
                # at 1 s: there the node runs exactly as configured out of the box.
                probe_interval=self.interval,
                stable_margin=self.args.stable_margin,
            )
            node = PekkoProcess(index, config, self.args.jar, log, prefix)
        else:
            command = ChurnNodeProcess.command(
                prefix,
                strategy=self.strategy,
                address=address,
                port=self.args.port,
                peers=",".join(endpoints),
                required=len(self.addresses),
                probe_interval=self.interval,
                stable_margin=self.args.stable_margin,
            )
            node = ChurnNodeProcess(index, address, command, log)
        self.nodes[index] = node
        return node

    def wait_listening(self, indices: list[int]) -> None:
        timeout = LISTEN_TIMEOUT.get(self.strategy, DEFAULT_LISTEN_TIMEOUT)
        for index in indices:
            self.nodes[index].wait_listening(timeout)

    def stop_all(self) -> None:
        self._stop_sampling.set()
        if self._sampler.is_alive():
            self._sampler.join()
        # Signal every node first, so their graceful shutdowns overlap.
        for node in self.nodes.values():
            node.terminate()
        for node in self.nodes.values():
            node.stop()
        if self.handshakes is not None:
            self.handshakes.remove()

    def start_sampling(self) -> None:
        self._sampler.start()

    # sampling

    def _sample_every_second(self) -> None:
        tick = 0
        while not self._stop_sampling.is_set():
            self._sample_once()
            tick += 1
            delay = self.started_at + tick * self.args.sample_every - time.time()
            self._stop_sampling.wait(max(0.0, delay))

    def _socket_tables(
        self, live: dict[str, NodeProcess]
    ) -> tuple[dict[int, list[procfs.TcpSocket]], dict[str, int]]:
        """The live nodes' socket tables, one read per network namespace (all nodes share one
        under loopback isolation), and which table is each node's."""
        tables: dict[int, list[procfs.TcpSocket]] = {}
        owner: dict[str, int] = {}
        for address, node in live.items():
            with contextlib.suppress(ProcessLookupError):
                namespace = procfs.netns_id(node.pid)
                if namespace not in tables:
                    tables[namespace] = procfs.tcp_sockets(node.pid)
                owner[address] = namespace
        return tables, owner

    def _sample_once(self) -> None:
        now = time.time()
        live = {node.address: node for node in list(self.nodes.values()) if node.alive}
        tables, owner = self._socket_tables(live)
        new_by_client = self.tracker.observe(
            socket for table in tables.values() for socket in table
        )
        self.t.append(round(now - self.started_at, 3))
        for address in self.addresses:
            series = self.per_node[address]
            if address not in live or address not in owner:
                for metric in METRICS:
                    series[metric].append(None)
                continue
            node = live[address]
            # This node's management traffic only: its address, and the run's port at one end
            # (another run, or a killed one's TIME_WAIT, on the same addresses is not counted).
            port = self.args.port
            mine = [
                socket
                for socket in tables[owner[address]]
                if socket.local[0] == address
                and port in (socket.local[1], socket.remote[1])
                and socket.state != "LISTEN"
            ]
            series["tcp_sockets"].append(len(mine))
            series["established"].append(sum(s.state == "ESTABLISHED" for s in mine))
            series["time_wait"].append(sum(s.state == "TIME_WAIT" for s in mine))
            series["new_connections_kernel"].append(new_by_client.get(address, 0))
            latest = node.latest
            # A node without its own counters (Pekko) has no driver series: None, not 0.
            if "connections_opened" in latest:
                opened = int(latest["connections_opened"])
                series["new_connections_driver"].append(opened - self._driver_seen.get(address, 0))
                self._driver_seen[address] = opened
            else:
                series["new_connections_driver"].append(None)
            served = latest.get("requests_served")
            series["requests_served"].append(None if served is None else int(served))
            try:
                series["cpu_seconds"].append(round(procfs.cpu_seconds(node.pid), 2))
                series["rss_bytes"].append(procfs.rss_bytes(node.pid))
            except ProcessLookupError:
                series["cpu_seconds"].append(None)
                series["rss_bytes"].append(None)

    def cross_check_connections(self) -> dict[str, Any] | None:
        """Each live node's ``connections_opened_total`` from its ``/metrics`` beside the
        kernel's count of the connections it opened (``None`` for nodes without /metrics).
        The two are equal unless a connect was cancelled in flight (a probe cut short by a
        change of the probe set): the kernel may have completed it, the prober counts it in
        ``connects_cancelled_total``, so the kernel's count lies between opened and opened plus
        cancelled.

        The kernel's count is that of nftables (``benchmarks/handshakes.py``), which is exact;
        the sampled socket table is not (it misses a connection reset within a second), so
        without root or ``nft`` the check is skipped. Taken at a quiet moment (the end of a
        stall: no node decides, so none cancels a probe in the middle of a connect). Every
        node is scraped, then the kernel's counters are read, then every node is scraped
        again. A node whose two scrapes agree opened nothing meanwhile, so the kernel's count
        must be the same figure; the others are checked again, at most
        ``_CROSS_CHECK_ATTEMPTS`` times. The scrapes leave from 127.0.0.1
        (``benchmarks/metrics_scrape.py``), never a node's address, so the kernel does not
        count them as the node's.
        """
        if not self.strategy.startswith("ours"):
            return None  # the anchor's emulation and Pekko serve no /metrics
        if self.handshakes is None:
            return {"skipped": "the kernel's exact count needs root and nft"}
        per_node: dict[str, dict[str, Any]] = {}
        pending = [index for index, node in sorted(self.nodes.items()) if node.alive]
        for attempt in range(1, _CROSS_CHECK_ATTEMPTS + 1):
            before = {index: self._scrape_connections_opened(index) for index in pending}
            kernel = self.handshakes.counts()
            after = {index: self._scrape_connections_opened(index) for index in pending}
            unsettled = []
            for index in pending:
                failed = "error" in before[index] or "error" in after[index]
                settled = not failed and before[index] == after[index]
                address = self.addresses[index]
                per_node[address] = {
                    "metrics": after[index].get("connections_opened"),
                    "cancelled": after[index].get("connects_cancelled"),
                    "kernel": kernel.get(address, 0),
                    "settled": settled,
                    "attempts": attempt,
                    **(
                        {"error": after[index].get("error", before[index].get("error"))}
                        if failed
                        else {}
                    ),
                }
                if not settled and not failed:
                    unsettled.append(index)
            pending = unsettled
            if not pending:
                break
        return {
            "kernel_count": "nftables",
            "per_node": per_node,
            "nodes_checked": len(per_node),
            "nodes_equal": sum(
                n["settled"] and n["metrics"] == n["kernel"] for n in per_node.values()
            ),
            # A connect cancelled in flight may or may not have completed in the kernel.
            "nodes_consistent": sum(
                n["settled"] and n["metrics"] <= n["kernel"] <= n["metrics"] + n["cancelled"]
                for n in per_node.values()
            ),
        }

    def _scrape_connections_opened(self, index: int) -> dict[str, Any]:
        """``{"connections_opened": N}`` from node ``index``'s /metrics, read from inside its
        namespace, or ``{"error": ...}``."""
        url = f"http://{self.addresses[index]}:{self.args.port}{METRICS_PATH}"
        scrape = subprocess.run(
            [
                *self.isolation.command_prefix(index),
                sys.executable,
                "-m",
                "benchmarks.metrics_scrape",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=ROOT,
            check=False,
        )
        try:
            scraped: dict[str, Any] = json.loads(scrape.stdout)
        except json.JSONDecodeError:
            scraped = {"error": scrape.stderr.strip()[-300:] or "no output"}
        return scraped

    # waiting for the cluster

    def wait_all_joined(self, indices: list[int], timeout: float) -> bool:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if all(self.nodes[i].latest.get("joined_at") is not None for i in indices):
                return True
            time.sleep(0.1)
        return False

    def outcome(self, indices: list[int], *, timeout: float) -> dict[str, Any]:
        """How the cluster ended up: joined?, when (after the last start), how many formed one."""
        last_start = max(self.nodes[i].listening_at or 0.0 for i in indices)
        formed = self.wait_all_joined(indices, timeout)
        joined = [self.nodes[i].latest.get("joined_at") for i in indices]
        decisions = [self.nodes[i].latest.get("decision") for i in indices]
        return {
            "formed": formed,
            "seconds_after_last_start": (
                round(max(joined) - last_start, 3) if formed else None  # type: ignore[type-var]
            ),
            "nodes_joined": sum(value is not None for value in joined),
            "clusters_formed": decisions.count("join-self"),
            "last_start_after_spawn": round(
                last_start - max(self.nodes[i].spawned_at for i in indices), 3
            ),
            "timeout": timeout,
        }

    # the record

    def record(self, **extra: Any) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "strategy": self.strategy,
            "probe_interval": self.interval,
            "isolation": self.isolation.name,
            "nodes": len(self.addresses),
            "up": self.args.up,
            "series": {
                "t": self.t,
                "mean": self._aggregate(lambda values: sum(values) / len(values)),
                "max": self._aggregate(max),
                "per_node": self.per_node,
            },
            **extra,
        }

    def _aggregate(self, combine: Any) -> dict[str, list[float | None]]:
        aggregated: dict[str, list[float | None]] = {}
        for metric in METRICS:
            column: list[float | None] = []
            for index in range(len(self.t)):
                values = [
                    value
                    for series in self.per_node.values()
                    if (value := series[metric][index]) is not None
                ]
                column.append(round(combine(values), 3) if values else None)
            aggregated[metric] = column
        return aggregated


# --- the scenarios ---------------------------------------------------------------------------


def summarise_stall(run: Run, up: list[int], window_end: float) -> dict[str, Any]:
    """Per-node figures over the stall, after the first probe round (``WARM_UP`` s)."""
    rows = [i for i, t in enumerate(run.t) if WARM_UP <= t <= window_end]
    addresses = [run.addresses[i] for i in up]
    founder = min(addresses, key=ipaddress.ip_address)
    others = [a for a in addresses if a != founder]

    def values(metric: str, address: str) -> list[float]:
        series = run.per_node[address][metric]
        return [value for i in rows if (value := series[i]) is not None]

    def mean(numbers: list[float]) -> float:
        return sum(numbers) / len(numbers) if numbers else 0.0

    seconds = (run.t[rows[-1]] - run.t[rows[0]]) if len(rows) > 1 else 1.0
    last = rows[-1] if rows else len(run.t) - 1
    first = rows[0] if rows else 0

    def delta(metric: str, address: str) -> float:
        series = run.per_node[address][metric]
        end, start = series[last], series[first]
        return (end or 0.0) - (start or 0.0)

    def reported(metric: str) -> bool:
        """Whether the nodes count ``metric`` themselves (a Pekko node counts nothing)."""
        return any(
            value is not None for a in addresses for value in run.per_node[a][metric][: last + 1]
        )

    def when_reported(metric: str, figure: float) -> float | None:
        return figure if reported(metric) else None

    # Connections opened during the first round too: the whole stall, per node.
    driver_total = [
        sum(v for v in run.per_node[a]["new_connections_driver"][: last + 1] if v)
        for a in addresses
    ]
    kernel_total = [
        sum(v for v in run.per_node[a]["new_connections_kernel"][: last + 1] if v)
        for a in addresses
    ]
    return {
        "window_seconds": round(seconds, 1),
        "tcp_sockets_per_node": round(mean([mean(values("tcp_sockets", a)) for a in addresses]), 1),
        "tcp_sockets_per_node_max": max(
            (max(values("tcp_sockets", a), default=0) for a in addresses), default=0
        ),
        "tcp_sockets_per_node_at_end": round(
            mean([run.per_node[a]["tcp_sockets"][last] or 0 for a in addresses]), 1
        ),
        # The lowest live node is the would-be founder: under the topology (DESIGN section 9)
        # it alone probes everyone, so its figures are shown apart from the others'.
        "tcp_sockets_founder": round(mean(values("tcp_sockets", founder)), 1),
        "tcp_sockets_founder_max": max(values("tcp_sockets", founder), default=0),
        "tcp_sockets_per_non_founder": round(
            mean([mean(values("tcp_sockets", a)) for a in others]), 1
        ),
        "tcp_sockets_per_non_founder_max": max(
            (max(values("tcp_sockets", a), default=0) for a in others), default=0
        ),
        "established_per_node": round(mean([mean(values("established", a)) for a in addresses]), 1),
        "time_wait_per_node_at_end": round(
            mean([run.per_node[a]["time_wait"][last] or 0 for a in addresses]), 1
        ),
        "new_connections_per_node_per_second_driver": when_reported(
            "new_connections_driver",
            round(
                mean([sum(values("new_connections_driver", a)[1:]) / seconds for a in addresses]),
                3,
            ),
        ),
        "new_connections_per_node_per_second_kernel": round(
            mean([sum(values("new_connections_kernel", a)[1:]) / seconds for a in addresses]), 3
        ),
        "connections_per_node_driver": when_reported(
            "new_connections_driver", round(mean(driver_total), 1)
        ),
        "connections_per_node_kernel": round(mean(kernel_total), 1),
        "cpu_seconds_per_node": round(
            mean([run.per_node[a]["cpu_seconds"][last] or 0.0 for a in addresses]), 2
        ),
        "cpu_percent_per_node": round(
            100 * mean([delta("cpu_seconds", a) for a in addresses]) / seconds, 2
        ),
        "requests_served_per_node_per_second": when_reported(
            "requests_served",
            round(mean([delta("requests_served", a) for a in addresses]) / seconds, 2),
        ),
        "rss_mib_per_node": round(
            mean([(run.per_node[a]["rss_bytes"][last] or 0) / 2**20 for a in addresses]), 1
        ),
        "decided_during_stall": sum(run.nodes[i].latest.get("decided_at") is not None for i in up),
    }


def run_stalled(
    strategy: str, interval: float, isolation: Isolation, args: argparse.Namespace, log_dir: Path
) -> dict[str, Any]:
    run = Run(
        scenario="stalled",
        strategy=strategy,
        interval=interval,
        isolation=isolation,
        args=args,
        log_dir=log_dir,
    )
    up = list(range(args.up))
    late = list(range(args.up, args.nodes))
    try:
        for index in up:
            run.start_node(index)
        run.wait_listening(up)
        run.started_at = max(run.nodes[i].listening_at or 0.0 for i in up)
        run.start_sampling()
        time.sleep(max(0.0, run.started_at + args.duration - time.time()))
        stall_end = time.time() - run.started_at
        summary = summarise_stall(run, up, stall_end)
        cross_check = run.cross_check_connections()
        late_arrival = None
        if late:
            for index in late:
                run.start_node(index)
            run.wait_listening(late)
            late_arrival = run.outcome(up + late, timeout=args.late_timeout)
        return run.record(
            summary=summary,
            late_arrival=late_arrival,
            stall_seconds=stall_end,
            connections_cross_check=cross_check,
        )
    finally:
        run.stop_all()


def run_formation(
    strategy: str, interval: float, isolation: Isolation, args: argparse.Namespace, log_dir: Path
) -> dict[str, Any]:
    run = Run(
        scenario="formation",
        strategy=strategy,
        interval=interval,
        isolation=isolation,
        args=args,
        log_dir=log_dir,
    )
    everyone = list(range(args.nodes))
    order = everyone[:]
    random.Random(args.seed).shuffle(order)
    delays = sorted(random.Random(args.seed + 1).uniform(0, args.spread) for _ in order)
    try:
        run.start_sampling()
        began = time.time()
        for index, delay in zip(order, delays, strict=True):
            time.sleep(max(0.0, began + delay - time.time()))
            run.start_node(index)
        run.wait_listening(everyone)
        formation = run.outcome(everyone, timeout=args.formation_timeout)
        formation["start_order"] = order
        return run.record(formation=formation)
    finally:
        run.stop_all()


# --- the whole benchmark ---------------------------------------------------------------------


@contextlib.contextmanager
def isolation_for(args: argparse.Namespace, run_number: int) -> Iterator[Isolation]:
    """Fresh addresses (and namespaces) for every run: TIME_WAIT never leaks across runs."""
    with fresh_isolation(args.isolation, args.nodes, "r", run_number) as isolation:
        yield isolation


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="N=8, 6 up, 30 s, 1 s interval (under 3 minutes)"
    )
    parser.add_argument("--isolation", choices=("netns", "loopback"), default="netns")
    parser.add_argument("--nodes", type=int, help="nodes discovered and required (default 20)")
    parser.add_argument("--up", type=int, help="nodes started in the stall (default nodes - 2)")
    parser.add_argument("--duration", type=float, help="seconds of stall (default 120)")
    parser.add_argument("--intervals", help="probe intervals, comma-separated (default 1,5,10)")
    parser.add_argument(
        "--strategies",
        help=f"comma-separated, of {', '.join(STRATEGIES)} (default ours-watch,ours-poll,anchor "
        "and, under netns isolation where java is installed, pekko)",
    )
    parser.add_argument(
        "--scenarios", default="stalled,formation", help="stalled, formation or both"
    )
    parser.add_argument("--stable-margin", type=float, default=5.0)
    parser.add_argument("--spread", type=float, default=3.0, help="formation start spread (s)")
    parser.add_argument("--formation-timeout", type=float, help="default 60 (quick: 20)")
    parser.add_argument("--late-timeout", type=float, default=20.0)
    parser.add_argument("--sample-every", type=float, default=1.0)
    parser.add_argument("--port", type=int, default=MANAGEMENT_PORT)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--no-charts", action="store_true", help="write the JSON only")
    args = parser.parse_args(argv)
    quick = args.quick
    args.nodes = args.nodes or (8 if quick else 20)
    args.up = args.up if args.up is not None else args.nodes - 2
    args.duration = args.duration or (30.0 if quick else 120.0)
    args.intervals = [float(v) for v in (args.intervals or ("1" if quick else "1,5,10")).split(",")]
    pekko_possible = java_available() and args.isolation == "netns"
    default_strategies = "ours-watch,ours-poll,anchor" + (",pekko" if pekko_possible else "")
    args.strategies = (args.strategies or default_strategies).split(",")
    args.scenarios = args.scenarios.split(",")
    args.formation_timeout = args.formation_timeout or (20.0 if quick else 60.0)
    for strategy in args.strategies:
        if strategy not in STRATEGIES:
            parser.error(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    for scenario in args.scenarios:
        if scenario not in ("stalled", "formation"):
            parser.error(f"unknown scenario {scenario!r}; choose stalled and/or formation")
    if not 1 <= args.up <= args.nodes:
        parser.error(f"--up must be between 1 and --nodes ({args.nodes}), got {args.up}")
    if args.isolation == "netns" and (reason := netns_available()) is not None:
        parser.error(f"--isolation netns is not possible here: {reason}; try --isolation loopback")
    args.jar = None
    if "pekko" in args.strategies:
        if args.isolation != "netns":
            # Its HTTP client binds no source address: on loopback its probes leave from
            # 127.0.0.1, so no socket could be told to be this node's or another's.
            parser.error("strategy pekko needs --isolation netns (each JVM its own address)")
        if not java_available():
            parser.error("strategy pekko runs Pekko nodes: install a JDK (17) or leave pekko out")
        # Built once here (Maven, only when missing or stale), not inside a timed run.
        args.jar = build_jar()
    return args


def print_table(runs: list[dict[str, Any]]) -> None:
    print(
        f"{'scenario':<10} {'strategy':<14} {'interval':>8} {'sockets/node':>12} {'founder':>7} "
        f"{'TIME_WAIT':>9} {'new conn/s':>10} {'CPU %':>6} {'joined after':>13} "
        f"{'/metrics = kernel':>17}"
    )
    for run in runs:
        summary = run.get("summary") or {}
        outcome = run.get("late_arrival") or run.get("formation") or {}
        joined = (
            "n/a"
            if not outcome
            else (f"{outcome['seconds_after_last_start']:.2f} s" if outcome["formed"] else "never")
        )
        check = run.get("connections_cross_check")
        checked = (
            f"{check['nodes_equal']} of {check['nodes_checked']}"
            if check and "skipped" not in check
            else "n/a"
        )
        print(
            f"{run['scenario']:<10} {run['strategy']:<14} {run['probe_interval']:>7g}s "
            f"{summary.get('tcp_sockets_per_node', ''):>12} "
            f"{summary.get('tcp_sockets_founder', ''):>7} "
            f"{summary.get('time_wait_per_node_at_end', ''):>9} "
            f"{summary.get('new_connections_per_node_per_second_kernel', ''):>10} "
            f"{summary.get('cpu_percent_per_node', ''):>6} {joined:>13} {checked:>17}",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_sigterm()
    args.output.mkdir(parents=True, exist_ok=True)
    log_dir = args.output / "logs"
    log_dir.mkdir(exist_ok=True)
    document: dict[str, Any] = {
        "benchmark": "churn",
        "command": " ".join(shlex.quote(part) for part in [sys.executable, *sys.argv]),
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "parameters": {
            key: (str(value) if isinstance(value, Path) else value)
            for key, value in vars(args).items()
        },
        "warm_up_seconds": WARM_UP,
        "runs": [],
    }
    began = time.time()
    run_number = 0
    for scenario in args.scenarios:
        for interval in args.intervals:
            for strategy in args.strategies:
                run_number += 1
                print(f"--- {scenario}, {strategy}, probe interval {interval:g} s", flush=True)
                with isolation_for(args, run_number) as isolation:
                    runner = run_stalled if scenario == "stalled" else run_formation
                    record = runner(strategy, interval, isolation, args, log_dir)
                document["runs"].append(record)
                print_table([record])
    document["wall_seconds"] = round(time.time() - began, 1)
    sim_scaling = ROOT / "benchmarks" / "results" / "sim_scaling.json"
    if sim_scaling.exists():
        document["sim_scaling"] = json.loads(sim_scaling.read_text())
    output = args.output / "churn.json"
    output.write_text(json.dumps(document) + "\n")
    print(f"wrote {output}")
    if not args.no_charts:
        from benchmarks.charts import write_charts  # matplotlib: only imported when drawing

        for chart in write_charts(document, args.output):
            print(f"wrote {chart}")
    print()
    print_table(document["runs"])
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; namespaces and nodes were cleaned up", file=sys.stderr)
        sys.exit(130)
