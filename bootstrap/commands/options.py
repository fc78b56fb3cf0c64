"""The settings flags, derived from :class:`Settings`, and ``BOOTSTRAP_*`` environment defaults.

This is the one derivation of the settings flags: every command that takes settings (``node``,
``simulate``) adds them with :func:`add_settings_arguments` and builds its settings with
:func:`build_settings`, so no command can drift from the settings table, nor from another
command. The rules:

* Every field is a flag named after it (``stable_margin`` -> ``--stable-margin``) whose help
  text is the field's own (``Settings.help()``). Boolean settings that default to on become
  ``--no-...`` switches (``new_cluster_enabled`` has the name of record ``--no-new-cluster``).
* A value is checked by its field's own validator as it is parsed, so a bad value exits 2
  naming its flag (or, through :func:`apply_environment`, its variable).
* Values that only clash together are refused by ``Settings`` itself. Its :class:`UsageError`
  names the fields (``UsageError.fields``); the message then names their flags, and which of
  them the user gave and which were left at their default. A flag the user did not give is
  never changed to make one they did give fit: that would run something they did not ask for.
* A flag not given is not passed to ``Settings`` at all, so its default is the field's default,
  defined once, in ``Settings``.
* ``node`` flags may also come from ``BOOTSTRAP_<FLAG>`` (``--stable-margin`` ->
  ``BOOTSTRAP_STABLE_MARGIN``), see :func:`apply_environment`; a flag on the command line wins.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs

from ..core import Settings, UsageError

__all__ = [
    "add_settings_arguments",
    "apply_environment",
    "build_settings",
    "env_name",
    "settings_flags",
    "settings_from_args",
]

# Flag names of record (DESIGN section 7) where the field name would read awkwardly.
_SWITCH_NAMES = {"new_cluster_enabled": "--no-new-cluster"}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def number_parser(minimum: float, *, inclusive: bool) -> Callable[[str], float]:
    """An argparse ``type``: a finite number above ``minimum`` (or equal to it, ``inclusive``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
            raise argparse.ArgumentTypeError(f"{text!r} must be a finite number {bound}")
        return value

    return parse


def env_name(flag: str) -> str:
    """``--stable-margin`` -> ``BOOTSTRAP_STABLE_MARGIN``."""
    return "BOOTSTRAP_" + flag.lstrip("-").replace("-", "_").upper()


def _is_switch(field: attrs.Attribute[Any]) -> bool:
    return field.default is True


def _flag_for(field: attrs.Attribute[Any]) -> str:
    if field.name in _SWITCH_NAMES:
        return _SWITCH_NAMES[field.name]
    if _is_switch(field):
        return "--no-" + field.name.replace("_", "-")
    return "--" + field.name.replace("_", "-")


def settings_flags() -> dict[str, str]:
    """Settings field name -> its flag, for every field."""
    return {field.name: _flag_for(field) for field in attrs.fields(Settings)}


@functools.cache
def _type_hints() -> dict[str, Any]:
    return typing.get_type_hints(Settings)


def _value_type(field: attrs.Attribute[Any]) -> Any:
    """The field's type, resolved (annotations are strings here), without ``| None``."""
    hint = _type_hints()[field.name]
    kinds = [kind for kind in typing.get_args(hint) if kind is not type(None)]
    return kinds[0] if isinstance(hint, types.UnionType) and len(kinds) == 1 else hint


def _choices(field: attrs.Attribute[Any]) -> tuple[str, ...] | None:
    kind = _value_type(field)
    return typing.get_args(kind) if typing.get_origin(kind) is typing.Literal else None


def _metavar(field: attrs.Attribute[Any]) -> str | None:
    # What docs/node.md writes after each flag: a jitter is a fraction, the other floats are
    # durations in seconds, the other integers counts; choices are listed by argparse.
    if _choices(field) is not None:
        return None
    if field.name.endswith("_jitter"):
        return "J"
    if field.name.endswith("_port"):
        return "PORT"
    return "N" if _value_type(field) is int else "S"


def _show(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _parser_for(field: attrs.Attribute[Any]) -> Callable[[str], Any]:
    """Text -> value, checked by the field's own validator (the rule is written once)."""
    kind = _value_type(field)
    convert: Callable[[str], Any]
    if _choices(field) is not None:
        convert, noun = str, "text"
    elif kind is int or kind is float:
        convert, noun = kind, "an integer" if kind is int else "a number"
    else:  # a new kind of setting must be given a flag rule here, not a wrong one by default
        raise TypeError(f"no command-line rule for setting {field.name} of type {kind!r}")

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if field.validator is not None:
            try:
                field.validator(None, field, value)
            except UsageError as error:
                raise argparse.ArgumentTypeError(str(error)) from None
        return value

    return parse


def add_settings_arguments(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Add one flag per setting to ``parser``; return field name -> flag.

    Every flag defaults to None ("not given"), so :func:`build_settings` can tell a value the
    user gave from a default and leave the default to ``Settings``.
    """
    group = parser.add_argument_group("bootstrap settings (see docs/settings.md)")
    flags = settings_flags()
    for field in attrs.fields(Settings):
        help_text = field.metadata["help"]
        if _is_switch(field):
            group.add_argument(
                flags[field.name],
                dest=field.name,
                action="store_false",
                default=None,
                help=f"{help_text} (default: on; this switch turns it off)",
            )
            continue
        if field.default is not None:
            help_text = f"{help_text} (default: {_show(field.default)})"
        group.add_argument(
            flags[field.name],
            dest=field.name,
            type=_parser_for(field),
            choices=_choices(field),
            default=None,
            metavar=_metavar(field),
            help=help_text,
        )
    return flags


def build_settings(args: argparse.Namespace) -> Settings:
    """Settings from the settings flags in ``args``; a clash raises UsageError naming the flags.

    The error keeps the ``fields`` of the one ``Settings`` raised, and its message is in the
    user's terms: the flags, their values, and which of them were defaults.
    """
    flags = settings_flags()
    given = {name: getattr(args, name) for name in flags if getattr(args, name) is not None}
    try:
        return Settings(**given)
    except UsageError as error:
        raise UsageError(_in_flag_terms(error, given, flags), fields=error.fields) from None


def settings_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Settings:
    """:func:`build_settings`, exiting 2 (``parser.error``) with its message on a clash."""
    try:
        return build_settings(args)
    except UsageError as error:
        parser.error(str(error))


def _in_flag_terms(error: UsageError, given: Mapping[str, Any], flags: Mapping[str, str]) -> str:
    """The message of ``error`` led by the flags of its fields: given ones, then defaults.

    ``--probe-interval 20`` alone gives: ``--probe-interval 20 clashes with the default
    --probe-backoff-max 15: probe_backoff_max (15.0) must be >= probe_interval (20.0); give
    --probe-backoff-max as well``.
    """
    named = [name for name in error.fields if name in flags]
    if not named:
        return str(error)
    by_user = [name for name in named if name in given]
    by_default = [name for name in named if name not in given]

    def as_given(name: str) -> str:
        value = given[name]
        return flags[name] if isinstance(value, bool) else f"{flags[name]} {_show(value)}"

    def as_default(name: str) -> str:
        default = attrs.fields_dict(Settings)[name].default
        return f"{flags[name]} {_show(default)}"

    if len(named) == 1:
        return f"argument {flags[named[0]]}: {error}"
    if not by_user or not by_default:
        texts = [as_given(name) if name in given else as_default(name) for name in named]
        return f"{_and(texts)}: {error}"
    # The rule itself stays Settings' wording: only Settings knows how the values relate.
    verb = "clashes" if len(by_user) == 1 else "clash"
    defaults = "default" if len(by_default) == 1 else "defaults"
    return (
        f"{_and(as_given(name) for name in by_user)} {verb} with the {defaults} "
        f"{_and(as_default(name) for name in by_default)}: {error}; give "
        f"{_and(flags[name] for name in by_default)} as well"
    )


def _and(texts: Iterable[str]) -> str:
    items = list(texts)
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else "".join(items)


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
