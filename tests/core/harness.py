"""A scripted clock around one BootstrapMachine: the core's unit tests drive it by hand.

Time only moves when a test says so; ``advance_to`` fires every deadline on the way exactly as
a driver would (``handle_timer(max(deadline, now))``) and returns the actions that came out.
"""

from __future__ import annotations

import math
import random

from bootstrap import (
    Action,
    BootstrapMachine,
    ContactPoint,
    ContactPointsDiscovered,
    Event,
    Probe,
    ProbeFailed,
    ProbeSucceeded,
    Promise,
    Settings,
    StopProbing,
)


def cp(last_octet: int, port: int = 8558) -> ContactPoint:
    """Contact point 10.0.0.<last_octet>:<port>."""
    return ContactPoint(f"10.0.0.{last_octet}", port)


def node(last_octet: int) -> str:
    """The self_node of the node at cp(last_octet)."""
    return f"tcp://svc@10.0.0.{last_octet}:2552"


class Harness:
    """One machine, a scripted clock, and the actions it emitted."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        me: ContactPoint | None = None,
        self_node: str | None = None,
        seed: int = 0,
        first_round: int = 0,
    ) -> None:
        self.settings = settings or Settings()
        self.me = me or cp(1)
        self.self_node = self_node or node(1)
        self.machine = BootstrapMachine(
            self.settings,
            self_contact_point=self.me,
            self_node=self.self_node,
            rng=random.Random(seed),
            first_round=first_round,
        )
        self.now = 0.0
        # Probes emitted and not yet answered, with the time they went out.
        self.unanswered: dict[ContactPoint, float] = {}
        # The promise each scripted peer holds: a scripted peer is free and promises the first
        # proposal it gets (a later round of the same candidate replaces it), as a healthy peer
        # of DESIGN section 8 does. Its answers carry it.
        self.promises: dict[ContactPoint, Promise] = {}

    def drain(self) -> list[Action]:
        actions = []
        while (action := self.machine.next_action()) is not None:
            actions.append(action)
            if isinstance(action, Probe):
                self.unanswered[action.contact_point] = self.now
                if action.round is not None:
                    held = self.promises.get(action.contact_point)
                    if held is None or (held.to == self.me and held.round < action.round):
                        self.promises[action.contact_point] = Promise(self.me, action.round)
            elif isinstance(action, StopProbing):
                self.unanswered.pop(action.contact_point, None)
        return actions

    def start(self, at: float = 0.0) -> list[Action]:
        self.now = at
        self.machine.start(at)
        return self.drain()

    def feed(self, event: Event, at: float | None = None) -> list[Action]:
        """Handle ``event`` at ``at`` (default: now), after firing the timers due before it."""
        actions = self.advance_to(self.now if at is None else at)
        self.machine.handle(event, self.now)
        return actions + self.drain()

    def advance_to(self, at: float) -> list[Action]:
        """Move the clock to ``at``, firing every deadline on the way; return what came out."""
        actions: list[Action] = []
        while (deadline := self.machine.next_deadline()) <= at:
            self.now = max(deadline, self.now)
            self.machine.handle_timer(self.now)
            actions += self.drain()
        self.now = at
        self.machine.handle_timer(at)
        return actions + self.drain()

    def discover(self, *contact_points: ContactPoint, at: float | None = None) -> list[Action]:
        return self.feed(ContactPointsDiscovered(contact_points), at)

    def answer(
        self,
        contact_point: ContactPoint,
        seed_nodes: tuple[str, ...] = (),
        *,
        at: float | None = None,
        cluster_id: str | None = None,
    ) -> list[Action]:
        return self.feed(
            ProbeSucceeded(
                contact_point,
                f"node-at-{contact_point}",
                seed_nodes,
                cluster_id,
                round=0,
                promise=self.promises.get(contact_point),
            ),
            at,
        )

    def run_healthy_peers(
        self,
        until: float,
        *,
        latency: float = 0.01,
        peers: set[ContactPoint] | None = None,
        seed_nodes: tuple[str, ...] = (),
    ) -> list[Action]:
        """Advance to ``until``; every Probe (of ``peers``, or all) is answered after ``latency``.

        Each answer lists ``seed_nodes``.

        Probes of other peers stay unanswered (a silent peer: the driver never reports).
        """
        emitted: list[Action] = []
        while True:
            answerable = {
                contact_point: max(sent + latency, self.now)
                for contact_point, sent in self.unanswered.items()
                if peers is None or contact_point in peers
            }
            next_answer = min(answerable.values(), default=math.inf)
            deadline = self.machine.next_deadline()
            if min(deadline, next_answer) > until:
                break
            if next_answer <= deadline:
                for contact_point, due in sorted(answerable.items(), key=lambda item: item[1]):
                    if due == next_answer:
                        del self.unanswered[contact_point]
                        emitted += self.answer(contact_point, seed_nodes, at=due)
            else:
                emitted += self.advance_to(deadline)
        return emitted + self.advance_to(until)

    def fail(
        self, contact_point: ContactPoint, reason: str, *, at: float | None = None
    ) -> list[Action]:
        """Report the outstanding probe of ``contact_point`` as failed."""
        self.unanswered.pop(contact_point, None)
        return self.feed(ProbeFailed(contact_point, reason), at)
