"""Command-line options derived from :class:`Settings`, with ``BOOTSTRAP_*`` environment defaults.

Every setting becomes a flag whose help text is the setting's own (``Settings.help()``), so the
CLI cannot drift from the settings table. Boolean settings that default to on become
``--no-...`` switches. Every flag may also come from the environment variable
``BOOTSTRAP_<FLAG>`` (``--stable-margin`` -> ``BOOTSTRAP_STABLE_MARGIN``); a flag on the
command line wins. A bad value exits 2 with a message that names the flag (and the variable).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ..core import Settings, UsageError

__all__ = ["add_settings_arguments", "apply_environment", "env_name", "settings_from_args"]

# Flag names of record (DESIGN section 7) where the field name would read awkwardly.
_SWITCH_NAMES = {"new_cluster_enabled": "--no-new-cluster"}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_name(flag: str) -> str:
    """``--stable-margin`` -> ``BOOTSTRAP_STABLE_MARGIN``."""
    return "BOOTSTRAP_" + flag.lstrip("-").replace("-", "_").upper()


def _flag_for(field: attrs.Attribute[Any]) -> str:
    if field.name in _SWITCH_NAMES:
        return _SWITCH_NAMES[field.name]
    if field.default is True:
        return "--no-" + field.name.replace("_", "-")
    return "--" + field.name.replace("_", "-")


def _number(kind: type) -> Any:
    def convert(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            noun = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None

    return convert


def add_settings_arguments(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Add one flag per setting; return field name -> flag (for error messages)."""
    group = parser.add_argument_group("bootstrap settings (see docs/settings.md)")
    flags = {}
    for field in attrs.fields(Settings):
        flag = _flag_for(field)
        flags[field.name] = flag
        help_text = f"{field.metadata['help']} (default: {field.default})"
        if field.default is True:
            group.add_argument(flag, dest=field.name, action="store_false", help=help_text)
        else:
            # Annotations are strings here (PEP 563): "int", "int | None" or "float".
            kind = int if str(field.type).startswith("int") else float
            group.add_argument(
                flag, dest=field.name, type=_number(kind), default=None, help=help_text
            )
    return flags


def settings_from_args(
    parser: argparse.ArgumentParser, args: argparse.Namespace, flags: Mapping[str, str]
) -> Settings:
    """Build validated Settings from the parsed flags; a bad value exits 2 naming its flag."""
    values = {}
    for name in flags:
        value = getattr(args, name)
        if value is not None:
            values[name] = value
    try:
        return Settings(**values)
    except UsageError as error:
        message = str(error)
        for name, flag in flags.items():
            if message.startswith(name):
                parser.error(f"argument {flag}: {message}")
        parser.error(str(error))


def apply_environment(
    parser: argparse.ArgumentParser, argv: Sequence[str], environ: Mapping[str, str] | None = None
) -> list[str]:
    """Prepend flags taken from ``BOOTSTRAP_*`` variables to ``argv`` (later flags win).

    Values are checked here so the error names the variable the user has to fix.
    """
    environ = os.environ if environ is None else environ
    given = {arg.split("=", 1)[0] for arg in argv if arg.startswith("--")}
    prefix: list[str] = []
    for action in parser._actions:  # argparse exposes no public iterator over its actions
        for flag in action.option_strings:
            if not flag.startswith("--") or flag in ("--help", "--version"):
                continue
            variable = env_name(flag)
            if variable not in environ or flag in given:
                continue
            value = environ[variable]
            if action.nargs == 0:  # a switch
                if value.strip().lower() in _TRUE:
                    prefix.append(flag)
                elif value.strip().lower() not in _FALSE:
                    parser.error(f"{variable} (for {flag}): expected true or false, got {value!r}")
                continue
            if action.type is not None:
                try:
                    action.type(value)  # type: ignore[operator]
                except (argparse.ArgumentTypeError, ValueError) as error:
                    parser.error(f"{variable} (for {flag}): {error}")
            if action.choices is not None and value not in action.choices:
                choices = ", ".join(map(str, action.choices))
                parser.error(f"{variable} (for {flag}): {value!r} is not one of {choices}")
            prefix += [flag, value]
    return prefix + list(argv)
