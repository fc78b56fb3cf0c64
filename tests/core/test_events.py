"""Events and actions are validated when built, so a driver bug shows where the value is made."""

from __future__ import annotations

import pytest

from bootstrap import (
    ContactPointsDiscovered,
    JoinSeedNodes,
    Probe,
    ProbeFailed,
    ProbeSucceeded,
    UsageError,
)

from .harness import cp


def test_sequences_become_tuples() -> None:
    """Lists given by drivers are stored as tuples (frozen, hashable values)."""
    event = ProbeSucceeded(cp(2), "n", ["a", "b"])
    assert event.seed_nodes == ("a", "b")
    assert ContactPointsDiscovered([cp(1)]).contact_points == (cp(1),)
    assert hash(JoinSeedNodes(["a"])) == hash(JoinSeedNodes(("a",)))


def test_keyword_and_positional_construction_agree() -> None:
    """Fields may be given by position or by keyword."""
    assert Probe(cp(1)) == Probe(contact_point=cp(1))
    assert ProbeFailed(cp(1), "x") == ProbeFailed(contact_point=cp(1), reason="x")


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Probe("10.0.0.1:8558"), "contact_point must be a ContactPoint"),
        (lambda: ContactPointsDiscovered(["10.0.0.1"]), "must be a ContactPoint"),
        (lambda: ContactPointsDiscovered("10.0.0.1"), "got the string"),
        (lambda: ProbeSucceeded(cp(1), None, []), "self_node must be a string"),
        (lambda: ProbeSucceeded(cp(1), "n", [1]), "seed_nodes must be a string"),
        (lambda: ProbeSucceeded(cp(1), "n", [], cluster_id=7), "cluster_id must be a string"),
        (lambda: ProbeFailed(cp(1), None), "reason must be a string"),
    ],
)
def test_bad_values_are_refused_with_the_field_name(build: object, message: str) -> None:
    """A wrongly typed field raises UsageError that names the field."""
    with pytest.raises(UsageError, match=message):
        build()  # type: ignore[operator]
