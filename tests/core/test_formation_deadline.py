"""``formation_deadline``: past it without a decision the machine says so (DESIGN section 10)."""

from __future__ import annotations

import math

import pytest

from bootstrap import JoinFailed, JoinSelf, Settings, UsageError

from .harness import Harness, cp

THREE = (cp(1), cp(2), cp(3))


def test_without_a_deadline_the_machine_is_never_overdue() -> None:
    h = Harness(Settings(required_contact_points=5))
    h.start()
    h.discover(*THREE, at=0.0)
    h.run_healthy_peers(until=10_000.0)
    assert not h.machine.formation_overdue
    assert not h.machine.status.formation_overdue


def test_past_the_deadline_undecided_the_machine_is_overdue_and_its_reason_says_why() -> None:
    """The machine wakes at the deadline (a timer of its own), not at the next probe."""
    settings = Settings(
        required_contact_points=5, formation_deadline=25.0, probe_interval=10.0, probe_jitter=0.0
    )
    h = Harness(settings)
    h.start(at=100.0)
    h.discover(*THREE, at=100.0)
    h.run_healthy_peers(until=124.99)
    assert not h.machine.formation_overdue
    waiting = h.machine.reason
    # Probes fall due at 130.03, answers expire later still: 125.0 is the deadline's own timer.
    assert h.machine.next_deadline() == 125.0
    h.advance_to(125.0)
    assert h.machine.formation_overdue
    assert h.machine.status.formation_overdue
    assert h.machine.reason.startswith("no decision within the formation deadline (25 s): ")
    assert waiting.split(":")[0] in h.machine.reason  # and still what it waits for


def test_a_decision_ends_it_and_a_failed_join_after_the_deadline_brings_it_back() -> None:
    settings = Settings(required_contact_points=3, stable_margin=50.0, formation_deadline=20.0)
    h = Harness(settings)
    h.start()
    h.discover(*THREE, at=0.0)
    h.run_healthy_peers(until=25.0)
    assert h.machine.formation_overdue
    h.run_healthy_peers(until=60.0)
    assert h.machine.decision == JoinSelf()
    assert not h.machine.formation_overdue
    assert not h.machine.reason.startswith("no decision")
    h.feed(JoinFailed("the service refused"), at=61.0)
    assert h.machine.formation_overdue  # undecided again, long past the deadline


@pytest.mark.parametrize("deadline", [0, -1.0, math.inf, math.nan, True, "10"])
def test_a_deadline_must_be_a_positive_finite_duration(deadline: object) -> None:
    with pytest.raises(UsageError, match="formation_deadline must be"):
        Settings(formation_deadline=deadline)  # type: ignore[arg-type]
