"""How the management server ends a TLS handshake it refuses: alert first, then end of stream.

trio's ``SSLStream`` drops what OpenSSL queued to send when a handshake fails, and hypercorn
then abandons the connection without closing it (it stays open until garbage collection). A
client refused for lacking a client certificate (TLS 1.3 checks it after the client has finished
its side) would wait for an answer until its own timeout, with no reason given.

Rules:

* The failure is held back: the handshake appears to end, trio sends the queued alert
  ("certificate required", "unknown CA", ...), and the first read reports the end of the
  stream, so hypercorn handles the connection as one whose client left: it closes it when its
  idle timer (``keep_alive_timeout``) runs out.
* Nothing is ever read from, or written to, a connection whose handshake failed: a write, or a
  second handshake, raises the held failure.
* Server side only: the serving code installs it as the ``sslobject_class`` of the context
  hypercorn accepts with (:func:`~bootstrap.server.management_server_config`).
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

__all__ = ["HandshakeAlertFirst"]

# The security logger, as before the move: a refused handshake is a security matter (at DEBUG).
logger = logging.getLogger("bootstrap.security")


class HandshakeAlertFirst(ssl.SSLObject):
    """Server side: a failed handshake still sends its TLS alert, and ends the connection."""

    _failure: ssl.SSLError | None = None

    def do_handshake(self) -> None:
        if self._failure is not None:
            raise self._failure
        try:
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except ssl.SSLError as failure:
            logger.debug("refused a TLS handshake: %s", failure.reason or failure)
            self._failure = failure

    def read(self, *args: Any, **kwargs: Any) -> Any:
        if self._failure is not None:
            return b""  # the end of the stream
        return super().read(*args, **kwargs)

    def write(self, *args: Any, **kwargs: Any) -> Any:
        if self._failure is not None:
            raise self._failure
        return super().write(*args, **kwargs)
