"""The etcd hook's selfNode convention (docs/etcd.md), without etcd: parsing and naming."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import pytest

from .members import HOOK


def load_hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("etcd_hook", HOOK)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hook = load_hook()


def test_a_self_node_names_both_urls_and_the_member() -> None:
    member = hook.Member("etcd://10.0.0.3:2379,2380")
    assert (member.client_url, member.peer_url) == ("http://10.0.0.3:2379", "http://10.0.0.3:2380")
    assert member.name == "etcd-10-0-0-3-2380"


def test_an_ipv6_self_node_keeps_its_brackets_in_the_urls() -> None:
    member = hook.Member("etcd://[fd00::3]:2379,2380")
    assert member.peer_url == "http://[fd00::3]:2380"
    assert member.name == "etcd-fd00-3-2380"


@pytest.mark.parametrize(
    "self_node",
    ["http://10.0.0.3:8558", "etcd://10.0.0.3:2379", "etcd://:2379,2380", "etcd://h:a,b"],
)
def test_a_self_node_off_the_convention_stops_the_hook_saying_so(
    self_node: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        hook.Member(self_node)
    assert exit_info.value.code == 1
    assert f"{self_node!r} is not etcd://HOST:CLIENT_PORT,PEER_PORT" in capsys.readouterr().err


def test_the_initial_cluster_names_members_that_have_not_started_by_their_peer_url() -> None:
    members = [
        {"ID": 1, "name": "etcd-10-0-0-1-2380", "peerURLs": ["http://10.0.0.1:2380"]},
        {"ID": 2, "peerURLs": ["http://10.0.0.2:2380"], "isLearner": True},  # just added
    ]
    assert hook.initial_cluster(members) == (
        "etcd-10-0-0-1-2380=http://10.0.0.1:2380,etcd-10-0-0-2-2380=http://10.0.0.2:2380"
    )


def test_seed_nodes_are_split_although_each_has_a_comma() -> None:
    """BOOTSTRAP_SEED_NODES joins selfNodes with commas, and each selfNode holds one."""
    assert hook.seed_client_urls("etcd://10.0.0.1:2379,2380,etcd://10.0.0.2:2379,2380") == (
        "http://10.0.0.1:2379,http://10.0.0.2:2379"
    )
    assert hook.seed_client_urls("") == ""


def test_the_hook_uses_only_the_standard_library() -> None:
    """It must run wherever etcd and etcdctl do, with nothing installed."""
    origins = {
        (value.__name__ if isinstance(value, ModuleType) else value.__module__).partition(".")[0]
        for value in vars(hook).values()
        if isinstance(value, ModuleType) or hasattr(value, "__module__")
    }
    origins -= {"etcd_hook", "builtins"}  # its own functions and classes
    assert origins, "the hook imports something"
    assert origins <= set(sys.stdlib_module_names), origins - set(sys.stdlib_module_names)
