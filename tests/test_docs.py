"""The documentation stays true to the code: generated tables match, names appear, links resolve.

The settings table in ``docs/settings.md`` is generated from ``Settings`` (field, default, help
text), never edited by hand. After changing a setting, regenerate it from the repository root::

    python -m tests.test_docs
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import attrs
import pytest

from bootstrap import JoinSeedNodes, JoinSelf, Settings
from bootstrap.cli import build_parser
from bootstrap.commands.node import decision_environment
from bootstrap.commands.options import env_name
from bootstrap.core import Phase, wire
from bootstrap.core.founding import RoundCounts
from bootstrap.join_command import READY_FD_VARIABLE, SELF_NODE_VARIABLE
from bootstrap.metrics import MetricsSnapshot, metrics_registry
from bootstrap.prober import ProberStatistics
from bootstrap.security import SECRET_VARIABLE
from bootstrap.server import ServerStatistics

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SETTINGS_DOC = DOCS / "settings.md"
DESIGN_DOC = DOCS / "design.md"
NODE_DOC = DOCS / "node.md"

TABLE_START = "<!-- settings-table:start -->"
TABLE_END = "<!-- settings-table:end -->"
REGENERATE = "python -m tests.test_docs"

# Fenced code blocks and inline code spans: brackets inside them are not links.
_CODE = re.compile(r"^```.*?^```|`[^`\n]*`", re.MULTILINE | re.DOTALL)
# Inline links and images ``[text](target "title")``, and reference definitions ``[id]: target``.
_INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
# Environment variable names as the docs spell them (``BOOTSTRAP_<FLAG>`` itself does not match).
_BOOTSTRAP_VARIABLE = re.compile(r"\bBOOTSTRAP_[A-Z0-9_]+\b")
# Commands whose help docs/node.md pastes verbatim (``node`` is documented by tables instead).
_PASTED_HELP = ("demo", "status", "doctor", "simulate")


def render_settings_table() -> str:
    """The settings table exactly as ``docs/settings.md`` must hold it between its markers."""
    help_texts = Settings.help()
    rows = ["| field | default | meaning |", "|---|---|---|"]
    for field in attrs.fields(Settings):
        meaning = help_texts[field.name].replace("|", "\\|")
        rows.append(f"| `{field.name}` | `{field.default!r}` | {meaning} |")
    return "\n".join(rows)


def _split_settings_doc(text: str) -> tuple[str, str, str]:
    """(text before the table, the table, text after it), the markers excluded."""
    before, start, rest = text.partition(TABLE_START)
    table, end, after = rest.partition(TABLE_END)
    if not start or not end:
        raise ValueError(
            f"{SETTINGS_DOC.relative_to(ROOT)} must contain {TABLE_START} and then {TABLE_END}"
        )
    return before, table, after


def regenerate_settings_doc() -> bool:
    """Rewrite the marked block of ``docs/settings.md``; True if the file changed."""
    text = SETTINGS_DOC.read_text(encoding="utf-8")
    before, _, after = _split_settings_doc(text)
    updated = f"{before}{TABLE_START}\n{render_settings_table()}\n{TABLE_END}{after}"
    if updated == text:
        return False
    SETTINGS_DOC.write_text(updated, encoding="utf-8")
    return True


def _relative_links(text: str) -> list[str]:
    prose = _CODE.sub("", text)
    targets = _INLINE_LINK.findall(prose) + _REFERENCE_LINK.findall(prose)
    return [target for target in targets if not _SCHEME.match(target) and target[0] != "#"]


def test_settings_table_is_generated_from_the_code() -> None:
    """The table in docs/settings.md equals the one rendered from Settings and its help texts."""
    _, table, _ = _split_settings_doc(SETTINGS_DOC.read_text(encoding="utf-8"))
    assert table.strip() == render_settings_table(), (
        f"docs/settings.md is out of date with Settings: run `{REGENERATE}` from the repository "
        "root to rewrite its settings table, then review the prose below the table"
    )


def test_every_setting_is_explained_in_prose() -> None:
    """Every Settings field has its own section in the prose below the settings table."""
    _, _, prose = _split_settings_doc(SETTINGS_DOC.read_text(encoding="utf-8"))
    headings = set(re.findall(r"^###\s+`(\w+)`\s*$", prose, re.MULTILINE))
    missing = [field.name for field in attrs.fields(Settings) if field.name not in headings]
    assert not missing, f"docs/settings.md needs a '### `name`' section for: {missing}"


def test_settings_prose_names_only_real_settings() -> None:
    """Each setting section of docs/settings.md is named after a field that still exists."""
    _, _, prose = _split_settings_doc(SETTINGS_DOC.read_text(encoding="utf-8"))
    headings = re.findall(r"^###\s+`(\w+)`\s*$", prose, re.MULTILINE)
    fields = {field.name for field in attrs.fields(Settings)}
    assert [name for name in headings if name not in fields] == []


def test_wire_limits_in_the_design_match_the_code() -> None:
    """Every MAX_* limit of the wire format is listed in docs/design.md with its current value."""
    text = DESIGN_DOC.read_text(encoding="utf-8")
    limits = [name for name in wire.__all__ if name.startswith("MAX_")]
    assert limits
    wrong = [
        name
        for name in limits
        if not re.search(rf"^\| `{name}` \| {getattr(wire, name)} \|", text, re.MULTILINE)
    ]
    assert not wrong, f"docs/design.md must list these wire limits as '| `NAME` | value |': {wrong}"


@pytest.mark.parametrize("page", sorted(DOCS.glob("*.md")), ids=lambda page: page.name)
def test_relative_links_resolve(page: Path) -> None:
    """Every relative link in a docs page points to a file or directory that exists."""
    broken = [
        target
        for target in _relative_links(page.read_text(encoding="utf-8"))
        if not (page.parent / target.partition("#")[0]).exists()
    ]
    assert not broken, f"{page.relative_to(ROOT)} links to missing files: {broken}"


def _long_flags(parser: argparse.ArgumentParser) -> list[str]:
    """Every ``--flag`` of ``parser`` except ``--help``."""
    return sorted(
        flag
        for action in parser._actions  # argparse exposes no public iterator over its actions
        for flag in action.option_strings
        if flag.startswith("--") and flag != "--help"
    )


def _normalised(text: str) -> str:
    """``text`` with every run of whitespace made one space (help wraps differently per width)."""
    return " ".join(text.split())


@pytest.mark.parametrize("command", ["node", "demo", "status", "doctor", "simulate"])
def test_every_flag_is_documented_in_the_node_page(command: str) -> None:
    """Every --flag of a cluster-bootstrap command appears in docs/node.md."""
    _, subparsers = build_parser()
    flags = _long_flags(subparsers[command])
    assert flags
    text = NODE_DOC.read_text(encoding="utf-8")
    missing = [flag for flag in flags if not re.search(rf"{re.escape(flag)}(?![\w-])", text)]
    assert not missing, f"docs/node.md does not mention these `{command}` flags: {missing}"


def test_every_node_flag_has_its_variable_in_the_node_page() -> None:
    """Each node flag's BOOTSTRAP_<FLAG> variable is listed in docs/node.md."""
    _, subparsers = build_parser()
    documented = set(_BOOTSTRAP_VARIABLE.findall(NODE_DOC.read_text(encoding="utf-8")))
    missing = [
        env_name(f) for f in _long_flags(subparsers["node"]) if env_name(f) not in documented
    ]
    assert not missing, f"docs/node.md does not list these variables: {missing}"


def test_node_page_names_only_real_variables() -> None:
    """Each BOOTSTRAP_ variable in docs/node.md is a node flag's, the secret's or a command's."""
    _, subparsers = build_parser()
    real = {env_name(flag) for flag in _long_flags(subparsers["node"])}
    for decision in (JoinSelf(), JoinSeedNodes(("http://10.0.0.1:8558",))):
        real.update(decision_environment(decision))
    # The one variable no flag reads: the secret itself, never a flag value (it would show in ps).
    real.add(SECRET_VARIABLE)
    # The two a --join-command also sees besides the decision's.
    real.update({READY_FD_VARIABLE, SELF_NODE_VARIABLE})
    mentioned = set(_BOOTSTRAP_VARIABLE.findall(NODE_DOC.read_text(encoding="utf-8")))
    assert mentioned
    assert sorted(mentioned - real) == [], "docs/node.md names variables no flag reads"


@pytest.mark.parametrize("command", _PASTED_HELP)
def test_pasted_help_matches_the_parser(command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The help output pasted into docs/node.md is what the command prints (spacing aside)."""
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setenv("NO_COLOR", "1")
    _, subparsers = build_parser()
    help_text = _normalised(subparsers[command].format_help())
    page = _normalised(NODE_DOC.read_text(encoding="utf-8"))
    assert help_text in page, (
        f"docs/node.md must paste the current `cluster-bootstrap {command} --help` output: "
        f"run `COLUMNS=100 python -m bootstrap {command} --help` and replace the old block"
    )


OPERATIONS_DOC = ROOT / "docs" / "operations.md"


def test_every_metric_is_documented_and_every_documented_metric_exists() -> None:
    """The series table of docs/operations.md lists exactly the series a node exports."""
    snapshot = MetricsSnapshot(
        phase=Phase.PROBING,
        decided=False,
        formed_cluster=False,
        joined=False,
        decision_seconds=1.0,  # present once decided: included here so it is checked too
        contact_points_discovered=0,
        contact_points_fresh=0,
        clusters_at_decision=0,
        formation_overdue=False,
        lookups=0,
        lookup_failures=0,
        join_failures=0,
        rounds=RoundCounts(first_round=0, rounds_started=0, rounds_withdrawn=0, promises_given=0),
        prober=ProberStatistics(
            connections_opened=0,
            connections_opened_by_peer={},
            probes_sent=0,
            watch_messages_received=0,
            failures_by_kind={},
            peers=0,
            open_watches=0,
        ),
        server=ServerStatistics(
            requests_served=0, watches_open=0, watches_opened_total=0, documents_pushed=0
        ),
    )
    exported = {
        sample.name
        for family in metrics_registry(lambda: snapshot).collect()
        for sample in family.samples
    }
    table = re.findall(r"^\| `(cluster_bootstrap_\w+)", OPERATIONS_DOC.read_text(), re.MULTILINE)
    assert sorted(set(table)) == sorted(table), "a series is listed twice"
    assert sorted(table) == sorted(exported)


if __name__ == "__main__":
    changed = regenerate_settings_doc()
    print(f"{SETTINGS_DOC.relative_to(ROOT)}: {'rewritten' if changed else 'already up to date'}")
