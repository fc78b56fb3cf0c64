"""What a simulation run looks like: nodes, their lifetimes, the network and discovery.

A :class:`Scenario` is a frozen, validated value. Everything random in a run (start times when
not given, per-node and per-pair discovery lags when given as ranges, latencies, losses,
discovery failures, each machine's jitter) is drawn from ``random.Random`` instances derived
from ``Scenario.seed``, so one scenario always produces the same report.

Lifetimes: node ``i`` starts at its start time and runs until its stop time (never, if it has
none). ``restarts`` give it more lives: ``(i, stop, start)`` stops it at ``stop`` and starts a
new process on the same contact point at ``start``. A new process remembers nothing (a fresh
machine: any promise it held is forgotten) and is not a member of any cluster.

:func:`rolling_replacement` and :func:`full_restart` build the two lifecycle patterns of a
deployment update; :meth:`Scenario.meets_s1` and :meth:`Scenario.meets_s2` say whether a
scenario is inside the conditions of DESIGN section 8's guarantees.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import attrs

from bootstrap.core.errors import UsageError
from bootstrap.core.settings import Settings

__all__ = [
    "DiscoveryView",
    "Latency",
    "Partition",
    "Scenario",
    "Transport",
    "full_restart",
    "rolling_replacement",
]

Transport = Literal["watch", "poll"]

DiscoveryView = Callable[[float, frozenset[int]], Iterable[int]]
"""A per-node discovery override: ``(now, registered node indices) -> visible node indices``.

``registered`` is what the node sees of the discovery service at ``now`` (the registry as of
``now - view_lag`` for that node, its per-pair lags applied); the function may drop or add
indices (a node that never sees another one, a view that flaps). It must be deterministic: it
is called in event order and nothing else.
"""


def _finite_non_negative(instance: Any, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageError(f"{attribute.name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"{attribute.name} must be a finite number of seconds >= 0, got {value!r}")


def _positive(instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    _finite_non_negative(instance, attribute, value)
    if value == 0:
        raise UsageError(f"{attribute.name} must be > 0, got {value!r}")


def _probability(instance: Any, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageError(f"{attribute.name} must be a probability in [0, 1), got {value!r}")
    # 1.0 would lose every transmission forever: the run could never deliver anything.
    if not 0 <= value < 1:
        raise UsageError(f"{attribute.name} must be a probability in [0, 1), got {value!r}")


@attrs.frozen(kw_only=True)
class Latency:
    """A one-way latency distribution, in seconds.

    With ``mean_extra`` set (the default): ``low + Exponential(mean_extra)``, capped at ``high``
    (a long tail, as on a real network, but bounded so formation bounds can be computed). With
    ``mean_extra=None``: uniform in ``[low, high]``.
    """

    low: float = attrs.field(default=0.0005, validator=_finite_non_negative)
    high: float = attrs.field(default=0.01, validator=_finite_non_negative)
    mean_extra: float | None = attrs.field(default=0.0005)

    def __attrs_post_init__(self) -> None:
        if self.high < self.low:
            raise UsageError(f"latency high ({self.high}) must be >= low ({self.low})")
        if self.mean_extra is not None:
            _positive(self, attrs.fields(Latency).mean_extra, self.mean_extra)

    @classmethod
    def uniform(cls, low: float, high: float) -> Latency:
        """Uniform in ``[low, high]``; ``uniform(x, x)`` is a constant latency."""
        return cls(low=low, high=high, mean_extra=None)

    @classmethod
    def constant(cls, value: float) -> Latency:
        """Always ``value`` (exact expected times in tests)."""
        return cls(low=value, high=value, mean_extra=None)

    def draw(self, rng: random.Random) -> float:
        """One latency sample."""
        if self.mean_extra is None:
            return rng.uniform(self.low, self.high)
        return min(self.high, self.low + rng.expovariate(1.0 / self.mean_extra))


def _groups(value: Iterable[Iterable[int]]) -> tuple[frozenset[int], ...]:
    return tuple(frozenset(group) for group in value)


@attrs.frozen(kw_only=True)
class Partition:
    """From ``start`` until ``end``, nodes in different ``groups`` cannot reach each other.

    Nodes listed in no group form one more implicit group ("the rest"). A message is lost if its
    two ends are separated when it is sent or when it would arrive; a connection that lost a
    message carries nothing more (a TCP stream with a hole delivers nothing after it), so the
    prober's request times out and the connection is closed.
    """

    start: float = attrs.field(validator=_finite_non_negative)
    end: float = attrs.field()
    groups: tuple[frozenset[int], ...] = attrs.field(converter=_groups)

    def __attrs_post_init__(self) -> None:
        if isinstance(self.end, bool) or not isinstance(self.end, int | float):
            raise UsageError(f"partition end must be a number of seconds, got {self.end!r}")
        if not self.end > self.start:  # also rejects NaN; inf means "never heals"
            raise UsageError(f"partition end ({self.end}) must be after its start ({self.start})")
        seen: set[int] = set()
        for group in self.groups:
            if seen & group:
                raise UsageError(f"partition groups overlap on nodes {sorted(seen & group)}")
            seen |= group

    def separates(self, a: int, b: int) -> bool:
        """True if ``a`` and ``b`` are in different groups (ignoring time)."""
        for group in self.groups:
            if a in group:
                return b not in group
            if b in group:
                return True
        return False  # both in "the rest"


def _partitions(value: Iterable[Partition]) -> tuple[Partition, ...]:
    return tuple(value)


def _stop_times(
    value: Mapping[int, float] | Iterable[tuple[int, float]],
) -> tuple[tuple[int, float], ...]:
    items = value.items() if isinstance(value, Mapping) else value
    return tuple(sorted((int(index), float(time)) for index, time in items))


def _views(
    value: Mapping[int, DiscoveryView] | Iterable[tuple[int, DiscoveryView]],
) -> tuple[tuple[int, DiscoveryView], ...]:
    items = value.items() if isinstance(value, Mapping) else value
    return tuple(sorted(items, key=lambda item: item[0]))


def _view_lags(
    value: Mapping[int, float] | Iterable[tuple[int, float]],
) -> tuple[tuple[int, float], ...]:
    return _stop_times(value)


def _optional_times(value: Iterable[float] | None) -> tuple[float, ...] | None:
    return None if value is None else tuple(float(time) for time in value)


def _restarts(value: Iterable[tuple[int, float, float]]) -> tuple[tuple[int, float, float], ...]:
    return tuple(sorted((int(index), float(stop), float(start)) for index, stop, start in value))


def _lag_range(value: tuple[float, float] | None) -> tuple[float, float] | None:
    if value is None:
        return None
    low, high = value
    return (float(low), float(high))


def _check_lag_range(name: str, value: tuple[float, float] | None) -> None:
    if value is None:
        return
    low, high = value
    if not (math.isfinite(low) and math.isfinite(high) and 0 <= low <= high):
        raise UsageError(f"{name} must be a range (low, high) with 0 <= low <= high, got {value!r}")


@attrs.frozen(kw_only=True)
class Scenario:
    """One simulated deployment; node ``i`` has contact point ``10.0.{i//250}.{i%250+1}:8558``.

    Times are seconds of virtual time from 0. See the field comments for each knob; the
    network model (TCP retransmission, partitions) is described in :mod:`bootstrap.sim.network`.
    """

    nodes: int = attrs.field()
    settings: Settings = attrs.field(factory=Settings)
    transport: Transport = attrs.field(default="watch")
    seed: int = attrs.field(default=0)
    # Explicit start times, one per node; if None, node i starts at U[0, start_spread].
    start_times: tuple[float, ...] | None = attrs.field(default=None, converter=_optional_times)
    start_spread: float = attrs.field(default=0.0, validator=_finite_non_negative)
    # Node index -> the time it stops (its process exits: no graceful leave). With restarts,
    # the end of its last life.
    stop_times: tuple[tuple[int, float], ...] = attrs.field(default=(), converter=_stop_times)
    # (node, stop, start): the node stops at ``stop`` and a new process starts on the same
    # contact point at ``start`` (a fresh machine, no cluster). A node may restart many times.
    restarts: tuple[tuple[int, float, float], ...] = attrs.field(default=(), converter=_restarts)
    latency: Latency = attrs.field(factory=Latency)
    # Each TCP transmission attempt (SYN, SYN-ACK, data segment) is lost with this probability.
    loss: float = attrs.field(default=0.0, validator=_probability)
    partitions: tuple[Partition, ...] = attrs.field(default=(), converter=_partitions)
    # Discovery: a node is registered this long after it starts, removed this long after it stops.
    register_lag: float = attrs.field(default=0.0, validator=_finite_non_negative)
    deregister_lag: float = attrs.field(default=0.0, validator=_finite_non_negative)
    # A node's lookup returns the registrations as of (now - view_lag): a lagging cache.
    view_lag: float = attrs.field(default=0.0, validator=_finite_non_negative)
    view_lags: tuple[tuple[int, float], ...] = attrs.field(default=(), converter=_view_lags)
    # If set, each node's view lag is drawn uniformly from this range (per node, from the
    # seed); an explicit ``view_lags`` entry wins. Views stay prefixes of one registration
    # order (DESIGN section 8, S2).
    node_lag: tuple[float, float] | None = attrs.field(default=None, converter=_lag_range)
    # If set, node k sees node i only after a lag drawn uniformly from this range for the pair
    # (k, i), on top of k's view lag: k's view holds i iff i was registered at
    # ``now - view_lag[k] - pair_lag[k][i]``. Views then need not be prefixes of anything.
    pair_lag: tuple[float, float] | None = attrs.field(default=None, converter=_lag_range)
    # The lags above delay only the registry changes from this instant on; earlier ones every
    # node sees at once (an established deployment that a rolling update then replaces).
    lags_from: float = attrs.field(default=0.0, validator=_finite_non_negative)
    discovery_views: tuple[tuple[int, DiscoveryView], ...] = attrs.field(
        default=(), converter=_views
    )
    lookup_latency: Latency = attrs.field(
        factory=lambda: Latency(low=0.001, high=0.05, mean_extra=0.002)
    )
    discovery_failure: float = attrs.field(default=0.0, validator=_probability)
    # If set, an idle keep-alive connection is closed by its client after this long (the httpx
    # default of 5 s): reconnects it causes are invariant-6 violations. None: never expires, as
    # the drivers are configured (DESIGN section 5).
    keepalive_expiry: float | None = attrs.field(default=None)
    # When False (a scenario that is meant to stall), unjoined nodes at the end are no violation.
    expect_formation: bool = attrs.field(default=True)
    max_time: float = attrs.field(default=600.0, validator=_positive)
    # A hard cap on processed events: the run ends (with a violation) rather than run away.
    max_events: int = attrs.field(default=200_000_000)

    @nodes.validator
    def _check_nodes(self, attribute: attrs.Attribute[int], value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 62_500:
            # 250 hosts per /24 times 250 third octets: the contact point scheme's capacity.
            raise UsageError(f"nodes must be an integer in 1..62500, got {value!r}")

    @settings.validator
    def _check_settings(self, attribute: attrs.Attribute[Settings], value: Settings) -> None:
        if not isinstance(value, Settings):
            raise UsageError(f"settings must be a bootstrap.Settings, got {value!r}")

    @transport.validator
    def _check_transport(self, attribute: attrs.Attribute[str], value: str) -> None:
        if value not in ("watch", "poll"):
            raise UsageError(f"transport must be 'watch' or 'poll', got {value!r}")

    @seed.validator
    def _check_seed(self, attribute: attrs.Attribute[int], value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"seed must be an integer, got {value!r}")

    @max_events.validator
    def _check_max_events(self, attribute: attrs.Attribute[int], value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UsageError(f"max_events must be an integer >= 1, got {value!r}")

    @keepalive_expiry.validator
    def _check_expiry(self, attribute: attrs.Attribute[float | None], value: float | None) -> None:
        if value is not None:
            _positive(self, attribute, value)

    def __attrs_post_init__(self) -> None:
        if self.start_times is not None:
            if len(self.start_times) != self.nodes:
                raise UsageError(
                    f"start_times has {len(self.start_times)} entries for {self.nodes} nodes"
                )
            for time in self.start_times:
                if not math.isfinite(time) or time < 0:
                    raise UsageError(f"start times must be finite and >= 0, got {time!r}")
        for name, pairs in (("stop_times", self.stop_times), ("view_lags", self.view_lags)):
            indices = [index for index, _ in pairs]
            if len(set(indices)) != len(indices):
                raise UsageError(f"{name} names a node more than once")
            for index, time in pairs:
                self._check_index(name, index)
                if not math.isfinite(time) or time < 0:
                    raise UsageError(f"{name}[{index}] must be finite and >= 0, got {time!r}")
        for index, stop, start in self.restarts:
            self._check_index("restarts", index)
            if not (math.isfinite(stop) and math.isfinite(start) and 0 <= stop < start):
                raise UsageError(
                    f"restart of node {index} must stop before it starts again, both finite "
                    f"and >= 0, got stop {stop!r}, start {start!r}"
                )
        # Each life must end after it begins, so the lives of one node never overlap.
        for index, lives in enumerate(self.resolved_lifetimes()):
            for begin, end in lives:
                if end < begin:
                    raise UsageError(f"node {index} stops at {end} before it starts at {begin}")
        _check_lag_range("node_lag", self.node_lag)
        _check_lag_range("pair_lag", self.pair_lag)
        for index, view in self.discovery_views:
            self._check_index("discovery_views", index)
            if not callable(view):
                raise UsageError(f"discovery_views[{index}] must be callable, got {view!r}")
        for partition in self.partitions:
            if not isinstance(partition, Partition):
                raise UsageError(f"partitions must hold Partition values, got {partition!r}")
            for group in partition.groups:
                for index in group:
                    self._check_index("partition groups", index)
        for name in ("latency", "lookup_latency"):
            if not isinstance(getattr(self, name), Latency):
                raise UsageError(f"{name} must be a Latency, got {getattr(self, name)!r}")

    def _check_index(self, name: str, index: int) -> None:
        if not 0 <= index < self.nodes:
            raise UsageError(f"{name} names node {index}, but nodes are 0..{self.nodes - 1}")

    def resolved_start_times(self) -> tuple[float, ...]:
        """The start time of every node: the explicit ones, or draws from ``start_spread``."""
        if self.start_times is not None:
            return self.start_times
        if self.start_spread == 0:
            return (0.0,) * self.nodes
        rng = random.Random(f"{self.seed}/start")
        return tuple(rng.uniform(0.0, self.start_spread) for _ in range(self.nodes))

    def stop_time(self, index: int) -> float:
        """When node ``index``'s last life ends (``math.inf``: never)."""
        return dict(self.stop_times).get(index, math.inf)

    def resolved_lifetimes(self) -> tuple[tuple[tuple[float, float], ...], ...]:
        """Every node's lives, in order: ``(start, stop)`` pairs, ``stop`` inf for never.

        Not validated: :meth:`__attrs_post_init__` checks that each life ends after it begins.
        """
        starts = self.resolved_start_times()
        stops = dict(self.stop_times)
        restarts: dict[int, list[tuple[float, float]]] = {}
        for index, stop, start in self.restarts:
            restarts.setdefault(index, []).append((stop, start))
        lives: list[tuple[tuple[float, float], ...]] = []
        for index, first in enumerate(starts):
            begin, node_lives = first, []
            for stop, start in restarts.get(index, ()):
                node_lives.append((begin, stop))
                begin = start
            node_lives.append((begin, stops.get(index, math.inf)))
            lives.append(tuple(node_lives))
        return tuple(lives)

    def view_lag_of(self, index: int) -> float:
        """How far behind node ``index``'s view of discovery is."""
        return self.resolved_view_lags()[index]

    def resolved_view_lags(self) -> tuple[float, ...]:
        """Every node's view lag: ``view_lags``, else a ``node_lag`` draw, else ``view_lag``."""
        lags = [self.view_lag] * self.nodes
        if self.node_lag is not None:
            low, high = self.node_lag
            rng = random.Random(f"{self.seed}/node-lag")
            lags = [rng.uniform(low, high) for _ in range(self.nodes)]
        for index, lag in self.view_lags:
            lags[index] = lag
        return tuple(lags)

    def pair_lags(self, observer: int) -> tuple[float, ...] | None:
        """How long after node ``i`` registers ``observer`` sees it, for every ``i`` (or None).

        Drawn per observer from its own stream, so the lags do not depend on the order in which
        the simulation asks for them.
        """
        if self.pair_lag is None:
            return None
        low, high = self.pair_lag
        rng = random.Random(f"{self.seed}/pair-lag/{observer}")
        return tuple(rng.uniform(low, high) for _ in range(self.nodes))

    # --- the conditions of DESIGN section 8's guarantees -------------------------------------

    def meets_s1(self) -> bool:
        """S1's condition: ``required_contact_points`` above half the nodes ever discoverable.

        Every node of the scenario counts (a discovery view may return any of them). Restarts
        are outside S1 (a restarted promiser forgets its promise) unless they are a full
        restart: some instant at which no node runs separates the lives, and no node restarts
        between two such instants, so no promise outlives its process while its candidate runs.
        """
        required = self.settings.required_contact_points
        return 2 * required > self.nodes and self._lives_never_overlap_a_restart()

    def meets_s2(self) -> bool:
        """S2's condition: contact with all, and views that are prefixes of one registration order.

        Views are prefixes when every node sees the registry as of its own lag (``view_lag``,
        ``view_lags``, ``node_lag``: no ``pair_lag``, no ``discovery_views``) and the registry
        only grows (no node stops or restarts); delays must stay below ``probe_timeout``.
        Partitions and loss are allowed.
        """
        return (
            self.settings.contact_with_all_contact_points
            and self.pair_lag is None
            and not self.discovery_views
            and not self.stop_times
            and not self.restarts
            and self.latency.high < self.settings.probe_timeout
        )

    def _lives_never_overlap_a_restart(self) -> bool:
        if not self.restarts:
            return True
        # Epochs: maximal spans in which some node runs. Within one, each node has one life.
        lives = sorted(
            (begin, end, index)
            for index, node_lives in enumerate(self.resolved_lifetimes())
            for begin, end in node_lives
        )
        epoch_end = -math.inf
        in_epoch: set[int] = set()
        for begin, end, index in lives:
            if begin > epoch_end:  # nothing ran just before: a new epoch
                in_epoch = set()
            if index in in_epoch:
                return False
            in_epoch.add(index)
            epoch_end = max(epoch_end, end)
        return True


def rolling_replacement(
    nodes: int,
    *,
    begin: float,
    interval: float,
    batch: int = 1,
    overlap: float = 0.0,
    old_start_spread: float = 0.0,
    seed: int = 0,
    **fields: Any,
) -> Scenario:
    """A rolling update: ``nodes`` old nodes are replaced, batch by batch, by ``nodes`` new ones.

    The scenario has ``2 * nodes`` nodes; every new node has a contact point no old node had.
    Which indices (so which contact points, in canonical order) are old and which are new is
    drawn from the seed, as pod IPs are: a new node may be lower than every old one. The old
    nodes start within ``old_start_spread`` of 0. From ``begin``, every ``interval`` a batch
    of ``batch`` new nodes starts, and ``overlap`` later as many old nodes (in a seeded random
    order) stop: a Deployment with maxSurge ``batch`` whose old pods terminate once the new
    ones run. ``fields`` are passed on to :class:`Scenario` (settings, transport, lags, ...);
    ``lags_from`` defaults to ``begin``: the old deployment is established (its nodes see each
    other at once) and the discovery lags apply to the update.
    """
    if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
        raise UsageError(f"nodes must be an integer >= 1, got {nodes!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise UsageError(f"batch must be an integer >= 1, got {batch!r}")
    for name, value in (("begin", begin), ("overlap", overlap), ("spread", old_start_spread)):
        if not (math.isfinite(value) and value >= 0):
            raise UsageError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    if not (math.isfinite(interval) and interval > 0):
        raise UsageError(f"interval must be a finite number of seconds > 0, got {interval!r}")
    if begin < old_start_spread:
        raise UsageError(f"begin ({begin}) must not come before the old nodes started")
    fields.setdefault("lags_from", begin)
    rng = random.Random(f"{seed}/rolling-replacement")
    old = sorted(rng.sample(range(2 * nodes), nodes))
    new = [index for index in range(2 * nodes) if index not in set(old)]
    rng.shuffle(new)
    retiring = list(old)
    rng.shuffle(retiring)
    starts = [0.0] * (2 * nodes)
    for index in old:
        starts[index] = rng.uniform(0.0, old_start_spread)
    stops: dict[int, float] = {}
    for position, (incoming, outgoing) in enumerate(zip(new, retiring, strict=True)):
        at = begin + (position // batch) * interval
        starts[incoming] = at
        stops[outgoing] = at + overlap
    return Scenario(nodes=2 * nodes, start_times=starts, stop_times=stops, seed=seed, **fields)


def full_restart(
    nodes: int,
    *,
    stop_at: float,
    restart_at: float,
    stop_spread: float = 0.0,
    restart_spread: float = 0.0,
    start_spread: float = 0.0,
    seed: int = 0,
    **fields: Any,
) -> Scenario:
    """Every node stops, then new processes start on the same contact points.

    The nodes start within ``start_spread`` of 0, each stops at a time drawn in
    ``[stop_at, stop_at + stop_spread]`` and starts again at a time drawn in
    ``[restart_at, restart_at + restart_spread]``, after every node stopped (so the cluster of
    the first lives is gone before the second lives begin). ``fields`` go to :class:`Scenario`;
    ``lags_from`` defaults to ``stop_at``: the first lives are an established deployment and the
    discovery lags apply to the restart.
    """
    for name, value in (
        ("stop_at", stop_at),
        ("restart_at", restart_at),
        ("stop_spread", stop_spread),
        ("restart_spread", restart_spread),
        ("start_spread", start_spread),
    ):
        if not (math.isfinite(value) and value >= 0):
            raise UsageError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    if stop_at < start_spread:
        raise UsageError(f"stop_at ({stop_at}) must come after every node started")
    if restart_at <= stop_at + stop_spread:
        raise UsageError(
            f"restart_at ({restart_at}) must come after every node stopped "
            f"(stop_at + stop_spread = {stop_at + stop_spread})"
        )
    fields.setdefault("lags_from", stop_at)
    rng = random.Random(f"{seed}/full-restart")
    restarts = [
        (
            index,
            stop_at + rng.uniform(0.0, stop_spread),
            restart_at + rng.uniform(0.0, restart_spread),
        )
        for index in range(nodes)
    ]
    return Scenario(nodes=nodes, start_spread=start_spread, restarts=restarts, seed=seed, **fields)
