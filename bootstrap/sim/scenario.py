"""What a simulation run looks like: nodes, their lifetimes, the network and discovery.

A :class:`Scenario` is a frozen, validated value. Everything random in a run (start times when
not given, latencies, losses, discovery failures, each machine's jitter) is drawn from
``random.Random`` instances derived from ``Scenario.seed``, so one scenario always produces the
same report.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import attrs

from bootstrap.core.errors import UsageError
from bootstrap.core.settings import Settings

__all__ = ["DiscoveryView", "Latency", "Partition", "Scenario", "Transport"]

Transport = Literal["watch", "poll"]

DiscoveryView = Callable[[float, frozenset[int]], Iterable[int]]
"""A per-node discovery override: ``(now, registered node indices) -> visible node indices``.

``registered`` is what the global discovery service held at ``now - view_lag`` for that node;
the function may drop or add indices (a node that never sees another one, a view that
flaps). It must be deterministic: it is called in event order and nothing else.
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
    # Node index -> the time it stops (its process exits: no graceful leave).
    stop_times: tuple[tuple[int, float], ...] = attrs.field(default=(), converter=_stop_times)
    latency: Latency = attrs.field(factory=Latency)
    # Each TCP transmission attempt (SYN, SYN-ACK, data segment) is lost with this probability.
    loss: float = attrs.field(default=0.0, validator=_probability)
    partitions: tuple[Partition, ...] = attrs.field(default=(), converter=tuple)
    # Discovery: a node is registered this long after it starts, removed this long after it stops.
    register_lag: float = attrs.field(default=0.0, validator=_finite_non_negative)
    deregister_lag: float = attrs.field(default=0.0, validator=_finite_non_negative)
    # A node's lookup returns the registrations as of (now - view_lag): a lagging cache.
    view_lag: float = attrs.field(default=0.0, validator=_finite_non_negative)
    view_lags: tuple[tuple[int, float], ...] = attrs.field(default=(), converter=_view_lags)
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
        starts = self.resolved_start_times()
        for index, time in self.stop_times:
            if time < starts[index]:
                raise UsageError(
                    f"node {index} stops at {time} before it starts at {starts[index]}"
                )
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
        """When node ``index`` stops (``math.inf``: never)."""
        return dict(self.stop_times).get(index, math.inf)

    def view_lag_of(self, index: int) -> float:
        """How far behind node ``index``'s view of discovery is."""
        return dict(self.view_lags).get(index, self.view_lag)
