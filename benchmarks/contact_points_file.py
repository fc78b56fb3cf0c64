"""Discovery from a file of contact points, re-read at every lookup: the benchmarks' registry.

The same file the Pekko node's ``ContactPointsFileDiscovery`` reads (``benchmarks/pekko``): one
``host:port`` a line, blank lines and ``#`` comments skipped. A benchmark that changes what a
node discovers while it runs (a registry lagging behind, per node) rewrites the file with
:func:`benchmarks.pekko.driver.write_contact_points`, which replaces it in one rename, so both
kinds of node see the same views from the same files.

An unreadable file or a bad line fails the whole lookup with a ``DiscoveryError`` (the node backs
off and tries again), never a partial answer: the same rule as the Pekko side.
"""

from __future__ import annotations

from pathlib import Path

import trio

from bootstrap.core import ContactPoint
from bootstrap.discovery import DiscoveryError

__all__ = ["ContactPointsFileDiscovery", "parse_contact_points"]


def parse_contact_points(text: str, *, source: str) -> list[ContactPoint]:
    """The contact points a file's ``text`` lists; ``DiscoveryError`` naming the first bad line."""
    points = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            point = ContactPoint.parse(line)
        except ValueError as error:
            raise DiscoveryError(
                f"{source}, line {number}: {line!r} is not host:port ({error})"
            ) from None
        if point.port is None:
            raise DiscoveryError(f"{source}, line {number}: {line!r} has no port")
        points.append(point)
    return points


class ContactPointsFileDiscovery:
    """The contact points listed in ``path`` at the moment of each lookup."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def lookup(self) -> list[ContactPoint]:
        try:
            text = await trio.Path(self.path).read_text()
        except OSError as error:
            raise DiscoveryError(
                f"cannot read the contact points file {self.path}: {error}"
            ) from None
        return parse_contact_points(text, source=str(self.path))
