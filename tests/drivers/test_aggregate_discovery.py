"""Tests of AggregateDiscovery: backends in order, the first non-empty answer wins.

Backends here are small fakes whose class names are what the aggregate's messages show. Every
test runs under an absolute ``trio.fail_after`` (:func:`run`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
import trio

from bootstrap import ContactPoint, UsageError
from bootstrap.discovery import AggregateDiscovery, Discovery, DiscoveryError, StaticDiscovery

T = TypeVar("T")

TEST_TIMEOUT = 10.0
LOGGER = "bootstrap.discovery.aggregate"
A = ContactPoint("10.0.0.1", 8558)
B = ContactPoint("10.0.0.2", 8558)


def run(test: Callable[[], Awaitable[T]]) -> T:
    """Run ``test`` under trio with an absolute deadline; return what it returns."""

    async def main() -> T:
        with trio.fail_after(TEST_TIMEOUT):
            return await test()

    return trio.run(main)


class Backend:
    """A fake backend: answers ``found`` or raises ``error``, and records that it was asked."""

    def __init__(
        self,
        calls: list[str],
        *,
        found: list[ContactPoint] | None = None,
        error: Exception | None = None,
    ) -> None:
        self.calls = calls
        self.found = found or []
        self.error = error

    async def lookup(self) -> list[ContactPoint]:
        self.calls.append(type(self).__name__)
        await trio.lowlevel.checkpoint()
        if self.error is not None:
            raise self.error
        return list(self.found)


class Kubernetes(Backend):
    pass


class Dns(Backend):
    pass


class Static(Backend):
    pass


def test_the_first_non_empty_answer_wins_and_later_backends_are_not_asked() -> None:
    """Backends are asked in order; the first with contact points answers; the rest rest."""
    calls: list[str] = []
    aggregate = AggregateDiscovery(
        [Kubernetes(calls), Dns(calls, found=[B, A]), Static(calls, found=[A])]
    )
    assert isinstance(aggregate, Discovery)
    assert run(aggregate.lookup) == [B, A]
    assert calls == ["Kubernetes", "Dns"]


def test_a_failing_backend_falls_through_to_the_next_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An error does not stop the chain; while a later backend answers it is logged once."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    calls: list[str] = []
    kubernetes = Kubernetes(calls, error=DiscoveryError("forbidden: add a Role"))
    aggregate = AggregateDiscovery([kubernetes, Dns(calls, found=[A])])

    async def test() -> None:
        for _ in range(3):
            assert await aggregate.lookup() == [A]
        kubernetes.error = DiscoveryError("no answer within 3 s")
        assert await aggregate.lookup() == [A]

    run(test)
    assert calls == ["Kubernetes", "Dns"] * 4
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "Kubernetes failed (using Dns's answer instead): forbidden: add a Role",
        "Kubernetes failed (using Dns's answer instead): no answer within 3 s",
    ]


def test_all_empty_answers_are_an_empty_answer() -> None:
    """Every backend answered and found nobody: [] (not an error), after asking them all."""
    calls: list[str] = []
    aggregate = AggregateDiscovery([Kubernetes(calls), Dns(calls)])
    assert run(aggregate.lookup) == []
    assert calls == ["Kubernetes", "Dns"]


def test_empty_and_failed_raise_listing_every_backend_in_order() -> None:
    """Nothing found and something failed: a DiscoveryError with every outcome, in order."""
    calls: list[str] = []
    aggregate = AggregateDiscovery(
        [
            Kubernetes(calls, error=DiscoveryError("token rejected: ...")),
            Dns(calls),
            Static(calls, error=DiscoveryError("no contact points configured")),
        ]
    )
    with pytest.raises(DiscoveryError) as raised:
        run(aggregate.lookup)
    assert str(raised.value) == (
        "Kubernetes: token rejected: ...; Dns: found no contact points; "
        "Static: no contact points configured"
    )
    assert calls == ["Kubernetes", "Dns", "Static"]


def test_a_backend_bug_is_a_failure_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Any other exception is that backend's bug: logged once with traceback, then an error."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    calls: list[str] = []
    aggregate = AggregateDiscovery(
        [Kubernetes(calls, error=RuntimeError("pod list cache not primed")), Dns(calls)]
    )
    for _ in range(2):
        with pytest.raises(DiscoveryError) as raised:
            run(aggregate.lookup)
        assert str(raised.value) == (
            "Kubernetes: raised RuntimeError: pod list cache not primed; "
            "Dns: found no contact points"
        )
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].getMessage() == (
        "Kubernetes raised RuntimeError: pod list cache not primed: a bug in that backend; "
        "treated as a failed lookup"
    )
    assert errors[0].exc_info is not None
    assert isinstance(errors[0].exc_info[1], RuntimeError)


def test_a_backend_bug_does_not_stop_the_chain() -> None:
    """A backend that raises (KeyError here) is skipped like a failed one: the next answers."""
    calls: list[str] = []
    aggregate = AggregateDiscovery(
        [Kubernetes(calls, error=KeyError("items")), Dns(calls, found=[B])]
    )
    assert run(aggregate.lookup) == [B]


def test_an_error_without_a_message_is_still_named() -> None:
    """A DiscoveryError with no text still says which backend failed."""
    calls: list[str] = []
    aggregate = AggregateDiscovery([Kubernetes(calls, error=DiscoveryError())])
    with pytest.raises(DiscoveryError, match=r"^Kubernetes: failed without saying why$"):
        run(aggregate.lookup)


def test_cancellation_is_not_swallowed() -> None:
    """Cancelling a lookup (the node's discovery_timeout) cancels it; it is not an error."""

    class Hanging:
        async def lookup(self) -> list[ContactPoint]:
            await trio.sleep_forever()
            raise AssertionError("unreachable")

    aggregate = AggregateDiscovery([Hanging(), StaticDiscovery([A])])

    async def test() -> bool:
        with trio.move_on_after(0.05) as scope:
            await aggregate.lookup()
        return scope.cancelled_caught

    assert run(test)


def test_no_backends_is_a_usage_error() -> None:
    """An empty list of backends is refused at construction."""
    with pytest.raises(UsageError, match="needs at least one backend"):
        AggregateDiscovery([])


def test_something_that_is_not_a_backend_is_a_usage_error() -> None:
    """Every backend must have a lookup() method."""
    with pytest.raises(UsageError, match="'dns' is not a discovery backend"):
        AggregateDiscovery([StaticDiscovery([A]), "dns"])  # type: ignore[list-item]


def test_the_backends_are_kept_in_order() -> None:
    """The backends property gives them back as given."""
    first, second = StaticDiscovery([A]), StaticDiscovery([B])
    assert AggregateDiscovery([first, second]).backends == (first, second)


def test_closing_the_aggregate_closes_the_backends_that_can_be() -> None:
    """aclose() (or leaving ``async with``) closes each backend with an aclose(), all of them."""
    closed: list[str] = []

    class Closable(Backend):
        async def aclose(self) -> None:
            closed.append(type(self).__name__)
            await trio.lowlevel.checkpoint()

    class Kube(Closable):
        pass

    class Broken(Closable):
        async def aclose(self) -> None:
            await super().aclose()
            raise RuntimeError("close failed")

    calls: list[str] = []

    async def test() -> None:
        async with AggregateDiscovery([Kube(calls), StaticDiscovery([A]), Broken(calls)]):
            pass

    with pytest.raises(RuntimeError, match="close failed"):
        run(test)
    assert closed == ["Broken", "Kube"]
