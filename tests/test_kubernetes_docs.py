"""The Kubernetes page stays deployable: its manifests fit together and match the command line.

Every ```yaml block of ``docs/kubernetes.md`` is parsed with PyYAML; together the blocks must
form one consistent deployment (Deployment, headless Service, ServiceAccount, Role,
RoleBinding) whose names, labels, ports, probes and ``BOOTSTRAP_*`` variables agree with each
other and with ``cluster-bootstrap node``. Every ``cluster-bootstrap`` command line shown in a
```sh or ```console block must parse with the real parser.
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from bootstrap import JoinSeedNodes, JoinSelf
from bootstrap.cli import build_parser
from bootstrap.commands.node import decision_environment
from bootstrap.commands.options import apply_environment, env_name

ROOT = Path(__file__).resolve().parent.parent
KUBERNETES_DOC = ROOT / "docs" / "kubernetes.md"
INDEX_DOC = ROOT / "docs" / "index.md"

KINDS = {"Deployment", "Service", "ServiceAccount", "Role", "RoleBinding"}
MANAGEMENT_PORT = 8558
# A fenced block: its info string (the language) and its body.
_FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_BOOTSTRAP_VARIABLE = re.compile(r"\bBOOTSTRAP_[A-Z0-9_]+\b")
# Kubernetes expands $(NAME) in an env value from variables defined earlier in the container.
_DEPENDENT_VARIABLE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
# What the Downward API would give a pod, for expanding $(NAME) references.
_FIELD_VALUES = {"status.podIP": "10.244.1.7", "metadata.namespace": "my-namespace"}
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def _text() -> str:
    return KUBERNETES_DOC.read_text(encoding="utf-8")


def _blocks(*languages: str) -> list[str]:
    """The bodies of the fenced blocks whose language is one of ``languages``."""
    return [body for language, body in _FENCE.findall(_text()) if language in languages]


def _documents() -> list[Any]:
    """Every YAML document of every ```yaml block, in page order (empty documents included)."""
    return [document for block in _blocks("yaml") for document in yaml.safe_load_all(block)]


def _only(kind: str) -> dict[str, Any]:
    """The one manifest of ``kind``."""
    found = [document for document in _documents() if document["kind"] == kind]
    assert len(found) == 1, f"expected exactly one {kind}, found {len(found)}"
    manifest: dict[str, Any] = found[0]
    return manifest


def _pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = _only("Deployment")["spec"]["template"]["spec"]
    return spec


def _containers() -> list[dict[str, Any]]:
    spec = _pod_spec()
    return [*spec.get("initContainers", []), *spec["containers"]]


def _sidecar() -> dict[str, Any]:
    """The container that declares the port named ``management``: the bootstrap node."""
    found = [
        container
        for container in _containers()
        if any(port.get("name") == "management" for port in container.get("ports", []))
    ]
    assert len(found) == 1, f"expected one container with a port named management: {found}"
    return found[0]


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The container's env entries by name (each name must appear once)."""
    entries = container.get("env", [])
    names = [entry["name"] for entry in entries]
    assert len(names) == len(set(names)), f"{container['name']} sets a variable twice: {names}"
    return {entry["name"]: entry for entry in entries}


def _expanded_environment(container: dict[str, Any]) -> dict[str, str]:
    """The container's variables as the process sees them: $(NAME) expanded, fieldRefs filled."""
    environment: dict[str, str] = {}
    for entry in container.get("env", []):
        if "valueFrom" in entry:
            environment[entry["name"]] = _FIELD_VALUES[entry["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            value = str(entry["value"])
            environment[entry["name"]] = _DEPENDENT_VARIABLE.sub(
                lambda match: environment.get(match.group(1), match.group(0)), value
            )
    return environment


def _node_flags() -> list[str]:
    """Every long flag of ``cluster-bootstrap node`` except ``--help``."""
    _, subparsers = build_parser()
    return sorted(
        flag
        for action in subparsers["node"]._actions  # argparse has no public iterator over them
        for flag in action.option_strings
        if flag.startswith("--") and flag != "--help"
    )


def _command_lines() -> list[str]:
    """Each shown command line that runs ``cluster-bootstrap``, continuations joined."""
    commands = []
    for language in ("sh", "console"):
        for block in _blocks(language):
            joined = re.sub(r"\\\n\s*", " ", block)
            for line in joined.splitlines():
                if language == "console":
                    if not line.startswith("$ "):
                        continue  # output, not a command
                    line = line.removeprefix("$ ")
                if "cluster-bootstrap" in line:
                    commands.append(line.strip())
    return commands


def _parse_command(line: str) -> argparse.Namespace:
    """Parse the ``cluster-bootstrap`` invocation in ``line``, with its ``NAME=value`` prefix."""
    words = shlex.split(line)
    start = words.index("cluster-bootstrap")
    prefix = words[:start]
    environ = dict(word.split("=", 1) for word in prefix if _ASSIGNMENT.match(word))
    argv = words[start + 1 :]
    parser, subparsers = build_parser()
    if argv and argv[0] == "node":
        argv = ["node", *apply_environment(subparsers["node"], argv[1:], environ)]
    return parser.parse_args(argv)


def test_every_yaml_document_names_its_api_version_kind_and_name() -> None:
    """Each YAML document on the page is a mapping with apiVersion, kind and metadata.name."""
    documents = _documents()
    assert documents
    for document in documents:
        assert isinstance(document, dict), f"not a manifest: {document!r}"
        metadata = document.get("metadata")
        assert isinstance(metadata, dict), f"no metadata: {document!r}"
        for value in (document.get("apiVersion"), document.get("kind"), metadata.get("name")):
            assert isinstance(value, str), document
            assert value.strip(), document


def test_the_manifests_are_exactly_the_five_kinds() -> None:
    """The page deploys a Deployment, a Service, a ServiceAccount, a Role and a RoleBinding."""
    assert {document["kind"] for document in _documents()} == KINDS


def test_all_manifests_share_one_namespace() -> None:
    """No manifest names a namespace of its own, so the Role applies where the pods run."""
    namespaces = {document["metadata"].get("namespace") for document in _documents()}
    assert namespaces == {None}


def test_deployment_selector_matches_its_pod_labels() -> None:
    """The Deployment's selector selects the pods of its own template."""
    spec = _only("Deployment")["spec"]
    match_labels = spec["selector"]["matchLabels"]
    assert match_labels
    labels = spec["template"]["metadata"]["labels"]
    assert {key: labels.get(key) for key in match_labels} == match_labels


def test_service_is_headless_publishes_unready_pods_and_selects_the_deployment() -> None:
    """The Service is headless, lists pods before they are ready, and selects the pods."""
    spec = _only("Service")["spec"]
    assert spec["clusterIP"] == "None"
    assert spec["publishNotReadyAddresses"] is True
    selector = spec["selector"]
    assert selector
    labels = _only("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert {key: labels.get(key) for key in selector} == selector


def test_role_grants_get_list_watch_on_pods() -> None:
    """The Role grants exactly get, list and watch on pods of the core API group."""
    rules = _only("Role")["rules"]
    pod_rules = [rule for rule in rules if "pods" in rule["resources"]]
    assert len(pod_rules) == 1
    rule = pod_rules[0]
    assert rule["apiGroups"] == [""]
    assert rule["resources"] == ["pods"]
    assert sorted(rule["verbs"]) == ["get", "list", "watch"]


def test_role_binding_binds_the_role_to_the_service_account_the_deployment_uses() -> None:
    """The RoleBinding gives the Role to the ServiceAccount, and the pods run as it."""
    binding = _only("RoleBinding")
    role_name = _only("Role")["metadata"]["name"]
    account = _only("ServiceAccount")["metadata"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role_name,
    }
    assert len(binding["subjects"]) == 1
    subject = binding["subjects"][0]
    assert subject["kind"] == "ServiceAccount"
    assert subject["name"] == account["name"]
    assert subject.get("namespace") == account.get("namespace")
    assert _pod_spec()["serviceAccountName"] == account["name"]


def test_probes_are_ready_and_alive_on_the_management_port() -> None:
    """Readiness asks /ready and liveness asks /alive, both on the port named management."""
    sidecar = _sidecar()
    assert sidecar["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "management"}
    assert sidecar["livenessProbe"]["httpGet"] == {"path": "/alive", "port": "management"}


def test_management_port_is_8558_and_the_service_targets_it() -> None:
    """The container port management is 8558, and the Service's management port leads to it."""
    ports = [port for port in _sidecar()["ports"] if port.get("name") == "management"]
    assert len(ports) == 1
    assert ports[0]["containerPort"] == MANAGEMENT_PORT
    assert ports[0].get("protocol", "TCP") == "TCP"
    service_ports = [p for p in _only("Service")["spec"]["ports"] if p.get("name") == "management"]
    assert len(service_ports) == 1
    service_port = service_ports[0]
    assert service_port["targetPort"] in ("management", MANAGEMENT_PORT)
    assert service_port["port"] == MANAGEMENT_PORT
    assert service_port.get("protocol", "TCP") == "TCP"


def test_pod_ip_comes_from_the_downward_api() -> None:
    """The sidecar's POD_IP is the pod's IP, from status.podIP."""
    pod_ip = _env(_sidecar())["POD_IP"]
    assert pod_ip == {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}


def test_required_contact_points_equals_replicas() -> None:
    """BOOTSTRAP_REQUIRED_CONTACT_POINTS is set once, to the Deployment's replica count."""
    setters = [
        container
        for container in _containers()
        if "BOOTSTRAP_REQUIRED_CONTACT_POINTS" in _env(container)
    ]
    assert setters == [_sidecar()]
    value = _env(_sidecar())["BOOTSTRAP_REQUIRED_CONTACT_POINTS"]["value"]
    assert isinstance(value, str), "env values must be strings: quote the number"
    assert int(value) == _only("Deployment")["spec"]["replicas"]


def test_every_bootstrap_variable_in_the_manifests_is_a_node_flag() -> None:
    """Each BOOTSTRAP_* env var of any container is the variable of a `node` flag."""
    real = {env_name(flag) for flag in _node_flags()}
    used = {
        name
        for container in _containers()
        for name in _env(container)
        if name.startswith("BOOTSTRAP_")
    }
    assert used
    assert sorted(used - real) == []


def test_the_sidecar_environment_parses_as_a_node_command() -> None:
    """The sidecar's BOOTSTRAP_* values, expanded as Kubernetes would, are valid node flags."""
    parser, subparsers = build_parser()
    environment = _expanded_environment(_sidecar())
    assert not [value for value in environment.values() if "$(" in value]
    try:
        argv = apply_environment(subparsers["node"], [], environment)
        args = parser.parse_args(["node", *argv])
    except SystemExit as error:
        pytest.fail(f"the sidecar's BOOTSTRAP_* variables do not parse (exit {error.code})")
    assert args.required_contact_points == _only("Deployment")["spec"]["replicas"]


def test_page_names_only_real_variables() -> None:
    """Every BOOTSTRAP_ name on the page is a node flag's variable or one --on-decided sets."""
    real = {env_name(flag) for flag in _node_flags()}
    for decision in (JoinSelf(), JoinSeedNodes(("myservice://10.244.0.5:7000",))):
        real.update(decision_environment(decision))
    mentioned = set(_BOOTSTRAP_VARIABLE.findall(_text()))
    assert mentioned
    assert sorted(mentioned - real) == []


@pytest.mark.parametrize("line", _command_lines())
def test_shown_command_line_parses(line: str) -> None:
    """A cluster-bootstrap command line shown in a sh or console block parses."""
    try:
        _parse_command(line)
    except SystemExit as error:
        pytest.fail(f"`{line}` does not parse (exit {error.code})")


def test_page_shows_node_and_status_command_lines() -> None:
    """The page shows at least one node command line and one status command line to check."""
    commands = [shlex.split(line) for line in _command_lines()]
    subcommands = {words[words.index("cluster-bootstrap") + 1] for words in commands}
    assert {"node", "status"} <= subcommands


def test_index_links_the_page() -> None:
    """docs/index.md lists the Kubernetes page."""
    assert "](kubernetes.md)" in INDEX_DOC.read_text(encoding="utf-8")
