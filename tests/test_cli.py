"""The command line: flags derived from Settings, BOOTSTRAP_* variables, errors that name the flag.

Parsing is tested in-process (argparse exits 2 through SystemExit); the commands that run
nodes are exercised as real processes in tests/e2e and below (demo).
"""

from __future__ import annotations

import subprocess
import sys

import attrs
import pytest

from bootstrap import JoinSeedNodes, JoinSelf, Settings
from bootstrap.cli import build_parser, main
from bootstrap.commands.node import decision_environment
from bootstrap.commands.options import apply_environment, env_name, settings_from_args
from bootstrap.commands.status import format_status

from .e2e.loopback import free_port


def parse_node(argv: list[str], environ: dict[str, str] | None = None) -> Settings:
    parser, subparsers = build_parser()
    node_parser = subparsers["node"]
    full = apply_environment(node_parser, argv, environ or {})
    args = parser.parse_args(["node", *full])
    return settings_from_args(node_parser, args, args.settings_flags)


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


def test_status_of_an_unreachable_node_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    """status against a closed port fails with exit 1 and says where."""
    assert main(["status", f"127.0.0.1:{free_port()}", "--timeout", "2"]) == 1
    assert "/bootstrap/status" in capsys.readouterr().err


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
