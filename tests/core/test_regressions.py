"""Regression tests named after the bugs of the anchors (Akka Management, Akka.NET).

Each test reproduces the situation that broke the anchor and asserts our behaviour. Scripted
clock; seeded randomness.
"""

from __future__ import annotations

import pytest

from bootstrap import (
    ContactedBy,
    ContactPoint,
    JoinSeedNodes,
    JoinSelf,
    Probe,
    Settings,
    StopProbing,
)

from .harness import Harness, cp, node


def decisions(actions: list[object]) -> list[object]:
    return [a for a in actions if isinstance(a, JoinSelf | JoinSeedNodes)]


@pytest.mark.parametrize("probe_interval", [5.0, 10.0])
def test_slow_probe_interval_still_forms(probe_interval: float) -> None:
    """Akka.NET: a 3 s freshness window at a 5 s interval never formed; ours is derived."""
    settings = Settings(probe_interval=probe_interval, probe_backoff_max=30.0, stable_margin=25.0)
    h = Harness(settings)
    h.start()
    h.discover(cp(1), cp(2), cp(3), cp(4), at=0.0)
    # Answers take most of the probe timeout: the longest gap a healthy peer can produce.
    h.run_healthy_peers(until=40.0, latency=settings.probe_timeout * 0.95)
    assert h.machine.decision == JoinSelf()


def test_anchor_window_would_have_been_stale() -> None:
    """The derived window exceeds the anchor's 3 s (and interval + 3 s) at every interval."""
    for interval in (1.0, 5.0, 10.0, 30.0):
        settings = Settings(probe_interval=interval, probe_backoff_max=60.0)
        longest_gap = interval * (1 + settings.probe_jitter) + settings.probe_timeout
        assert settings.observation_ttl >= longest_gap > 3.0


def test_jitter_0_9_still_forms() -> None:
    """Large jitter stretches gaps between answers; freshness accounts for it."""
    settings = Settings(probe_jitter=0.9, discovery_jitter=0.9, stable_margin=12.0)
    h = Harness(settings, seed=7)
    h.start()
    h.discover(cp(1), cp(2), cp(3), cp(4), cp(5))
    h.run_healthy_peers(until=30.0, latency=2.9)
    assert h.machine.decision == JoinSelf()


def test_one_timeout_does_not_discard_a_fresh_answer() -> None:
    """Akka: one timed-out probe killed the prober / dropped the answer; ours expires by age."""
    settings = Settings(
        probe_jitter=0.0,
        probe_interval=1.0,
        probe_timeout=3.0,
        stable_margin=1.5,
        formation="lowest-address",  # forms at the margin's instant: no round trip to wait for
    )
    h = Harness(settings)
    h.start()
    h.discover(cp(1), cp(2), at=0.0)
    h.answer(cp(2), at=0.0)
    h.advance_to(1.0)  # second probe goes out...
    h.fail(cp(2), "timed out", at=1.2)  # ...and times out
    status = h.machine.status.contact_points[1]
    assert status.fresh
    assert status.consecutive_failures == 1
    h.advance_to(1.5)
    assert h.machine.decision == JoinSelf()  # the answer from t=0 still counts (ttl 4 s)


def test_substring_self_match_does_not_form() -> None:
    """Akka: self-matching by substring made 10.0.0.1 think it was 10.0.0.10. Exact here."""
    h = Harness(me=ContactPoint("10.0.0.1", 8558))
    h.start()
    h.discover(ContactPoint("10.0.0.10", 8558), ContactPoint("10.0.0.100", 8558))
    h.run_healthy_peers(until=60.0)
    assert h.machine.decision is None
    assert "is not among the 2 discovered contact points" in h.machine.status.reason


def test_substring_port_match_does_not_form() -> None:
    """Neither does a port that contains ours as a substring (8558 vs 18558)."""
    h = Harness(me=ContactPoint("10.0.0.1", 8558))
    h.start()
    h.discover(ContactPoint("10.0.0.1", 18558), cp(2))
    h.run_healthy_peers(until=60.0)
    assert h.machine.decision is None


def test_prober_of_vanished_contact_point_is_stopped() -> None:
    """Akka.NET: probers of contact points that left discovery ran on. Ours get StopProbing."""
    h = Harness(Settings(required_contact_points=5))
    h.start()
    h.discover(cp(1), cp(2), cp(3))
    h.fail(cp(3), "connection refused")
    actions = h.discover(cp(1), cp(2), at=0.5)
    assert actions.count(StopProbing(cp(3))) == 1
    later = h.run_healthy_peers(until=120.0)
    assert Probe(cp(3)) not in later


def test_late_starter_confirmed_in_one_round_trip_despite_backoff() -> None:
    """A peer in 15 s backoff that probes us is probed back at once, not after the backoff."""
    h = Harness(Settings(probe_backoff_max=15.0))
    h.start()
    h.discover(cp(1), cp(2))
    for _ in range(5):  # cp(2) is not up yet: refused again and again
        h.fail(cp(2), "connection refused")
        h.advance_to(h.machine.next_deadline())
    h.fail(cp(2), "connection refused")
    assert h.machine.next_deadline() - h.now >= 15.0 * 0.8
    # It starts and its first probe reaches us:
    assert h.feed(ContactedBy(cp(2)), at=h.now + 0.1) == [Probe(cp(2))]


def test_lowest_address_is_canonical_not_textual() -> None:
    """'10.0.0.10' sorts after '10.0.0.9' (numeric), although it is textually smaller."""
    me = ContactPoint("10.0.0.9", 8558)
    h = Harness(me=me, self_node=node(9))
    h.start()
    h.discover(me, ContactPoint("10.0.0.10", 8558))
    h.run_healthy_peers(until=10.0)
    assert h.machine.decision == JoinSelf()


def test_restarted_founder_listed_as_the_only_seed_never_forms_a_second_cluster() -> None:
    """Found by the fault tests: a founder restarted on its address must not form a 2nd cluster.

    With max_seed_nodes=1 its peers advertise only the old founder, i.e. this node's own name;
    dropping it left "no cluster" and the lowest node, with every answer fresh, formed anew.
    """
    h = Harness(Settings(required_contact_points=3, stable_margin=1.0, max_seed_nodes=1))
    h.start()
    h.discover(cp(1), cp(2), cp(3), at=0.0)
    h.answer(cp(2), (h.self_node,), at=0.1)
    h.answer(cp(3), (h.self_node,), at=0.1)
    actions = h.run_healthy_peers(until=10.0, seed_nodes=(h.self_node,))
    assert decisions(actions) == []
    assert h.machine.status.waiting_on == "listed-as-seed"
    assert "lists only this node's own name" in h.machine.status.reason
    # Once a peer names another member, the node joins through it.
    actions = h.answer(cp(2), (h.self_node, node(2)), at=h.now)
    assert decisions(actions) == [JoinSeedNodes((node(2),))]


def test_an_answer_listing_only_this_node_blocks_forming_only_while_fresh() -> None:
    """When the peer stops listing this node, forming is allowed again."""
    h = Harness(Settings(required_contact_points=2, stable_margin=1.0, formation="lowest-address"))
    h.start()
    h.discover(cp(1), cp(2), at=0.0)
    h.answer(cp(2), (h.self_node,), at=0.1)
    h.advance_to(2.0)  # past the stable margin: only the answer listing this node holds it back
    assert h.machine.decision is None
    assert h.machine.status.waiting_on == "listed-as-seed"
    actions = h.answer(cp(2), (), at=2.1)
    assert decisions(actions) == [JoinSelf()]
