"""The two error families of the core.

As in h11: misuse by the caller (a driver bug, a bad setting) is a :class:`UsageError`; bad data
from a peer is a :class:`ProtocolError`. Both are ``ValueError`` subclasses so callers that only
know the stdlib still catch them. Bad peer data never escapes the state machine: drivers turn a
``ProtocolError`` into a ``ProbeFailed`` event with the error's message as the reason.

A :class:`UsageError` about settings names the fields it is about in ``fields``, so a front end
(the command line) can name *its* spelling of them (the flags) without parsing the message.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["ProtocolError", "UsageError"]


class UsageError(ValueError):
    """The caller used the API wrongly: the message says what to change.

    ``fields`` names the :class:`~bootstrap.Settings` fields the message is about (empty when it
    is about no setting): one for a bad value, several for values that only clash together.
    """

    fields: tuple[str, ...]

    def __init__(self, message: str, *, fields: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.fields = tuple(fields)


class ProtocolError(ValueError):
    """A peer sent a document that does not follow the wire protocol."""
