"""The node command's discovery flags: which backend they build, and the errors that name a flag.

Parsing runs in-process (argparse exits 2 through SystemExit); the backends themselves are
tested in tests/drivers, and DNS discovery end to end in tests/e2e/test_dns_cluster.py.
"""

from __future__ import annotations

import argparse

import pytest

from bootstrap import ContactPoint, Settings
from bootstrap.cli import build_parser
from bootstrap.commands.discovery import discovery_from_args
from bootstrap.commands.node import _contact_point_from_pod
from bootstrap.commands.options import apply_environment
from bootstrap.discovery import (
    AggregateDiscovery,
    Discovery,
    DnsDiscovery,
    KubernetesDiscovery,
    StaticDiscovery,
)

# A Kubernetes backend needs an API address and a namespace; outside a pod they are flags.
KUBERNETES = [
    "--pod-label-selector=app=my-service",
    "--pod-namespace=shop",
    "--kubernetes-api=https://127.0.0.1:6443",
]


def parse(
    argv: list[str], environ: dict[str, str] | None = None
) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser, subparsers = build_parser()
    node_parser = subparsers["node"]
    args = parser.parse_args(["node", *apply_environment(node_parser, argv, environ or {})])
    return node_parser, args


def build(argv: list[str], environ: dict[str, str] | None = None) -> Discovery:
    node_parser, args = parse(argv, environ)
    return discovery_from_args(node_parser, args, Settings())


def test_static_is_the_default() -> None:
    """Without --discovery the static list is used."""
    discovery = build(["--contact-points=127.0.0.1:8558,127.0.0.2:8558"])
    assert isinstance(discovery, StaticDiscovery)
    assert discovery.contact_points == (
        ContactPoint("127.0.0.1", 8558),
        ContactPoint("127.0.0.2", 8558),
    )


def test_dns_flags_build_a_dns_backend() -> None:
    """--discovery dns looks up --service-name at the servers of --dns-server."""
    discovery = build(
        [
            "--discovery=dns",
            "--service-name=my-service.shop.svc.cluster.local",
            "--dns-server=127.0.0.1:5353,[::1]:5353",
            "--dns-port-name=management",
        ]
    )
    assert isinstance(discovery, DnsDiscovery)


def test_kubernetes_flags_build_a_kubernetes_backend() -> None:
    """--discovery kubernetes lists the pods of the selector in the namespace given."""
    discovery = build(["--discovery=kubernetes", "--pod-port-name=management", *KUBERNETES])
    assert isinstance(discovery, KubernetesDiscovery)
    assert discovery.label_selector == "app=my-service"
    assert discovery.namespace == "shop"
    assert discovery.port_name == "management"


def test_backends_are_held_to_the_nodes_deadline_and_get_its_settings() -> None:
    """A lone backend has no timeout of its own; Kubernetes keeps its connection per settings."""
    node_parser, args = parse(["--discovery=kubernetes", *KUBERNETES])
    settings = Settings(discovery_backoff_max=30.0)
    discovery = discovery_from_args(node_parser, args, settings)
    assert isinstance(discovery, KubernetesDiscovery)
    assert discovery._timeout is None
    assert discovery.keepalive_expiry == 33.0
    dns = build(["--discovery=dns", "--service-name=svc.shop", "--dns-server=127.0.0.1"])
    assert isinstance(dns, DnsDiscovery)
    assert dns._timeout is None


def test_aggregated_backends_share_the_nodes_deadline() -> None:
    """In an aggregate no backend gets a timeout of its own: the aggregate shares the lookup's
    deadline among them (each an equal share of what is left), so a hung one leaves time for
    the next."""
    discovery = build(
        [
            "--discovery=aggregate",
            "--aggregate=kubernetes,dns",
            "--service-name=svc.shop",
            "--dns-server=127.0.0.1",
            *KUBERNETES,
        ]
    )
    assert isinstance(discovery, AggregateDiscovery)
    kubernetes, dns = discovery.backends
    assert isinstance(kubernetes, KubernetesDiscovery)
    assert isinstance(dns, DnsDiscovery)
    assert kubernetes._timeout is None
    assert dns._timeout is None


def test_aggregate_keeps_the_order_given() -> None:
    """--aggregate kubernetes,dns tries the API first, then DNS."""
    discovery = build(
        [
            "--discovery=aggregate",
            "--aggregate=kubernetes,dns",
            "--service-name=my-service",
            *KUBERNETES,
        ]
    )
    assert isinstance(discovery, AggregateDiscovery)
    assert [type(backend) for backend in discovery.backends] == [
        KubernetesDiscovery,
        DnsDiscovery,
    ]


def test_environment_variables_choose_the_backend() -> None:
    """BOOTSTRAP_DISCOVERY and the backend's variables work like the flags."""
    environ = {
        "BOOTSTRAP_DISCOVERY": "kubernetes",
        "BOOTSTRAP_POD_LABEL_SELECTOR": "app=shop",
        "BOOTSTRAP_POD_NAMESPACE": "default",
        "BOOTSTRAP_KUBERNETES_API": "https://127.0.0.1:6443",
    }
    discovery = build([], environ)
    assert isinstance(discovery, KubernetesDiscovery)
    assert discovery.label_selector == "app=shop"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "argument --contact-points: static discovery needs the contact points"),
        (["--discovery=dns"], "argument --service-name: dns discovery needs the name"),
        (["--discovery=kubernetes"], "argument --pod-label-selector: kubernetes discovery needs"),
        (["--discovery=aggregate"], "argument --aggregate: name the backends to try"),
        (["--discovery=aggregate", "--aggregate=dns,carrier"], "'carrier' is not a backend"),
        (["--discovery=aggregate", "--aggregate=aggregate"], "'aggregate' is not a backend"),
        (["--discovery=dns", "--service-name=x", "--dns-server=nowhere:53"], "--discovery dns"),
        (
            ["--discovery=kubernetes", "--pod-label-selector=app=x", "--pod-namespace=shop"],
            "KUBERNETES_SERVICE_HOST",
        ),
    ],
)
def test_missing_or_bad_discovery_flags_exit_2_naming_the_flag(
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each backend names the flag it lacks; a value its backend refuses names the backend."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        build(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_the_contact_point_defaults_to_the_pod_ip(monkeypatch: pytest.MonkeyPatch) -> None:
    """In a pod (POD_IP set) the contact point is the pod IP at the fallback port."""
    node_parser, _ = parse(["--contact-points=127.0.0.1:8558"])
    monkeypatch.setenv("POD_IP", "10.1.2.3")
    assert _contact_point_from_pod(node_parser, Settings(fallback_port=9000)) == ContactPoint(
        "10.1.2.3", 9000
    )


def test_without_contact_point_or_pod_ip_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Outside a pod the contact point is required, and the message says how to give it."""
    node_parser, _ = parse(["--contact-points=127.0.0.1:8558"])
    monkeypatch.delenv("POD_IP", raising=False)
    with pytest.raises(SystemExit):
        _contact_point_from_pod(node_parser, Settings())
    assert "argument --contact-point is required" in capsys.readouterr().err
