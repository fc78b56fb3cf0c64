"""The Phase diagram in docs/design.md is checked against the machine, both ways.

Testing policy: the documented diagram is the single source (STYLE practice 10: no hand-kept
duplicate). The test parses the first ```mermaid block holding ``stateDiagram-v2`` and
extracts its ``A --> B`` edges (labels after ``:`` ignored; ``[*] --> X`` names the initial
phase). Then:

* every transition the machine makes while driven by random event sequences (here) and by the
  rule-based state machine (``test_machine_properties``) is a documented edge, so the diagram
  never promises less than the machine does;
* every documented edge is taken by one of the scripted scenarios below, so the diagram never
  documents a transition the machine cannot make.

Time is scripted (a float the test advances; the machine never reads a clock) and randomness
comes from a seeded ``random.Random``. Self-loops are not transitions and are not listed.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bootstrap import (
    BootstrapMachine,
    ContactPoint,
    ContactPointsDiscovered,
    Event,
    JoinFailed,
    JoinSeedNodes,
    JoinSelf,
    Phase,
    ProbeSucceeded,
    Settings,
    UsageError,
)

from .. import strategies

DESIGN_DOC = Path(__file__).resolve().parents[2] / "docs" / "design.md"

_MERMAID_BLOCK = re.compile(r"^```mermaid[ \t]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
_EDGE = re.compile(r"^\s*(\[\*\]|[\w-]+)\s*-->\s*(\[\*\]|[\w-]+)\s*(?::.*)?$")

Edge = tuple[str, str]


def documented_phase_diagram(path: Path = DESIGN_DOC) -> tuple[str, frozenset[Edge]]:
    """The initial phase and the transitions of the first mermaid stateDiagram-v2 in ``path``."""
    text = path.read_text(encoding="utf-8")
    for block in _MERMAID_BLOCK.findall(text):
        if "stateDiagram-v2" not in block:
            continue
        initial: list[str] = []
        edges: set[Edge] = set()
        for line in block.splitlines():
            match = _EDGE.match(line)
            if match is None:
                continue
            source, target = match.groups()
            if source == "[*]":
                initial.append(target)
            elif target != "[*]" and source != target:
                edges.add((source, target))
        assert len(initial) == 1, f"{path}: expected one '[*] --> phase' line, got {initial}"
        return initial[0], frozenset(edges)
    raise AssertionError(f"{path} has no ```mermaid block with stateDiagram-v2")


def documented_phase_edges() -> frozenset[Edge]:
    """The documented Phase transitions (used by the property tests to check what they see)."""
    return documented_phase_diagram()[1]


ME = ContactPoint("10.0.0.1", 8558)
PEER = ContactPoint("10.0.0.2", 8558)
ME_NODE = "tcp://svc@10.0.0.1:2552"


class PhaseRecorder:
    """A machine on a scripted clock that records every phase change it makes."""

    def __init__(self, settings: Settings, *, seed: int = 0) -> None:
        self.machine = BootstrapMachine(
            settings, self_contact_point=ME, self_node=ME_NODE, rng=random.Random(seed)
        )
        self.now = 0.0
        self.phase = self.machine.status.phase
        self.edges: set[Edge] = set()
        self.machine.start(self.now)
        self._observe()

    def _observe(self) -> None:
        while self.machine.next_action() is not None:
            pass
        phase = self.machine.status.phase
        if phase != self.phase:
            self.edges.add((self.phase.value, phase.value))
            self.phase = phase

    def feed(self, event: Event, delay: float = 0.0) -> None:
        self.advance(delay)
        self.machine.handle(event, self.now)
        self._observe()

    def advance(self, delay: float) -> None:
        """Move time forward by ``delay``, waking the machine at every deadline on the way."""
        until = self.now + delay
        while (deadline := self.machine.next_deadline()) <= until:
            self.now = max(self.now, deadline)
            self.machine.handle_timer(self.now)
            self._observe()
        self.now = until
        self.machine.handle_timer(self.now)
        self._observe()


def _two_nodes_form() -> PhaseRecorder:
    # The anchor's rule forms at the margin's instant; the founding round adds a round trip.
    recorder = PhaseRecorder(Settings(stable_margin=1.0, formation="lowest-address"))
    recorder.feed(ContactPointsDiscovered([ME, PEER]), 0.1)
    recorder.feed(ProbeSucceeded(PEER, "tcp://svc@10.0.0.2:2552", ()), 0.1)
    recorder.advance(1.0)
    assert isinstance(recorder.machine.decision, JoinSelf)
    return recorder


def _peer_leaves() -> PhaseRecorder:
    recorder = PhaseRecorder(Settings())
    recorder.feed(ContactPointsDiscovered([ME, PEER]), 0.1)
    recorder.feed(ContactPointsDiscovered([ME]), 1.0)
    return recorder


def _alone_forms() -> PhaseRecorder:
    recorder = PhaseRecorder(Settings(required_contact_points=1, stable_margin=1.0))
    recorder.feed(ContactPointsDiscovered([ME]), 0.1)
    recorder.advance(1.5)
    assert isinstance(recorder.machine.decision, JoinSelf)
    return recorder


def _join_existing_cluster() -> PhaseRecorder:
    recorder = PhaseRecorder(Settings())
    recorder.feed(ContactPointsDiscovered([ME, PEER]), 0.1)
    recorder.feed(ProbeSucceeded(PEER, "tcp://svc@10.0.0.2:2552", ["tcp://svc@x:2552"]), 0.1)
    assert isinstance(recorder.machine.decision, JoinSeedNodes)
    return recorder


def _join_fails_with_peers() -> PhaseRecorder:
    recorder = _two_nodes_form()
    recorder.feed(JoinFailed("membership refused"), 0.1)
    return recorder


def _join_fails_alone() -> PhaseRecorder:
    recorder = _alone_forms()
    recorder.feed(JoinFailed("membership refused"), 0.1)
    return recorder


SCENARIOS: dict[str, Callable[[], PhaseRecorder]] = {
    "two nodes form": _two_nodes_form,
    "a peer leaves discovery": _peer_leaves,
    "a lone node forms": _alone_forms,
    "join an existing cluster": _join_existing_cluster,
    "join fails with peers": _join_fails_with_peers,
    "join fails alone": _join_fails_alone,
}


def test_diagram_names_exactly_the_phases() -> None:
    """The diagram's states are the Phase values and it starts in the machine's initial phase."""
    initial, edges = documented_phase_diagram()
    states = {state for edge in edges for state in edge} | {initial}
    assert states == {phase.value for phase in Phase}
    machine = BootstrapMachine(Settings(), self_contact_point=ME, self_node=ME_NODE)
    assert machine.status.phase.value == initial == Phase.DISCOVERING.value
    machine.start(0.0)
    assert machine.status.phase.value == initial


def test_every_documented_edge_is_reachable() -> None:
    """Each documented transition is taken by some scripted scenario, and nothing else is."""
    observed: dict[Edge, list[str]] = {}
    for name, scenario in SCENARIOS.items():
        for edge in scenario().edges:
            observed.setdefault(edge, []).append(name)
    documented = documented_phase_edges()
    assert set(observed) - documented == set(), "undocumented transitions"
    assert documented - set(observed) == set(), "documented but never taken"


@st.composite
def _random_drives(draw: st.DrawFn) -> tuple[Settings, list[ContactPoint], list[strategies.Step]]:
    settings = draw(strategies.bootstrap_settings(stable_margin=draw(strategies.durations(0.1, 3))))
    pool = draw(strategies.contact_point_pools(fallback_port=settings.fallback_port, max_size=4))
    steps = draw(
        strategies.event_sequences(
            [*pool, ME.with_port(settings.fallback_port)],
            self_node=ME_NODE,
            fallback_port=settings.fallback_port,
            max_delay=4.0,
        )
    )
    return settings, pool, steps


@given(_random_drives(), st.integers(0, 2**32))
def test_random_drives_take_only_documented_edges(
    drive: tuple[Settings, list[ContactPoint], list[strategies.Step]], seed: int
) -> None:
    """Random event sequences make the machine take documented transitions only."""
    settings, _, steps = drive
    recorder = PhaseRecorder(settings, seed=seed)
    for step in steps:
        if step.event is None:
            recorder.advance(step.delay)
            continue
        if isinstance(step.event, JoinFailed) and recorder.machine.decision is None:
            continue  # misuse: checked by the property tests
        recorder.feed(step.event, step.delay)
    assert recorder.edges <= documented_phase_edges()
    assert not math.isnan(recorder.machine.next_deadline())


def test_join_failed_without_decision_is_misuse() -> None:
    """Feeding JoinFailed with no decision outstanding is a UsageError, not a phase change."""
    recorder = PhaseRecorder(Settings())
    with pytest.raises(UsageError, match="no decision"):
        recorder.feed(JoinFailed("x"))
    assert recorder.edges == set()
