"""The founding round (DESIGN section 8) between real processes: never two clusters.

Each test runs real ``cluster-bootstrap node`` processes in network namespaces
(:class:`tests.faults.cluster.FaultCluster`) and reads every node's ``/bootstrap/status``: its
``decision``, ``joined``, ``reason`` and ``founding`` (the round counter, ``candidate``, the
``promise`` it holds). The harness traces every decision's seed nodes back to one founder, so a
"cluster" below is one ``join-self`` node and everyone whose seed nodes lead to it.

* **The late lowest** (``test_late_lowest_...``) repeats a start order that splits under the
  anchor's rule, ``formation="lowest-address"``, in the same run as ``formation="promise"``:
  the rule that splits must split at least once (so the scenario proves it can fail), the
  promise rule never.
* **Discovery.** Static ``--contact-points`` lists, per node where a test needs views that
  differ (a node's list is fixed for the life of its process), or DNS (dnsmasq in one more
  namespace, records with TTL 0) where a node must *leave* or *join* every view while the
  others run.
* **Holding a round open.** A round completes within one round trip, faster than any status
  read; where a test needs a candidate caught mid-round, one promiser's answers are delayed
  (:meth:`FaultCluster.delay_answers`, less than ``probe_timeout``, so they stay fresh): its
  promise is given at once but reaches the candidate that much later.

Every wait is bounded; a failure prints every node's state, ``founding`` and log tail.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .cluster import FAST, Cluster, FaultCluster, Statuses, require_fault_tools

require_fault_tools()

Formation = Literal["promise", "lowest-address"]
SERVICE = "svc.zone"
#: How often the tests that catch a candidate mid-round read the statuses (the harness's
#: wait_until reads every 0.25 s, slower than a delayed round stays open).
FAST_READ_INTERVAL = 0.02


# --- reading the founding round from the statuses ----------------------------------------------


def founding(status: dict[str, Any]) -> dict[str, Any]:
    """The status's ``founding`` object (formation, round, candidate, promise, founding)."""
    value = status["founding"]
    assert isinstance(value, dict), status
    return value


def describe(cluster: FaultCluster) -> str:
    """Every node's state and log tail, then what its last status said of the founding round."""
    lines = [cluster.describe()]
    for index, record in sorted(cluster.nodes.items()):
        last = record.last or {}
        lines.append(f"node {index} founding: {last.get('founding')}")
    return "\n".join(lines)


@dataclass
class History:
    """What each node's status said, read after read: founding objects and reasons."""

    reads: list[tuple[float, Statuses]] = field(default_factory=list)

    def watching(self, condition: Callable[[Statuses], bool]) -> Callable[[Statuses], bool]:
        """``condition``, recording every read it is asked about first."""

        def record_then_check(statuses: Statuses) -> bool:
            self.reads.append((time.monotonic(), statuses))
            return condition(statuses)

        return record_then_check

    def reasons(self, index: int) -> list[str]:
        return [s[index]["reason"] for _, s in self.reads if index in s]

    def first_read(self, condition: Callable[[Statuses], bool]) -> float | None:
        """When a read first satisfied ``condition``."""
        return next((at for at, statuses in self.reads if condition(statuses)), None)


def wait_fast(
    cluster: FaultCluster, what: str, condition: Callable[[Statuses], bool], *, timeout: float
) -> Statuses:
    """:meth:`FaultCluster.wait_until`, reading as fast as the nodes answer."""
    deadline = time.monotonic() + timeout
    while True:
        statuses = cluster.poll()
        if condition(statuses):
            return statuses
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s\n{describe(cluster)}")
        time.sleep(FAST_READ_INTERVAL)


def dns_discovery(server: str) -> list[str]:
    return ["--discovery", "dns", "--service-name", SERVICE, "--dns-server", server]


# --- 1. the late lowest -------------------------------------------------------------------------

LATE_NODES = 5
#: Attempts per rule (3.5-5 s each). Measured on a loaded 2-core machine, lowest-address
#: split in 24 of 34 attempts over four runs (4 to 8 of 8 per run; the spread is the
#: processes' start-up time); even at a fraction of 0.5, no split in 8 has probability 0.004.
LATE_ATTEMPTS = 8
LATE_STABLE_MARGIN = 0.5
#: Node 0 starts this long after the others: about the stable margin.
LATE_DELAY = 0.5
LATE_ARGS = (
    # Polling: a founder's answers are up to a probe interval old when it decides, the window
    # of the anchor's rule (DESIGN section 8, "Why"). The same settings under both rules.
    "--transport", "poll",
    "--probe-interval", "1",
    "--probe-backoff-max", "2",
    "--probe-timeout", "1",
    "--discovery-interval", "0.5",
    "--discovery-backoff-max", "2",
    "--stable-margin", str(LATE_STABLE_MARGIN),
)  # fmt: skip


@dataclass(frozen=True)
class LateOutcome:
    formation: Formation
    clusters: list[Cluster]
    #: Node 0's last founding object: under promise, the round it opened before joining.
    node0_founding: dict[str, Any]
    description: str


def late_lowest_attempt(tmp_path: Path, formation: Formation) -> LateOutcome:
    """Nodes 1-4 start; node 0, the lowest, starts LATE_DELAY later; wait for every decision.

    Nodes 1-4 discover nodes 1-4 (node 0 is not yet registered in their discovery, as with a
    lagging Kubernetes endpoint or DNS record: their views and node 0's, nodes 0-4, are
    prefixes of one registration order, DESIGN S2's condition). Node 1 forms from its view
    once its stable margin has passed; node 0, started about a margin later, polls everyone
    at once, and decides a margin later. If its answers were all taken before node 1 formed,
    the lowest-address rule lets it form too: two clusters. Under promise it must first ask
    everyone for a promise, and the fresh answers show node 1's cluster (or, had node 0 asked
    before node 1 formed, node 1 promises it and withdraws its own round: node 0 founds).
    """
    tmp_path.mkdir()
    with FaultCluster(
        tmp_path, LATE_NODES, node_args=(*LATE_ARGS, "--formation", formation)
    ) as cluster:
        early = range(1, LATE_NODES)
        for index in early:
            cluster.start(index, *cluster.static_discovery(early))
        time.sleep(LATE_DELAY)
        cluster.start(0, *cluster.static_discovery(range(LATE_NODES)))
        everyone = range(LATE_NODES)
        cluster.wait_until("every node joined", cluster.joined(everyone), timeout=30)
        # Decisions are final: a second read must find them unchanged (checked on every read).
        cluster.hold("decisions stay", cluster.joined(everyone), duration=0.5)
        last = cluster.nodes[0].last
        assert last is not None
        return LateOutcome(
            formation=formation,
            clusters=cluster.clusters(),
            node0_founding=founding(last),
            description=describe(cluster),
        )


def test_late_lowest_splits_under_lowest_address_and_never_under_promise(tmp_path: Path) -> None:
    """LATE_ATTEMPTS of each rule, interleaved (so both see the same machine load): the
    lowest-address rule forms two clusters at least once, the promise rule exactly one every
    time. A split under the old rule is always node 0 alone beside nodes 1-4.
    """
    outcomes: dict[Formation, list[LateOutcome]] = {"lowest-address": [], "promise": []}
    for attempt in range(LATE_ATTEMPTS):
        for formation in outcomes:
            outcome = late_lowest_attempt(tmp_path / f"{formation}-{attempt}", formation)
            outcomes[formation].append(outcome)
            if formation == "promise":
                assert len(outcome.clusters) == 1, (
                    f"promise, attempt {attempt}: {len(outcome.clusters)} clusters "
                    f"{outcome.clusters}\n{outcome.description}"
                )

    def splits(formation: Formation) -> list[LateOutcome]:
        return [o for o in outcomes[formation] if len(o.clusters) > 1]

    old_splits = splits("lowest-address")
    # Under promise, node 0 opened a round when it reached the point where the old rule forms
    # (else it joined at once, on a fresh answer listing seed nodes).
    rounds_opened = sum(1 for o in outcomes["promise"] if o.node0_founding["roundsStarted"] >= 1)
    founded_by_0 = sum(1 for o in outcomes["promise"] if o.clusters[0].founder == 0)
    summary = (
        f"lowest-address formed two clusters in {len(old_splits)} of {LATE_ATTEMPTS} attempts; "
        f"promise in {len(splits('promise'))} of {LATE_ATTEMPTS} (node 0 opened a founding "
        f"round in {rounds_opened} of them, and founded the one cluster in {founded_by_0})"
    )
    print(summary)
    for outcome in old_splits:
        assert outcome.clusters == [
            Cluster(0, (0,)),
            Cluster(1, (1, 2, 3, 4)),
        ], f"{outcome.clusters}\n{outcome.description}"
    assert old_splits, (
        f"{summary}: the scenario no longer reproduces the old rule's split, so it proves "
        f"nothing about promise; last attempt:\n{outcomes['lowest-address'][-1].description}"
    )
    for outcome in outcomes["promise"]:
        (only,) = outcome.clusters
        assert only.members == (0, 1, 2, 3, 4), outcome.description


# --- 2. two candidates at once --------------------------------------------------------------------

#: How late node 3's answers arrive: both candidates' rounds wait that long for its promise.
SHARED_PROMISER_DELAY = 2.0


def test_two_candidates_at_once_with_a_majority_required_form_one_cluster(tmp_path: Path) -> None:
    """Node 0 discovers nodes 0, 2, 3; node 1 discovers 1, 3, 4 (it never sees node 0); nodes
    2-4 discover everyone. required 3 of 5 (a majority), contact-with-all off: each of nodes 0
    and 1 is the lowest of its view and opens a round asking its two peers, both needed. They
    share node 3, whose answers arrive 2 s late (probe_timeout 4 s keeps them fresh), so both
    rounds stay open at once until node 3's answer: a promise to the one it heard first, a
    refusal ("promised ...") to the other, which withdraws. Exactly one cluster forms, and
    the loser joins it. (The old rule forms two here: each founder has its required 3.)
    """
    count, shared = 5, 3
    views: dict[int, Sequence[int]] = {0: (0, 2, 3), 1: (1, 3, 4)}
    args = (
        "--required-contact-points", "3",
        "--no-contact-with-all-contact-points",
        "--probe-timeout", "4",
        "--formation", "promise",
    )  # fmt: skip
    with FaultCluster(tmp_path, count, node_args=(*FAST, *args)) as cluster:
        cluster.delay_answers(shared, SHARED_PROMISER_DELAY)
        # The promisers first, so that both candidates reach node 3 on their first attempt
        # and their rounds open within a start-up's spread of each other.
        for index in (2, 3, 4):
            cluster.start(index, *cluster.static_discovery(range(count)))
        cluster.wait_until("nodes 2-4 serve", cluster.reachable([2, 3, 4]), timeout=30)
        for index, view in views.items():
            cluster.start(index, *cluster.static_discovery(view))

        history = History()

        def both_candidates(statuses: Statuses) -> bool:
            return all(i in statuses and founding(statuses[i])["candidate"] for i in (0, 1))

        statuses = cluster.wait_until(
            "nodes 0 and 1 candidates at once", history.watching(both_candidates), timeout=40
        )
        for index in (0, 1):
            assert statuses[index]["decision"] is None, describe(cluster)
            assert statuses[index]["reason"].startswith(
                f"founding round {founding(statuses[index])['round']}: promised by "
            ), statuses[index]["reason"]

        everyone = range(count)
        cluster.wait_until(
            "everyone joined", history.watching(cluster.joined(everyone)), timeout=30
        )
        cluster.hold("decisions stay", cluster.joined(everyone), duration=1)
        clusters = cluster.clusters()
        assert len(clusters) == 1, f"{clusters}\n{describe(cluster)}"
        (only,) = clusters
        winner = only.founder
        assert winner in (0, 1), describe(cluster)
        assert only.members == tuple(everyone), describe(cluster)
        loser = 1 - winner

        # The shared promiser promised the winner, and the loser withdrew a round refused for
        # that promise: its status said so, and its log keeps every such reason.
        promised_winner = {"to": cluster.contact_point(winner)}
        assert any(
            shared in s
            and promised_winner.items() <= (founding(s[shared])["promise"] or {}).items()
            for _, s in history.reads
        ), describe(cluster)
        loser_status = cluster.nodes[loser].last
        assert loser_status is not None
        assert cluster.nodes[loser].decision == {
            "kind": "join-seed-nodes",
            "seedNodes": cluster.nodes[loser].decision["seedNodes"],  # type: ignore[index]
        }
        # It opened a round and did not form in it.
        assert founding(loser_status)["roundsStarted"] >= 1, describe(cluster)
        refused = (
            rf"withdrew founding round \d+ \({re.escape(cluster.contact_point(shared))} "
            rf"promised {re.escape(cluster.contact_point(winner))} \(round \d+\)\)"
        )
        assert re.search(refused, cluster.log(loser)), describe(cluster)


# --- 3. rolling replacement with new addresses ----------------------------------------------------


def test_rolling_replacement_of_five_nodes_with_new_addresses_keeps_one_cluster(
    tmp_path: Path,
) -> None:
    """Nodes 5-9 form; then, one at a time, an old node is stopped (SIGTERM) and leaves DNS,
    and a new node on a new, lower address (4, then 3, ... 0: each the lowest contact point
    of all when it starts) is added to DNS and started, as a StatefulSet rolls. Each new node
    joins the one cluster (node 5's) through the seed nodes its live peers advertise, without
    ever opening a founding round; after the last step only new nodes run, still one cluster.

    Discovery is DNS (dnsmasq, TTL 0, one hosts file per pod): a node's view follows the
    records within a discovery interval, as a headless Service's would.
    """
    old, new, dns_index = [5, 6, 7, 8, 9], [4, 3, 2, 1, 0], 10
    args = ("--required-contact-points", "3", "--formation", "promise")
    with FaultCluster(tmp_path, 11, node_args=(*FAST, *args)) as cluster:
        dns = cluster.dnsmasq(dns_index, {})
        for index in old:
            dns.set_hosts(f"pod-{index}", {SERVICE: [cluster.addresses[index]]})
        for index in old:
            cluster.start(index, *dns_discovery(dns.address))
        cluster.wait_until("nodes 5-9 joined", cluster.joined(old), timeout=40)
        cluster.assert_one_cluster(founder=5, members=old)

        members = list(old)
        for leaving, arriving in zip(old, new, strict=True):
            cluster.terminate(leaving)
            dns.remove_hosts(f"pod-{leaving}")
            dns.set_hosts(f"pod-{arriving}", {SERVICE: [cluster.addresses[arriving]]})
            cluster.start(arriving, *dns_discovery(dns.address))
            statuses = cluster.wait_until(
                f"node {arriving} (replacing {leaving}) joined",
                cluster.joined([arriving]),
                timeout=30,
            )
            decision = cluster.nodes[arriving].decision
            assert decision is not None
            assert decision["kind"] == "join-seed-nodes", describe(cluster)
            assert founding(statuses[arriving])["roundsStarted"] == 0, describe(cluster)
            members.append(arriving)
            cluster.assert_one_cluster(founder=5, members=members)
        cluster.hold("decisions stay", cluster.joined(new), duration=2)
        cluster.assert_one_cluster(founder=5, members=members)


# --- 4. a candidate killed mid-round --------------------------------------------------------------

#: Probe settings that make promise_hold short: 3 x (max(0.5, 0.2 x 1.2) + 1) = 4.5 s.
KILLED_CANDIDATE_ARGS = (
    "--probe-interval", "0.2",
    "--probe-backoff-max", "0.5",
    "--probe-timeout", "1",
)  # fmt: skip
PROMISE_HOLD = 3 * (0.5 + 1.0)
#: Node 4's answers arrive this late (< probe_timeout): node 0's round waits for its promise.
SLOW_PROMISER_DELAY = 0.7


def test_candidate_killed_mid_round_its_promisers_release_once_it_left_discovery(
    tmp_path: Path,
) -> None:
    """Node 0 opens a round; nodes 1-4 promise it (node 4's promise reaches it 0.7 s late),
    and node 0 is killed -9 before it has them all. While DNS still lists node 0 the
    promisers keep their promise, longer than promise_hold: a candidate that is merely
    unreachable may have formed, so only evidence releases it. Once node 0's record goes,
    each promiser releases promise_hold after its lookup no longer shows node 0 (not
    before), and nodes 1-4 form one cluster, founded by node 1.
    """
    count, dns_index, slow = 5, 5, 4
    survivors = [1, 2, 3, 4]
    args = (*FAST, *KILLED_CANDIDATE_ARGS, "--formation", "promise")
    with FaultCluster(tmp_path, count + 1, node_args=args) as cluster:
        dns = cluster.dnsmasq(dns_index, {})
        for index in range(count):
            dns.set_hosts(f"pod-{index}", {SERVICE: [cluster.addresses[index]]})
        remove_delay = cluster.delay_answers(slow, SLOW_PROMISER_DELAY)
        for index in range(count):
            cluster.start(index, *dns_discovery(dns.address))

        statuses = wait_fast(
            cluster,
            "node 0 opened a founding round",
            lambda s: 0 in s and founding(s[0])["candidate"],
            timeout=40,
        )
        cluster.kill(0)
        assert statuses[0]["decision"] is None
        promise = {"to": cluster.contact_point(0), "round": founding(statuses[0])["round"]}

        def promised_node_0(statuses: Statuses) -> bool:
            return all(
                i in statuses
                and statuses[i]["decision"] is None
                and founding(statuses[i])["promise"] == promise
                for i in survivors
            )

        cluster.wait_until("nodes 1-4 promised node 0", promised_node_0, timeout=5)
        remove_delay()
        # Node 0 is dead but discovered: no timeout releases the promise, nobody forms.
        cluster.hold(
            "the promises stand while node 0 is discovered",
            promised_node_0,
            duration=PROMISE_HOLD + 1,
        )

        dns.remove_hosts("pod-0")
        removed_at = time.monotonic()
        history = History()
        cluster.wait_until(
            "nodes 1-4 joined", history.watching(cluster.joined(survivors)), timeout=30
        )

        def released(index: int) -> Callable[[Statuses], bool]:
            # Released, then maybe at once promised to node 1: the next read may show either.
            return lambda statuses: (
                index in statuses and founding(statuses[index])["promise"] != promise
            )

        for index in survivors:
            released_at = history.first_read(released(index))
            assert released_at is not None, describe(cluster)
            # A lookup after the removal starts the hold; it is released by that timer alone.
            released_after = released_at - removed_at
            assert PROMISE_HOLD <= released_after <= PROMISE_HOLD + 3, (
                f"node {index} released its promise {released_after:.2f} s after node 0 left "
                f"DNS (promise_hold {PROMISE_HOLD} s)\n{describe(cluster)}"
            )
        assert cluster.nodes[1].decision == {"kind": "join-self"}, describe(cluster)
        cluster.hold("decisions stay", cluster.joined(survivors), duration=1)
        cluster.assert_one_cluster(founder=1, members=survivors)
        assert cluster.nodes[0].decision is None


# --- 5. a partition with a majority required ------------------------------------------------------

MINORITY, MAJORITY = [0, 1], [2, 3, 4]
EVERYONE = MINORITY + MAJORITY
PARTITION_STABLE_MARGIN = 3.0
_DISCOVERY_AGE = re.compile(r"discovery changed (\d+\.\d) s ago")


def test_partition_with_a_majority_required_only_the_majority_forms(tmp_path: Path) -> None:
    """5 nodes, required 3, contact-with-all off; the bridge splits {0, 1} | {2, 3, 4} a
    moment before node 0's stable margin passes, while its answers from everyone are still
    fresh. Node 0 then opens a round (the old rule would form here, with 5 fresh answers) but
    its proposals to 2-4 never arrive: only node 1 promises, and the answers from across go
    stale. The round stays open (stale answers alone withdraw nothing: the promise given
    still binds), but it cannot form: "confirmed 2 of 3". Node 2 forms with 3 and 4; once
    the partition heals, node 0 and node 1 join node 2's cluster: exactly one cluster.
    """
    with FaultCluster(tmp_path, 5, node_args=partition_args("promise")) as cluster:
        partition_before_node_0_forms(cluster)
        cluster.wait_until("the majority joined", cluster.joined(MAJORITY), timeout=30)
        cluster.assert_one_cluster(founder=2, members=MAJORITY)

        def minority_waits_in_node_0s_round(statuses: Statuses) -> bool:
            # Node 0 is the candidate of the round the old rule would have formed in, and
            # node 1 holds its promise: 1 of the 2 promises it needs. Neither decides.
            if not cluster.undecided(MINORITY)(statuses):
                return False
            node_0, node_1 = founding(statuses[0]), founding(statuses[1])
            promise = {"to": cluster.contact_point(0), "round": node_0["round"]}
            return bool(node_0["candidate"]) and node_1["promise"] == promise

        # Longer than the stable margin and observation_ttl together.
        statuses = cluster.hold(
            "the minority waits in node 0's round", minority_waits_in_node_0s_round, duration=4
        )
        # Node 0 counts; node 1 waits for it and quotes it (DESIGN section 9).
        counted = "confirmed 2 of 3 required contact points"
        assert statuses[0]["reason"] == counted
        assert statuses[1]["reason"] == (
            f"expecting {cluster.contact_point(0)} to form the cluster; it reports: {counted}"
        )
        round_ = founding(statuses[0])["round"]
        assert re.search(rf"founding round {round_}: promised by \d of 2", cluster.log(0)), (
            describe(cluster)
        )
        assert cluster.bridge_drops() > 0

        cluster.heal()
        cluster.wait_until("everyone joined", cluster.joined(EVERYONE), timeout=20)
        for index in MINORITY:
            decision = cluster.nodes[index].decision
            assert decision is not None
            assert decision["kind"] == "join-seed-nodes", describe(cluster)
        cluster.assert_one_cluster(founder=2, members=EVERYONE)


def test_partition_at_the_same_moment_splits_under_lowest_address(tmp_path: Path) -> None:
    """The same partition under the old rule: node 0 forms on its fresh answers from across
    the cut, the majority forms too once they are stale, and healing merges nothing. This is
    the case the previous test would fail without the founding round (DESIGN section 8: "a
    fresh empty answer binds nobody", so a majority ``required`` alone is not enough).
    """
    with FaultCluster(tmp_path, 5, node_args=partition_args("lowest-address")) as cluster:
        partition_before_node_0_forms(cluster)
        cluster.wait_until("everyone joined", cluster.joined(EVERYONE), timeout=30)
        cluster.heal()
        cluster.hold("decisions stay", cluster.joined(EVERYONE), duration=2)
        clusters = cluster.clusters()
        assert clusters == [Cluster(0, (0, 1)), Cluster(2, (2, 3, 4))], describe(cluster)


def partition_args(formation: Formation) -> tuple[str, ...]:
    return (
        *FAST,
        "--probe-timeout", "1",
        "--stable-margin", str(PARTITION_STABLE_MARGIN),
        "--required-contact-points", "3",
        "--no-contact-with-all-contact-points",
        "--formation", formation,
    )  # fmt: skip


def partition_before_node_0_forms(cluster: FaultCluster) -> None:
    """Start all five (static discovery of all), then cut {0, 1} | {2, 3, 4} when node 0's
    stable margin has 0.6 s or less to run: its answers from across the cut (fresh for
    observation_ttl, 1.6 s, after they arrived) are all still fresh when it passes."""
    for index in EVERYONE:
        cluster.start(index, *cluster.static_discovery(EVERYONE))
    cluster.wait_until(
        "everyone hears everyone", cluster.hear_everyone(EVERYONE, len(EVERYONE)), timeout=30
    )

    def margin_nearly_over(statuses: Statuses) -> bool:
        match = _DISCOVERY_AGE.match(statuses.get(0, {}).get("reason", ""))
        return match is not None and float(match[1]) >= PARTITION_STABLE_MARGIN - 0.6

    statuses = wait_fast(
        cluster, "node 0's stable margin nearly over", margin_nearly_over, timeout=10
    )
    cluster.set_bridge_faults(partition=(MINORITY, MAJORITY))
    assert cluster.clusters() == [], f"formed before the partition\n{describe(cluster)}"
    assert not founding(statuses[0])["candidate"], describe(cluster)
