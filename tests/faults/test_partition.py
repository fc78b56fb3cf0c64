"""A partition of the bridge into halves {0, 1, 2} | {3, 4} during formation, then healed.

The partition comes once every node has heard every other (their watches are open) and before
the stable margin (5 s) lets anyone form: the open watches across the cut go silent, and the
prober must notice that by itself (no FIN or RST crosses a partition). Static discovery lists
all five nodes everywhere. observation_ttl = 0.5 * 1.2 + 1 = 1.6 s.
"""

from __future__ import annotations

from pathlib import Path

from .cluster import FaultCluster, require_fault_tools

require_fault_tools()

MAJORITY, MINORITY = [0, 1, 2], [3, 4]
EVERYONE = MAJORITY + MINORITY


def start_partitioned(cluster: FaultCluster, *args: str) -> None:
    for index in EVERYONE:
        cluster.start(
            index,
            *cluster.static_discovery(EVERYONE),
            "--probe-timeout",
            "1",
            "--stable-margin",
            "5",
            *args,
        )

    cluster.wait_until(
        "everyone hears everyone", cluster.hear_everyone(EVERYONE, len(EVERYONE)), timeout=30
    )
    cluster.set_bridge_faults(partition=(MAJORITY, MINORITY))
    assert cluster.clusters() == [], "formed before the partition: the machine is too slow"


def test_majority_required_only_the_majority_forms_and_minority_joins_after_healing(
    tmp_path: Path,
) -> None:
    """required 3 of 5 (a majority), contact-with-all off: the majority half forms (node 0),
    the minority half (2 fresh answers < 3) waits, and joins node 0's cluster once healed.

    (contact-with-all off is what lets a half form at all; see the next test for it on.)
    """
    with FaultCluster(tmp_path, 5) as cluster:
        start_partitioned(
            cluster, "--required-contact-points", "3", "--no-contact-with-all-contact-points"
        )
        cluster.wait_until("the majority joined", cluster.joined(MAJORITY), timeout=30)
        cluster.assert_one_cluster(founder=0, members=MAJORITY)
        # The minority can never confirm 3 contact points: it waits, for longer than the stable
        # margin and observation_ttl together.
        statuses = cluster.hold(
            "the minority stays undecided", cluster.undecided(MINORITY), duration=5
        )
        # Node 3, the lowest of its half, counts; node 4 quotes it (DESIGN section 9).
        counted = "confirmed 2 of 3 required contact points"
        assert statuses[3]["reason"] == counted
        assert statuses[4]["reason"] == (
            f"expecting {cluster.contact_point(3)} to form the cluster; it reports: {counted}"
        )
        assert cluster.bridge_drops() > 0

        cluster.heal()
        cluster.wait_until("everyone joined", cluster.joined(EVERYONE), timeout=20)
        for index in MINORITY:
            assert cluster.nodes[index].decision["kind"] == "join-seed-nodes"  # type: ignore[index]
        cluster.assert_one_cluster(founder=0, members=EVERYONE)


def test_minority_required_with_contact_with_all_nobody_forms_until_healed(
    tmp_path: Path,
) -> None:
    """required 2 (not a majority), contact-with-all on (the default): no node forms at all
    while partitioned, because none has a fresh answer from the other half's nodes, which it
    keeps discovering (rule 5). After healing exactly one cluster forms, founded by node 0.

    So with contact-with-all on, a partition cannot split the cluster whatever required is
    (as long as discovery keeps listing both halves); the price is that nobody forms until
    the partition heals.
    """
    with FaultCluster(tmp_path, 5) as cluster:
        start_partitioned(cluster, "--required-contact-points", "2")
        # Past the stable margin (5 s from start) with the cross-cut answers long stale.
        statuses = cluster.hold("nobody decides", cluster.undecided(EVERYONE), duration=6)
        for index in EVERYONE:
            own_half, other_half = (
                (MAJORITY, MINORITY) if index in MAJORITY else (MINORITY, MAJORITY)
            )
            # Each half's lowest (0 and 3: every peer below it fails) is its would-be founder
            # and probes everyone; the others wait for it and quote it (DESIGN section 9).
            missing = f"no fresh answer from {cluster.contact_point(other_half[0])} "
            reason = statuses[index]["reason"]
            if index == own_half[0]:
                assert reason.startswith(missing), reason
            else:
                expecting = f"expecting {cluster.contact_point(own_half[0])} to form the cluster"
                assert reason.startswith(f"{expecting}; it reports: {missing}"), reason
            for point in statuses[index]["contactPoints"]:
                peer = cluster.addresses.index(point["contactPoint"].split(":")[0])
                if not point["probed"]:
                    assert not point["fresh"]
                elif peer in other_half:
                    assert not point["fresh"]
                    assert point["consecutiveFailures"] > 0
                else:
                    assert point["fresh"]

        cluster.heal()
        cluster.wait_until("everyone joined", cluster.joined(EVERYONE), timeout=25)
        cluster.assert_one_cluster(founder=0, members=EVERYONE)


def test_minority_required_without_contact_with_all_each_half_forms_its_own_cluster(
    tmp_path: Path,
) -> None:
    """The documented hazard, pinned down: required 2 (not a majority) and contact-with-all
    off, each half has enough fresh answers, so node 0 and node 3 each form a cluster.
    Healing does not merge them: decided nodes never change their decision.

    docs/settings.md says so ("required_contact_points is the only guard against forming with
    a subset"): only a majority ``required_contact_points`` or contact-with-all on prevents it.
    """
    with FaultCluster(tmp_path, 5) as cluster:
        start_partitioned(
            cluster, "--required-contact-points", "2", "--no-contact-with-all-contact-points"
        )
        cluster.wait_until("everyone joined", cluster.joined(EVERYONE), timeout=30)
        cluster.heal()
        cluster.hold("decisions stay", cluster.joined(EVERYONE), duration=3)
        clusters = cluster.clusters()
        assert [(c.founder, c.members) for c in clusters] == [(0, (0, 1, 2)), (3, (3, 4))]
