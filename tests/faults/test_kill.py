"""kill -9 of the lowest node: before it formed the cluster, after, and restarted after.

Static discovery lists every node; node ``i`` is 10.213.0.<i+1>, so node 0 is the lowest.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from .cluster import FaultCluster, require_fault_tools

require_fault_tools()


def test_lowest_killed_before_forming_next_lowest_forms(tmp_path: Path) -> None:
    """Node 0 dies (SIGKILL) while waiting out the stable margin: node 1 forms, 2 and 3 join.

    ``required_contact_points`` is N-1 = 3 and ``contact_with_all_contact_points`` is off:
    static discovery keeps listing the dead node 0, and with it on nobody could ever form
    (that is its purpose). With it off the lowest contact point *with a fresh answer* forms,
    so once node 0's last answer is older than ``observation_ttl`` node 1 is the lowest.
    """
    count = 4
    with FaultCluster(tmp_path, count) as cluster:
        # A stable margin long enough that node 0 cannot form before it is killed; the others
        # pass it meanwhile, so it costs nothing after the kill.
        args = [
            *cluster.static_discovery(range(count)),
            "--required-contact-points",
            "3",
            "--no-contact-with-all-contact-points",
            "--stable-margin",
            "6",
        ]
        for index in range(count):
            cluster.start(index, *args)

        statuses = cluster.wait_until(
            "node 0 hears every node", cluster.hear_everyone([0], count), timeout=30
        )
        assert statuses[0]["decision"] is None
        assert "stable margin" in statuses[0]["reason"]
        cluster.kill(0)
        killed_at = time.monotonic()

        cluster.wait_until("nodes 1-3 joined", cluster.joined([1, 2, 3]), timeout=30)
        formed_after = cluster.nodes[1].decision_seen_at - killed_at  # type: ignore[operator]
        assert cluster.nodes[0].decision is None
        assert cluster.nodes[1].decision == {"kind": "join-self"}
        cluster.assert_one_cluster(founder=1, members=[1, 2, 3])
        # Node 1 forms once node 0's answer is stale (ttl 0.6 + 3 s) and its own margin passed.
        assert formed_after < 12, formed_after
        # No one changes its mind afterwards.
        cluster.hold("decisions stay", cluster.joined([1, 2, 3]), duration=3)
        cluster.assert_one_cluster(founder=1, members=[1, 2, 3])


def test_lowest_killed_before_forming_with_contact_with_all_nobody_forms(tmp_path: Path) -> None:
    """The same kill with contact-with-all on (the default): static discovery keeps listing
    the dead node 0, so no survivor ever has a fresh answer from every discovered contact
    point and none forms, although required (2) is met. The status says why. This is the
    setting's purpose (a node that cannot hear a discovered peer waits rather than risk a
    second cluster); forming here needs discovery to drop node 0, or contact-with-all off.
    """
    count = 3
    with FaultCluster(tmp_path, count) as cluster:
        args = [
            *cluster.static_discovery(range(count)),
            "--required-contact-points",
            "2",
            "--stable-margin",
            "4",
            "--probe-timeout",
            "1",
        ]
        for index in range(count):
            cluster.start(index, *args)

        statuses = cluster.wait_until(
            "node 0 hears every node", cluster.hear_everyone([0], count), timeout=30
        )
        assert statuses[0]["decision"] is None
        cluster.kill(0)
        # Past every survivor's stable margin (4 s from its start) and observation_ttl (1.6 s).
        statuses = cluster.hold("nobody decides", cluster.undecided([1, 2]), duration=6)
        pattern = (
            rf"no fresh answer from {re.escape(cluster.contact_point(0))} "
            r"\(last \d+\.\d s ago; last failure: .+\)"
        )
        # Node 1, whose only lower peer fails, is the would-be founder; node 2 waits for it
        # and quotes it (DESIGN section 9).
        assert re.fullmatch(pattern, statuses[1]["reason"]), statuses[1]["reason"]
        expecting = f"expecting {re.escape(cluster.contact_point(1))} to form the cluster"
        quoted = rf"{expecting}; it reports: {pattern}"
        assert re.fullmatch(quoted, statuses[2]["reason"]), statuses[2]["reason"]
        assert cluster.clusters() == []


def test_lowest_killed_after_forming_cluster_stays_and_late_node_joins_it(
    tmp_path: Path,
) -> None:
    """Node 0 forms and dies; nodes 1-3 keep their decisions and no second cluster forms;
    node 4, started afterwards, joins the existing cluster (rule 1: a fresh answer listing
    seed nodes is joined at once) within about a probe period of starting.

    Nodes 0-3 discover nodes 0-3 only (required 4, contact with all on); node 4 discovers
    nodes 0-4, as a replica added to the deployment would.
    """
    with FaultCluster(tmp_path, 5) as cluster:
        first = range(4)
        for index in first:
            cluster.start(index, *cluster.static_discovery(first), "--required-contact-points", "4")
        cluster.wait_until("nodes 0-3 joined", cluster.joined(first), timeout=30)
        cluster.assert_one_cluster(founder=0, members=first)

        cluster.kill(0)
        # Longer than observation_ttl (3.6 s) and the stable margin (2 s): if a survivor were
        # ever to act on node 0's death, it would have by now. Decided machines ignore events,
        # so their decisions must stay exactly as they were (checked on every read).
        cluster.hold("survivors keep their decisions", cluster.joined([1, 2, 3]), duration=6)
        cluster.assert_one_cluster(founder=0, members=first)

        cluster.start(4, *cluster.static_discovery(range(5)), "--required-contact-points", "4")
        statuses = cluster.wait_until("node 4 joined", cluster.joined([4]), timeout=20)
        record = cluster.nodes[4]
        assert record.decision is not None
        assert record.decision["kind"] == "join-seed-nodes"
        cluster.assert_one_cluster(founder=0, members=[0, 1, 2, 3, 4])
        # The seed nodes are what the live members advertised in the fresh answers it had at
        # that instant (members of the one cluster; assert_one_cluster traced them to node 0).
        # With the in-memory LocalMembership (no failure detector) a member keeps advertising
        # the nodes it joined through, the dead founder included.
        seeds = record.decision["seedNodes"]
        assert seeds == sorted(seeds)
        assert set(seeds) <= {cluster.self_node(i) for i in first}
        assert set(seeds) & {cluster.self_node(i) for i in (1, 2, 3)}, "no live seed node"
        # DESIGN 6.5: a node started after formation joins within one probe period of
        # discovery (static here: at once). Measured from its first status read, so the
        # bound holds the probe period, the round trips and our 0.25 s polling.
        assert record.decision_seen_at is not None
        assert record.reachable_at is not None
        assert record.decision_seen_at - record.reachable_at < 2.0
        assert "joining the cluster of seed nodes" in statuses[4]["reason"]


def test_founder_killed_and_restarted_on_its_address_joins_the_cluster_it_formed(
    tmp_path: Path,
) -> None:
    """Node 0 forms, is killed -9, and comes back on the same contact point (so with the same
    selfNode), as a restarted pod with a stable address would. Nodes 1 and 2 still advertise
    the cluster (with the in-memory LocalMembership, the old node 0 among its members). The
    new node 0 must join that cluster (rule 1) and not form a second one, although it is
    still the lowest contact point and every peer answers.
    """
    count = 3
    with FaultCluster(tmp_path, count) as cluster:
        args = [*cluster.static_discovery(range(count)), "--required-contact-points", str(count)]
        for index in range(count):
            cluster.start(index, *args)
        cluster.wait_until("everyone joined", cluster.joined(range(count)), timeout=30)
        cluster.assert_one_cluster(founder=0, members=range(count))
        cluster.kill(0)
        cluster.hold("survivors keep their decisions", cluster.joined([1, 2]), duration=2)

        cluster.start(0, *args)
        cluster.wait_until("the new node 0 decided", cluster.decided([0]), timeout=20)
        decision = cluster.nodes[0].decision
        assert decision is not None
        assert decision["kind"] == "join-seed-nodes", decision
        assert cluster.self_node(0) not in decision["seedNodes"]
        cluster.wait_until("everyone joined", cluster.joined(range(count)), timeout=10)
        # The old node 0 founded it; the new one is a member (index 0 counts twice).
        cluster.assert_one_cluster(founder=0, members=[0, 0, 1, 2])


def test_restarted_founder_listed_as_the_only_seed_never_forms_a_second_cluster(
    tmp_path: Path,
) -> None:
    """With max_seed_nodes 1 the survivors advertise only the dead founder, i.e. the restarted
    node's own name: nothing to join through, but it must not form a second cluster either
    (before the fix it did: it stripped its own name, saw "no cluster" and, lowest with every
    answer fresh, decided join-self). It waits, saying why, as the anchor does.
    """
    count = 3
    with FaultCluster(tmp_path, count) as cluster:
        args = [
            *cluster.static_discovery(range(count)),
            "--required-contact-points",
            str(count),
            "--max-seed-nodes",
            "1",
        ]
        for index in range(count):
            cluster.start(index, *args)
        cluster.wait_until("everyone joined", cluster.joined(range(count)), timeout=30)
        cluster.assert_one_cluster(founder=0, members=range(count))
        cluster.kill(0)
        cluster.start(0, *args)
        cluster.wait_until("the new node 0 serves", lambda statuses: 0 in statuses, timeout=10)
        statuses = cluster.hold(
            "the restarted node 0 forms nothing", cluster.undecided([0]), duration=6
        )
        assert "lists only this node's own name as seed node" in statuses[0]["reason"]
        assert all(statuses[i]["joined"] for i in (1, 2))
