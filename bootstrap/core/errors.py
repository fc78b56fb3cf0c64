"""The two error families of the core.

As in h11: misuse by the caller (a driver bug, a bad setting) is a :class:`UsageError`; bad data
from a peer is a :class:`ProtocolError`. Both are ``ValueError`` subclasses so callers that only
know the stdlib still catch them. Bad peer data never escapes the state machine: drivers turn a
``ProtocolError`` into a ``ProbeFailed`` event with the error's message as the reason.
"""

from __future__ import annotations


class UsageError(ValueError):
    """The caller used the API wrongly: the message says what to change."""


class ProtocolError(ValueError):
    """A peer sent a document that does not follow the wire protocol."""
