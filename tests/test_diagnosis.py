"""The doctor's reasoning on status documents alone (real nodes: tests/e2e/test_doctor.py).

The documents come from the network, so beside the rules: any JSON at all is diagnosed without
an exception, and the report renders.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from bootstrap.commands.doctor import format_report
from bootstrap.diagnosis import Reading, diagnose


def joined(point: str, seeds: list[str] | None) -> dict[str, Any]:
    decision = (
        {"kind": "join-self"} if seeds is None else {"kind": "join-seed-nodes", "seedNodes": seeds}
    )
    return {
        "phase": "decided",
        "decision": decision,
        "waitingOn": "",
        "selfContactPoint": point,
        "selfNode": f"http://{point}",
        "joined": True,
        "contactPoints": [],
    }


def test_members_that_share_a_seed_node_are_one_cluster() -> None:
    # c joined through b, which joined a: their seed lists overlap in a chain.
    statuses = [
        joined("a:1", None),
        joined("b:1", ["http://a:1"]),
        joined("c:1", ["http://b:1", "http://a:1"]),
    ]
    report = diagnose([Reading(s["selfContactPoint"], status=s) for s in statuses])
    assert report.clusters == (frozenset({"http://a:1", "http://b:1"}),)
    assert report.formed
    assert report.findings == ()


def test_a_founder_seen_by_a_peer_as_another_cluster_is_two() -> None:
    lone = joined("z:1", None)
    undecided = {
        "phase": "probing",
        "decision": None,
        "waitingOn": "stable-margin",
        "reason": "discovery changed 0.1 s ago, stable margin 5 s",
        "selfContactPoint": "m:1",
        "joined": False,
        "contactPoints": [
            {"contactPoint": "a:1", "fresh": True, "seedNodes": ["http://a:1"]},
            {"contactPoint": "z:1", "fresh": True, "seedNodes": ["http://z:1"]},
        ],
    }
    report = diagnose([Reading("z:1", status=lone), Reading("m:1", status=undecided)])
    assert len(report.clusters) == 2
    assert not report.formed
    assert report.findings[0].title == "2 clusters observed"


def test_joined_but_one_node_unreadable_is_not_formed() -> None:
    report = diagnose(
        [
            Reading("a:1", status=joined("a:1", None)),
            Reading("b:1", error_kind="unreachable", error="refused"),
        ]
    )
    assert not report.formed
    assert [finding.title for finding in report.findings] == ["could not read the status of b:1"]


def test_a_name_that_is_a_prefix_of_another_is_not_that_node() -> None:
    # 10.0.0.1:80 must not be taken for 10.0.0.10:80 (the substring self-match of the anchor).
    status = {
        "phase": "probing",
        "decision": None,
        "waitingOn": "self-not-discovered",
        "selfContactPoint": "10.0.0.1:80",
        "contactPoints": [{"contactPoint": "10.0.0.10:80"}, {"contactPoint": "10.0.0.11:80"}],
    }
    report = diagnose([Reading("10.0.0.1:80", status=status)], resolve=lambda host: frozenset())
    (finding,) = report.findings
    assert finding.title == "10.0.0.1:80 is not among the contact points discovery returns"
    assert not any("resolves to" in detail for detail in finding.details)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)
status_keys = st.sampled_from(
    [
        "phase",
        "decision",
        "waitingOn",
        "reason",
        "selfContactPoint",
        "selfNode",
        "joined",
        "settings",
        "contactPoints",
        "formationOverdue",
    ]
)
point_keys = st.sampled_from(
    [
        "contactPoint",
        "fresh",
        "lastObservedAgo",
        "seedNodes",
        "consecutiveFailures",
        "probed",
        "lastFailure",
        "lastFailureKind",
    ]
)
# Contact points shaped like the real ones often enough to reach every rule.
points = st.lists(st.dictionaries(point_keys, json_values, max_size=8), max_size=4)
documents = st.builds(
    lambda base, listed, waiting: {**base, "contactPoints": listed, "waitingOn": waiting},
    st.dictionaries(status_keys, json_values, max_size=10),
    points | json_values,
    st.sampled_from(["discovery", "self-not-discovered", "founding-round", "promised", ""])
    | json_values,
)


@given(st.lists(documents, max_size=4))
def test_any_documents_are_diagnosed_without_an_exception(statuses: list[dict[str, Any]]) -> None:
    readings = [Reading(f"h{index}:1", status=status) for index, status in enumerate(statuses)]
    report = diagnose(readings, resolve=lambda host: frozenset({"127.0.0.1"}))
    assert isinstance(format_report(report), str)
    if report.formed:
        assert all(status.get("joined") is True for status in statuses)


def test_a_secret_mismatch_seen_from_both_sides_is_one_finding() -> None:
    def refused_by(me: str, peer: str) -> dict[str, Any]:
        return {
            "phase": "probing",
            "decision": None,
            "waitingOn": "required-contact-points",
            "selfContactPoint": me,
            "contactPoints": [
                {
                    "contactPoint": peer,
                    "fresh": False,
                    "consecutiveFailures": 4,
                    "lastFailure": f"HTTP 401 from {peer}: it refused our secret",
                    "lastFailureKind": "unauthorized",
                }
            ],
        }

    report = diagnose(
        [
            Reading("a:1", status=refused_by("a:1", "b:1")),
            Reading("b:1", status=refused_by("b:1", "a:1")),
        ]
    )
    assert [finding.title for finding in report.findings] == [
        "a:1 and b:1 do not share the same secret"
    ]
