"""What a node reports about itself: phase, the reason it waits, and each contact point's state."""

from __future__ import annotations

import enum

import attrs

from .contact_point import ContactPoint
from .events import Decision

__all__ = ["ContactPointStatus", "Phase", "Status"]


class Phase(enum.Enum):
    """Where the bootstrap process is."""

    DISCOVERING = "discovering"  # no successful lookup yet, or nothing but this node discovered
    PROBING = "probing"  # peers discovered; probing them until a decision holds
    DECIDED = "decided"  # a decision was emitted (it stays until a JoinFailed)


@attrs.frozen(kw_only=True)
class ContactPointStatus:
    """One discovered contact point as the machine sees it."""

    contact_point: ContactPoint
    fresh: bool
    last_observed_at: float | None
    seed_nodes: tuple[str, ...]
    consecutive_failures: int
    #: This node probes it (DESIGN section 9): a node that cannot form probes only a few of
    #: the lowest; the answers of the others are neither held nor needed.
    probed: bool = True
    #: The reason of its last failed probe (kept once it answers again, as the log does) and
    #: the kind of that failure (``ProbeFailed.kind``); ``None`` if none failed while probed.
    last_failure: str | None = None
    last_failure_kind: str | None = None


@attrs.frozen(kw_only=True)
class Status:
    """A snapshot of the machine: ``reason`` says in plain English what it is waiting for."""

    phase: Phase
    reason: str
    decision: Decision | None
    contact_points: tuple[ContactPointStatus, ...]
    #: A short stable tag of the rule the node waits on ("stable-margin", "contact-with-all",
    #: ...; "" once decided): drivers log when it changes, since ``reason`` carries live ages.
    waiting_on: str = ""
    #: ``Settings.formation_deadline`` has passed without a decision (see the machine's
    #: :attr:`~bootstrap.core.BootstrapMachine.formation_overdue`).
    formation_overdue: bool = False
