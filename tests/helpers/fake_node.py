"""The node side of a management app, for tests that drive the app in-process (no sockets).

A :class:`FakeNode` is what a real :class:`bootstrap.node.Node` hands its
:class:`~bootstrap.server.ManagementApp`: the document and status it serves, whether it is
ready, and where contacts go. Each callback can be made to raise (``fail``), as a node's
membership or event queue might, to check that the app answers anyway. The constants are the
ones the server, limits, security and fuzz tests share.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from bootstrap import ContactPoint, SeedNodesDocument, Settings
from bootstrap.server import ManagementApp, ServerLimits

__all__ = ["EMPTY", "PEER", "SELF", "SETTINGS", "FakeNode"]

SELF = ContactPoint("127.0.0.1", 8558)
PEER = ContactPoint("10.0.0.7", 8558)
# watch_push_interval = 2.0 * (1 - 0.5) = 1.0: round virtual times, exact in binary floats.
SETTINGS = Settings(probe_interval=2.0, probe_jitter=0.5)
#: The document of a node that has joined no cluster yet.
EMPTY = SeedNodesDocument("http://127.0.0.1:8558", (), service_name="svc")


@attrs.define
class FakeNode:
    """The node side of the app: what it serves and what the app told it."""

    document: SeedNodesDocument = EMPTY
    status: dict[str, object] = attrs.field(factory=lambda: {"phase": "probing"})
    ready: bool = False
    contacted: list[ContactPoint] = attrs.field(factory=list)
    fail: set[str] = attrs.field(factory=set)  # callbacks that raise

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

    def app(
        self,
        settings: Settings = SETTINGS,
        *,
        self_contact_point: ContactPoint = SELF,
        limits: ServerLimits | None = None,
        metrics: Callable[[], tuple[bytes, str]] | None = None,
    ) -> ManagementApp:
        return ManagementApp(
            settings=settings,
            self_contact_point=self_contact_point,
            service_name="svc",
            document=self.build_document,
            status=self.build_status,
            ready=self.is_ready,
            on_contacted=self.on_contacted,
            limits=ServerLimits() if limits is None else limits,
            metrics=metrics,
        )
