"""The command line: flags derived from Settings, BOOTSTRAP_* variables, errors that name the flag.

Parsing is tested in-process (argparse exits 2 through SystemExit); the commands that run
nodes are exercised as real processes in tests/e2e and below (demo).
"""

from __future__ import annotations

import subprocess
import sys

import attrs
import pytest

from bootstrap import JoinSeedNodes, JoinSelf, Settings, UsageError
from bootstrap.cli import build_parser, main
from bootstrap.commands.node import decision_environment
from bootstrap.commands.options import (
    _in_flag_terms,
    apply_environment,
    build_settings,
    env_name,
    settings_flags,
    settings_from_args,
)
from bootstrap.commands.status import format_status
from tests.helpers.ports import free_port


def parse_node(argv: list[str], environ: dict[str, str] | None = None) -> Settings:
    parser, subparsers = build_parser()
    node_parser = subparsers["node"]
    full = apply_environment(node_parser, argv, environ or {})
    args = parser.parse_args(["node", *full])
    return settings_from_args(node_parser, args)


BASE = ["--contact-point", "127.0.0.1:8558", "--contact-points", "127.0.0.1:8558"]


def test_every_setting_has_a_flag_with_its_help_text() -> None:
    """The node command offers one flag per setting, with the setting's own help."""
    _, subparsers = build_parser()
    help_text = " ".join(subparsers["node"].format_help().split())
    for name, text in Settings.help().items():
        assert " ".join(text.split()) in help_text, name
    for flag in (
        "--required-contact-points",
        "--stable-margin",
        "--probe-interval",
        "--no-contact-with-all-contact-points",
        "--no-new-cluster",
        "--expected-contact-points",
    ):
        assert flag in help_text


def test_flags_build_settings() -> None:
    """Flags of record map onto the settings; defaults stay as documented."""
    settings = parse_node(
        [
            *BASE,
            "--required-contact-points",
            "3",
            "--stable-margin",
            "2.5",
            "--no-new-cluster",
            "--no-contact-with-all-contact-points",
            "--expected-contact-points",
            "3",
        ]
    )
    assert settings == attrs.evolve(
        Settings(),
        required_contact_points=3,
        stable_margin=2.5,
        new_cluster_enabled=False,
        contact_with_all_contact_points=False,
        expected_contact_points=3,
    )
    assert parse_node(BASE) == Settings()


def test_environment_variables_apply_and_flags_win() -> None:
    """BOOTSTRAP_<FLAG> sets a value; the same flag on the command line wins."""
    environ = {"BOOTSTRAP_STABLE_MARGIN": "7", "BOOTSTRAP_NO_NEW_CLUSTER": "true"}
    settings = parse_node(BASE, environ)
    assert settings.stable_margin == 7.0
    assert settings.new_cluster_enabled is False
    assert parse_node([*BASE, "--stable-margin", "3"], environ).stable_margin == 3.0
    assert env_name("--required-contact-points") == "BOOTSTRAP_REQUIRED_CONTACT_POINTS"


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        ([*BASE, "--stable-margin", "abc"], {}, "argument --stable-margin: expected a number"),
        ([*BASE, "--stable-margin", "-1"], {}, "argument --stable-margin: stable_margin must be"),
        (
            [*BASE, "--required-contact-points", "2.5"],
            {},
            "--required-contact-points: expected an integer",
        ),
        ([*BASE, "--probe-interval", "20"], {}, "probe_backoff_max"),
        (
            BASE,
            {"BOOTSTRAP_STABLE_MARGIN": "soon"},
            "BOOTSTRAP_STABLE_MARGIN (for --stable-margin)",
        ),
        (
            BASE,
            {"BOOTSTRAP_NO_NEW_CLUSTER": "maybe"},
            "BOOTSTRAP_NO_NEW_CLUSTER (for --no-new-cluster)",
        ),
        (BASE, {"BOOTSTRAP_TRANSPORT": "carrier-pigeon"}, "BOOTSTRAP_TRANSPORT (for --transport)"),
        (["--contact-point", "127.0.0.1"], {}, "has no port"),
        (["--contact-point", "h:x"], {}, "argument --contact-point"),
        ([*BASE, "--join-command-grace", "0"], {}, "--join-command-grace: '0' must be a finite"),
        ([*BASE, "--join-command-grace", "inf"], {}, "grace: 'inf' must be a finite number > 0"),
        (
            BASE,
            {"BOOTSTRAP_JOIN_COMMAND_GRACE": "soon"},
            "BOOTSTRAP_JOIN_COMMAND_GRACE (for --join-command-grace): 'soon' is not a number",
        ),
    ],
)
def test_bad_values_exit_2_naming_the_flag(
    argv: list[str], environ: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad flag or variable exits 2 with a message naming it."""
    with pytest.raises(SystemExit) as exit_info:
        parse_node(argv, environ)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        # The flag the user gave, the default it clashes with, and which flag to add.
        (
            ["--probe-interval", "20"],
            {},
            "--probe-interval 20 clashes with the default --probe-backoff-max 15: "
            "probe_backoff_max (15.0) must be >= probe_interval (20.0); "
            "give --probe-backoff-max as well",
        ),
        (
            ["--discovery-backoff-max", "0.5"],
            {},
            "--discovery-backoff-max 0.5 clashes with the default --discovery-interval 1: "
            "discovery_backoff_max (0.5) must be >= discovery_interval (1.0); "
            "give --discovery-interval as well",
        ),
        # From the environment, the value is still named by its flag (the variable sets it).
        (
            [],
            {"BOOTSTRAP_PROBE_INTERVAL": "20"},
            "--probe-interval 20 clashes with the default --probe-backoff-max 15",
        ),
        # Both given: both named, neither called a default.
        (
            ["--probe-interval", "20", "--probe-backoff-max", "10"],
            {},
            "error: --probe-backoff-max 10 and --probe-interval 20: "
            "probe_backoff_max (10.0) must be >= probe_interval (20.0)\n",
        ),
    ],
)
def test_settings_that_clash_exit_2_naming_the_flags(
    argv: list[str], environ: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Values that clash exit 2 naming the flags given and the defaults they clash with."""
    with pytest.raises(SystemExit) as exit_info:
        parse_node([*BASE, *argv], environ)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_clash_is_never_resolved_by_changing_a_flag_not_given() -> None:
    """Giving the cap too makes the long interval valid; nothing else changes."""
    settings = parse_node([*BASE, "--probe-interval", "20", "--probe-backoff-max", "20"])
    assert settings == attrs.evolve(Settings(), probe_interval=20.0, probe_backoff_max=20.0)


def test_a_clash_error_keeps_the_fields_of_the_settings_error() -> None:
    """build_settings re-raises Settings' UsageError in flag terms, with the same fields."""
    parser, _ = build_parser()
    args = parser.parse_args(["node", *BASE, "--probe-interval", "20"])
    with pytest.raises(UsageError) as raised:
        build_settings(args)
    assert raised.value.fields == ("probe_backoff_max", "probe_interval")
    assert str(raised.value).startswith("--probe-interval 20 clashes with the default")


@pytest.mark.parametrize(
    ("fields", "given", "message"),
    [
        ((), {}, "rule"),  # about no setting: the message as it is
        (("not_a_setting",), {}, "rule"),
        (("stable_margin",), {"stable_margin": 0.5}, "argument --stable-margin: rule"),
        (
            ("probe_backoff_max", "probe_interval", "probe_timeout"),
            {"probe_interval": 20.0},
            "--probe-interval 20 clashes with the defaults --probe-backoff-max 15 and "
            "--probe-timeout 3: rule; give --probe-backoff-max and --probe-timeout as well",
        ),
        (
            ("new_cluster_enabled", "required_contact_points", "fallback_port"),
            {"new_cluster_enabled": False, "required_contact_points": 3},
            "--no-new-cluster and --required-contact-points 3 clash with the default "
            "--fallback-port 8558: rule; give --fallback-port as well",
        ),
    ],
)
def test_a_settings_error_is_told_in_flags(
    fields: tuple[str, ...], given: dict[str, object], message: str
) -> None:
    """The fields of a UsageError become flags: those given with their values, then defaults."""
    error = UsageError("rule", fields=fields)
    assert _in_flag_terms(error, given, settings_flags()) == message


def test_node_and_simulate_offer_the_same_settings_flags() -> None:
    """One derivation: both commands have every settings flag, with the same help and checks."""
    _, subparsers = build_parser()

    def settings_actions(command: str) -> dict[str, tuple[str | None, str | None]]:
        return {
            action.option_strings[0]: (action.help, str(action.metavar))
            for action in subparsers[command]._actions
            if action.dest in attrs.fields_dict(Settings)
        }

    node_flags = settings_actions("node")
    assert node_flags == settings_actions("simulate")
    assert sorted(node_flags) == sorted(settings_flags().values())
    assert len(node_flags) == len(attrs.fields(Settings))


def test_decision_environment() -> None:
    """--on-decided commands see the decision and the seed nodes."""
    assert decision_environment(JoinSelf()) == {
        "BOOTSTRAP_DECISION": "join-self",
        "BOOTSTRAP_SEED_NODES": "",
    }
    assert decision_environment(JoinSeedNodes(("a", "b")))["BOOTSTRAP_SEED_NODES"] == "a,b"


def test_format_status_renders_every_contact_point() -> None:
    """The status command prints the phase, reason and one row per contact point."""
    text = format_status(
        {
            "phase": "probing",
            "decision": None,
            "reason": "confirmed 1 of 2 required contact points",
            "selfContactPoint": "127.0.0.1:8558",
            "selfNode": "http://127.0.0.1:8558",
            "joined": False,
            "contactPoints": [
                {
                    "contactPoint": "127.0.0.2:8558",
                    "fresh": False,
                    "lastObservedAgo": None,
                    "seedNodes": [],
                    "consecutiveFailures": 3,
                },
                {
                    "contactPoint": "127.0.0.3:8558",
                    "fresh": True,
                    "lastObservedAgo": 0.4,
                    "seedNodes": ["x"],
                    "consecutiveFailures": 0,
                },
            ],
        }
    )
    assert "confirmed 1 of 2 required contact points" in text
    assert "127.0.0.2:8558" in text
    assert "never" in text
    assert "0.4 s" in text
    assert "x" in text


def test_format_status_marks_the_contact_points_this_node_does_not_probe() -> None:
    """DESIGN section 9: a peer outside the probe set reads "-", not "fresh: no"."""
    point = {
        "contactPoint": "127.0.0.9:8558",
        "fresh": False,
        "lastObservedAgo": None,
        "seedNodes": [],
        "consecutiveFailures": 0,
    }
    body = {"phase": "probing", "decision": None, "reason": "r", "contactPoints": []}
    probed = format_status({**body, "contactPoints": [{**point, "probed": True}]})
    unprobed = format_status({**body, "contactPoints": [{**point, "probed": False}]})
    assert probed.splitlines()[-1].split()[:2] == ["127.0.0.9:8558", "no"]
    assert unprobed.splitlines()[-1].split()[:2] == ["127.0.0.9:8558", "-"]
    assert unprobed.endswith("(not probed by this node)")


def test_status_of_an_unreachable_node_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    """status against a closed port fails with exit 1 and says where."""
    assert main(["status", f"127.0.0.1:{free_port()}", "--timeout", "2"]) == 1
    assert "/bootstrap/status" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        # The cap has no demo flag: refused, never raised to fit (as `node` refuses it).
        (
            ["--probe-interval", "20"],
            "error: argument --probe-interval: probe_backoff_max (15.0) must be >= "
            "probe_interval (20.0); the demo keeps probe_backoff_max at the default\n",
        ),
        (
            ["--stable-margin", "-1"],
            "error: argument --stable-margin: stable_margin must be a finite number of seconds",
        ),
    ],
)
def test_demo_refuses_settings_that_clash_naming_its_flag(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """demo exits 2 on a setting Settings refuses, naming the demo flag, before any node starts."""
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--nodes", "2", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_demo_forms_one_cluster_and_exits_0() -> None:
    """`cluster-bootstrap demo --nodes 3` forms a cluster on loopback and exits 0."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bootstrap",
            "demo",
            "--nodes",
            "3",
            "--port",
            str(free_port()),
            "--stable-margin",
            "1",
            "--timeout",
            "30",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "one cluster formed by 127.0.0.1:" in result.stdout
    assert result.stdout.count("joined seeds") == 2
