"""Events fed into the machine (past tense) and actions drained out of it (imperative).

Values are frozen and validated when built, so a driver bug shows up where the value is made,
not deep inside the machine. Sequences are stored as tuples. Fields may be given by position or
by keyword.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from .contact_point import ContactPoint
from .errors import UsageError

__all__ = [
    "Action",
    "ContactPointsDiscovered",
    "ContactedBy",
    "DiscoveryFailed",
    "Event",
    "JoinFailed",
    "JoinSeedNodes",
    "JoinSelf",
    "Lookup",
    "Probe",
    "ProbeFailed",
    "ProbeSucceeded",
    "StopProbing",
]


def _contact_point(instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, ContactPoint):
        raise UsageError(f"{attribute.name} must be a ContactPoint, got {value!r}")


def _contact_points(
    instance: Any, attribute: attrs.Attribute[Any], value: tuple[object, ...]
) -> None:
    for item in value:
        _contact_point(instance, attribute, item)


def _text(instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str):
        raise UsageError(f"{attribute.name} must be a string, got {value!r}")


def _optional_text(instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        _text(instance, attribute, value)


def _texts(instance: Any, attribute: attrs.Attribute[Any], value: tuple[object, ...]) -> None:
    for item in value:
        _text(instance, attribute, item)


def _to_tuple(value: Sequence[Any]) -> tuple[Any, ...]:
    if isinstance(value, str | bytes):
        # A lone string is a sequence of characters: never what the caller meant.
        raise UsageError(f"expected a sequence of values, got the string {value!r}")
    return tuple(value)


# --- events -----------------------------------------------------------------------------------


@attrs.frozen
class ContactPointsDiscovered:
    """A lookup succeeded with these contact points (possibly none)."""

    contact_points: tuple[ContactPoint, ...] = attrs.field(
        converter=_to_tuple, validator=_contact_points
    )


@attrs.frozen
class DiscoveryFailed:
    """A lookup failed or timed out."""

    reason: str = attrs.field(validator=_text)


@attrs.frozen
class ProbeSucceeded:
    """A peer answered: solicited (a ``Probe``) or pushed over its watch.

    ``cluster_id`` is the optional ``clusterId`` extension of the wire document.
    """

    contact_point: ContactPoint = attrs.field(validator=_contact_point)
    self_node: str = attrs.field(validator=_text)
    seed_nodes: tuple[str, ...] = attrs.field(converter=_to_tuple, validator=_texts)
    cluster_id: str | None = attrs.field(default=None, validator=_optional_text)


@attrs.frozen
class ProbeFailed:
    """A probe failed (refused, timed out, protocol error, ...) or a watch broke."""

    contact_point: ContactPoint = attrs.field(validator=_contact_point)
    reason: str = attrs.field(validator=_text)


@attrs.frozen
class JoinFailed:
    """The membership join raised: the machine goes back to probing."""

    reason: str = attrs.field(validator=_text)


@attrs.frozen
class ContactedBy:
    """A peer probed us and told us its own contact point: it is alive right now."""

    contact_point: ContactPoint = attrs.field(validator=_contact_point)


Event = (
    ContactPointsDiscovered
    | DiscoveryFailed
    | ProbeSucceeded
    | ProbeFailed
    | JoinFailed
    | ContactedBy
)

# --- actions ----------------------------------------------------------------------------------


@attrs.frozen
class Lookup:
    """Run discovery now (the driver cancels it after ``discovery_timeout``)."""


@attrs.frozen
class Probe:
    """Probe this contact point now: one request (or a ``probe`` message over its watch)."""

    contact_point: ContactPoint = attrs.field(validator=_contact_point)


@attrs.frozen
class StopProbing:
    """Stop probing this contact point and close its connection (it left, or we decided)."""

    contact_point: ContactPoint = attrs.field(validator=_contact_point)


@attrs.frozen
class JoinSelf:
    """Form a new cluster: this node is its first member."""


@attrs.frozen
class JoinSeedNodes:
    """Join the cluster these seed nodes belong to."""

    seed_nodes: tuple[str, ...] = attrs.field(converter=_to_tuple, validator=_texts)


Action = Lookup | Probe | StopProbing | JoinSelf | JoinSeedNodes
Decision = JoinSelf | JoinSeedNodes
