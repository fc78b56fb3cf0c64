"""Events fed into the machine (past tense) and actions drained out of it (imperative).

Values are frozen and validated when built, so a driver bug shows up where the value is made,
not deep inside the machine. Sequences are stored as tuples. The fields DESIGN section 3 shows
may be given by position or by keyword; every field added since (the founding round's, section 8)
is keyword-only, so positional construction means exactly what the design of record says.
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
    "Promise",
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


#: The largest founding-round number (the wire's bound too: a JSON number is exact up to it).
MAX_ROUND = 2**53


def _round(instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ROUND:
        raise UsageError(f"{attribute.name} must be an integer in 0..2**53, got {value!r}")


def _optional_round(instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        _round(instance, attribute, value)


def _flag(instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, bool):
        raise UsageError(f"{attribute.name} must be True or False, got {value!r}")


def _to_tuple(value: Sequence[Any]) -> tuple[Any, ...]:
    if isinstance(value, str | bytes):
        # A lone string is a sequence of characters: never what the caller meant.
        raise UsageError(f"expected a sequence of values, got the string {value!r}")
    return tuple(value)


# --- values -----------------------------------------------------------------------------------


@attrs.frozen
class Promise:
    """A node's promise to candidate ``to`` for its founding round ``round`` (DESIGN section 8).

    Until it is released the promiser starts no founding round and promises no one else.
    """

    to: ContactPoint = attrs.field(validator=_contact_point)
    round: int = attrs.field(validator=_round)


def _optional_promise(instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, Promise):
        raise UsageError(f"{attribute.name} must be a Promise or None, got {value!r}")


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

    ``cluster_id`` is the optional ``clusterId`` extension of the wire document. The founding
    round's fields (DESIGN section 8) say where the peer stands: ``round`` is its latest round
    number (``None``: the peer speaks no founding round, as an Akka node, and can promise
    nothing), ``candidate`` that it is proposing in that round, ``promise`` the promise it holds,
    ``founding`` that it decided to form a cluster whose members it does not list yet.
    ``waiting`` is what the peer waits for while it is the would-be founder (DESIGN section 9),
    shown in the status of the nodes that expect it to form.
    """

    contact_point: ContactPoint = attrs.field(validator=_contact_point)
    self_node: str = attrs.field(validator=_text)
    seed_nodes: tuple[str, ...] = attrs.field(converter=_to_tuple, validator=_texts)
    cluster_id: str | None = attrs.field(default=None, validator=_optional_text)
    round: int | None = attrs.field(default=None, kw_only=True, validator=_optional_round)
    candidate: bool = attrs.field(default=False, kw_only=True, validator=_flag)
    promise: Promise | None = attrs.field(default=None, kw_only=True, validator=_optional_promise)
    founding: bool = attrs.field(default=False, kw_only=True, validator=_flag)
    waiting: str | None = attrs.field(default=None, kw_only=True, validator=_optional_text)


@attrs.frozen
class ProbeFailed:
    """A probe failed (refused, timed out, protocol error, ...) or a watch broke."""

    contact_point: ContactPoint = attrs.field(validator=_contact_point)
    reason: str = attrs.field(validator=_text)
    #: What failed, as a short tag (the prober's ``FailureKind``: "refused", "unauthorized",
    #: "tls", ...): shown in the status so that tools such as ``doctor`` need not parse reasons.
    #: Not compared: it classifies ``reason``, and ``ProbeFailed(point, reason)`` (the API of
    #: record) must still equal what the prober reports.
    kind: str | None = attrs.field(default=None, kw_only=True, eq=False, validator=_optional_text)


@attrs.frozen
class JoinFailed:
    """The membership join raised: the machine goes back to probing."""

    reason: str = attrs.field(validator=_text)


@attrs.frozen
class ContactedBy:
    """A peer probed us and told us its own contact point: it is alive right now.

    ``proposal_round`` is set when the probe asked for a promise for that founding round (the
    ``Bootstrap-Round`` header, or ``propose <r>`` on a watch). Feed it before answering: the
    answer must show whether this node promised.
    """

    contact_point: ContactPoint = attrs.field(validator=_contact_point)
    proposal_round: int | None = attrs.field(default=None, kw_only=True, validator=_optional_round)


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
    """Probe this contact point now: one request (or a ``probe`` message over its watch).

    With ``round`` set the probe asks for a promise for that founding round (DESIGN section 8).
    """

    contact_point: ContactPoint = attrs.field(validator=_contact_point)
    round: int | None = attrs.field(default=None, kw_only=True, validator=_optional_round)


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
