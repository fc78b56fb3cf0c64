"""The seed-nodes document: what ``GET /bootstrap/seed-nodes`` serves and every watch pushes.

The shape is Akka Management's (DESIGN section 4), so we read what real Akka JVM nodes serve,
plus optional extensions: ``clusterId`` and ``serviceName``, and the founding round's (DESIGN
section 8) ``round``, ``candidate``, ``promise`` and ``founding``::

    {"selfNode": "akka://sys@10.0.0.5:25520",
     "seedNodes": [{"node": "akka://sys@10.0.0.3:25520", "nodeUid": -4243213921,
                    "status": "Up", "roles": ["dc-default"]}],
     "clusterId": "0b6f...", "serviceName": "svc",
     "round": 2, "promise": {"to": "10.0.0.1:8558", "round": 3}}

Rules:

* The reader is strict and total: any bytes either decode to a :class:`SeedNodesDocument` or
  raise :class:`ProtocolError` whose message names the offending field, because that message
  becomes the ``ProbeFailed`` reason an operator reads. No other exception escapes.
* Everything is bounded, and checked in the order that keeps the work bounded: the body length
  before decoding, the nesting depth before parsing, list lengths before iterating. The limits
  are the ``MAX_*`` constants below.
* ``selfNode`` and each member's ``node`` are required non-empty strings; ``nodeUid`` (a JVM
  ``Long``, so signed 64-bit and often negative), ``status`` and ``roles`` are optional with the
  defaults of :class:`Member`, because some Akka versions leave them out. ``clusterId`` and
  ``serviceName`` are a string, null or absent. Unknown fields are ignored everywhere.
* The founding round's fields: ``round`` is an integer in ``0..MAX_ROUND`` (a node that speaks
  the round always sends it, 0 before its first round); ``candidate`` and ``founding`` are JSON
  booleans, written only while true; ``promise`` is an object that needs ``to`` (a
  ``host:port`` string, parsed as a :class:`ContactPoint`, port required) and ``round`` (other
  keys ignored). Each may be absent or null (the same as absent). A document without
  ``round`` (an Akka node's, or a node forming by the lowest-address rule) decodes to
  ``round=None`` and can carry none of the other three: a ``candidate``, ``promise`` or
  ``founding`` without a round is refused.
* A probe asks for a promise with the request header :data:`ROUND_HEADER` (``Bootstrap-Round:
  <r>``), or on a watch with the text message ``propose <r>`` (:func:`propose_message`); both
  spell the round as :func:`parse_round` reads it: canonical decimal digits, ``0..MAX_ROUND``.
* ``waiting`` (DESIGN section 9) is what a would-be founder waits for, in its own words (its
  status reason), so the nodes that probe it can say so; a string of at most
  :data:`MAX_WAITING_CHARS`, null or absent. A reader shows it, it decides nothing.
* Our own values are validated when built, with the same rules and limits, but a wrong value
  there is our bug, so it raises :class:`UsageError`. The writer never sends a document that a
  reader would refuse, so ``decode_seed_nodes(encode_seed_nodes(doc)) == doc``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

import attrs

from . import events
from .contact_point import ContactPoint
from .errors import ProtocolError, UsageError
from .events import Promise

__all__ = [
    "ALIVE_PATH",
    "CONTACT_POINT_HEADER",
    "MAX_CONTACT_POINT_CHARS",
    "MAX_DOCUMENT_BYTES",
    "MAX_DOCUMENT_SEED_NODES",
    "MAX_NAME_CHARS",
    "MAX_NESTING_DEPTH",
    "MAX_NODE_CHARS",
    "MAX_ROLES",
    "MAX_ROUND",
    "MAX_WAITING_CHARS",
    "PROBE_MESSAGE",
    "PROPOSE_MESSAGE",
    "READY_PATH",
    "ROUND_HEADER",
    "SEED_NODES_PATH",
    "STATUS_PATH",
    "WATCH_PATH",
    "Member",
    "SeedNodesDocument",
    "check_service_name",
    "decode_seed_nodes",
    "encode_seed_nodes",
    "parse_proposal",
    "parse_round",
    "propose_message",
]

# --- the endpoints and headers every driver shares (DESIGN section 4), defined once ----------

#: ``GET`` answers the seed-nodes document (the Akka JVM path, so Akka probers read us).
SEED_NODES_PATH = "/bootstrap/seed-nodes"
#: The websocket endpoint that pushes the same document on every change.
WATCH_PATH = "/bootstrap/watch"
#: ``GET`` answers the node's status as JSON.
STATUS_PATH = "/bootstrap/status"
#: 200 while the node serves.
ALIVE_PATH = "/alive"
#: 200 once the node has joined, 503 before.
READY_PATH = "/ready"
#: ``GET`` answers the node's metrics in the Prometheus text format.
METRICS_PATH = "/metrics"
#: The request header that tells a peer who probes it (the server turns it into ``ContactedBy``).
#: HTTP header names are case-insensitive; servers compare it lower-cased.
CONTACT_POINT_HEADER = "Bootstrap-Contact-Point"
#: The watch client's text message that asks for the document now.
PROBE_MESSAGE = "probe"
#: The request header that asks the peer for a promise for that founding round (DESIGN section
#: 8): ``Bootstrap-Round: 3``. Only with :data:`CONTACT_POINT_HEADER`: a proposal names its
#: candidate.
ROUND_HEADER = "Bootstrap-Round"
#: The watch client's text message that asks for a promise, and for the document at once:
#: ``propose 3`` (this word, one space, the round), sent instead of :data:`PROBE_MESSAGE`.
PROPOSE_MESSAGE = "propose"

#: Largest body a reader accepts, in bytes; larger bodies are refused before being decoded.
MAX_DOCUMENT_BYTES = 64 * 1024
#: Deepest nesting of arrays and objects a reader accepts. A valid document needs 4 (document,
#: ``seedNodes``, member, ``roles``); the rest is headroom for extensions in unknown fields.
MAX_NESTING_DEPTH = 16
#: Longest ``selfNode`` or ``node`` address, in characters.
MAX_NODE_CHARS = 1024
#: Longest role, ``status``, ``clusterId`` or ``serviceName``, in characters.
MAX_NAME_CHARS = 256
#: Most members one document may list. Deliberately far above ``Settings.max_seed_nodes``: an
#: Akka node lists every Up member of its cluster, not just a few.
MAX_DOCUMENT_SEED_NODES = 1000
#: Most roles one member may carry.
MAX_ROLES = 64
#: Largest founding round a reader accepts (defined with the events): 2**53, the largest integer
#: every JSON reader (a JavaScript one included) holds exactly. A machine opens a round per probe
#: period at most.
MAX_ROUND = events.MAX_ROUND
#: Longest ``host:port`` a reader accepts (``promise.to``, the contact-point header): a
#: 253-character hostname, brackets and a port fit.
MAX_CONTACT_POINT_CHARS = 300
#: Longest ``waiting`` (the would-be founder's status reason, DESIGN section 9), in characters:
#: reasons name a contact point or two and a count; the rest is headroom.
MAX_WAITING_CHARS = 1000

_MIN_NODE_UID = -(2**63)
_MAX_NODE_UID = 2**63 - 1
# A round as the header and the watch message spell it: decimal digits without sign, spaces or
# leading zeros (one spelling per number), at most as many as MAX_ROUND has.
_ROUND_TEXT = re.compile(rf"0|[1-9][0-9]{{0,{len(str(MAX_ROUND)) - 1}}}")
# Peer-supplied text quoted in an error message is cut to this.
_MAX_QUOTED_CHARS = 40

# Splits a JSON text into the tokens that matter for nesting: whole strings (skipped, so a "[" in
# a string does not count) and brackets. A string token runs to its closing quote or, if it has
# none, to the end of the text, so every '"' starts a match and the scan stays linear (had an
# unterminated string failed to match, the search would retry at each later quote: quadratic on
# a body like "\"\"\"...). The parser fails inside such a string without nesting any deeper.
_NESTING_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)|[\[{]|[\]}]', re.DOTALL)


# --- shared checks ----------------------------------------------------------------------------
# One set of checks serves both directions; only the error class and the way a field is named
# differ (``seedNodes[2].node`` on the wire, ``Member.node`` in our code).


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def _check_text(
    value: object, where: str, error: type[ValueError], *, max_chars: int, non_empty: bool
) -> str:
    if not isinstance(value, str):
        kind = "a non-empty string" if non_empty else "a string"
        raise error(f"{where} must be {kind}, got {_json_type(value)}")
    if non_empty and not value:
        raise error(f"{where} must be a non-empty string, got an empty one")
    if len(value) > max_chars:
        raise error(f"{where} is {len(value)} characters long, the limit is {max_chars}")
    if not value.isascii():
        # JSON's \ud800 escapes can smuggle in lone surrogates, which are not text: they would
        # make the writer (and any log line or header carrying the value) fail to encode.
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise error(
                f"{where} contains an unpaired surrogate, which is not valid text"
            ) from None
    return value


def _check_optional_name(value: object, where: str, error: type[ValueError]) -> str | None:
    if value is None:
        return None
    return _check_text(value, where, error, max_chars=MAX_NAME_CHARS, non_empty=False)


def _check_node_uid(value: object, where: str, error: type[ValueError]) -> int:
    # bool is an int subclass, but ``true`` is not a uid.
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{where} must be an integer, got {_json_type(value)}")
    if not _MIN_NODE_UID <= value <= _MAX_NODE_UID:
        raise error(f"{where} is {value}, outside the signed 64-bit range of a JVM Long")
    return value


def _check_round(value: object, where: str, error: type[ValueError]) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{where} must be an integer, got {_json_type(value)}")
    if not 0 <= value <= MAX_ROUND:
        raise error(f"{where} is {value}, outside 0..{MAX_ROUND}")
    return value


def _check_flag(value: object, where: str, error: type[ValueError]) -> bool:
    if not isinstance(value, bool):
        raise error(f"{where} must be a boolean, got {_json_type(value)}")
    return value


def _check_contact_point(value: object, where: str, error: type[ValueError]) -> ContactPoint:
    text = _check_text(value, where, error, max_chars=MAX_CONTACT_POINT_CHARS, non_empty=True)
    if not text.isascii():
        raise error(f"{where} must be an ASCII host:port, got {_quoted(text)}")
    try:
        contact_point = ContactPoint.parse(text)
    except ValueError as exc:  # UsageError, or int()'s refusal of a digit it cannot convert
        raise error(f"{where} is not a contact point: {exc}") from None
    if contact_point.port is None:
        # A promise names its candidate exactly; guessing a port could credit the wrong node.
        raise error(f"{where} must be host:port, got {_quoted(text)} without a port")
    return contact_point


def _quoted(text: str) -> str:
    if len(text) > _MAX_QUOTED_CHARS:
        text = text[:_MAX_QUOTED_CHARS] + "..."
    return repr(text)


def _check_count(
    items: tuple[Any, ...] | list[Any],
    where: str,
    error: type[ValueError],
    *,
    limit: int,
    what: str,
) -> None:
    if len(items) > limit:
        raise error(f"{where} lists {len(items)} {what}, the limit is {limit}")


# --- values -----------------------------------------------------------------------------------


def _to_tuple(value: Iterable[Any]) -> tuple[Any, ...]:
    if isinstance(value, str | bytes):
        # A lone string is a sequence of characters: never what the caller meant.
        raise UsageError(f"expected a sequence of values, got the string {value!r}")
    try:
        return tuple(value)
    except TypeError:
        raise UsageError(f"expected a sequence of values, got {value!r}") from None


def _owner(instance: object, attribute: attrs.Attribute[Any]) -> str:
    return f"{type(instance).__name__}.{attribute.name}"


def _node(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    where = _owner(instance, attribute)
    _check_text(value, where, UsageError, max_chars=MAX_NODE_CHARS, non_empty=True)


def _node_uid(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    _check_node_uid(value, _owner(instance, attribute), UsageError)


def _name(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    where = _owner(instance, attribute)
    _check_text(value, where, UsageError, max_chars=MAX_NAME_CHARS, non_empty=False)


def _optional_name(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    _check_optional_name(value, _owner(instance, attribute), UsageError)


def _check_optional_waiting(value: object, where: str, error: type[ValueError]) -> str | None:
    if value is None:
        return None
    return _check_text(value, where, error, max_chars=MAX_WAITING_CHARS, non_empty=False)


def _optional_waiting(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    _check_optional_waiting(value, _owner(instance, attribute), UsageError)


def _roles(instance: object, attribute: attrs.Attribute[Any], value: tuple[object, ...]) -> None:
    where = _owner(instance, attribute)
    _check_count(value, where, UsageError, limit=MAX_ROLES, what="roles")
    for index, role in enumerate(value):
        _check_text(
            role, f"{where}[{index}]", UsageError, max_chars=MAX_NAME_CHARS, non_empty=False
        )


def _optional_round(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        _check_round(value, _owner(instance, attribute), UsageError)


def _flag(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    _check_flag(value, _owner(instance, attribute), UsageError)


def _optional_promise(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    where = _owner(instance, attribute)
    if not isinstance(value, Promise):
        raise UsageError(f"{where} must be a Promise or None, got {value!r}")
    if value.to.port is None:
        raise UsageError(f"{where}.to must have a port: readers refuse {value.to} without one")
    _check_round(value.round, f"{where}.round", UsageError)


def _members(instance: object, attribute: attrs.Attribute[Any], value: tuple[object, ...]) -> None:
    where = _owner(instance, attribute)
    _check_count(value, where, UsageError, limit=MAX_DOCUMENT_SEED_NODES, what="members")
    for index, member in enumerate(value):
        if not isinstance(member, Member):
            raise UsageError(f"{where}[{index}] must be a Member, got {member!r}")


@attrs.frozen
class Member:
    """One entry of ``seedNodes``: a cluster member's address, uid, status and roles.

    ``node`` is the member's cluster address (e.g. ``akka://sys@10.0.0.3:25520``), not its
    contact point. ``node_uid`` is the incarnation's JVM ``Long`` uid.
    """

    node: str = attrs.field(validator=_node)
    node_uid: int = attrs.field(default=0, validator=_node_uid)
    status: str = attrs.field(default="Up", validator=_name)
    roles: tuple[str, ...] = attrs.field(default=(), converter=_to_tuple, validator=_roles)


@attrs.frozen
class SeedNodesDocument:
    """The document a node serves: its own address and the members a newcomer should join.

    ``seed_nodes`` is empty while the node has not joined a cluster. ``cluster_id`` and
    ``service_name`` are our extensions; ``None`` leaves them out of the encoded document.

    The founding round's fields (DESIGN section 8), keyword-only: ``round`` is the node's latest
    round number (``None``: it speaks no founding round, as an Akka node); ``candidate`` that it
    proposes in that round; ``promise`` the promise it holds; ``founding`` that it decided to
    form a cluster whose members it does not list yet. Without a round the other three must
    keep their defaults. ``waiting``, keyword-only too: what the node waits for while it is the
    would-be founder (DESIGN section 9), for the status of the nodes that probe it.
    """

    self_node: str = attrs.field(validator=_node)
    seed_nodes: tuple[Member, ...] = attrs.field(converter=_to_tuple, validator=_members)
    cluster_id: str | None = attrs.field(default=None, validator=_optional_name)
    service_name: str | None = attrs.field(default=None, validator=_optional_name)
    round: int | None = attrs.field(default=None, kw_only=True, validator=_optional_round)
    candidate: bool = attrs.field(default=False, kw_only=True, validator=_flag)
    promise: Promise | None = attrs.field(default=None, kw_only=True, validator=_optional_promise)
    founding: bool = attrs.field(default=False, kw_only=True, validator=_flag)
    waiting: str | None = attrs.field(default=None, kw_only=True, validator=_optional_waiting)

    def __attrs_post_init__(self) -> None:
        if self.round is None:
            for name in _ROUND_ONLY_FIELDS:
                if getattr(self, name) != _NO_ROUND_DEFAULTS[name]:
                    raise UsageError(
                        f"SeedNodesDocument.{name} needs a round: a document without one (a "
                        "node forming by the lowest-address rule) says nothing of a founding round"
                    )


# The fields a document may only carry with a round, and their defaults.
_ROUND_ONLY_FIELDS = ("candidate", "promise", "founding")
_NO_ROUND_DEFAULTS: dict[str, object] = {"candidate": False, "promise": None, "founding": False}


# --- writing ----------------------------------------------------------------------------------


def encode_seed_nodes(doc: SeedNodesDocument) -> bytes:
    """Encode ``doc`` as compact UTF-8 JSON in the Akka shape.

    Raises :class:`UsageError` if ``doc`` is not a :class:`SeedNodesDocument`, or if the encoded
    body would exceed :data:`MAX_DOCUMENT_BYTES` (every reader would refuse it).
    """
    if not isinstance(doc, SeedNodesDocument):
        raise UsageError(f"encode_seed_nodes() takes a SeedNodesDocument, got {doc!r}")
    body: dict[str, object] = {
        "selfNode": doc.self_node,
        "seedNodes": [
            {
                "node": member.node,
                "nodeUid": member.node_uid,
                "status": member.status,
                "roles": list(member.roles),
            }
            for member in doc.seed_nodes
        ],
    }
    if doc.cluster_id is not None:
        body["clusterId"] = doc.cluster_id
    if doc.service_name is not None:
        body["serviceName"] = doc.service_name
    if doc.round is not None:
        body["round"] = doc.round
    if doc.candidate:
        body["candidate"] = True
    if doc.promise is not None:
        body["promise"] = {"to": str(doc.promise.to), "round": doc.promise.round}
    if doc.founding:
        body["founding"] = True
    if doc.waiting is not None:
        body["waiting"] = doc.waiting
    # The values were validated when built (no surrogates, no floats), so this cannot fail.
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    if len(data) > MAX_DOCUMENT_BYTES:
        raise UsageError(
            f"the encoded seed-nodes document is {len(data)} bytes, over the "
            f"{MAX_DOCUMENT_BYTES} bytes a reader accepts: list fewer seed nodes"
        )
    return data


# --- reading ----------------------------------------------------------------------------------


def _check_nesting(text: str) -> None:
    # The json module parses nested values by recursion, so a body of a few thousand "[" would
    # raise RecursionError (or, with a raised recursion limit, crash the interpreter) from inside
    # json.loads. A linear scan first keeps the parser's recursion bounded by MAX_NESTING_DEPTH.
    depth = 0
    for token in _NESTING_TOKENS.finditer(text):
        first = token.group()[0]
        if first in "[{":
            depth += 1
            if depth > MAX_NESTING_DEPTH:
                raise ProtocolError(
                    f"document nests arrays/objects more than {MAX_NESTING_DEPTH} levels deep"
                )
        elif first in "]}":
            # An unmatched close may drive this below the parser's depth, but only after the
            # point where the parser has already failed, so it never recurses deeper than seen.
            depth -= 1
        # Otherwise the token is a whole string: its contents are not structure.


def _reject_constant(name: str) -> object:
    raise ProtocolError(f"document contains {name}, which is not valid JSON")


def _field(obj: dict[str, Any], key: str, where: str) -> Any:
    try:
        return obj[key]
    except KeyError:
        raise ProtocolError(f"{where} is missing") from None


def _decode_member(value: object, where: str) -> Member:
    if not isinstance(value, dict):
        raise ProtocolError(f"{where} must be an object, got {_json_type(value)}")
    node = _check_text(
        _field(value, "node", f"{where}.node"),
        f"{where}.node",
        ProtocolError,
        max_chars=MAX_NODE_CHARS,
        non_empty=True,
    )
    node_uid = _check_node_uid(value.get("nodeUid", 0), f"{where}.nodeUid", ProtocolError)
    status = _check_text(
        value.get("status", "Up"),
        f"{where}.status",
        ProtocolError,
        max_chars=MAX_NAME_CHARS,
        non_empty=False,
    )
    roles = value.get("roles", [])
    if not isinstance(roles, list):
        raise ProtocolError(f"{where}.roles must be an array, got {_json_type(roles)}")
    _check_count(roles, f"{where}.roles", ProtocolError, limit=MAX_ROLES, what="roles")
    for index, role in enumerate(roles):
        _check_text(
            role,
            f"{where}.roles[{index}]",
            ProtocolError,
            max_chars=MAX_NAME_CHARS,
            non_empty=False,
        )
    return Member(node, node_uid, status, roles)


def decode_seed_nodes(data: bytes) -> SeedNodesDocument:
    """Decode a seed-nodes document served by a peer (ours or an Akka JVM node).

    Raises :class:`ProtocolError`, and nothing else, for any input that is not a valid document;
    its message names the offending field.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise UsageError(f"decode_seed_nodes() takes bytes, got {type(data).__name__}")
    if len(data) > MAX_DOCUMENT_BYTES:
        raise ProtocolError(
            f"document is {len(data)} bytes, over the limit of {MAX_DOCUMENT_BYTES} bytes"
        )
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(
            f"document is not valid UTF-8: {exc.reason} at byte {exc.start}"
        ) from None
    _check_nesting(text)
    try:
        parsed = json.loads(text, parse_constant=_reject_constant)
    except ProtocolError:
        raise  # from _reject_constant, already explicit (and a ValueError: keep it from below)
    except ValueError as exc:
        # JSONDecodeError, or int()'s refusal of a number literal with thousands of digits.
        raise ProtocolError(f"document is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise ProtocolError(f"document must be a JSON object, got {_json_type(parsed)}")
    self_node = _check_text(
        _field(parsed, "selfNode", "selfNode"),
        "selfNode",
        ProtocolError,
        max_chars=MAX_NODE_CHARS,
        non_empty=True,
    )
    seed_nodes = _field(parsed, "seedNodes", "seedNodes")
    if not isinstance(seed_nodes, list):
        raise ProtocolError(f"seedNodes must be an array, got {_json_type(seed_nodes)}")
    _check_count(
        seed_nodes, "seedNodes", ProtocolError, limit=MAX_DOCUMENT_SEED_NODES, what="members"
    )
    members = [
        _decode_member(member, f"seedNodes[{index}]") for index, member in enumerate(seed_nodes)
    ]
    cluster_id = _check_optional_name(parsed.get("clusterId"), "clusterId", ProtocolError)
    service_name = _check_optional_name(parsed.get("serviceName"), "serviceName", ProtocolError)
    round_value = parsed.get("round")
    round = None if round_value is None else _check_round(round_value, "round", ProtocolError)
    candidate = _decode_flag(parsed, "candidate")
    promise = _decode_promise(parsed.get("promise"), "promise")
    founding = _decode_flag(parsed, "founding")
    waiting = _check_optional_waiting(parsed.get("waiting"), "waiting", ProtocolError)
    if round is None:
        for name, value in (("candidate", candidate), ("promise", promise), ("founding", founding)):
            if value != _NO_ROUND_DEFAULTS[name]:
                raise ProtocolError(
                    f"{name} is set but round is missing: a node that speaks the founding round "
                    "always sends its round"
                )
    return SeedNodesDocument(
        self_node,
        members,
        cluster_id,
        service_name,
        round=round,
        candidate=candidate,
        promise=promise,
        founding=founding,
        waiting=waiting,
    )


def _decode_flag(parsed: dict[str, Any], key: str) -> bool:
    value = parsed.get(key)
    return False if value is None else _check_flag(value, key, ProtocolError)


def _decode_promise(value: object, where: str) -> Promise | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ProtocolError(f"{where} must be an object, got {_json_type(value)}")
    to = _check_contact_point(_field(value, "to", f"{where}.to"), f"{where}.to", ProtocolError)
    round = _check_round(_field(value, "round", f"{where}.round"), f"{where}.round", ProtocolError)
    return Promise(to, round)


# --- the round on a request and on a watch ------------------------------------------------------


def parse_round(text: str, *, where: str = ROUND_HEADER) -> int:
    """The round spelled by ``text`` (a :data:`ROUND_HEADER` value, a proposal's round).

    Canonical decimal digits only (no sign, spaces or leading zeros), ``0..MAX_ROUND``; anything
    else raises :class:`ProtocolError` naming ``where``.
    """
    if not isinstance(text, str):
        raise UsageError(f"parse_round() takes a string, got {type(text).__name__}")
    if _ROUND_TEXT.fullmatch(text) is None or int(text) > MAX_ROUND:
        raise ProtocolError(
            f"{where} must be a decimal integer in 0..{MAX_ROUND}, got {_quoted(text)}"
        )
    return int(text)


def propose_message(round: int) -> str:
    """The watch message that asks for a promise for ``round``: ``"propose 3"``."""
    _check_round(round, "the proposed round", UsageError)
    return f"{PROPOSE_MESSAGE} {round}"


def parse_proposal(message: str) -> int | None:
    """The round a watch message proposes; ``None`` if it is no ``propose`` message at all.

    A ``propose`` message whose round is missing or malformed raises :class:`ProtocolError`.
    """
    word, space, rest = message.partition(" ")
    if word != PROPOSE_MESSAGE:
        return None
    if not space:
        raise ProtocolError(f"the {PROPOSE_MESSAGE!r} message carries no round")
    return parse_round(rest, where=f"the round of a {PROPOSE_MESSAGE!r} message")


def check_service_name(doc: SeedNodesDocument, expected: str | None) -> None:
    """Refuse a document served for another service than ``expected``.

    Only a mismatch is refused: a peer that does not send ``serviceName`` (an Akka node) or a
    reader that expects none accepts anything. Raises :class:`ProtocolError`.
    """
    if expected is None or doc.service_name is None or doc.service_name == expected:
        return
    raise ProtocolError(
        f"peer serves service {doc.service_name!r}, expected {expected!r} "
        "(a recycled address now serving another deployment?)"
    )
