"""Contact points: what a node is reachable at, compared exactly and ordered the same everywhere.

Rules (DESIGN section 3):

* A contact point is held in canonical form: IP literals parsed and printed compressed, IPv6
  brackets stripped, hostnames lower-cased without a trailing dot. Equality is therefore exact
  on the canonical form. The anchor matched itself by substring, so ``10.0.0.1`` thought it was
  ``10.0.0.10`` and formed a second cluster; we never compare raw strings.
* The canonical order decides who forms the cluster ("the lowest"), so every node must use the
  same one: IP literals before hostnames, IPv4 before IPv6, addresses numerically, hostnames by
  lower-cased string, then port.
* Discovery results are grouped by canonical host, never by raw string, before the
  fallback-port filter is applied (the anchor grouped ``10.0.0.1`` and ``010.0.0.1`` apart).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any

import attrs

from .errors import UsageError

__all__ = ["ContactPoint", "select_contact_points", "sort_key"]

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# RFC 1123 labels; also accepts underscores, which real service names (SRV targets) carry.
_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
_MAX_HOSTNAME = 253


def _parse_address(host: str) -> _Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _canonical_host(host: object) -> str:
    if not isinstance(host, str):
        raise UsageError(f"contact point host must be a string, got {type(host).__name__}")
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if not text:
        raise UsageError("contact point host is empty")
    address = _parse_address(text)
    if address is not None:
        return str(address)
    name = text.lower().removesuffix(".")
    labels = name.split(".")
    if len(name) > _MAX_HOSTNAME or not all(_LABEL.match(label) for label in labels):
        raise UsageError(
            f"contact point host {host!r} is neither an IP address nor a valid hostname"
        )
    return name


def _check_port(instance: Any, attribute: Any, port: int | None) -> None:
    if port is None:
        return
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise UsageError(f"contact point port must be an integer in 1..65535, got {port!r}")


@attrs.frozen(order=False, cache_hash=True)
class ContactPoint:
    """The host and port of a node's management endpoint, in canonical form.

    ``ContactPoint("[::1]", 8558) == ContactPoint("::1", 8558)``; ``str()`` gives
    ``"[::1]:8558"``. ``sorted()`` follows the canonical order described in the module docstring.
    """

    host: str = attrs.field(converter=_canonical_host)
    port: int | None = attrs.field(default=None, validator=_check_port)
    _sort_key: tuple[int, int, int, str, int] = attrs.field(
        init=False, repr=False, eq=False, hash=False
    )

    def __attrs_post_init__(self) -> None:
        address = _parse_address(self.host)
        port = -1 if self.port is None else self.port
        key = (
            (0, address.version, int(address), "", port)
            if address is not None
            else (1, 0, 0, self.host, port)
        )
        object.__setattr__(self, "_sort_key", key)

    @classmethod
    def parse(cls, text: str, *, default_port: int | None = None) -> ContactPoint:
        """Parse ``host``, ``host:port``, ``[v6]`` or ``[v6]:port``; a bare IPv6 has no port."""
        if not isinstance(text, str):
            raise UsageError(f"contact point must be a string, got {type(text).__name__}")
        raw = text.strip()
        host, separator, port_text = raw, "", ""
        if raw.startswith("["):
            end = raw.find("]")
            if end < 0:
                raise UsageError(f"contact point {text!r}: missing ']' after IPv6 address")
            host, rest = raw[: end + 1], raw[end + 1 :]
            if rest and not rest.startswith(":"):
                raise UsageError(f"contact point {text!r}: expected ':port' after ']'")
            separator, port_text = rest[:1], rest[1:]
        elif raw.count(":") == 1:
            # More than one colon without brackets is a bare IPv6 address: it has no port.
            host, separator, port_text = raw.partition(":")
        if not separator:
            return cls(host, default_port)
        if not port_text.isdigit():
            raise UsageError(f"contact point {text!r}: port {port_text!r} is not a number")
        return cls(host, int(port_text))

    @property
    def is_ip(self) -> bool:
        """True if the host is an IP literal (not a name to resolve)."""
        return self._sort_key[0] == 0

    def with_port(self, port: int) -> ContactPoint:
        """This contact point with ``port`` (used to apply the fallback port)."""
        return ContactPoint(self.host, port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, ContactPoint):
            return NotImplemented
        return self._sort_key < other._sort_key

    def __le__(self, other: object) -> bool:
        if not isinstance(other, ContactPoint):
            return NotImplemented
        return self._sort_key <= other._sort_key

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, ContactPoint):
            return NotImplemented
        return self._sort_key > other._sort_key

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, ContactPoint):
            return NotImplemented
        return self._sort_key >= other._sort_key


# The last few selections, by the identity of the discovery result they came from. A driver
# that hands many machines the same immutable result (the simulation shares one per registry
# version) then has it selected once, and every machine holds the same tuple and the same
# ContactPoint objects instead of its own copy: 10,000 machines x 10,000 contact points is
# otherwise most of the simulation's memory. The key holds the result itself, so an id is never
# reused while its entry lives.
_SELECTIONS: dict[
    tuple[int, int, bool], tuple[tuple[ContactPoint, ...], tuple[ContactPoint, ...]]
] = {}
_SELECTIONS_KEPT = 16


def select_contact_points(
    discovered: Iterable[ContactPoint], *, fallback_port: int, filter_on_fallback_port: bool
) -> tuple[ContactPoint, ...]:
    """Apply the fallback port and the fallback-port filter; return sorted, without duplicates.

    A host discovered with several ports (e.g. the remoting and the management port of one pod)
    keeps only its fallback-port entry when ``filter_on_fallback_port`` is set; if none of its
    ports is the fallback port the host is dropped, as in the reference design. A host seen with a
    single port keeps it whatever it is. Contact points that already carry their port are
    returned as the same objects.
    """
    if not isinstance(discovered, tuple):
        return _select(discovered, fallback_port, filter_on_fallback_port)
    key = (id(discovered), fallback_port, filter_on_fallback_port)
    cached = _SELECTIONS.get(key)
    if cached is not None and cached[0] is discovered:
        return cached[1]
    selected = _select(discovered, fallback_port, filter_on_fallback_port)
    if len(_SELECTIONS) >= _SELECTIONS_KEPT:
        del _SELECTIONS[next(iter(_SELECTIONS))]  # the oldest entry
    _SELECTIONS[key] = (discovered, selected)
    return selected


def _select(
    discovered: Iterable[ContactPoint], fallback_port: int, filter_on_fallback_port: bool
) -> tuple[ContactPoint, ...]:
    by_host: dict[str, dict[int, ContactPoint]] = {}
    for contact_point in discovered:
        port = contact_point.port
        if port is None:
            port = fallback_port
            contact_point = contact_point.with_port(port)
        by_host.setdefault(contact_point.host, {}).setdefault(port, contact_point)
    selected: list[ContactPoint] = []
    for ports in by_host.values():
        if filter_on_fallback_port and len(ports) > 1:
            kept = ports.get(fallback_port)
            if kept is not None:
                selected.append(kept)
        else:
            selected.extend(ports.values())
    selected.sort(key=sort_key)
    return tuple(selected)


def sort_key(contact_point: ContactPoint) -> tuple[int, int, int, str, int]:
    """The canonical order as a plain tuple: ``sorted(cps, key=sort_key) == sorted(cps)``,
    without a Python-level comparison per pair (for sorting thousands of contact points)."""
    return contact_point._sort_key
