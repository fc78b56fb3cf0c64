"""The sans-IO core: contact points, settings, events, actions, the state machine, wire format.

Nothing here performs I/O or reads a clock (a test enforces it); drivers feed it events with the
current time and carry out the actions it queues.
"""

from .contact_point import ContactPoint, select_contact_points
from .errors import ProtocolError, UsageError
from .events import (
    Action,
    ContactedBy,
    ContactPointsDiscovered,
    Decision,
    DiscoveryFailed,
    Event,
    JoinFailed,
    JoinSeedNodes,
    JoinSelf,
    Lookup,
    Probe,
    ProbeFailed,
    ProbeSucceeded,
    Promise,
    StopProbing,
)
from .founding import Advertisement
from .machine import BootstrapMachine
from .settings import Settings
from .status import ContactPointStatus, Phase, Status
from .wire import (
    Member,
    SeedNodesDocument,
    check_service_name,
    decode_seed_nodes,
    encode_seed_nodes,
)

__all__ = [
    "Action",
    "Advertisement",
    "BootstrapMachine",
    "ContactPoint",
    "ContactPointStatus",
    "ContactPointsDiscovered",
    "ContactedBy",
    "Decision",
    "DiscoveryFailed",
    "Event",
    "JoinFailed",
    "JoinSeedNodes",
    "JoinSelf",
    "Lookup",
    "Member",
    "Phase",
    "Probe",
    "ProbeFailed",
    "ProbeSucceeded",
    "Promise",
    "ProtocolError",
    "SeedNodesDocument",
    "Settings",
    "Status",
    "StopProbing",
    "UsageError",
    "check_service_name",
    "decode_seed_nodes",
    "encode_seed_nodes",
    "select_contact_points",
]
