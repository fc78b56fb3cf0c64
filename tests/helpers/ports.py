"""A free TCP port on loopback, for tests that bind real sockets.

The port is free when asked, not reserved: the kernel may hand it out again before the test binds
it, which on a test machine's loopback does not happen in practice. A port free on 127.0.0.1 is
free on the other 127.0.0.x too in practice (nothing else binds them), which is how the
end-to-end tests put several nodes on one port.
"""

from __future__ import annotations

import socket

__all__ = ["free_port"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
