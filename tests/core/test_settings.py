"""Settings: the defaults of record, validation naming the field, and the derived windows."""

from __future__ import annotations

import math

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bootstrap import Settings, UsageError
from bootstrap.core.backoff import backoff_delay, jittered

DEFAULTS_OF_RECORD = {
    "required_contact_points": 2,
    "contact_with_all_contact_points": True,
    "new_cluster_enabled": True,
    "stable_margin": 5.0,
    "expected_contact_points": None,
    "discovery_interval": 1.0,
    "discovery_backoff_max": 15.0,
    "discovery_jitter": 0.2,
    "discovery_timeout": 3.0,
    "probe_interval": 1.0,
    "probe_jitter": 0.2,
    "probe_timeout": 3.0,
    "probe_backoff_max": 15.0,
    "fallback_port": 8558,
    "filter_on_fallback_port": True,
    "max_seed_nodes": 5,
    # DESIGN section 8 (API of record): the founding round by default.
    "formation": "promise",
    # DESIGN section 9: a node that cannot form probes only the 3 lowest.
    "probe_fanout": 3,
    # DESIGN section 10: no formation deadline unless one is set.
    "formation_deadline": None,
}


def test_defaults_of_record() -> None:
    """Every field and default of DESIGN sections 3, 8, 9 and 10, and nothing else."""
    assert attrs.asdict(Settings()) == DEFAULTS_OF_RECORD


def test_every_field_has_help_text() -> None:
    """The help text is the single source for docs and CLI help: none may be missing."""
    assert set(Settings.help()) == set(DEFAULTS_OF_RECORD)
    assert all(text for text in Settings.help().values())


def test_settings_are_frozen_and_keyword_only() -> None:
    """Settings cannot change after validation, and are built by keyword."""
    settings = Settings()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        settings.stable_margin = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        Settings(2)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("stable_margin", 0, "finite number of seconds > 0"),
        ("stable_margin", -1.0, "finite number of seconds > 0"),
        ("probe_interval", math.nan, "finite"),
        ("probe_timeout", math.inf, "finite"),
        ("discovery_timeout", "3", "number of seconds"),
        ("discovery_interval", True, "number of seconds"),
        ("probe_jitter", 1.0, r"\[0, 1\)"),
        ("discovery_jitter", -0.1, r"\[0, 1\)"),
        ("probe_jitter", "0.1", r"\[0, 1\)"),
        ("required_contact_points", 0, "integer >= 1"),
        ("required_contact_points", 2.0, "integer >= 1"),
        ("max_seed_nodes", True, "integer >= 1"),
        ("expected_contact_points", 0, "integer >= 1"),
        ("probe_fanout", 0, "integer >= 1"),
        ("probe_fanout", 2.5, "integer >= 1"),
        ("new_cluster_enabled", 1, "True or False"),
        ("fallback_port", 0, "1..65535"),
        ("fallback_port", 70000, "1..65535"),
    ],
)
def test_invalid_values_name_the_field(field: str, value: object, message: str) -> None:
    """A bad value raises UsageError (a ValueError) naming the field and the rule."""
    with pytest.raises(UsageError, match=f"{field} must .*{message}"):
        Settings(**{field: value})  # type: ignore[arg-type]
    assert issubclass(UsageError, ValueError)


def test_backoff_caps_must_not_be_below_their_intervals() -> None:
    """discovery_backoff_max >= discovery_interval and probe_backoff_max >= probe_interval."""
    with pytest.raises(UsageError, match="discovery_backoff_max"):
        Settings(discovery_interval=20.0)
    with pytest.raises(UsageError, match="probe_backoff_max"):
        Settings(probe_interval=20.0)
    Settings(probe_interval=20.0, probe_backoff_max=20.0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("stable_margin", 0),
        ("discovery_timeout", "3"),
        ("probe_jitter", 1.0),
        ("discovery_jitter", "0.1"),
        ("required_contact_points", 0),
        ("expected_contact_points", 0),
        ("new_cluster_enabled", 1),
        ("fallback_port", 0),
    ],
)
def test_a_bad_value_names_its_field_in_fields(field: str, value: object) -> None:
    """Every validator's UsageError carries the field it is about, for a front end to name."""
    with pytest.raises(UsageError) as raised:
        Settings(**{field: value})  # type: ignore[arg-type]
    assert raised.value.fields == (field,)


@pytest.mark.parametrize(
    ("values", "fields"),
    [
        ({"discovery_interval": 20.0}, ("discovery_backoff_max", "discovery_interval")),
        ({"probe_interval": 20.0}, ("probe_backoff_max", "probe_interval")),
        ({"probe_backoff_max": 0.5}, ("probe_backoff_max", "probe_interval")),
    ],
)
def test_values_that_clash_name_every_field_involved(
    values: dict[str, float], fields: tuple[str, ...]
) -> None:
    """A cross-field check names both fields, the cap first."""
    with pytest.raises(UsageError) as raised:
        Settings(**values)  # type: ignore[arg-type]
    assert raised.value.fields == fields


def test_usage_error_is_still_built_from_a_message_alone() -> None:
    """UsageError(message) is API of record: fields is empty then, and it is a ValueError."""
    error = UsageError("say what to change")
    assert str(error) == "say what to change"
    assert error.args == ("say what to change",)
    assert error.fields == ()
    assert isinstance(error, ValueError)
    assert UsageError("m", fields=["a", "b"]).fields == ("a", "b")


def test_observation_ttl_is_derived_from_the_probe_settings() -> None:
    """observation_ttl = probe_interval * (1 + probe_jitter) + probe_timeout."""
    assert Settings().observation_ttl == pytest.approx(1.0 * 1.2 + 3.0)
    settings = Settings(
        probe_interval=10.0, probe_jitter=0.5, probe_timeout=2.0, probe_backoff_max=30
    )
    assert settings.observation_ttl == pytest.approx(17.0)


def test_watch_push_interval_is_the_shortest_probe_delay() -> None:
    """Pushes come at least as often as the shortest probe delay, so no poll falls due."""
    settings = Settings(probe_interval=5.0, probe_jitter=0.2, probe_backoff_max=30)
    assert settings.watch_push_interval == pytest.approx(4.0)


@given(
    st.floats(0.01, 100),
    st.floats(0, 0.99),
    st.integers(0, 200),
    st.floats(0.01, 1000),
    st.randoms(use_true_random=False),
)
def test_backoff_delay_is_within_its_range(base, jitter, failures, cap_extra, rnd) -> None:  # type: ignore[no-untyped-def]
    """backoff_delay lies in min(cap, base * 2**k * [1-j, 1+j]); k=0 is the plain jittered pace."""
    cap = base + cap_extra
    delay = backoff_delay(base, failures, cap, jitter, rnd)
    scale = 2.0 ** min(failures, 64)
    low = min(cap, base * scale * (1 - jitter))
    high = base * (1 + jitter) if failures == 0 else min(cap, base * scale * (1 + jitter))
    assert low * (1 - 1e-9) <= delay <= high * (1 + 1e-9)
    assert (
        base * (1 - jitter) * (1 - 1e-9)
        <= jittered(base, jitter, rnd)
        <= base * (1 + jitter) * (1 + 1e-9)
    )
