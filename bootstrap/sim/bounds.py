"""Upper bounds on formation time (DESIGN invariant 5), derived from a scenario term by term.

The property tests check that every run finishes within these bounds; the bounds are meant to
be tight enough to catch a regression such as the anchor's (a freshness window shorter than the
probe period, which never formed at 5 s), not just "eventually".

They assume consistent discovery: no discovery failures, no per-node view overrides, no
partitions and no node stopping before everyone joined. Under those conditions:

``formation_bound`` (every node has joined by then) =

* ``last_start``: the last node starts;
* ``+ register_lag + max(view_lag)``: from then on every lookup returns every node;
* ``+ discovery_interval * (1 + discovery_jitter) + 2 * lookup_latency.high``: a lookup that was
  in flight at that moment may still return the old view, the next one is due within one
  jittered interval of its answer and takes at most ``lookup_latency.high``. Now every node's
  discovered set is complete and stops changing;
* ``+ stable_margin``: the lowest node waits out the margin (with the
  ``expected_contact_points`` fast path it may form earlier; the bound still holds);
* ``+ probe_rounds * (probe_interval * (1 + probe_jitter) + probe_timeout)``: slack for
  lost rounds. One round covers a probe that failed or whose answer went stale just before the
  margin expired (the lowest node needs a fresh answer from everyone), and after formation one
  more covers the others' next probe (poll) or the push (watch) that tells them the seed nodes.
  Losses add retransmission delays and failure backoffs on top; ``probe_rounds`` grows with the
  loss rate and the number of nodes (see :func:`probe_rounds`);
* ``+ backoff_allowance``: with loss, an unlucky prober may fail several times in a row
  against the members, which no longer probe it back; each failure costs the timeout and a
  growing backoff (see :func:`failure_streak`; zero without loss);
* ``+ founding_round`` (``formation="promise"`` only): the lowest node asks every peer for a
  promise when the rules hold; the promises come back within one more probe period (a
  proposal lost to the network is resent with that peer's next probe);
* ``+ join_latency``: forming takes one latency draw, a join one round trip, and a connection
  to a peer first met late (handshake plus request) two more: ``6 * latency.high``.
"""

from __future__ import annotations

import math

from bootstrap.core.errors import UsageError

from .scenario import Scenario

__all__ = [
    "backoff_allowance",
    "failure_streak",
    "formation_bound",
    "late_join_bound",
    "probe_failure_probability",
    "probe_rounds",
]


# Allowed probability that a run outlives its bound through an unlucky failure streak.
_STREAK_TAIL = 1e-6


def probe_failure_probability(loss: float) -> float:
    """Chance that a probe over a new connection outlives the 3 s default probe timeout.

    The SYN or the SYN-ACK lost twice (1 s + 2 s of retransmission timeouts), or the request or
    the answer lost four times (0.2 + 0.4 + 0.8 + 1.6 s).
    """
    return 1.0 - (1.0 - loss**2) ** 2 * (1.0 - loss**4) ** 2


def failure_streak(loss: float, nodes: int) -> int:
    """Consecutive failed probes of one peer the bound allows for.

    After the cluster formed its members stop probing, so a prober that fails against them is
    no longer rescued by ``ContactedBy`` and backs off exponentially. The streak is the
    smallest ``k`` with ``nodes * q**k <= 1e-6`` (about ``nodes`` probers can be unlucky).
    """
    if loss == 0:
        return 0
    q = probe_failure_probability(loss)
    tail = _STREAK_TAIL / max(nodes, 1)
    if q <= tail:  # also a loss so small that q rounds to 0
        return 1
    return math.ceil(math.log(tail) / math.log(q))


def backoff_allowance(scenario: Scenario) -> float:
    """Time a failure streak of :func:`failure_streak` probes costs: timeouts plus backoffs."""
    settings = scenario.settings
    total = 0.0
    for failures in range(1, failure_streak(scenario.loss, scenario.nodes) + 1):
        backoff = settings.probe_interval * 2.0**failures * (1 + settings.probe_jitter)
        total += settings.probe_timeout + min(settings.probe_backoff_max, backoff)
    return total


def probe_rounds(loss: float, nodes: int) -> float:
    """Probe periods of slack the formation bound allows for ``nodes`` nodes at a loss rate.

    Without loss: two (one stale answer before the decision, one round to spread the seed
    nodes). With loss ``p``, a request on an open connection times out when one of its segments
    is lost four times in a row (about ``2 * p**4`` per probe) and the answer goes stale. The
    lowest node needs all ``nodes - 1`` answers fresh *at the same instant*, so the wait for
    such an instant grows with ``p**4 * (nodes - 1)`` and has a geometric tail. The constant is
    empirical: at 30 nodes and 30 % loss, 600 runs needed at most 17.5 periods beyond the
    loss-free terms (median 1.6), at 20 % loss 2.4; the hypothesis property
    (``tests/sim/test_properties.py``) keeps checking it.
    """
    return 2.0 + 150.0 * loss**4 * max(nodes - 1, 0)


def _check_consistent(scenario: Scenario) -> None:
    problems = []
    if scenario.discovery_failure:
        problems.append("discovery failures")
    if scenario.discovery_views:
        problems.append("per-node discovery views")
    if scenario.partitions:
        problems.append("partitions")
    if scenario.stop_times:
        problems.append("nodes that stop")
    if problems:
        raise UsageError(
            "the formation bound assumes consistent discovery and a stable network; this "
            f"scenario has {', '.join(problems)}"
        )


def formation_bound(scenario: Scenario) -> float:
    """Latest time by which every node should have joined the one cluster (see module doc)."""
    _check_consistent(scenario)
    settings = scenario.settings
    last_start = max(scenario.resolved_start_times())
    max_view_lag = max([scenario.view_lag, *(lag for _, lag in scenario.view_lags)], default=0.0)
    discovery = (
        scenario.register_lag
        + max_view_lag
        + settings.discovery_interval * (1 + settings.discovery_jitter)
        + 2 * scenario.lookup_latency.high
    )
    probe_period = settings.probe_interval * (1 + settings.probe_jitter) + settings.probe_timeout
    join_latency = 6 * scenario.latency.high
    founding_round = probe_period if settings.formation == "promise" else 0.0
    return (
        last_start
        + discovery
        + settings.stable_margin
        + probe_rounds(scenario.loss, scenario.nodes) * probe_period
        + backoff_allowance(scenario)
        + founding_round
        + join_latency
    )


def late_join_bound(scenario: Scenario, discovered_at: float) -> float:
    """Latest join time of a node that starts after formation, given when it discovered a peer.

    It probes every newly discovered contact point at once and joins on the first answer that
    lists seed nodes: a connection handshake, a request and a join round trip, each a round trip
    of at most ``2 * latency.high``, plus the join delay. Loss adds retransmission timeouts, so
    this bound is only claimed without loss. It is well within one probe period whenever the
    probe interval exceeds a few round trips, which is the DESIGN's wording of invariant 5.
    """
    if scenario.loss:
        raise UsageError("the late-join bound is only defined without loss")
    if not math.isfinite(discovered_at):
        raise UsageError(f"discovered_at must be a finite time, got {discovered_at!r}")
    return discovered_at + 7 * scenario.latency.high
