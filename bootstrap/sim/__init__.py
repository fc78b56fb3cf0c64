"""Deterministic many-node simulation of cluster bootstrap over the pure core.

A virtual clock, TCP-like connections with latency and loss-as-delay, partitions, nodes that
start and stop at given times, discovery views that lag or disagree, and a membership model;
one real :class:`~bootstrap.core.machine.BootstrapMachine` per node, driven as the trio driver
drives it. Used by the property tests (DESIGN invariants 5 and 6), the benchmarks and
``cluster-bootstrap simulate``.
"""

from .bounds import formation_bound, late_join_bound
from .report import NodeReport, SimulationReport, format_report
from .scenario import DiscoveryView, Latency, Partition, Scenario, Transport
from .simulation import Simulation, contact_point_of, node_name, run_simulation

__all__ = [
    "DiscoveryView",
    "Latency",
    "NodeReport",
    "Partition",
    "Scenario",
    "Simulation",
    "SimulationReport",
    "Transport",
    "contact_point_of",
    "format_report",
    "formation_bound",
    "late_join_bound",
    "node_name",
    "run_simulation",
]
