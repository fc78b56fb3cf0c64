"""Deterministic many-node simulation of cluster bootstrap over the pure core.

A virtual clock, TCP-like connections with latency and loss-as-delay, partitions that heal or
not, nodes that start, stop and restart (a restarted node is a new process: it forgets its
promises), discovery views that lag per node or per pair or disagree, and a membership model;
one real :class:`~bootstrap.core.machine.BootstrapMachine` per node life, driven as the trio
driver drives it. The report says which rule let each founder form and, when two clusters
coexist, by which mechanism. Used by the property tests (DESIGN invariants 5-7), the
benchmarks (``benchmarks/split_brain.py``) and ``cluster-bootstrap simulate``.
"""

from .bounds import formation_bound, late_join_bound
from .report import (
    FounderReport,
    NodeReport,
    PromiseRecord,
    SimulationReport,
    SplitMechanism,
    explain_split,
    format_report,
)
from .scenario import (
    DiscoveryView,
    Latency,
    Partition,
    Scenario,
    Transport,
    full_restart,
    rolling_replacement,
)
from .simulation import Simulation, contact_point_of, node_name, run_simulation

__all__ = [
    "DiscoveryView",
    "FounderReport",
    "Latency",
    "NodeReport",
    "Partition",
    "PromiseRecord",
    "Scenario",
    "Simulation",
    "SimulationReport",
    "SplitMechanism",
    "Transport",
    "contact_point_of",
    "explain_split",
    "format_report",
    "formation_bound",
    "full_restart",
    "late_join_bound",
    "node_name",
    "rolling_replacement",
    "run_simulation",
]
