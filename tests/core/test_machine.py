"""Unit tests of every rule of the bootstrap machine, with a scripted clock.

Policy: time moves only when a test moves it (``Harness``), randomness comes from a seeded
``random.Random``, and every assertion names exact actions or exact times where the rule
defines them (ranges where jitter applies). The anchors' own test vectors are reproduced where
they exist (join an existing cluster at once; keep probing inside the stable margin, with too
few confirmed, with one missing contact point; join self when all conditions hold).
"""

from __future__ import annotations

import math

import pytest

from bootstrap import (
    Action,
    ContactedBy,
    ContactPoint,
    ContactPointsDiscovered,
    DiscoveryFailed,
    JoinFailed,
    JoinSeedNodes,
    JoinSelf,
    Lookup,
    Phase,
    Probe,
    ProbeFailed,
    ProbeSucceeded,
    Settings,
    StopProbing,
    UsageError,
)
from bootstrap.core.machine import BootstrapMachine

from .harness import Harness, cp, node

THREE = (cp(1), cp(2), cp(3))


def probes(actions: list[object]) -> set[ContactPoint]:
    return {a.contact_point for a in actions if isinstance(a, Probe)}


def decisions(actions: list[object]) -> list[object]:
    return [a for a in actions if isinstance(a, JoinSelf | JoinSeedNodes)]


# --- misuse -----------------------------------------------------------------------------------


def test_start_emits_one_lookup() -> None:
    """start() asks for exactly one lookup, at once."""
    h = Harness()
    assert h.start() == [Lookup()]
    assert h.machine.status.phase is Phase.DISCOVERING
    assert h.machine.next_deadline() == math.inf  # the lookup is outstanding: nothing else due


def test_event_before_start_is_a_usage_error() -> None:
    """Feeding an event before start() is a driver bug and says so."""
    h = Harness()
    with pytest.raises(UsageError, match="before start"):
        h.machine.handle(DiscoveryFailed("x"), 0.0)
    with pytest.raises(UsageError, match="before start"):
        h.machine.handle_timer(0.0)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "1.0", True, None])
def test_non_finite_time_is_a_usage_error(bad: object) -> None:
    """NaN, infinite or non-numeric time is refused with UsageError."""
    h = Harness()
    with pytest.raises(UsageError, match="finite"):
        h.machine.start(bad)  # type: ignore[arg-type]


def test_backwards_time_is_a_usage_error() -> None:
    """Time may stand still but never go backwards."""
    h = Harness()
    h.start(at=5.0)
    h.machine.handle_timer(5.0)
    with pytest.raises(UsageError, match="backwards"):
        h.machine.handle_timer(4.999)


def test_double_start_and_non_events_are_usage_errors() -> None:
    """start() twice, an object that is not an event, and JoinFailed without a decision."""
    h = Harness()
    h.start()
    with pytest.raises(UsageError, match="already"):
        h.machine.start(1.0)
    with pytest.raises(UsageError, match="not an event"):
        h.machine.handle(Lookup(), 1.0)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="no decision"):
        h.machine.handle(JoinFailed("boom"), 1.0)


def test_constructor_validates_its_arguments() -> None:
    """Wrong types for settings, contact point or self_node are refused up front."""
    with pytest.raises(UsageError, match="settings"):
        BootstrapMachine(None, self_contact_point=cp(1), self_node="n")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="self_contact_point"):
        BootstrapMachine(Settings(), self_contact_point="10.0.0.1", self_node="n")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="self_node"):
        BootstrapMachine(Settings(), self_contact_point=cp(1), self_node="")


def test_self_without_port_gets_the_fallback_port() -> None:
    """A node configured without a port recognises itself once discovery adds the fallback port."""
    h = Harness(me=ContactPoint("10.0.0.1"))
    assert h.machine.self_contact_point == cp(1, 8558)


def test_internal_error_makes_the_machine_refuse_input() -> None:
    """After an unexpected internal error the machine refuses further input (h11's rule)."""
    h = Harness()
    h.start()

    def explode() -> None:
        raise RuntimeError("corrupted")

    h.machine._advance = explode  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        h.machine.handle_timer(1.0)
    with pytest.raises(UsageError, match="failed earlier"):
        h.machine.handle_timer(2.0)
    assert h.machine.next_deadline() == math.inf


# --- discovery pacing ------------------------------------------------------------------------


def test_new_contact_points_are_probed_at_once() -> None:
    """Every newly discovered peer gets a Probe in the same call; self is never probed."""
    h = Harness()
    h.start()
    actions = h.discover(*THREE, at=0.5)
    assert probes(actions) == {cp(2), cp(3)}
    assert h.machine.status.phase is Phase.PROBING


def test_lookup_pacing_after_success() -> None:
    """The next lookup is due discovery_interval * U[1-j, 1+j] after a success."""
    settings = Settings(discovery_interval=2.0, discovery_jitter=0.25)
    h = Harness(settings)
    h.start()
    h.discover(cp(1), at=1.0)
    deadline = h.machine.next_deadline()
    assert 1.0 + 1.5 <= deadline <= 1.0 + 2.5
    assert h.advance_to(deadline) == [Lookup()]


def test_lookup_backoff_after_failures_is_capped_and_reset() -> None:
    """k-th consecutive failure: min(cap, interval * 2**k * U); a success resets it."""
    settings = Settings(discovery_interval=1.0, discovery_jitter=0.0, discovery_backoff_max=5.0)
    h = Harness(settings)
    h.start()
    gaps = []
    for _ in range(4):
        before = h.now
        h.feed(DiscoveryFailed("dns timeout"))
        deadline = h.machine.next_deadline()
        gaps.append(deadline - before)
        assert h.advance_to(deadline) == [Lookup()]
    assert gaps == [2.0, 4.0, 5.0, 5.0]
    h.discover(cp(1))
    assert h.machine.next_deadline() - h.now == 1.0


def test_at_most_one_lookup_outstanding() -> None:
    """While a lookup is outstanding no other is asked for, however much time passes."""
    h = Harness()
    h.start()
    assert h.advance_to(100.0) == []
    assert h.machine.next_deadline() == math.inf


# --- probe pacing ----------------------------------------------------------------------------


def test_probe_pacing_after_success() -> None:
    """A healthy peer is probed again probe_interval * U[1-j, 1+j] after its answer."""
    settings = Settings(probe_interval=2.0, probe_jitter=0.5, required_contact_points=3)
    h = Harness(settings)
    h.start()
    h.discover(cp(1), cp(2))
    h.answer(cp(2), at=0.25)
    peer_deadlines = []
    for _ in range(20):
        actions = h.advance_to(h.machine.next_deadline())
        if probes(actions):
            peer_deadlines.append(h.now)
            h.answer(cp(2), at=h.now)
    assert peer_deadlines
    gaps = [b - a for a, b in zip([0.25, *peer_deadlines], peer_deadlines, strict=False)]
    assert all(1.0 <= gap <= 3.0 for gap in gaps)


def test_probe_backoff_after_consecutive_failures() -> None:
    """k-th consecutive failure of one peer: min(cap, interval * 2**k * U)."""
    settings = Settings(
        probe_interval=1.0,
        probe_jitter=0.0,
        probe_backoff_max=6.0,
        discovery_interval=100.0,
        discovery_backoff_max=100.0,
    )
    h = Harness(settings)
    h.start()
    h.discover(cp(1), cp(2))
    gaps = []
    for _ in range(4):
        before = h.now
        h.fail(cp(2), "connection refused")
        while not probes(h.advance_to(h.machine.next_deadline())):
            pass  # other deadlines (the stable margin, lookups) may come first
        gaps.append(h.now - before)
    assert gaps == [2.0, 4.0, 6.0, 6.0]
    assert h.machine.status.contact_points[1].consecutive_failures == 4


def test_the_status_shows_the_last_failure_and_its_kind() -> None:
    h = Harness(Settings(probe_jitter=0.0))
    h.start()
    h.discover(cp(1), cp(2))
    assert h.machine.status.contact_points[1].last_failure is None
    h.feed(ProbeFailed(cp(2), "HTTP 401 from 10.0.0.2:8558: ...", kind="unauthorized"))
    point = h.machine.status.contact_points[1]
    assert (point.last_failure, point.last_failure_kind) == (
        "HTTP 401 from 10.0.0.2:8558: ...",
        "unauthorized",
    )
    h.feed(ProbeFailed(cp(2), "connection refused"))  # a driver that gives no kind
    point = h.machine.status.contact_points[1]
    assert (point.last_failure, point.last_failure_kind) == ("connection refused", None)
    assert point.consecutive_failures == 2


def test_at_most_one_probe_outstanding_per_contact_point() -> None:
    """An unanswered probe is never duplicated, and the machine does not time it out itself."""
    h = Harness()
    h.start()
    h.discover(cp(1), cp(2))
    assert probes(h.advance_to(60.0)) == set()


# --- decision: join an existing cluster ------------------------------------------------------


def test_join_existing_cluster_immediately() -> None:
    """Anchor vector: a fresh answer listing seed nodes -> JoinSeedNodes at once, margin or not."""
    h = Harness(Settings(required_contact_points=5))
    h.start()
    h.discover(*THREE, at=0.1)
    actions = h.answer(cp(3), (node(3), node(2)), at=0.2)
    assert decisions(actions) == [JoinSeedNodes((node(2), node(3)))]
    # Then every peer's prober is closed, once.
    assert [a for a in actions if isinstance(a, StopProbing)] == [
        StopProbing(cp(2)),
        StopProbing(cp(3)),
    ]
    assert h.machine.status.phase is Phase.DECIDED
    assert h.machine.next_deadline() == math.inf


def test_join_seed_nodes_removes_self_sorts_and_truncates() -> None:
    """Seeds: union of fresh answers, self_node removed, sorted, at most max_seed_nodes."""
    h = Harness(Settings(max_seed_nodes=2))
    h.start()
    h.discover(*THREE)
    actions = h.answer(cp(2), ("z", h.self_node, "b", "a"))
    assert decisions(actions) == [JoinSeedNodes(("a", "b"))]


def test_answer_listing_only_self_is_not_a_cluster_to_join() -> None:
    """A peer that lists only this node as seed gives nothing to join (never join ourselves)."""
    h = Harness(Settings(required_contact_points=3))
    h.start()
    h.discover(*THREE)
    assert decisions(h.answer(cp(2), (h.self_node,))) == []


def test_choose_cluster_is_the_same_on_every_node() -> None:
    """Two clusters observed at once: the group whose lowest seed sorts first wins."""
    from bootstrap.core.decision import SeededAnswer, choose_cluster

    seeds, names = choose_cluster(
        [
            SeededAnswer(cp(3), ("m", "z"), "red"),
            SeededAnswer(cp(4), ("k", "q"), "blue"),
            SeededAnswer(cp(5), ("n",), "red"),
        ]
    )
    assert seeds == ["k", "q"]
    assert names == ["blue", "red"]


def test_status_names_multiple_clusters_seen_while_holding_off() -> None:
    """Answers of two clusters held at once: join the lowest-seed one; the reason names both."""
    h = Harness(Settings(probe_jitter=0.0))
    h.start()
    h.discover(*THREE)
    h.answer(cp(2), ("b",), cluster_id="red")
    h.feed(JoinFailed("seed b unreachable"), at=0.5)
    # During the hold-off after a failed join, answers of two clusters arrive.
    h.answer(cp(2), ("b",), cluster_id="red", at=0.6)
    h.answer(cp(3), ("a",), cluster_id="blue", at=0.7)
    assert h.machine.decision is None
    actions = h.advance_to(1.5)
    assert decisions(actions) == [JoinSeedNodes(("a",))]
    assert "multiple clusters observed: blue, red" in h.machine.status.reason


# --- decision: forming a new cluster ---------------------------------------------------------


def test_keep_probing_inside_stable_margin() -> None:
    """Anchor vector: all answered, but discovery changed < stable_margin ago -> wait."""
    h = Harness()
    h.start()
    h.discover(*THREE)
    actions = h.run_healthy_peers(until=4.0)
    assert decisions(actions) == []
    assert h.machine.status.reason == "discovery changed 4.0 s ago, stable margin 5.0 s"
    assert decisions(h.run_healthy_peers(until=4.999)) == []


def test_keep_probing_with_too_few_confirmed() -> None:
    """Anchor vector: fewer fresh answers than required_contact_points -> wait, and say so."""
    h = Harness(Settings(required_contact_points=5, contact_with_all_contact_points=False))
    h.start()
    h.discover(*THREE)
    actions = h.run_healthy_peers(until=30.0)
    assert decisions(actions) == []
    assert h.machine.status.reason == "confirmed 3 of 5 required contact points"


def test_keep_probing_with_one_missing_contact_point() -> None:
    """Anchor vector: one discovered contact point never answers -> no cluster is formed."""
    h = Harness()
    h.start()
    h.discover(cp(1), cp(2), cp(3))
    actions = h.run_healthy_peers(until=30.0, peers={cp(2)})
    assert decisions(actions) == []
    assert h.machine.status.reason == "no fresh answer from 10.0.0.3:8558 (never answered)"


def test_missing_answer_reason_has_age_last_failure_and_count() -> None:
    """The reason for a stale peer gives its age, its last failure and how many more lack one."""
    settings = Settings(
        probe_interval=1.0, probe_jitter=0.0, probe_timeout=1.0, required_contact_points=1
    )
    h = Harness(settings)
    h.start()
    h.discover(cp(1), cp(2), cp(3), cp(4))
    h.answer(cp(2), at=0.5)
    h.fail(cp(2), "timed out", at=1.5 + 1.0)
    h.advance_to(10.0)
    assert h.machine.status.reason == (
        "no fresh answer from 10.0.0.2:8558 (last 9.5 s ago; last failure: timed out) and 2 more"
    )


def test_join_self_when_all_conditions_hold_at_the_margin_deadline() -> None:
    """Anchor vector: forms exactly when the stable margin expires: a deadline, not a tick.

    The anchor's rule (``formation="lowest-address"``) forms at that very instant; the founding
    round's timing is in ``test_founding.py``.
    """
    h = Harness(Settings(stable_margin=5.0, formation="lowest-address"))
    h.start()
    h.discover(*THREE, at=0.25)
    actions = h.run_healthy_peers(until=20.0)
    assert decisions(actions) == [JoinSelf()]
    assert h.machine.status.phase is Phase.DECIDED
    formed_at = [a for a in actions if isinstance(a, JoinSelf)]
    assert formed_at
    # Re-run to find the exact instant: the first handle_timer at >= 5.25 decides.
    h2 = Harness(Settings(stable_margin=5.0, formation="lowest-address"))
    h2.start()
    h2.discover(*THREE, at=0.25)
    h2.run_healthy_peers(until=5.2499)
    assert h2.machine.decision is None
    assert h2.machine.next_deadline() <= 5.25
    h2.advance_to(5.25)
    assert h2.machine.decision == JoinSelf()
    assert h2.machine.status.reason == (
        "formed a new cluster: 10.0.0.1:8558 is the lowest of 3 contact points with a fresh answer"
    )


def test_not_the_lowest_waits_for_the_lowest() -> None:
    """A node that is not the lowest never forms; the reason names who should."""
    h = Harness(me=cp(2), self_node=node(2))
    h.start()
    h.discover(*THREE)
    actions = h.run_healthy_peers(until=30.0)
    assert decisions(actions) == []
    assert h.machine.status.reason == "expecting 10.0.0.1:8558 to form the cluster"


def test_new_cluster_disabled_never_forms_but_joins() -> None:
    """new_cluster_enabled off: never JoinSelf, even as the lowest; joining still works."""
    h = Harness(Settings(new_cluster_enabled=False))
    h.start()
    h.discover(*THREE)
    assert decisions(h.run_healthy_peers(until=30.0)) == []
    assert "new_cluster_enabled is off" in h.machine.status.reason
    assert decisions(h.answer(cp(2), (node(2),))) == [JoinSeedNodes((node(2),))]


def test_self_not_discovered_never_forms() -> None:
    """A node whose own contact point is not discovered may join but never forms."""
    h = Harness(me=cp(1))
    h.start()
    h.discover(cp(2), cp(3))
    assert decisions(h.run_healthy_peers(until=30.0)) == []
    assert h.machine.status.reason == (
        "this node's contact point 10.0.0.1:8558 is not among the 2 discovered contact "
        "points; it can join an existing cluster but will not form one"
    )


def test_expected_contact_points_fast_path_skips_the_margin() -> None:
    """Exactly expected_contact_points discovered and all fresh: form within a round trip."""
    h = Harness(Settings(expected_contact_points=3, stable_margin=60.0, formation="lowest-address"))
    h.start()
    h.discover(*THREE, at=0.1)
    h.answer(cp(2), at=0.11)
    assert h.machine.decision is None
    h.answer(cp(3), at=0.12)
    assert h.machine.decision == JoinSelf()


def test_expected_contact_points_mismatch_waits_out_the_margin() -> None:
    """With a different number discovered than expected the margin applies as usual."""
    h = Harness(Settings(expected_contact_points=4, stable_margin=10.0))
    h.start()
    h.discover(*THREE, at=0.0)
    assert decisions(h.run_healthy_peers(until=9.9)) == []
    assert decisions(h.run_healthy_peers(until=10.5)) == [JoinSelf()]


def test_without_contact_with_all_the_lowest_fresh_forms() -> None:
    """contact_with_all off: required fresh answers suffice; a silent peer does not block."""
    h = Harness(Settings(contact_with_all_contact_points=False, required_contact_points=2))
    h.start()
    h.discover(*THREE)
    actions = h.run_healthy_peers(until=10.0, peers={cp(2)})
    assert decisions(actions) == [JoinSelf()]


def test_stale_lower_peer_expiry_is_a_deadline() -> None:
    """Without contact_with_all, a lower peer's answer expiring lets us form at that instant."""
    settings = Settings(contact_with_all_contact_points=False, probe_jitter=0.0, probe_timeout=1.0)
    h = Harness(settings, me=cp(2), self_node=node(2))
    h.start()
    h.discover(cp(1), cp(2), cp(3))
    h.answer(cp(1), at=0.0)
    h.answer(cp(3), at=0.0)
    # cp(1) stops answering; cp(3) keeps answering.
    actions = h.run_healthy_peers(until=30.0, peers={cp(3)})
    assert decisions(actions) == [JoinSelf()]
    # Formed at the stable margin (5.0) since cp(1) expired at 0 + ttl (2.0) already.
    assert h.machine.status.phase is Phase.DECIDED


def test_decided_machine_ignores_everything_but_join_failed() -> None:
    """After the decision: no actions, no deadlines, late answers and lookups are ignored."""
    h = Harness()
    h.start()
    h.discover(*THREE)
    h.answer(cp(2), (node(2),))
    assert h.feed(ProbeSucceeded(cp(3), "x", ("other",))) == []
    assert h.feed(ContactPointsDiscovered([cp(9)])) == []
    assert h.feed(DiscoveryFailed("x")) == []
    assert h.fail(cp(2), "x") == []
    assert h.feed(ContactedBy(cp(3))) == []
    assert h.advance_to(1000.0) == []
    assert h.machine.decision == JoinSeedNodes((node(2),))


# --- JoinFailed ------------------------------------------------------------------------------


def test_join_failed_returns_to_probing_and_waits_one_probe_period() -> None:
    """JoinFailed: old answers no longer count; probing and deciding resume after one period."""
    settings = Settings(probe_jitter=0.0, probe_interval=2.0)
    h = Harness(settings)
    h.start()
    h.discover(*THREE)
    h.answer(cp(2), (node(2),), at=1.0)
    assert h.machine.decision is not None
    actions = h.feed(JoinFailed("seed unreachable"), at=3.0)
    assert actions == [Lookup()]
    status = h.machine.status
    assert status.phase is Phase.PROBING
    assert status.decision is None
    assert not any(p.fresh for p in status.contact_points if p.contact_point != cp(1))
    assert status.reason.startswith("the last join failed (seed unreachable)")
    # No probe and no decision until one probe interval has passed.
    assert probes(h.advance_to(4.99)) == set()
    assert probes(h.advance_to(5.0)) == {cp(2), cp(3)}


def test_repeated_join_failure_is_retried_at_the_probe_pace() -> None:
    """A join that keeps failing (alone, required 1) is retried once per probe period."""
    settings = Settings(required_contact_points=1, probe_jitter=0.0, stable_margin=1.0)
    h = Harness(settings)
    h.start()
    h.discover(cp(1), at=0.0)
    h.advance_to(1.0)
    assert h.machine.decision == JoinSelf()
    attempts = []
    for _ in range(5):
        h.feed(JoinFailed("membership says no"))
        h.feed(ContactPointsDiscovered([cp(1)]))
        h.advance_to(h.machine.next_deadline())
        while h.machine.decision is None:
            h.advance_to(h.machine.next_deadline())
        attempts.append(h.now)
    gaps = [b - a for a, b in zip([1.0, *attempts], attempts, strict=False)]
    assert all(gap >= 1.0 for gap in gaps)  # never a tight loop


# --- discovery failures, departures, ContactedBy ---------------------------------------------


def test_failed_lookup_blocks_forming_but_not_joining() -> None:
    """After a failed lookup: keep probing, join if offered, but form nothing new."""
    h = Harness()
    h.start()
    h.discover(*THREE)
    h.feed(DiscoveryFailed("SERVFAIL"), at=0.5)
    actions = h.run_healthy_peers(until=30.0)
    assert decisions(actions) == []
    # Probing continues on the last contact points, which all stay fresh.
    assert probes(actions) == {cp(2), cp(3)}
    assert all(p.fresh for p in h.machine.status.contact_points)
    assert "discovery failed (SERVFAIL)" in h.machine.status.reason
    assert decisions(h.answer(cp(3), (node(3),))) == [JoinSeedNodes((node(3),))]


def test_stable_margin_counts_from_the_first_success_after_a_failure() -> None:
    """A failed lookup restarts the stable margin at the next successful one."""
    settings = Settings(discovery_jitter=0.0, stable_margin=5.0)
    h = Harness(settings)
    h.start()
    h.discover(*THREE, at=0.0)
    h.run_healthy_peers(until=1.0)
    h.feed(DiscoveryFailed("timeout"), at=1.0)
    # Lookups are answered; the first success after the failure is at 3.0 (1.0 + 2**1).
    actions = []
    while h.machine.decision is None and h.now < 20.0:
        step = h.run_healthy_peers(until=h.now + 0.5)
        actions += step
        if Lookup() in step:
            h.discover(*THREE)
    assert h.machine.decision == JoinSelf()
    assert h.now == pytest.approx(8.0, abs=0.5)


def test_vanished_contact_point_is_stopped_and_forgotten() -> None:
    """A contact point that leaves discovery gets StopProbing and its answer is dropped."""
    h = Harness(Settings(required_contact_points=9))
    h.start()
    h.discover(*THREE)
    h.answer(cp(3))
    actions = h.discover(cp(1), cp(2))
    assert StopProbing(cp(3)) in actions
    assert [p.contact_point for p in h.machine.status.contact_points] == [cp(1), cp(2)]
    assert cp(3) not in probes(h.advance_to(100.0))
    # A late answer from the forgotten peer is ignored.
    assert h.answer(cp(3)) == []


def test_unsolicited_answer_postpones_the_poll() -> None:
    """A pushed answer (watch) counts and pushes the next probe of that peer a full interval."""
    # (The anchor's rule: under the founding round this node would propose to cp(2) at once.)
    settings = Settings(probe_interval=1.0, probe_jitter=0.2, formation="lowest-address")
    h = Harness(settings)
    h.start()
    h.discover(cp(1), cp(2))
    h.answer(cp(2), at=0.0)
    polls = []
    t = 0.0
    while t < 20.0:
        t += settings.watch_push_interval
        polls += [a for a in h.advance_to(t) if isinstance(a, Probe)]
        h.answer(cp(2), at=t)
    assert polls == []
    assert h.machine.status.contact_points[1].fresh


def test_answers_from_undiscovered_contact_points_are_ignored() -> None:
    """An answer from a contact point discovery never returned changes nothing."""
    h = Harness()
    h.start()
    h.discover(cp(1), cp(2))
    assert h.answer(cp(7), (node(7),)) == []
    assert h.machine.decision is None


def test_contacted_by_undiscovered_makes_a_lookup_due() -> None:
    """A probe from a peer discovery does not know yet brings the next lookup forward."""
    settings = Settings(discovery_interval=10.0, discovery_jitter=0.0, discovery_backoff_max=60.0)
    h = Harness(settings)
    h.start()
    h.discover(cp(1), at=0.0)
    # Not closer than the regular spacing to the last lookup result...
    h.feed(ContactedBy(cp(5)), at=3.0)
    assert Lookup() not in h.advance_to(9.999)
    assert h.advance_to(10.0) == [Lookup()]
    h2 = Harness(Settings(discovery_interval=1.0, discovery_backoff_max=60.0, discovery_jitter=0.0))
    h2.start()
    for _ in range(4):
        h2.feed(DiscoveryFailed("x"))
        h2.advance_to(h2.machine.next_deadline())
    h2.feed(DiscoveryFailed("x"))  # 5th failure: backoff 32 s
    assert h2.machine.next_deadline() - h2.now == 32.0
    # ... but at once when the backoff would otherwise make it wait.
    assert h2.feed(ContactedBy(cp(5)), at=h2.now + 2.0) == [Lookup()]


def test_contacted_by_self_or_healthy_peer_changes_nothing() -> None:
    """ContactedBy from ourselves or from a peer not in backoff leaves the schedule alone."""
    h = Harness()
    h.start()
    h.discover(*THREE)
    h.answer(cp(2))
    deadline = h.machine.next_deadline()
    assert h.feed(ContactedBy(cp(1))) == []
    assert h.feed(ContactedBy(cp(2))) == []
    assert h.machine.next_deadline() == deadline


def test_status_before_start_says_so() -> None:
    """Before start() the status tells the caller what to do."""
    h = Harness()
    assert h.machine.status.reason == "not started: call start(now)"
    assert h.machine.settings == h.settings


def test_contacted_by_unknown_peer_during_a_lookup_waits_for_it() -> None:
    """While a lookup is outstanding, an unknown prober does not queue another one."""
    h = Harness()
    assert h.start() == [Lookup()]
    assert h.feed(ContactedBy(cp(9)), at=1.0) == []
    assert h.machine.next_deadline() == math.inf


def test_waiting_on_names_the_rule_without_live_numbers() -> None:
    """status.waiting_on is a stable tag per rule (drivers log its changes), '' once decided."""
    h = Harness()
    assert h.machine.status.waiting_on == "not-started"
    h.start()
    assert h.machine.status.waiting_on == "discovery"
    h.discover(*THREE)
    assert h.machine.status.waiting_on == "required-contact-points"
    h.run_healthy_peers(until=1.0)
    assert h.machine.status.waiting_on == "stable-margin"
    h.run_healthy_peers(until=6.0)
    assert h.machine.status.waiting_on == ""


# --- who probes whom (DESIGN section 9) ---------------------------------------------------------

SIX = tuple(cp(i) for i in range(1, 7))


def _probed(actions: list[Action]) -> set[ContactPoint]:
    return {action.contact_point for action in actions if isinstance(action, Probe)}


def test_a_node_that_cannot_form_probes_the_fanout_lowest() -> None:
    """Node 5 of six, fanout 3: it probes 1, 2 and 3; node 1, the lowest, probes all five."""
    h = Harness(Settings(probe_fanout=3), me=cp(5), self_node=node(5))
    h.start()
    assert _probed(h.discover(*SIX)) == {cp(1), cp(2), cp(3)}
    assert h.machine.probed_contact_points == {cp(1), cp(2), cp(3)}
    lowest = Harness(Settings(probe_fanout=3))
    lowest.start()
    assert _probed(lowest.discover(*SIX)) == set(SIX[1:])


def test_a_failing_peer_is_passed_over_and_still_probed() -> None:
    """Peer 2 fails: peer 4 joins the set; when 2 answers again, 4 is stopped."""
    h = Harness(Settings(probe_fanout=3), me=cp(6), self_node=node(6))
    h.start()
    h.discover(*SIX)
    actions = h.feed(ProbeFailed(cp(2), "connection refused"))
    assert _probed(actions) == {cp(4)}
    assert h.machine.probed_contact_points == {cp(1), cp(2), cp(3), cp(4)}
    actions = h.answer(cp(2), at=h.now + 2.0)
    assert StopProbing(cp(4)) in actions
    assert h.machine.probed_contact_points == {cp(1), cp(2), cp(3)}
    status = {point.contact_point: point for point in h.machine.status.contact_points}
    assert not status[cp(4)].probed
    assert status[cp(4)].consecutive_failures == 0


def test_every_lower_peer_failing_makes_this_node_the_would_be_founder() -> None:
    """Node 2's only lower peer (1) fails: node 2 probes everyone and reports what it waits for."""
    h = Harness(Settings(probe_fanout=1), me=cp(2), self_node=node(2))
    h.start()
    h.discover(*SIX)
    assert h.machine.probed_contact_points == {cp(1)}
    assert h.machine.founder_waiting is None
    h.feed(ProbeFailed(cp(1), "connection refused"))
    assert h.machine.probed_contact_points == set(SIX) - {cp(2)}
    assert h.machine.founder_waiting == h.machine.status.reason


def test_a_node_that_cannot_form_says_what_the_founder_reports() -> None:
    """The lowest's document carries its waiting reason; the others' status repeats it."""
    founder = Harness(Settings(probe_fanout=2))
    founder.start()
    founder.discover(*SIX)
    reported = founder.machine.founder_waiting
    assert reported is not None
    assert reported == founder.machine.status.reason
    h = Harness(Settings(probe_fanout=2), me=cp(4), self_node=node(4))
    h.start()
    h.discover(*SIX)
    for at in (0.0, 10.0):  # before and after the stable margin
        h.advance_to(at)
        for index in (1, 2):
            h.feed(ProbeSucceeded(cp(index), node(index), (), round=0, waiting="confirmed 3 of 6"))
    assert h.machine.status.reason == (
        "expecting 10.0.0.1:8558 to form the cluster; it reports: confirmed 3 of 6"
    )
    assert h.machine.founder_waiting is None
