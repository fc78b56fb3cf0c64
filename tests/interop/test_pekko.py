"""Interop with the real anchor: Apache Pekko Management's Cluster Bootstrap on real JVMs.

What is checked, both ways across the wire (``GET /bootstrap/seed-nodes``, DESIGN section 4):

* our :func:`bootstrap.decode_seed_nodes` reads what a Pekko node serves, before its cluster
  forms (no seed nodes) and after (every member, Up);
* a Pekko prober reads what our node serves, judged from the Pekko node's own DEBUG log, which
  is the only place it says (Pekko nodes cannot join our clusters: the parse is all there is);
* ``cluster-bootstrap status`` on a Pekko node, as far as its endpoints allow.

Testing policy: real JVMs (``benchmarks/pekko/``, built once per session by the ``pekko_jar``
fixture of ``conftest.py``) and real sockets on loopback only, each node on its own 127.0.0.x;
every wait has a deadline (a JVM that does not start or a cluster that does not form fails
with the node's log tail, never hangs); every process a test starts is stopped when it ends,
pass or fail. The JVMs of one test start together, so their start-up overlaps. The tests skip
only where there is no ``java`` (or no ``mvn`` and no built jar); under CI, a machine with java
but without the jar and Maven fails them instead of skipping.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from benchmarks.pekko.driver import (
    PekkoNode,
    PekkoNodeConfig,
    write_contact_points,
)
from bootstrap import SeedNodesDocument, decode_seed_nodes
from bootstrap.core.wire import READY_PATH, SEED_NODES_PATH, STATUS_PATH
from tests.helpers.ports import free_port

# Deadlines, in seconds, for 2 busy cores: a JVM reaching READY, a cluster forming (discovery
# every 1 s, a 1 s stable margin, then the joins), and one of our nodes forming alone.
JVM_READY_TIMEOUT = 60.0
FORMATION_TIMEOUT = 60.0
OUR_NODE_TIMEOUT = 30.0
HTTP_TIMEOUT = 5.0


@contextmanager
def running_pekko_nodes(jar: Path, configs: Sequence[PekkoNodeConfig]) -> Iterator[list[PekkoNode]]:
    """Start a JVM per config, all at once; wait until each is READY; stop them all at the end."""
    with ExitStack() as stack:
        nodes = [stack.enter_context(PekkoNode.start(config, jar=jar)) for config in configs]

        def signal_all() -> None:
            # Runs first on the way out (ExitStack then stops each): the shutdowns overlap.
            for node in nodes:
                node.terminate()

        stack.callback(signal_all)
        for node in nodes:
            node.wait_ready(JVM_READY_TIMEOUT)
        yield nodes


@contextmanager
def our_node(log: Path, host: str, port: int, *, node_address: str | None) -> Iterator[str]:
    """One of our nodes as a process, alone in its cluster; yields its base URL once joined."""
    point = f"{host}:{port}"
    command = [sys.executable, "-m", "bootstrap", "node", "--contact-point", point]
    command += ["--contact-points", point, "--required-contact-points", "1", "--stable-margin", "1"]
    if node_address is not None:
        command += ["--node-address", node_address]
    with log.open("w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://{point}"
    try:
        deadline = time.monotonic() + OUR_NODE_TIMEOUT
        while not has_joined(url):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"our node at {point} did not form its cluster:\n{log.read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def has_joined(base_url: str) -> bool:
    """Whether the node at ``base_url`` serves a document that lists seed nodes (yet)."""
    try:
        return bool(fetch_seed_nodes(base_url).seed_nodes)
    except httpx.TransportError:  # not listening yet
        return False


def fetch_seed_nodes(base_url: str) -> SeedNodesDocument:
    """GET and decode a node's seed-nodes document."""
    response = httpx.get(base_url + SEED_NODES_PATH, timeout=HTTP_TIMEOUT)
    assert response.status_code == 200, response.text
    return decode_seed_nodes(response.content)


def pekko_configs(
    hosts: Sequence[str],
    contact_points: Path,
    *,
    required_contact_points: int | None = None,
    stable_margin: float | None = None,
    log_level: str = "INFO",
) -> list[PekkoNodeConfig]:
    """One config per host, all on the same two ports (each host is its own address)."""
    management_port, remote_port = free_port(), free_port()
    return [
        PekkoNodeConfig(
            host=host,
            remote_port=remote_port,
            management_port=management_port,
            contact_points_file=contact_points,
            required_contact_points=required_contact_points,
            stable_margin=stable_margin,
            log_level=log_level,
        )
        for host in hosts
    ]


def test_decode_seed_nodes_reads_a_pekko_node_before_and_after_its_cluster_forms(
    pekko_jar: Path, tmp_path: Path
) -> None:
    """Three Pekko nodes' documents decode: no seed nodes before formation, all three Up after."""
    contact_points = tmp_path / "contact-points"
    configs = pekko_configs(
        ["127.0.0.161", "127.0.0.162", "127.0.0.163"],
        contact_points,
        required_contact_points=3,
        stable_margin=1.0,
    )
    # Discovery lists only the first node, and three are required: none can form, or join, until
    # the file lists all three (each node re-reads it at every lookup, every second).
    write_contact_points(contact_points, [configs[0].management])
    with running_pekko_nodes(pekko_jar, configs) as nodes:
        for node in nodes:
            before = fetch_seed_nodes(node.management_url)
            assert before == SeedNodesDocument(node.self_address, [])
            # Pekko serves /ready at our path too: not ready before it has joined.
            ready = httpx.get(node.management_url + READY_PATH, timeout=HTTP_TIMEOUT)
            assert ready.status_code != 200

        write_contact_points(contact_points, [config.management for config in configs])
        addresses = {node.self_address for node in nodes}
        for node in nodes:
            for address in addresses:
                node.wait_for_event("member-up", address, timeout=FORMATION_TIMEOUT)

        uids_seen = []
        for node in nodes:
            after = fetch_seed_nodes(node.management_url)
            assert after.self_node == node.self_address
            assert {member.node for member in after.seed_nodes} == addresses
            for member in after.seed_nodes:
                assert (member.status, member.roles) == ("Up", ("dc-default",))
            uids_seen.append({member.node: member.node_uid for member in after.seed_nodes})
            ready = httpx.get(node.management_url + READY_PATH, timeout=HTTP_TIMEOUT)
            assert ready.status_code == 200
        # Every node reports the same incarnation (JVM Long uid) for each member.
        assert uids_seen[0] == uids_seen[1] == uids_seen[2]
        assert all(uid != 0 for uid in uids_seen[0].values())


def probe_log_patterns(our_url: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """The Pekko prober's lines about our endpoint (HttpContactPointBootstrap.scala): the DEBUG
    line of each probe, and the WARNING of a failed one (a parse error lands there too)."""
    seed_nodes_url = re.escape(our_url + SEED_NODES_PATH)
    return (
        re.compile(rf"\[DEBUG\].* Probing \[{seed_nodes_url}\] for seed nodes\.\.\.$"),
        re.compile(rf"\[WARN\].* Probing \[{seed_nodes_url}\] failed due to: (?P<cause>.*)$"),
    )


def test_a_pekko_prober_parses_our_seed_nodes_document(pekko_jar: Path, tmp_path: Path) -> None:
    """A Pekko node at DEBUG probes our node and logs the seed nodes it read, no parse failure."""
    host, pekko_host = "127.0.0.171", "127.0.0.172"
    contact_points = tmp_path / "contact-points"
    (config,) = pekko_configs([pekko_host], contact_points, log_level="DEBUG")
    # A Pekko address as our selfNode, so that Pekko can parse it (see the next test).
    our_address = f"pekko://bootstrap@{host}:{free_port()}"
    with our_node(
        tmp_path / "ours.log", host, config.management_port, node_address=our_address
    ) as our_url:
        write_contact_points(
            contact_points, [config.management, f"{host}:{config.management_port}"]
        )
        with running_pekko_nodes(pekko_jar, [config]) as (pekko,):
            probing, failed = probe_log_patterns(our_url)
            pekko.wait_for_line(probing, timeout=FORMATION_TIMEOUT)
            # BootstrapCoordinator.scala logs each parsed document: selfNode, count, seed nodes.
            quoted = re.escape(our_address)
            pekko.wait_for_line(
                rf"\[INFO\].* Contact point \[{quoted}\] returned \[1\] seed-nodes \[{quoted}\]$",
                timeout=FORMATION_TIMEOUT,
            )
            # ... and acts on it: our node lists a cluster, so the Pekko node tries to join it.
            pekko.wait_for_line(
                rf"Joining \[{re.escape(pekko.self_address)}\] to existing cluster \[{quoted}\]",
                timeout=FORMATION_TIMEOUT,
            )
            assert [line for line in pekko.lines if failed.search(line)] == []


def test_a_pekko_prober_refuses_our_default_http_self_node(pekko_jar: Path, tmp_path: Path) -> None:
    """Our default selfNode ``http://HOST:PORT`` is no Pekko address: Pekko fails every probe."""
    # Pekko reads selfNode and each seed node with AddressFromURIString, which takes only
    # PROTOCOL://SYSTEM@HOST:PORT; the failure's cause is the refused address itself. Running
    # beside Pekko nodes takes --node-address pekko://SYSTEM@HOST:PORT (the test above).
    host, pekko_host = "127.0.0.173", "127.0.0.174"
    contact_points = tmp_path / "contact-points"
    (config,) = pekko_configs([pekko_host], contact_points, log_level="DEBUG")
    with our_node(
        tmp_path / "ours.log", host, config.management_port, node_address=None
    ) as our_url:
        write_contact_points(
            contact_points, [config.management, f"{host}:{config.management_port}"]
        )
        with running_pekko_nodes(pekko_jar, [config]) as (pekko,):
            _, failed = probe_log_patterns(our_url)
            line = pekko.wait_for_line(failed, timeout=FORMATION_TIMEOUT)
            match = failed.search(line)
            assert match is not None
            assert match["cause"] == our_url
            assert not any(f"Contact point [{our_url}]" in line for line in pekko.lines)


def test_status_command_on_a_pekko_node_names_the_missing_status_endpoint(
    pekko_jar: Path, tmp_path: Path
) -> None:
    """``cluster-bootstrap status`` on a Pekko node exits 1: it has no /bootstrap/status (404)."""
    contact_points = tmp_path / "contact-points"
    (config,) = pekko_configs(["127.0.0.175"], contact_points, required_contact_points=1)
    write_contact_points(contact_points, [config.management])
    with running_pekko_nodes(pekko_jar, [config]) as (pekko,):
        result = subprocess.run(
            [sys.executable, "-m", "bootstrap", "status", pekko.management_url],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        status_url = pekko.management_url + STATUS_PATH
        assert result.returncode == 1
        assert result.stdout == ""
        assert result.stderr.startswith(f"cluster-bootstrap status: {status_url}: ")
        assert "404 Not Found" in result.stderr
