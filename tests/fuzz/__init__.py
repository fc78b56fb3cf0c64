"""Property-based fuzzing of everything a hostile peer can reach: the wire decoder, the HTTP app,
and the watch (websocket) handler.

Every property here runs at least :data:`FUZZ_EXAMPLES` (500) examples, or more if the loaded
profile asks for more (``--hypothesis-profile long``); the other profile settings (deadline,
derandomization under CI, print_blob) are inherited from the profile in ``tests/conftest.py``.
The app and the watch are driven through their ASGI interface, without sockets, so each example
costs well under a millisecond of real time; the watch runs under
``trio.testing.MockClock(autojump_threshold=0)``, so its timers cost no real time at all.
"""

from __future__ import annotations

import attrs
from hypothesis import settings

from bootstrap import ContactPoint, Member, SeedNodesDocument, Settings
from bootstrap.server import ManagementApp, ServerLimits

#: The floor of examples per fuzz property.
FUZZ_EXAMPLES = 500

#: The settings of every fuzz property: the loaded profile, with at least FUZZ_EXAMPLES examples.
FUZZ = settings(max_examples=max(FUZZ_EXAMPLES, settings().max_examples), deadline=None)

SELF = ContactPoint("127.0.0.1", 8558)
PEER = ContactPoint("10.0.0.7", 8558)
# watch_push_interval = 2.0 * (1 - 0.5) = 1.0 s of virtual time.
SETTINGS = Settings(probe_interval=2.0, probe_jitter=0.5)
EMPTY = SeedNodesDocument("http://127.0.0.1:8558", (), service_name="svc")
JOINED = SeedNodesDocument(
    "http://127.0.0.1:8558",
    (Member("http://127.0.0.1:8558", 5, "Up", ("dc-default",)),),
    cluster_id="c1",
    service_name="svc",
)


@attrs.define
class FakeNode:
    """The node side of the app: what it serves, which callbacks fail, whom it was told about."""

    document: SeedNodesDocument = EMPTY
    status: dict[str, object] = attrs.field(factory=lambda: {"phase": "probing"})
    ready: bool = False
    fail: set[str] = attrs.field(factory=set)
    contacted: list[ContactPoint] = attrs.field(factory=list)

    def build_document(self) -> SeedNodesDocument:
        if "document" in self.fail:
            raise RuntimeError("membership unavailable")
        return self.document

    def build_status(self) -> dict[str, object]:
        if "status" in self.fail:
            raise RuntimeError("status unavailable")
        return self.status

    def is_ready(self) -> bool:
        if "ready" in self.fail:
            raise RuntimeError("readiness unavailable")
        return self.ready

    def on_contacted(self, contact_point: ContactPoint) -> None:
        self.contacted.append(contact_point)
        if "on_contacted" in self.fail:
            raise RuntimeError("event queue closed")

    def app(self, limits: ServerLimits) -> ManagementApp:
        return ManagementApp(
            settings=SETTINGS,
            self_contact_point=SELF,
            service_name="svc",
            document=self.build_document,
            status=self.build_status,
            ready=self.is_ready,
            on_contacted=self.on_contacted,
            limits=limits,
        )
