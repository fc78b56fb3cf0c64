"""DNS discovery that flaps, and DNS discovery that hangs.

The DNS server lives in one more namespace on the bridge (the last one), so the nodes reach it
over the bridge like a cluster's DNS service: dnsmasq (:class:`tests.dnsmasq.Dnsmasq`, records
with TTL 0 so every lookup asks it), or a socket that reads every query and never answers.
"""

from __future__ import annotations

import re
from pathlib import Path

from .cluster import FaultCluster, Statuses, require_fault_tools

require_fault_tools()

SERVICE = "svc.zone"


def dns_discovery(server: str) -> list[str]:
    return [
        "--discovery",
        "dns",
        "--service-name",
        SERVICE,
        "--dns-server",
        server,
        "--discovery-timeout",
        "1",
    ]


def test_flapping_records_hold_formation_back_until_they_settle(tmp_path: Path) -> None:
    """Node 3's record appears and disappears every second, faster than the stable margin
    (4 s): the discovered set keeps changing, so no node forms (rule 4), however long it lasts.
    Once the record stays, the set is stable after 4 s and exactly one cluster forms.
    """
    nodes = [0, 1, 2, 3]
    with FaultCluster(tmp_path, 5) as cluster:
        dns = cluster.dnsmasq(4, {SERVICE: [cluster.addresses[i] for i in (0, 1, 2)]})
        flapping = {SERVICE: [cluster.addresses[3]]}
        stop_flapping = dns.flap("pod-3", flapping, period=1.0)
        for index in nodes:
            cluster.start(
                index, *dns_discovery(dns.address), "--stable-margin", "4",
                "--required-contact-points", "3",
            )  # fmt: skip
        cluster.wait_until("every node serves", cluster.reachable(nodes), timeout=30)
        reasons: set[str] = set()

        def undecided_and_noted(statuses: Statuses) -> bool:
            reasons.update(str(statuses[i]["reason"]) for i in nodes if i in statuses)
            return cluster.undecided(nodes)(statuses)

        cluster.hold("nobody decides while discovery flaps", undecided_and_noted, duration=10)
        assert any(r.startswith("discovery changed ") for r in reasons), reasons
        assert stop_flapping() >= 8

        dns.set_hosts("pod-3", flapping)
        cluster.wait_until("everyone joined", cluster.joined(nodes), timeout=20)
        cluster.assert_one_cluster(founder=0, members=nodes)


def test_dns_server_that_never_answers_no_decision_and_a_reason(tmp_path: Path) -> None:
    """Every lookup times out: the nodes keep running and serving, decide nothing, and say
    that discovery failed. The DNS backend runs under the node's deadline (discovery_timeout,
    1 s) and gives up just inside it, so that its own error, naming the server, ends the lookup
    before the node's cancel scope does."""
    nodes = [0, 1, 2]
    with FaultCluster(tmp_path, 4) as cluster:
        hole = cluster.blackhole(3)
        for index in nodes:
            cluster.start(index, *dns_discovery(hole.address), "--required-contact-points", "1")
        cluster.wait_until("every node serves", cluster.reachable(nodes), timeout=30)
        statuses = cluster.hold("nobody decides", cluster.undecided(nodes), duration=6)
        for index in nodes:
            status = statuses[index]
            assert status["phase"] == "discovering"
            assert status["contactPoints"] == []
            reason = status["reason"]
            assert reason.startswith("discovery failed ("), reason
            within = re.search(
                rf"no answer within ([\d.]+) s from DNS server {hole.address}", reason
            )
            assert within is not None, reason
            assert 0.5 <= float(within.group(1)) <= 1.0, reason
            assert reason.endswith(
                "joining an existing cluster still works, but no new cluster is formed until "
                "a lookup succeeds"
            ), reason
            assert cluster.alive(index)
        # The queries did reach the server (and were swallowed): lookups go on, backing off.
        assert hole.received >= len(nodes) * 3, hole.received
