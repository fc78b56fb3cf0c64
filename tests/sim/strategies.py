"""Hypothesis strategies for simulated deployments (shared by the ``tests/sim`` properties)."""

from __future__ import annotations

import itertools
import math

import attrs
from hypothesis import strategies as st

from bootstrap.core.settings import Settings
from bootstrap.sim import Latency, Scenario

# A run costs about one event per message, and a full mesh exchanges
# nodes * (nodes - 1) messages every probe_interval * (1 - probe_jitter) (a watch pushes that
# often; polls are no more frequent). Beyond this many messages per simulated run the probe
# interval is stretched, so the largest meshes are tested at intervals they can afford and
# the suite stays within its time budget. Small meshes still reach 0.1 s with jitter 0.9.
MESSAGE_BUDGET = 100_000


def latencies() -> st.SearchStrategy[Latency]:
    """Uniform or long-tailed one-way latencies from 0 to 70 ms."""
    low = st.floats(0.0, 0.02)
    width = st.floats(0.0, 0.05)
    return st.builds(
        lambda low, width, tail: (
            Latency(low=low, high=low + width, mean_extra=max(width / 4, 1e-6))
            if tail
            else Latency.uniform(low, low + width)
        ),
        low,
        width,
        st.booleans(),
    )


@st.composite
def formation_scenarios(draw: st.DrawFn, *, max_nodes: int = 30) -> Scenario:
    """Consistent discovery, any transport, interval, jitter, latency, start spread and loss."""
    # Large meshes half the time: hypothesis would otherwise mostly try small ones.
    nodes = draw(st.integers(2, max_nodes) | st.integers(max(2, max_nodes - 5), max_nodes))
    jitter = draw(st.one_of(st.just(0.0), st.just(0.9), st.floats(0.0, 0.9)))
    # Log-uniform: sub-second intervals (the expensive, timing-sensitive ones) as often as long.
    interval = math.exp(draw(st.floats(math.log(0.1), math.log(30.0))))
    start_spread = draw(st.floats(0.0, 10.0))
    stable_margin = draw(st.floats(0.5, 10.0))
    # Virtual time the run lasts, roughly: starts, the margin, and a few probe periods.
    duration = start_spread + stable_margin + 12.0
    fastest = interval * (1 - jitter)
    needed = nodes * (nodes - 1) * duration / MESSAGE_BUDGET
    if fastest < needed:
        interval = needed / (1 - jitter)
    settings = Settings(
        probe_interval=interval,
        probe_jitter=jitter,
        probe_backoff_max=max(15.0, interval),
        stable_margin=stable_margin,
        # DESIGN section 9: the full mesh, or a fanout down to one probed peer per node.
        probe_fanout=draw(st.sampled_from([None, 1, 2, 3])),
    )
    scenario = Scenario(
        nodes=nodes,
        settings=settings,
        transport=draw(st.sampled_from(["watch", "poll"])),
        seed=draw(st.integers(0, 2**32 - 1)),
        start_spread=start_spread,
        latency=draw(latencies()),
        loss=draw(st.one_of(st.just(0.0), st.just(0.3), st.floats(0.0, 0.3))),
        max_time=10_000.0,
    )
    # "Consistent discovery" (DESIGN invariant 5): no node's view may stay unchanged for a
    # whole stable margin before it lists every node. A node that starts later than that may
    # meet a cluster formed without it, and if it is the lowest it can form a second one from
    # answers that predate that cluster (see test_simulation.py,
    # ``test_lowest_node_starting_after_a_premature_formation_joins_it``).
    required = consistent_discovery_margin(scenario)
    if stable_margin <= required:
        stable_margin = required + draw(st.floats(0.01, 5.0))
        scenario = attrs.evolve(
            scenario, settings=attrs.evolve(settings, stable_margin=stable_margin)
        )
    return scenario


def consistent_discovery_margin(scenario: Scenario) -> float:
    """Smallest stable margin for which every view grows to the full set before it is stable.

    The largest gap between two consecutive starts, plus the longest a started node can take
    to appear in a peer's lookup (one jittered discovery interval and one lookup).
    """
    starts = sorted(scenario.resolved_start_times())
    gap = max((later - earlier for earlier, later in itertools.pairwise(starts)), default=0.0)
    settings = scenario.settings
    return (
        gap
        + settings.discovery_interval * (1 + settings.discovery_jitter)
        + scenario.lookup_latency.high
    )
