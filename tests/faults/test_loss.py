"""Packet loss on the bridge: 10 % or 30 % of the IP frames between nodes dropped, both ways.

TCP retransmits what is lost (a lost SYN costs 1 s, a lost segment of an open connection the
RTO, 200 ms or more), so probes and watch pushes arrive late, sometimes after probe_timeout.
The design's answer is that answers expire by age only (a failed probe never discards a fresh
one) and observation_ttl includes probe_timeout: with the default probe_timeout of 3 s, a
probe period of 0.5 s and contact with all on, the cluster still forms, once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .cluster import FaultCluster, require_fault_tools

require_fault_tools()


@pytest.mark.parametrize("loss_percent", [10, 30])
def test_lossy_bridge_one_cluster_forms_and_everyone_joins(
    tmp_path: Path, loss_percent: int
) -> None:
    count = 5
    with FaultCluster(tmp_path, count) as cluster:
        cluster.set_bridge_faults(loss_percent=loss_percent)
        for index in range(count):
            cluster.start(
                index,
                *cluster.static_discovery(range(count)),
                "--required-contact-points",
                str(count),
                "--probe-timeout",
                "3",
            )
        cluster.wait_until("everyone joined", cluster.joined(range(count)), timeout=60)
        cluster.assert_one_cluster(founder=0, members=range(count))
        assert cluster.bridge_drops() > 0, "the loss rule dropped nothing"
        # Still lossy: nothing changes afterwards.
        cluster.hold("decisions stay", cluster.joined(range(count)), duration=2)
        cluster.assert_one_cluster(founder=0, members=range(count))
