"""The ``node`` command's discovery flags, and the backend they build.

``--discovery`` picks the backend; each backend has its own flags, and, like every ``node``
flag, each may come from a ``BOOTSTRAP_*`` variable. Defaults come from the pod where there is
one (the service-account namespace file, ``KUBERNETES_SERVICE_HOST``), so a Deployment needs
little more than ``BOOTSTRAP_DISCOVERY=kubernetes`` and a label selector. A missing or
contradictory flag exits 2 with a message naming the flag to add.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ..core import ContactPoint, Settings, UsageError
from ..discovery import (
    AggregateDiscovery,
    Discovery,
    DnsDiscovery,
    KubernetesDiscovery,
    StaticDiscovery,
)

__all__ = ["BACKENDS", "add_discovery_arguments", "discovery_from_args"]

BACKENDS = ("static", "dns", "kubernetes", "aggregate")


def _contact_points(text: str) -> list[ContactPoint]:
    try:
        return [ContactPoint.parse(item) for item in text.split(",") if item.strip()]
    except UsageError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _backend_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if name not in BACKENDS or name == "aggregate":
            choices = ", ".join(b for b in BACKENDS if b != "aggregate")
            raise argparse.ArgumentTypeError(f"{name!r} is not a backend to aggregate ({choices})")
    if not names:
        raise argparse.ArgumentTypeError("name at least one backend, e.g. kubernetes,dns")
    return names


def add_discovery_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("discovery")
    group.add_argument("--discovery", choices=BACKENDS, default="static", help="backend")
    group.add_argument(
        "--contact-points",
        type=_contact_points,
        metavar="H:P,H:P,...",
        help="static: every node's contact point (this one included)",
    )
    group.add_argument(
        "--service-name",
        help="dns: the name to look up (a headless Service, NAME.NAMESPACE.svc.cluster.local); "
        "every backend: refuse peers that serve another service",
    )
    group.add_argument(
        "--dns-port-name",
        metavar="NAME",
        help="dns: look up the SRV records _NAME._PROTOCOL.SERVICE-NAME instead of A/AAAA",
    )
    group.add_argument("--dns-protocol", default="tcp", help="dns: the SRV protocol (default tcp)")
    group.add_argument(
        "--dns-server",
        type=_comma_list,
        metavar="IP:PORT,...",
        help="dns: ask these servers (default: the system's resolv.conf)",
    )
    group.add_argument(
        "--pod-label-selector",
        metavar="SELECTOR",
        help="kubernetes: the pods of this service, e.g. app=my-service",
    )
    group.add_argument(
        "--pod-namespace",
        metavar="NS",
        help="kubernetes: the pods' namespace (default: this pod's, from the service account)",
    )
    group.add_argument(
        "--pod-port-name",
        metavar="NAME",
        help="kubernetes: the container port with exactly this name (default: fallback port)",
    )
    group.add_argument(
        "--kubernetes-api",
        metavar="URL",
        help="kubernetes: the API server (default: https://$KUBERNETES_SERVICE_HOST:PORT)",
    )
    group.add_argument(
        "--aggregate",
        type=_backend_list,
        metavar="B,B,...",
        help="aggregate: backends tried in order; the first that finds contact points wins",
    )


def discovery_from_args(
    parser: argparse.ArgumentParser, args: argparse.Namespace, settings: Settings
) -> Discovery:
    """The backend the flags ask for; exits 2 (``parser.error``) naming a missing flag."""
    # No backend gets a timeout of its own: each ends just before the deadline of the lookup it
    # serves (the node's discovery_timeout) with an error that says what to check
    # (bootstrap.discovery.deadline), and an aggregate gives each of its backends a share of
    # that deadline itself, so a hung first backend leaves time for the next.
    builders: dict[str, Callable[[], Discovery]] = {
        "static": lambda: _static(parser, args),
        "dns": lambda: _dns(parser, args),
        "kubernetes": lambda: _kubernetes(parser, args, settings),
    }
    try:
        if args.discovery != "aggregate":
            return builders[args.discovery]()
        if not args.aggregate:
            parser.error("argument --aggregate: name the backends to try, e.g. kubernetes,dns")
        return AggregateDiscovery([builders[name]() for name in args.aggregate])
    except UsageError as error:
        parser.error(f"--discovery {args.discovery}: {error}")


def _static(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Discovery:
    if not args.contact_points:
        parser.error("argument --contact-points: static discovery needs the contact points")
    return StaticDiscovery(args.contact_points)


def _dns(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Discovery:
    if not args.service_name:
        parser.error("argument --service-name: dns discovery needs the name to look up")
    return DnsDiscovery(
        args.service_name,
        port_name=args.dns_port_name,
        protocol=args.dns_protocol,
        nameservers=args.dns_server or (),
    )


def _kubernetes(
    parser: argparse.ArgumentParser, args: argparse.Namespace, settings: Settings
) -> Discovery:
    if not args.pod_label_selector:
        parser.error(
            "argument --pod-label-selector: kubernetes discovery needs the pods' labels, "
            "e.g. app=my-service"
        )
    return KubernetesDiscovery(
        label_selector=args.pod_label_selector,
        namespace=args.pod_namespace,
        port_name=args.pod_port_name,
        api_url=args.kubernetes_api,
        settings=settings,
    )
