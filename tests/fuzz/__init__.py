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

from hypothesis import settings

from bootstrap import Member, SeedNodesDocument

# The app's node side and constants are shared with the server tests: the fuzzers drive the same
# app they do.
from tests.helpers.fake_node import EMPTY, PEER, SELF, SETTINGS, FakeNode

__all__ = ["EMPTY", "FUZZ", "JOINED", "PEER", "SELF", "SETTINGS", "FakeNode"]

#: The floor of examples per fuzz property.
FUZZ_EXAMPLES = 500

#: The settings of every fuzz property: the loaded profile, with at least FUZZ_EXAMPLES examples.
FUZZ = settings(max_examples=max(FUZZ_EXAMPLES, settings().max_examples), deadline=None)

JOINED = SeedNodesDocument(
    "http://127.0.0.1:8558",
    (Member("http://127.0.0.1:8558", 5, "Up", ("dc-default",)),),
    cluster_id="c1",
    service_name="svc",
)
