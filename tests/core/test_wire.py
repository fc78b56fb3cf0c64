"""Tests of the seed-nodes wire document (``bootstrap.core.wire``).

Testing policy: the wire module is pure and synchronous, so these tests need no clock and no I/O.
Literal examples pin the Akka JVM shape we must read and write, and pin every error message
(the message becomes a ``ProbeFailed`` reason a human reads, so each one must name its field).
Hypothesis properties then show the two guarantees the rest of the code relies on: the writer
round-trips every document it accepts, and the reader is total: any bytes at all give either a
``SeedNodesDocument`` or a ``ProtocolError``, never another exception. The example count comes
from the profile in ``tests/conftest.py``; no test lowers it.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bootstrap.core import ContactPoint, Promise
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
    MAX_WAITING_CHARS,
    PROPOSE_MESSAGE,
    ROUND_HEADER,
    Member,
    SeedNodesDocument,
    check_service_name,
    decode_seed_nodes,
    encode_seed_nodes,
    parse_proposal,
    parse_round,
    propose_message,
)

from ..strategies import contact_points

AKKA_DOCUMENT = (
    b'{"selfNode":"akka://sys@10.0.0.5:25520","seedNodes":[{"node":"akka://sys@10.0.0.3:25520",'
    b'"nodeUid":-4243213921,"status":"Up","roles":["dc-default"]}]}'
)

# --- strategies -------------------------------------------------------------------------------

# utf-8 codec: surrogates are not text, and the value classes rightly refuse them.
_texts = st.text(st.characters(codec="utf-8"), max_size=30)
_nodes = st.text(st.characters(codec="utf-8"), min_size=1, max_size=60)
_node_uids = st.integers(min_value=-(2**63), max_value=2**63 - 1)

members = st.builds(
    Member,
    node=_nodes,
    node_uid=_node_uids,
    status=st.sampled_from(["Up", "WeaklyUp", "Joining"]) | _texts,
    roles=st.lists(_texts, max_size=5),
)
documents = st.builds(
    SeedNodesDocument,
    self_node=_nodes,
    seed_nodes=st.lists(members, max_size=8),
    cluster_id=st.none() | _texts,
    service_name=st.none() | _texts,
)

_rounds = st.integers(0, 3) | st.integers(0, MAX_ROUND)
promises = st.builds(Promise, to=contact_points(with_port=True), round=_rounds)


@st.composite
def founding_documents(draw: st.DrawFn) -> SeedNodesDocument:
    """A document with any founding-round fields (none of them without a round)."""
    doc = draw(documents)
    round = draw(st.none() | _rounds)
    if round is None:
        return doc
    return attrs.evolve(
        doc,
        round=round,
        candidate=draw(st.booleans()),
        promise=draw(st.none() | promises),
        founding=draw(st.booleans()),
    )


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)

# Document-like values: the right keys, each holding either a plausible value or any JSON value,
# so the reader's field checks are exercised far more often than by arbitrary JSON.
member_likes = st.fixed_dictionaries(
    {},
    optional={
        "node": _nodes | json_values,
        "nodeUid": st.integers() | json_values,
        "status": _texts | json_values,
        "roles": st.lists(_texts, max_size=3) | json_values,
        "extra": json_values,
    },
)
document_likes = st.fixed_dictionaries(
    {},
    optional={
        "selfNode": _nodes | json_values,
        "seedNodes": st.lists(member_likes | json_values, max_size=4) | json_values,
        "clusterId": _texts | json_values,
        "serviceName": _texts | json_values,
        "round": _rounds | json_values,
        "candidate": st.booleans() | json_values,
        "founding": st.booleans() | json_values,
        "promise": st.fixed_dictionaries(
            {},
            optional={
                "to": st.sampled_from(["10.0.0.1:8558", "[::1]:1", "h"]) | json_values,
                "round": _rounds | json_values,
            },
        )
        | json_values,
        "extra": json_values,
    },
)


def _body(value: Any) -> bytes:
    return json.dumps(value).encode()


def _document(**fields: Any) -> dict[str, Any]:
    """A valid wire document with ``fields`` replaced (``...`` removes a field)."""
    document: dict[str, Any] = {
        "selfNode": "akka://sys@10.0.0.5:25520",
        "seedNodes": [],
    }
    document.update(fields)
    return {key: value for key, value in document.items() if value is not ...}


def _member(**fields: Any) -> dict[str, Any]:
    """A valid wire member with ``fields`` replaced (``...`` removes a field)."""
    member: dict[str, Any] = {
        "node": "akka://sys@10.0.0.3:25520",
        "nodeUid": 7,
        "status": "Up",
        "roles": [],
    }
    member.update(fields)
    return {key: value for key, value in member.items() if value is not ...}


def _with_member(**fields: Any) -> dict[str, Any]:
    """A valid wire document listing one member with ``fields`` replaced."""
    return _document(seedNodes=[_member(**fields)])


# --- writing and round trip -------------------------------------------------------------------


@given(documents)
def test_round_trip(doc: SeedNodesDocument) -> None:
    """Every document we can build decodes back to itself after encoding."""
    assert decode_seed_nodes(encode_seed_nodes(doc)) == doc


def test_encode_is_compact_akka_shape_with_extensions() -> None:
    """The encoding is compact UTF-8 JSON in the Akka field order, extensions last."""
    doc = SeedNodesDocument(
        "tcp://svc@10.0.0.5:2552",
        [Member("tcp://svc@10.0.0.3:2552", 7, "Up", ["dc-é"])],
        cluster_id="0b6f",
        service_name="svc",
    )
    assert (
        encode_seed_nodes(doc)
        == (
            '{"selfNode":"tcp://svc@10.0.0.5:2552","seedNodes":[{"node":"tcp://svc@10.0.0.3:2552",'
            '"nodeUid":7,"status":"Up","roles":["dc-é"]}],"clusterId":"0b6f","serviceName":"svc"}'
        ).encode()
    )


def test_encode_omits_absent_extensions() -> None:
    """``clusterId`` and ``serviceName`` are left out when ``None``, as an Akka node does."""
    assert encode_seed_nodes(SeedNodesDocument("a", [])) == b'{"selfNode":"a","seedNodes":[]}'


def test_encode_rejects_a_non_document() -> None:
    """Passing anything but a ``SeedNodesDocument`` is misuse."""
    with pytest.raises(UsageError, match="takes a SeedNodesDocument"):
        encode_seed_nodes({"selfNode": "a"})  # type: ignore[arg-type]


def test_encode_refuses_a_document_no_reader_would_accept() -> None:
    """A document over the body limit is refused when written, not when read."""
    doc = SeedNodesDocument("a", [Member("n" * MAX_NODE_CHARS)] * 100)
    with pytest.raises(UsageError, match=r"bytes, over the 65536 bytes a reader accepts"):
        encode_seed_nodes(doc)


def test_values_convert_sequences_to_tuples() -> None:
    """Roles and seed nodes given as lists are stored as tuples, so values stay hashable."""
    doc = SeedNodesDocument("a", [Member("b", roles=["r"])])
    assert doc.seed_nodes == (Member("b", 0, "Up", ("r",)),)
    assert hash(doc) == hash(SeedNodesDocument("a", (Member("b", roles=("r",)),)))


def test_member_defaults() -> None:
    """A member built from its address alone has uid 0, status Up and no roles."""
    assert Member("b") == Member(node="b", node_uid=0, status="Up", roles=())


def _wrong(value: object) -> Any:
    """``value``, typed so that passing it where it does not belong type-checks."""
    return value


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Member(_wrong(5)), r"Member\.node must be a non-empty string, got an integer"),
        (lambda: Member(_wrong(b"x")), r"Member\.node must be a non-empty string, got a bytes"),
        (lambda: Member(""), r"Member\.node must be a non-empty string, got an empty one"),
        (lambda: Member("n" * (MAX_NODE_CHARS + 1)), r"Member\.node is 1025 characters long"),
        (lambda: Member("\ud800"), r"Member\.node contains an unpaired surrogate"),
        (lambda: Member("a", node_uid=True), r"Member\.node_uid must be an integer"),
        (lambda: Member("a", node_uid=2**63), r"Member\.node_uid is 9223372036854775808"),
        (lambda: Member("a", status=_wrong(None)), r"Member\.status must be a string, got null"),
        (lambda: Member("a", roles="dc"), r"got the string 'dc'"),
        (lambda: Member("a", roles=_wrong(5)), r"expected a sequence of values, got 5"),
        (lambda: Member("a", roles=[1]), r"Member\.roles\[0\] must be a string"),
        (lambda: Member("a", roles=["r"] * (MAX_ROLES + 1)), r"Member\.roles lists 65 roles"),
        (lambda: SeedNodesDocument("", []), r"SeedNodesDocument\.self_node must be a non-empty"),
        (lambda: SeedNodesDocument("a", ["b"]), r"seed_nodes\[0\] must be a Member, got 'b'"),
        (
            lambda: SeedNodesDocument("a", [Member("b")] * (MAX_DOCUMENT_SEED_NODES + 1)),
            r"SeedNodesDocument\.seed_nodes lists 1001 members, the limit is 1000",
        ),
        (
            lambda: SeedNodesDocument("a", [], cluster_id=_wrong(5)),
            r"SeedNodesDocument\.cluster_id must be a string",
        ),
        (
            lambda: SeedNodesDocument("a", [], service_name="s" * (MAX_NAME_CHARS + 1)),
            r"SeedNodesDocument\.service_name is 257 characters long, the limit is 256",
        ),
    ],
)
def test_building_wrong_values_is_usage_error(build: Any, message: str) -> None:
    """Our own code building a wrong value gets a ``UsageError`` naming the attribute."""
    with pytest.raises(UsageError, match=message):
        build()


# --- reading valid documents ------------------------------------------------------------------


def test_decode_akka_jvm_document() -> None:
    """A document served by a real Akka JVM node (negative Long uid) is read as is."""
    assert decode_seed_nodes(AKKA_DOCUMENT) == SeedNodesDocument(
        self_node="akka://sys@10.0.0.5:25520",
        seed_nodes=(
            Member(
                node="akka://sys@10.0.0.3:25520",
                node_uid=-4243213921,
                status="Up",
                roles=("dc-default",),
            ),
        ),
    )


def test_decode_defaults_omitted_member_fields() -> None:
    """``nodeUid``, ``status`` and ``roles`` may be left out, as some Akka versions do."""
    doc = decode_seed_nodes(b'{"selfNode":"a","seedNodes":[{"node":"b"}]}')
    assert doc.seed_nodes == (Member("b", 0, "Up", ()),)


def test_decode_ignores_unknown_fields() -> None:
    """Unknown fields at any level are ignored, whatever they hold."""
    body = _body(
        _document(
            seedNodes=[_member(upNumber=3, extra={"deep": [[1.5, None]]})],
            leader="x",
            unreachable=[],
        )
    )
    assert decode_seed_nodes(body) == SeedNodesDocument(
        "akka://sys@10.0.0.5:25520", [Member("akka://sys@10.0.0.3:25520", 7)]
    )


def test_decode_accepts_null_extensions() -> None:
    """A ``null`` ``clusterId`` or ``serviceName`` means the same as leaving it out."""
    doc = decode_seed_nodes(_body(_document(clusterId=None, serviceName=None)))
    assert doc == SeedNodesDocument("akka://sys@10.0.0.5:25520", [])


def test_decode_accepts_every_limit_exactly() -> None:
    """Values exactly at each limit are accepted: the limits are inclusive."""
    deepest = 0
    for _ in range(MAX_NESTING_DEPTH - 1):
        deepest = [deepest]  # type: ignore[assignment]
    body = _body(
        _document(
            selfNode="s" * MAX_NODE_CHARS,
            seedNodes=[
                _member(
                    node="n" * MAX_NODE_CHARS,
                    nodeUid=-(2**63),
                    status="s" * MAX_NAME_CHARS,
                    roles=["r" * MAX_NAME_CHARS] + ["r"] * (MAX_ROLES - 1),
                ),
                _member(nodeUid=2**63 - 1),
            ]
            + [{"node": "m"}] * (MAX_DOCUMENT_SEED_NODES - 2),
            clusterId="c" * MAX_NAME_CHARS,
            serviceName="v" * MAX_NAME_CHARS,
            extra=deepest,
        )
    )
    doc = decode_seed_nodes(body)
    assert len(doc.seed_nodes) == MAX_DOCUMENT_SEED_NODES
    assert doc.seed_nodes[0].node_uid == -(2**63)
    assert doc.seed_nodes[1].node_uid == 2**63 - 1


def test_decode_accepts_bytearray_and_memoryview() -> None:
    """Any bytes-like body is read, as drivers may hand over a buffer."""
    expected = decode_seed_nodes(AKKA_DOCUMENT)
    assert decode_seed_nodes(bytearray(AKKA_DOCUMENT)) == expected  # type: ignore[arg-type]
    assert decode_seed_nodes(memoryview(AKKA_DOCUMENT)) == expected  # type: ignore[arg-type]


def test_decode_rejects_a_non_bytes_argument() -> None:
    """Passing text instead of the body's bytes is misuse by the driver."""
    with pytest.raises(UsageError, match="takes bytes, got str"):
        decode_seed_nodes(AKKA_DOCUMENT.decode())  # type: ignore[arg-type]


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    """Brackets and escaped quotes inside strings are text, not nesting."""
    body = ('{"selfNode":"' + '\\"[{' * 300 + '\\\\","seedNodes":[]}').encode()
    assert decode_seed_nodes(body).self_node == '"[{' * 300 + "\\"


# --- reading invalid documents ----------------------------------------------------------------

_TOO_LONG_NODE = "n" * (MAX_NODE_CHARS + 1)
_TOO_LONG_NAME = "x" * (MAX_NAME_CHARS + 1)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], r"^document must be a JSON object, got an array$"),
        ("x", r"^document must be a JSON object, got a string$"),
        (None, r"^document must be a JSON object, got null$"),
        ({}, r"^selfNode is missing$"),
        (_document(selfNode=...), r"^selfNode is missing$"),
        (_document(selfNode=5), r"^selfNode must be a non-empty string, got an integer$"),
        (_document(selfNode=None), r"^selfNode must be a non-empty string, got null$"),
        (_document(selfNode=""), r"^selfNode must be a non-empty string, got an empty one$"),
        (_document(selfNode=_TOO_LONG_NODE), r"^selfNode is 1025 characters long, the limit is"),
        (_document(seedNodes=...), r"^seedNodes is missing$"),
        (_document(seedNodes={}), r"^seedNodes must be an array, got an object$"),
        (
            _document(seedNodes=[{"node": "m"}] * (MAX_DOCUMENT_SEED_NODES + 1)),
            r"^seedNodes lists 1001 members, the limit is 1000$",
        ),
        (_document(seedNodes=[5]), r"^seedNodes\[0\] must be an object, got an integer$"),
        (_document(seedNodes=[[]]), r"^seedNodes\[0\] must be an object, got an array$"),
        (_with_member(node=...), r"^seedNodes\[0\]\.node is missing$"),
        (_with_member(node=""), r"^seedNodes\[0\]\.node must be a non-empty string, got an empty"),
        (_with_member(node=3), r"^seedNodes\[0\]\.node must be a non-empty string, got an integer"),
        (_with_member(node=_TOO_LONG_NODE), r"^seedNodes\[0\]\.node is 1025 characters long"),
        (
            _document(seedNodes=[_member(), _member(node=False)]),
            r"^seedNodes\[1\]\.node must be a non-empty string, got a boolean$",
        ),
        (_with_member(nodeUid="7"), r"^seedNodes\[0\]\.nodeUid must be an integer, got a string$"),
        (_with_member(nodeUid=True), r"^seedNodes\[0\]\.nodeUid must be an integer, got a boolean"),
        (_with_member(nodeUid=1.5), r"^seedNodes\[0\]\.nodeUid must be an integer, got a number$"),
        (_with_member(nodeUid=None), r"^seedNodes\[0\]\.nodeUid must be an integer, got null$"),
        (
            _with_member(nodeUid=2**63),
            r"^seedNodes\[0\]\.nodeUid is 9223372036854775808, outside the signed 64-bit range",
        ),
        (
            _with_member(nodeUid=-(2**63) - 1),
            r"^seedNodes\[0\]\.nodeUid is -9223372036854775809, outside",
        ),
        (_with_member(status=1), r"^seedNodes\[0\]\.status must be a string, got an integer$"),
        (_with_member(status=_TOO_LONG_NAME), r"^seedNodes\[0\]\.status is 257 characters long"),
        (_with_member(roles="dc"), r"^seedNodes\[0\]\.roles must be an array, got a string$"),
        (_with_member(roles=[1]), r"^seedNodes\[0\]\.roles\[0\] must be a string, got an integer"),
        (
            _with_member(roles=["a", None]),
            r"^seedNodes\[0\]\.roles\[1\] must be a string, got null",
        ),
        (
            _with_member(roles=["r"] * (MAX_ROLES + 1)),
            r"^seedNodes\[0\]\.roles lists 65 roles, the limit is 64$",
        ),
        (
            _with_member(roles=[_TOO_LONG_NAME]),
            r"^seedNodes\[0\]\.roles\[0\] is 257 characters long, the limit is 256$",
        ),
        (_document(clusterId=5), r"^clusterId must be a string, got an integer$"),
        (_document(clusterId=_TOO_LONG_NAME), r"^clusterId is 257 characters long"),
        (_document(serviceName=[]), r"^serviceName must be a string, got an array$"),
        (_document(serviceName={}), r"^serviceName must be a string, got an object$"),
        (_document(serviceName=_TOO_LONG_NAME), r"^serviceName is 257 characters long"),
        (_document(selfNode="\ud800"), r"^selfNode contains an unpaired surrogate"),
        (_with_member(roles=["ok", "\udfff"]), r"^seedNodes\[0\]\.roles\[1\] contains an unpaired"),
    ],
)
def test_decode_violation_names_the_field(body: Any, message: str) -> None:
    """Each shape or limit violation is a ``ProtocolError`` whose message names the field."""
    with pytest.raises(ProtocolError, match=message):
        decode_seed_nodes(_body(body))


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_decode_rejects_non_finite_constants(constant: str) -> None:
    """``NaN`` and ``Infinity`` are not JSON, even in an ignored field."""
    body = f'{{"selfNode":"a","seedNodes":[],"load":{constant}}}'.encode()
    with pytest.raises(ProtocolError, match=f"document contains {constant}, which is not valid"):
        decode_seed_nodes(body)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b'{"selfNode":"a",}',
        b"{'selfNode':'a'}",
        b'\xef\xbb\xbf{"selfNode":"a"}',
        # Unterminated strings: their brackets are text, and scanning them stays linear.
        b"[" * MAX_NESTING_DEPTH + b'"' + b"[" * 100,
        b'"\\' * 30_000,
        b'["' + b'\\"' * 30_000,
    ],
)
def test_decode_rejects_invalid_json(body: bytes) -> None:
    """Text that is not JSON is reported as such, with the parser's reason."""
    with pytest.raises(ProtocolError, match=r"^document is not valid JSON: "):
        decode_seed_nodes(body)


def test_decode_rejects_a_number_too_long_to_convert() -> None:
    """A number literal with thousands of digits is refused, not left to raise from ``int()``."""
    body = b'{"selfNode":"a","seedNodes":[],"x":' + b"9" * 5000 + b"}"
    with pytest.raises(ProtocolError, match=r"^document is not valid JSON: "):
        decode_seed_nodes(body)


def test_decode_rejects_an_oversized_body() -> None:
    """A body over the limit is refused before decoding, even if it is a valid document."""
    body = _body(_document()) + b" " * MAX_DOCUMENT_BYTES
    with pytest.raises(ProtocolError, match=r"^document is \d+ bytes, over the limit of 65536"):
        decode_seed_nodes(body)


def test_decode_accepts_a_body_exactly_at_the_limit() -> None:
    """The body limit is inclusive."""
    body = _body(_document())
    body += b" " * (MAX_DOCUMENT_BYTES - len(body))
    assert decode_seed_nodes(body) == SeedNodesDocument("akka://sys@10.0.0.5:25520", [])


@pytest.mark.parametrize(
    "body",
    [b"\xff", b'{"selfNode":"\xc3"}', b'{"selfNode":"\xed\xa0\x80","seedNodes":[]}'],
)
def test_decode_rejects_invalid_utf8(body: bytes) -> None:
    """A body that is not UTF-8 (including encoded surrogates) is refused with the byte offset."""
    with pytest.raises(ProtocolError, match=r"^document is not valid UTF-8: .* at byte \d+$"):
        decode_seed_nodes(body)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,
        b"[" * 60_000,
        b'{"a":' * 10_000,
        b'{"selfNode":"a","seedNodes":[],"x":'
        + b"[" * MAX_NESTING_DEPTH
        + b"]" * MAX_NESTING_DEPTH
        + b"}",
    ],
)
def test_decode_rejects_deep_nesting_without_recursion_error(body: bytes) -> None:
    """Deeply nested input is a ``ProtocolError``, found before the recursive parser runs."""
    with pytest.raises(ProtocolError, match=r"document (is \d+ bytes|nests .* 16 levels deep)"):
        decode_seed_nodes(body)


# --- fuzzing: the reader is total -------------------------------------------------------------


def _decode_or_protocol_error(body: bytes) -> None:
    result: SeedNodesDocument | ProtocolError
    try:
        result = decode_seed_nodes(body)
    except ProtocolError as exc:
        result = exc
    # Any other exception fails the test; a ProtocolError must carry a reason to show.
    assert isinstance(result, SeedNodesDocument) or str(result)


@given(st.binary(max_size=512))
def test_arbitrary_bytes_give_a_document_or_protocol_error(body: bytes) -> None:
    """Any bytes at all decode to a document or raise ``ProtocolError``, nothing else."""
    _decode_or_protocol_error(body)


@given(document_likes | json_values)
def test_near_valid_json_gives_a_document_or_protocol_error(value: Any) -> None:
    """Document-like JSON with wrong values anywhere decodes or raises ``ProtocolError`` only."""
    _decode_or_protocol_error(json.dumps(value).encode())


@given(documents, st.data())
def test_mutated_documents_give_a_document_or_protocol_error(
    doc: SeedNodesDocument, data: st.DataObject
) -> None:
    """A valid body with a slice replaced by arbitrary bytes decodes or raises ``ProtocolError``."""
    body = encode_seed_nodes(doc)
    start = data.draw(st.integers(0, len(body)), label="start")
    end = data.draw(st.integers(start, len(body)), label="end")
    patch = data.draw(st.binary(max_size=8) | st.sampled_from([b"[", b"{", b'"', b"\\", b"-"]))
    _decode_or_protocol_error(body[:start] + patch + body[end:])


# --- service name -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("served", "expected"),
    [(None, None), (None, "svc"), ("svc", None), ("svc", "svc")],
)
def test_check_service_name_accepts(served: str | None, expected: str | None) -> None:
    """A matching or absent service name on either side is accepted."""
    check_service_name(SeedNodesDocument("a", [], service_name=served), expected)


def test_check_service_name_rejects_another_service() -> None:
    """A peer serving another service is refused with a message suggesting a recycled address."""
    doc = SeedNodesDocument("a", [], service_name="billing")
    with pytest.raises(ProtocolError) as caught:
        check_service_name(doc, "orders")
    assert str(caught.value) == (
        "peer serves service 'billing', expected 'orders' "
        "(a recycled address now serving another deployment?)"
    )


# --- the founding round's fields (DESIGN section 8) ---------------------------------------------

CANDIDATE = ContactPoint("10.0.0.1", 8558)


@given(founding_documents())
def test_round_trip_with_founding_fields(doc: SeedNodesDocument) -> None:
    """Every document with founding-round fields decodes back to itself, and re-encodes alike."""
    encoded = encode_seed_nodes(doc)
    assert decode_seed_nodes(encoded) == doc
    assert encode_seed_nodes(decode_seed_nodes(encoded)) == encoded


def test_encode_spells_every_founding_field() -> None:
    """``round``, ``candidate``, ``promise`` and ``founding`` follow the other extensions."""
    doc = SeedNodesDocument(
        "a",
        [],
        service_name="svc",
        round=2,
        candidate=True,
        promise=Promise(ContactPoint("fd00::1", 9000), 3),
        founding=True,
    )
    assert encode_seed_nodes(doc) == (
        b'{"selfNode":"a","seedNodes":[],"serviceName":"svc","round":2,"candidate":true,'
        b'"promise":{"to":"[fd00::1]:9000","round":3},"founding":true}'
    )


def test_encode_writes_round_zero_and_leaves_out_false_flags() -> None:
    """A node that speaks the round always says it (0 before any); flags only while true."""
    doc = SeedNodesDocument("a", [], round=0)
    assert encode_seed_nodes(doc) == b'{"selfNode":"a","seedNodes":[],"round":0}'


def test_positional_construction_is_the_api_of_record() -> None:
    """The founding fields are keyword-only with defaults: the four positional fields stay."""
    doc = SeedNodesDocument("a", [], "c", "svc")
    assert (doc.cluster_id, doc.service_name) == ("c", "svc")
    assert (doc.round, doc.candidate, doc.promise, doc.founding) == (None, False, None, False)


def test_an_akka_document_speaks_no_founding_round() -> None:
    """A document with none of the fields (an Akka node's) decodes to round=None and defaults."""
    doc = decode_seed_nodes(AKKA_DOCUMENT)
    assert (doc.round, doc.candidate, doc.promise, doc.founding) == (None, False, None, False)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"round": 0}, {"round": 0}),
        ({"round": MAX_ROUND}, {"round": MAX_ROUND}),
        ({"round": 4, "candidate": True}, {"round": 4, "candidate": True}),
        ({"round": 4, "candidate": False, "founding": False}, {"round": 4}),
        ({"round": 1, "founding": True}, {"round": 1, "founding": True}),
        (
            {"round": 0, "promise": {"to": "10.0.0.1:8558", "round": 1}},
            {"round": 0, "promise": Promise(CANDIDATE, 1)},
        ),
        (  # another spelling of the same contact point, and an unknown key: ignored
            {"round": 0, "promise": {"to": "Node-1.Example.:80", "round": 0, "why": "x"}},
            {"round": 0, "promise": Promise(ContactPoint("node-1.example", 80), 0)},
        ),
        (
            {"round": 0, "promise": {"to": "[::1]:1", "round": MAX_ROUND}},
            {"round": 0, "promise": Promise(ContactPoint("::1", 1), MAX_ROUND)},
        ),
        # null is the same as absent, for every extension
        ({"round": None, "candidate": None, "promise": None, "founding": None}, {}),
        ({"round": 3, "candidate": None, "promise": None, "founding": None}, {"round": 3}),
    ],
)
def test_decode_founding_fields(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    """Each founding field is read as typed; absent and null mean the default."""
    doc = decode_seed_nodes(_body(_document(**fields)))
    assert doc == SeedNodesDocument("akka://sys@10.0.0.5:25520", [], **expected)


def _promise(**fields: Any) -> dict[str, Any]:
    """A wire document holding a valid promise with ``fields`` replaced (``...`` removes one)."""
    promise: dict[str, Any] = {"to": "10.0.0.1:8558", "round": 1}
    promise.update(fields)
    return _document(round=0, promise={k: v for k, v in promise.items() if v is not ...})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_document(round="1"), r"^round must be an integer, got a string$"),
        (_document(round=True), r"^round must be an integer, got a boolean$"),
        (_document(round=1.0), r"^round must be an integer, got a number$"),
        (_document(round=[1]), r"^round must be an integer, got an array$"),
        (_document(round=-1), r"^round is -1, outside 0\.\.9007199254740992$"),
        (_document(round=MAX_ROUND + 1), r"^round is 9007199254740993, outside 0\.\."),
        (_document(round=0, candidate=1), r"^candidate must be a boolean, got an integer$"),
        (_document(round=0, candidate="true"), r"^candidate must be a boolean, got a string$"),
        (_document(round=0, founding=0), r"^founding must be a boolean, got an integer$"),
        (_document(round=0, founding={}), r"^founding must be a boolean, got an object$"),
        (_document(round=0, promise=[]), r"^promise must be an object, got an array$"),
        (_document(round=0, promise="10.0.0.1:8558"), r"^promise must be an object, got a string"),
        (_document(round=0, promise=True), r"^promise must be an object, got a boolean$"),
        (_promise(to=...), r"^promise\.to is missing$"),
        (_promise(round=...), r"^promise\.round is missing$"),
        (_promise(to=5), r"^promise\.to must be a non-empty string, got an integer$"),
        (_promise(to=None), r"^promise\.to must be a non-empty string, got null$"),
        (_promise(to=""), r"^promise\.to must be a non-empty string, got an empty one$"),
        (_promise(to="10.0.0.1"), r"^promise\.to must be host:port, got '10\.0\.0\.1' without"),
        (_promise(to="::1"), r"^promise\.to must be host:port, got '::1' without a port$"),
        (_promise(to="10.0.0.1:0"), r"^promise\.to is not a contact point: .*port must be"),
        (_promise(to="10.0.0.1:http"), r"^promise\.to is not a contact point: .*not a number"),
        (_promise(to="not a host:1"), r"^promise\.to is not a contact point: .*valid hostname"),
        (_promise(to="[::1:80"), r"^promise\.to is not a contact point: .*missing '\]'"),
        (_promise(to="h\u00f6st:80"), r"^promise\.to must be an ASCII host:port"),
        (_promise(to="h:\u00b2"), r"^promise\.to must be an ASCII host:port"),
        (
            _promise(to="a" * MAX_CONTACT_POINT_CHARS + ":1"),
            r"^promise\.to is 302 characters long, the limit is 300$",
        ),
        (_promise(round="1"), r"^promise\.round must be an integer, got a string$"),
        (_promise(round=False), r"^promise\.round must be an integer, got a boolean$"),
        (_promise(round=-2), r"^promise\.round is -2, outside 0\.\."),
        (_document(candidate=True), r"^candidate is set but round is missing: a node that"),
        (_document(founding=True), r"^founding is set but round is missing"),
        (_document(promise={"to": "10.0.0.1:8558", "round": 1}), r"^promise is set but round"),
        (_document(round=None, candidate=True), r"^candidate is set but round is missing"),
    ],
)
def test_decode_founding_violation_names_the_field(body: Any, message: str) -> None:
    """Each founding field of a wrong type or out of range is a ``ProtocolError`` naming it."""
    with pytest.raises(ProtocolError, match=message):
        decode_seed_nodes(_body(body))


def test_a_flag_false_without_a_round_is_accepted() -> None:
    """``false`` is the default: saying it without a round says nothing of a founding round."""
    doc = decode_seed_nodes(_body(_document(candidate=False, founding=False)))
    assert doc.round is None


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SeedNodesDocument("a", [], round=-1), r"SeedNodesDocument\.round is -1, outside"),
        (lambda: SeedNodesDocument("a", [], round=True), r"round must be an integer, got a bool"),
        (lambda: SeedNodesDocument("a", [], round=_wrong("1")), r"round must be an integer"),
        (lambda: SeedNodesDocument("a", [], round=MAX_ROUND + 1), r"round is 9007199254740993"),
        (
            lambda: SeedNodesDocument("a", [], round=0, candidate=_wrong(1)),
            r"SeedNodesDocument\.candidate must be a boolean, got an integer",
        ),
        (
            lambda: SeedNodesDocument("a", [], round=0, founding=_wrong(None)),
            r"SeedNodesDocument\.founding must be a boolean, got null",
        ),
        (
            lambda: SeedNodesDocument("a", [], round=0, promise=_wrong(CANDIDATE)),
            r"SeedNodesDocument\.promise must be a Promise or None",
        ),
        (
            lambda: SeedNodesDocument("a", [], round=0, promise=Promise(ContactPoint("h"), 1)),
            r"SeedNodesDocument\.promise\.to must have a port: readers refuse h without one",
        ),
        (
            lambda: SeedNodesDocument("a", [], round=0, promise=Promise(CANDIDATE, MAX_ROUND + 1)),
            # The Promise itself refuses it, before the document is built.
            r"round must be an integer in 0\.\.2\*\*53, got 9007199254740993",
        ),
        (
            lambda: SeedNodesDocument("a", [], candidate=True),
            r"SeedNodesDocument\.candidate needs a round",
        ),
        (
            lambda: SeedNodesDocument("a", [], promise=Promise(CANDIDATE, 1)),
            r"SeedNodesDocument\.promise needs a round",
        ),
        (
            lambda: SeedNodesDocument("a", [], founding=True),
            r"SeedNodesDocument\.founding needs a round",
        ),
    ],
)
def test_building_wrong_founding_values_is_usage_error(build: Any, message: str) -> None:
    """Our own code building a wrong founding field gets a ``UsageError`` naming it."""
    with pytest.raises(UsageError, match=message):
        build()


# --- the proposal on a request and on a watch -------------------------------------------------


def test_the_proposal_is_spelled_once() -> None:
    """The header's name and the watch's word, as DESIGN section 8 and docs/design.md say."""
    assert (ROUND_HEADER, PROPOSE_MESSAGE) == ("Bootstrap-Round", "propose")
    assert propose_message(0) == "propose 0"
    assert propose_message(MAX_ROUND) == "propose 9007199254740992"


@pytest.mark.parametrize("text", ["0", "1", "42", "9007199254740992"])
def test_parse_round_reads_canonical_decimal_digits(text: str) -> None:
    """A round header's value is its decimal digits."""
    assert parse_round(text) == int(text)


# Signs, spaces, leading zeros, other notations, too many digits, one past the limit, and an
# Arabic-Indic one and a superscript two (Unicode digits: int() reads the first).
_BAD_ROUNDS = ["", "01", "-1", "+1", " 1", "1 ", "1.0", "1e3", "0x1", "true", "9" * 40]
_BAD_ROUNDS += [str(MAX_ROUND + 1), "\u0661", "\u00b2"]


@pytest.mark.parametrize("text", _BAD_ROUNDS)
def test_parse_round_refuses_anything_else(text: str) -> None:
    """Signs, spaces, leading zeros, other digits and values past MAX_ROUND are refused."""
    with pytest.raises(ProtocolError, match=r"^Bootstrap-Round must be a decimal integer in 0\.\."):
        parse_round(text)


def test_parse_round_quotes_a_long_value_cut() -> None:
    """The refused value is quoted, cut to a readable length."""
    with pytest.raises(ProtocolError) as caught:
        parse_round("x" * 1000, where="the round")
    assert str(caught.value) == (
        f"the round must be a decimal integer in 0..{MAX_ROUND}, got '{'x' * 40}...'"
    )


@pytest.mark.parametrize(
    ("message", "expected"),
    [("propose 3", 3), ("propose 0", 0), ("probe", None), ("proposal 3", None), ("hello", None)],
)
def test_parse_proposal(message: str, expected: int | None) -> None:
    """``propose <r>`` proposes ``r``; any other message proposes nothing."""
    assert parse_proposal(message) == expected


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("propose", r"^the 'propose' message carries no round$"),
        ("propose ", r"^the round of a 'propose' message must be a decimal integer"),
        ("propose  3", r"^the round of a 'propose' message must be a decimal integer"),
        ("propose 3 4", r"^the round of a 'propose' message must be a decimal integer"),
        ("propose -3", r"^the round of a 'propose' message must be a decimal integer"),
    ],
)
def test_parse_proposal_refuses_a_malformed_round(message: str, error: str) -> None:
    """A ``propose`` message whose round is missing or malformed is a ``ProtocolError``."""
    with pytest.raises(ProtocolError, match=error):
        parse_proposal(message)


@pytest.mark.parametrize("round", [-1, MAX_ROUND + 1, True])
def test_propose_message_refuses_a_round_no_reader_accepts(round: int) -> None:
    """Our prober never sends a proposal that a server would refuse."""
    with pytest.raises(UsageError, match="the proposed round"):
        propose_message(round)


# --- the would-be founder's waiting reason (DESIGN section 9) ----------------------------------


@given(documents, st.text(max_size=MAX_WAITING_CHARS))
def test_round_trip_with_waiting(doc: SeedNodesDocument, waiting: str) -> None:
    """``waiting`` survives encoding and decoding, any text up to its limit."""
    doc = attrs.evolve(doc, waiting=waiting)
    encoded = encode_seed_nodes(doc)
    assert json.loads(encoded)["waiting"] == waiting
    assert decode_seed_nodes(encoded) == doc


def test_waiting_is_left_out_when_none_and_null_reads_as_none() -> None:
    doc = SeedNodesDocument("akka://sys@10.0.0.5:25520", ())
    assert b"waiting" not in encode_seed_nodes(doc)
    assert decode_seed_nodes(_body(_document(waiting=None))).waiting is None
    # An Akka node's document has none, round or not: it is only ever shown, never required.
    assert decode_seed_nodes(_body(_document(waiting="x"))).waiting == "x"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (17, "waiting must be a string, got an integer"),
        (["a"], "waiting must be a string, got an array"),
        ("w" * (MAX_WAITING_CHARS + 1), f"waiting is {MAX_WAITING_CHARS + 1} characters long"),
        ("\ud800", "waiting contains an unpaired surrogate"),
    ],
)
def test_decode_refuses_a_bad_waiting(value: object, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode_seed_nodes(_body(_document(waiting=value)))


def test_building_a_bad_waiting_is_usage_error() -> None:
    with pytest.raises(UsageError, match="waiting is 1001 characters long"):
        SeedNodesDocument("akka://sys@10.0.0.5:25520", (), waiting="w" * (MAX_WAITING_CHARS + 1))
