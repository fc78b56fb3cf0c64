"""Fuzzing the wire decoder (``decode_seed_nodes``, ``check_service_name``): what a peer's answer
can make a prober do.

Invariants, for every input: the decoder returns a valid :class:`SeedNodesDocument` or raises
:class:`ProtocolError` with a message, never any other exception (a ``RecursionError``,
``UnicodeEncodeError``, ``OverflowError`` or ``ValueError`` here would escape the prober as a
crash instead of becoming a ``ProbeFailed``); a decoded document is a fixed point of
encode/decode whenever it can be encoded; and every valid document round-trips.

Inputs: arbitrary bytes; a soup of JSON tokens (brackets, quotes, escapes, NaN/Infinity); and
near-valid documents: a valid document with one field mutated (wrong type, over-long or huge
string, deep nesting, extra or duplicate keys, unicode and lone surrogate escapes, non-finite and
out-of-range numbers), serialized by a writer that can emit what ``json.dumps`` will not. The
valid documents carry the founding round's fields (DESIGN section 8) about half the time, and
those fields, the promise's ``to`` and ``round`` among them, are mutated like the others; a
decoded document never carries a candidacy, promise or founding flag without a round.
"""

from __future__ import annotations

import json
import re
from typing import Any

import attrs
from hypothesis import event, given
from hypothesis import strategies as st

from bootstrap.core import Promise
from bootstrap.core.errors import ProtocolError, UsageError
from bootstrap.core.wire import (
    MAX_CONTACT_POINT_CHARS,
    MAX_DOCUMENT_BYTES,
    MAX_DOCUMENT_SEED_NODES,
    MAX_NAME_CHARS,
    MAX_NESTING_DEPTH,
    MAX_NODE_CHARS,
    MAX_ROLES,
    MAX_ROUND,
    Member,
    SeedNodesDocument,
    check_service_name,
    decode_seed_nodes,
    encode_seed_nodes,
)

from ..strategies import contact_points
from . import FUZZ

# --- a JSON writer that can also write invalid and unusual JSON ----------------------------------


@attrs.frozen
class Raw:
    """Emitted verbatim: NaN, Infinity, 1e999, a lone surrogate escape, a bad literal."""

    text: str


@attrs.frozen
class Pairs:
    """An object written from a list of pairs, so keys may repeat."""

    items: tuple[tuple[str, Any], ...]


def write(value: Any, *, ensure_ascii: bool) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Pairs | dict):
        items = value.items if isinstance(value, Pairs) else tuple(value.items())
        inner = ",".join(
            f"{json.dumps(key, ensure_ascii=ensure_ascii)}:{write(item, ensure_ascii=ensure_ascii)}"
            for key, item in items
        )
        return "{" + inner + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(write(item, ensure_ascii=ensure_ascii) for item in value) + "]"
    return json.dumps(value, ensure_ascii=ensure_ascii)


def encode(value: Any, *, ensure_ascii: bool) -> bytes:
    # surrogatepass: a str holding a lone surrogate (only reachable with ensure_ascii=False)
    # becomes the invalid UTF-8 a hostile peer could send.
    return write(value, ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass")


# --- strategies ---------------------------------------------------------------------------------

_texts = st.text(st.characters(codec="utf-8"), max_size=20)
_nodes = st.text(st.characters(codec="utf-8"), min_size=1, max_size=40)
_any_text = st.text(max_size=20)  # may hold lone surrogates


def _sized(*sizes: int) -> st.SearchStrategy[str]:
    """Strings of exactly these lengths (built, not drawn character by character: fast)."""
    return st.builds(
        lambda size, char: char * size, st.sampled_from(sizes), st.sampled_from("xé€😀")
    )


_huge_strings = _sized(
    MAX_NAME_CHARS,
    MAX_NAME_CHARS + 1,
    MAX_CONTACT_POINT_CHARS,
    MAX_CONTACT_POINT_CHARS + 1,
    MAX_NODE_CHARS,
    MAX_NODE_CHARS + 1,
    MAX_DOCUMENT_BYTES,
)
_raw_literals = st.sampled_from(
    [
        "NaN",
        "Infinity",
        "-Infinity",
        "1e999",
        "-1e999",
        "1" * 5000,  # more digits than int() converts
        "9223372036854775808",  # 2**63: one past a JVM Long
        "-9223372036854775809",
        "0.0",
        "-0",
        "9007199254740992",  # MAX_ROUND
        "9007199254740993",  # one past it
        "-1",
        '"10.0.0.1"',  # a contact point without a port
        '"10.0.0.1:0"',
        '"[::1]:8558"',
        '"h\\u00f6st:1"',  # non-ASCII, escaped
        "1E2",
        "true",
        "null",
        '"\\ud800"',  # a lone surrogate escape
        '"\\udfff\\ud800"',
        '"\\ud83d\\ude00"',  # a valid pair
        '"\\u0000"',
        "tru",
        "01",
        "'x'",
        "",
        '"\\x"',
    ]
).map(Raw)


def _nested(depth: int, leaf: str, closed: bool) -> Raw:
    """``depth`` levels of alternating objects and arrays around ``leaf``, as raw text (a writer
    recursing 3000 levels deep would hit the recursion limit itself), closed or left open."""
    opening = "".join('{"k":' if level % 2 else "[" for level in range(depth))
    closing = "".join("}" if level % 2 else "]" for level in reversed(range(depth)))
    return Raw(opening + leaf + (closing if closed else ""))


_deep = st.builds(
    _nested,
    st.sampled_from(
        [MAX_NESTING_DEPTH - 4, MAX_NESTING_DEPTH - 3, MAX_NESTING_DEPTH, MAX_NESTING_DEPTH + 1]
    )
    | st.integers(0, 3000),
    st.sampled_from(["null", '"leaf"', '"[[[{"']),
    st.booleans(),
)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | _any_text
)
_json_values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_texts, children, max_size=3),
    max_leaves=10,
)
nasty_values = (
    _json_values | _huge_strings | _raw_literals | _deep | st.lists(_texts, min_size=0, max_size=3)
)

members = st.builds(
    Member,
    node=_nodes,
    node_uid=st.integers(-(2**63), 2**63 - 1),
    status=st.sampled_from(["Up", "WeaklyUp", "Joining"]) | _texts,
    roles=st.lists(_texts, max_size=4),
)
plain_documents = st.builds(
    SeedNodesDocument,
    self_node=_nodes,
    seed_nodes=st.lists(members, max_size=6),
    cluster_id=st.none() | _texts,
    service_name=st.none() | _texts,
)
_rounds = st.integers(0, 3) | st.integers(0, MAX_ROUND)


@st.composite
def founding_documents(draw: st.DrawFn) -> SeedNodesDocument:
    """A valid document carrying a round, and any other founding fields."""
    return attrs.evolve(
        draw(plain_documents),
        round=draw(_rounds),
        candidate=draw(st.booleans()),
        promise=draw(st.none() | st.builds(Promise, contact_points(with_port=True), _rounds)),
        founding=draw(st.booleans()),
    )


documents = plain_documents | founding_documents()


def as_wire(doc: SeedNodesDocument) -> dict[str, Any]:
    """The document as the wire's JSON object (what encode_seed_nodes writes)."""
    wire: dict[str, Any] = json.loads(encode_seed_nodes(doc))
    return wire


_DOCUMENT_KEYS = ["selfNode", "seedNodes", "clusterId", "serviceName", "extra", "SELFNODE"]
_DOCUMENT_KEYS += ["round", "candidate", "promise", "founding"]
_MEMBER_KEYS = ["node", "nodeUid", "status", "roles", "extra"]
_PROMISE_KEYS = ["to", "round", "extra"]


@st.composite
def near_valid_bodies(draw: st.DrawFn) -> bytes:
    """A valid document with one thing changed, then written (ASCII-escaped or raw UTF-8)."""
    wire = as_wire(draw(documents))
    target: dict[str, Any] | list[Any] = wire
    keys = _DOCUMENT_KEYS
    where = draw(st.sampled_from(["document", "member", "roles", "seedNodes", "promise"]))
    if where == "promise":
        # A valid promise (and round) to mutate, if the document held none.
        wire.setdefault("round", 0)
        if not isinstance(wire.get("promise"), dict):
            wire["promise"] = {"to": "10.0.0.1:8558", "round": 1}
        target, keys = wire["promise"], _PROMISE_KEYS
    elif where != "document" and wire["seedNodes"]:
        member = draw(st.sampled_from(wire["seedNodes"]))
        target, keys = member, _MEMBER_KEYS
        if where == "roles" and member["roles"]:
            target = member["roles"]
    elif where == "seedNodes":
        target = wire["seedNodes"]
    action = draw(st.sampled_from(["replace", "delete", "duplicate", "append"]))
    value = draw(nasty_values)
    result: Any = wire
    if isinstance(target, list):
        if action in {"replace", "duplicate"} and target:
            target[draw(st.integers(0, len(target) - 1))] = value
        elif action == "append":
            # Past the count limits, with small items (the body must not be megabytes).
            count = draw(st.sampled_from([1, MAX_ROLES + 1, MAX_DOCUMENT_SEED_NODES + 1]))
            item = value if count == 1 else draw(st.sampled_from(["r", {"node": "n"}, 1, None]))
            target.extend([item] * count)
        elif target:
            target.pop()
    else:
        key = draw(st.sampled_from(keys))
        if action == "delete":
            target.pop(key, None)
        elif action == "duplicate":
            # The same key twice: json keeps the last; either way no crash, no other exception.
            pairs = Pairs((*target.items(), (key, value)))
            if target is wire:
                result = pairs
            elif target is wire.get("promise"):
                wire["promise"] = pairs
            else:
                listed = wire["seedNodes"]
                listed[next(i for i, m in enumerate(listed) if m is target)] = pairs
        else:
            target[key] = value
    return encode(result, ensure_ascii=draw(st.booleans()))


_TOKENS = [
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    '"',
    "\\",
    '"selfNode"',
    '"seedNodes"',
    '"node"',
    '"roles"',
    '"a"',
    "1",
    "-",
    "e",
    "NaN",
    "Infinity",
    "null",
    "true",
    " ",
    "\\u",
    "\\ud800",
    "é",
    "\x00",
]
token_soups = st.lists(st.sampled_from(_TOKENS), max_size=60).map(lambda parts: "".join(parts))


# --- the invariant ------------------------------------------------------------------------------


def check_decoder(body: bytes, expected_service: str | None = "svc") -> None:
    """Decode ``body``: a document or a ProtocolError with a message, and nothing else."""
    result: SeedNodesDocument | ProtocolError
    try:
        result = decode_seed_nodes(body)
    except ProtocolError as error:
        result = error
    if isinstance(result, ProtocolError):
        # The message is the ProbeFailed reason an operator reads: it must say something.
        event("refused: " + re.sub(r"\d+", "N", str(result).partition(":")[0])[:48])
        assert str(result)
        return
    event("decoded")
    doc = result
    assert isinstance(doc, SeedNodesDocument)
    assert all(isinstance(member, Member) for member in doc.seed_nodes)
    if doc.round is None:
        # "Speaks no founding round": nothing of a round may be claimed.
        assert (doc.candidate, doc.promise, doc.founding) == (False, None, False)
    else:
        event("decoded with a round")
        assert 0 <= doc.round <= MAX_ROUND
        if doc.promise is not None:
            assert doc.promise.to.port is not None
            assert 0 <= doc.promise.round <= MAX_ROUND
    mismatch: ProtocolError | None = None
    try:
        check_service_name(doc, expected_service)
    except ProtocolError as error:
        mismatch = error
    if mismatch is not None:
        assert doc.service_name not in {None, expected_service}
        assert str(mismatch)
    try:
        encoded = encode_seed_nodes(doc)
    except UsageError:
        # Defaults filled in (nodeUid, status, roles) can grow an accepted body past the limit.
        event("decoded, too big to re-encode")
        return
    assert decode_seed_nodes(encoded) == doc


# --- properties ---------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=2048))
def test_fuzz_arbitrary_bytes(body: bytes) -> None:
    """Any bytes decode to a document or raise ProtocolError, nothing else."""
    check_decoder(body)


@FUZZ
@given(token_soups, st.booleans())
def test_fuzz_json_token_soup(text: str, as_bytes_with_surrogates: bool) -> None:
    """Strings of JSON tokens (brackets, escapes, NaN...) decode or raise ProtocolError only."""
    check_decoder(text.encode("utf-8", "surrogatepass" if as_bytes_with_surrogates else "strict"))


@FUZZ
@given(near_valid_bodies())
def test_fuzz_near_valid_documents(body: bytes) -> None:
    """A valid document with one field mutated decodes or raises ProtocolError, nothing else."""
    check_decoder(body)


@FUZZ
@given(documents, st.sampled_from([None, "svc", "other"]))
def test_fuzz_valid_documents_round_trip(doc: SeedNodesDocument, expected: str | None) -> None:
    """Every valid document round-trips, also written with ASCII escapes or extra fields."""
    assert decode_seed_nodes(encode_seed_nodes(doc)) == doc
    wire = as_wire(doc)
    assert decode_seed_nodes(encode(wire, ensure_ascii=True)) == doc
    wire["unknownExtension"] = {"nested": [1, 2, {"x": None}]}
    assert decode_seed_nodes(encode(wire, ensure_ascii=False)) == doc
    check_decoder(encode_seed_nodes(doc), expected)


@FUZZ
@given(founding_documents(), st.booleans())
def test_fuzz_founding_fields_round_trip(doc: SeedNodesDocument, ensure_ascii: bool) -> None:
    """A document with founding fields round-trips, also respelled, null-padded or extended."""
    assert decode_seed_nodes(encode_seed_nodes(doc)) == doc
    wire = as_wire(doc)
    # Left out and written as null or false mean the same.
    for key in ("candidate", "founding"):
        wire.setdefault(key, False)
    wire.setdefault("promise", None)
    if isinstance(wire["promise"], dict):
        wire["promise"]["later"] = [{"x": 1}]  # an unknown key inside the promise
    wire["unknownExtension"] = {"round": "not ours"}
    assert decode_seed_nodes(encode(wire, ensure_ascii=ensure_ascii)) == doc
    check_decoder(encode(wire, ensure_ascii=ensure_ascii))
