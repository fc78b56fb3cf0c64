"""Who probed us: the ``Bootstrap-Contact-Point`` header, read and handed to the node.

Rules:

* A seed-nodes request, a watch handshake or a watch ``probe`` message carrying
  ``Bootstrap-Contact-Point: host:port`` tells us that peer is alive right now; the node turns
  ``on_contacted(cp)`` into ``ContactedBy``.
* A header we cannot parse (too long, not ASCII, no port, not a contact point) is ignored and
  the request still answered. Each distinct bad value is logged once, at DEBUG: it is the peer's
  problem, and a misconfigured peer repeats it on every probe. The record of logged values is
  cleared when full, so a peer cycling through garbage cannot grow memory.
* ``on_contacted`` raising is logged and swallowed: the request is answered anyway.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

from ..core import ContactPoint
from ..core.wire import CONTACT_POINT_HEADER
from .asgi import Scope, first_header

__all__ = ["Contacts"]

# One logger for the whole server (docs/node.md names it), whichever module logs.
logger = logging.getLogger("bootstrap.server")

# ASGI servers hand header names lower-cased bytes.
_HEADER: Final = CONTACT_POINT_HEADER.lower().encode("ascii")
# Longer than any host:port (a 253-character hostname, brackets, a port): reject before parsing.
_MAX_CONTACT_POINT_HEADER_CHARS: Final = 300
# Distinct bad header values remembered so each is logged once.
_MAX_REPORTED_BAD_HEADERS: Final = 128


class Contacts:
    """Reads the peer's contact point from a request and reports it through ``on_contacted``."""

    __slots__ = ("_on_contacted", "_reported_bad_headers")

    def __init__(self, on_contacted: Callable[[ContactPoint], None]) -> None:
        self._on_contacted = on_contacted
        self._reported_bad_headers: set[str] = set()

    def from_headers(self, scope: Scope) -> ContactPoint | None:
        """The peer's contact point from its ``Bootstrap-Contact-Point`` header, if valid."""
        raw = first_header(scope, _HEADER)
        return None if raw is None else self._parse(raw)

    def note(self, contact_point: ContactPoint | None) -> None:
        """Tell the node ``contact_point`` contacted us (nothing if None)."""
        if contact_point is None:
            return
        try:
            self._on_contacted(contact_point)
        except Exception:
            logger.exception(
                "on_contacted(%s) raised; the request is answered anyway", contact_point
            )

    def _parse(self, raw: bytes) -> ContactPoint | None:
        problem: str | None = None
        contact_point: ContactPoint | None = None
        text = raw.decode("latin-1")  # total: any byte maps to one character, for the log line
        if len(raw) > _MAX_CONTACT_POINT_HEADER_CHARS:
            problem = f"longer than {_MAX_CONTACT_POINT_HEADER_CHARS} characters"
            text = text[:_MAX_CONTACT_POINT_HEADER_CHARS] + "..."
        elif not raw.isascii():
            problem = "not ASCII"
        else:
            try:
                contact_point = ContactPoint.parse(text)
            except ValueError as exc:  # UsageError, and anything else parse may refuse with
                problem = str(exc)
            else:
                # The wire format is host:port; guessing a port could credit the wrong node.
                if contact_point.port is None:
                    problem, contact_point = "it has no port", None
        if problem is not None:
            self._report_bad_header(text, problem)
        return contact_point

    def _report_bad_header(self, text: str, problem: str) -> None:
        if text in self._reported_bad_headers:
            return
        if len(self._reported_bad_headers) >= _MAX_REPORTED_BAD_HEADERS:
            self._reported_bad_headers.clear()
        self._reported_bad_headers.add(text)
        logger.debug("ignoring %s header %r: %s", CONTACT_POINT_HEADER, text, problem)
