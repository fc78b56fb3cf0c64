"""Who probed us, and whether it asked for a promise: read from a request and handed to the node.

Rules:

* A seed-nodes request, a watch handshake, or a watch ``probe`` / ``propose <r>`` message on a
  watch whose handshake carried ``Bootstrap-Contact-Point: host:port`` tells us that peer is
  alive right now; the node turns ``on_contacted(cp)`` into ``ContactedBy``.
* A proposal (DESIGN section 8) is the ``Bootstrap-Round: <r>`` header on the same request or
  handshake, or the watch message ``propose <r>``. It reaches the node as ``on_proposal(cp, r)``
  instead of ``on_contacted(cp)`` (an app built without ``on_proposal`` counts it as a plain
  contact), and only together with a valid contact point: a proposal from nobody is ignored.
  The caller builds its answer after this returns, so the answer shows whether we promised.
* A value we cannot parse (a contact point too long, not ASCII, without a port; a round that is
  not canonical decimal digits in ``0..MAX_ROUND``) is ignored and the request still answered:
  never a proposal, and a malformed ``propose`` message is answered like ``probe``. Each
  distinct bad value is logged once, at DEBUG: it is the peer's problem, and a misconfigured
  peer repeats it on every probe. The record of logged values is cleared when full, so a peer
  cycling through garbage cannot grow memory.
* A callback raising is logged and swallowed: the request is answered anyway.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

import attrs

from ..core import ContactPoint, ProtocolError
from ..core.wire import (
    CONTACT_POINT_HEADER,
    MAX_CONTACT_POINT_CHARS,
    PROBE_MESSAGE,
    ROUND_HEADER,
    parse_proposal,
    parse_round,
)
from .asgi import Scope, first_header

__all__ = ["Contacts", "WatchRequest"]

# One logger for the whole server (docs/node.md names it), whichever module logs.
logger = logging.getLogger("bootstrap.server")

# ASGI servers hand header names lower-cased bytes.
_CONTACT_POINT_HEADER: Final = CONTACT_POINT_HEADER.lower().encode("ascii")
_ROUND_HEADER: Final = ROUND_HEADER.lower().encode("ascii")
# Distinct bad values remembered so each is logged once.
_MAX_REPORTED_BAD_VALUES: Final = 128


@attrs.frozen
class WatchRequest:
    """A watch message asking for the document now: ``probe``, or ``propose <r>`` (its round)."""

    proposal_round: int | None


class Contacts:
    """Reads the peer's contact point (and proposal) from a request and reports it to the node."""

    __slots__ = ("_on_contacted", "_on_proposal", "_reported_bad_values")

    def __init__(
        self,
        on_contacted: Callable[[ContactPoint], None],
        on_proposal: Callable[[ContactPoint, int], None] | None = None,
    ) -> None:
        self._on_contacted = on_contacted
        self._on_proposal = on_proposal
        self._reported_bad_values: set[tuple[str, str]] = set()

    def from_headers(self, scope: Scope) -> ContactPoint | None:
        """The peer's contact point from its ``Bootstrap-Contact-Point`` header, if valid."""
        raw = first_header(scope, _CONTACT_POINT_HEADER)
        return None if raw is None else self._parse_contact_point(raw)

    def proposal_round(self, scope: Scope) -> int | None:
        """The round the request's ``Bootstrap-Round`` header proposes, if valid."""
        raw = first_header(scope, _ROUND_HEADER)
        if raw is None:
            return None
        text = raw.decode("latin-1")  # total: any byte maps to one character, for the log line
        try:
            return parse_round(text)
        except ProtocolError as error:
            self._log_once(ROUND_HEADER, text, "ignoring a proposal: %s", error)
            return None

    def watch_request(self, text: str | None) -> WatchRequest | None:
        """What a watch's text message asks for; None for any other message (ignored)."""
        if text is None:
            return None
        if text == PROBE_MESSAGE:
            return WatchRequest(None)
        try:
            round = parse_proposal(text)
        except ProtocolError as error:
            self._log_once("propose", text, "answering as a probe, ignoring a proposal: %s", error)
            return WatchRequest(None)
        return None if round is None else WatchRequest(round)

    def note(
        self, contact_point: ContactPoint | None, *, proposal_round: int | None = None
    ) -> None:
        """Tell the node ``contact_point`` contacted us, asking a promise for ``proposal_round``
        if set (nothing at all without a contact point)."""
        if contact_point is None:
            if proposal_round is not None:
                self._log_once(
                    "proposer",
                    str(proposal_round),
                    "ignoring a proposal for round %s: no valid %s header names the proposer",
                    proposal_round,
                    CONTACT_POINT_HEADER,
                )
            return
        on_proposal = None if proposal_round is None else self._on_proposal
        try:
            if on_proposal is not None and proposal_round is not None:
                on_proposal(contact_point, proposal_round)
            else:
                self._on_contacted(contact_point)
        except Exception:
            callback = "on_contacted" if on_proposal is None else "on_proposal"
            logger.exception(
                "%s(%s) raised; the request is answered anyway", callback, contact_point
            )

    def _parse_contact_point(self, raw: bytes) -> ContactPoint | None:
        problem: str | None = None
        contact_point: ContactPoint | None = None
        text = raw.decode("latin-1")  # total: any byte maps to one character, for the log line
        if len(raw) > MAX_CONTACT_POINT_CHARS:
            problem = f"longer than {MAX_CONTACT_POINT_CHARS} characters"
            text = text[:MAX_CONTACT_POINT_CHARS] + "..."
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
            self._log_once(
                CONTACT_POINT_HEADER,
                text,
                "ignoring %s header %r: %s",
                CONTACT_POINT_HEADER,
                text,
                problem,
            )
        return contact_point

    def _log_once(self, what: str, value: str, message: str, *args: object) -> None:
        """Log ``message`` at DEBUG unless ``value`` of ``what`` was logged already."""
        key = (what, value)
        if key in self._reported_bad_values:
            return
        if len(self._reported_bad_values) >= _MAX_REPORTED_BAD_VALUES:
            self._reported_bad_values.clear()
        self._reported_bad_values.add(key)
        logger.debug(message, *args)
