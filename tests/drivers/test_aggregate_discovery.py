"""Tests of AggregateDiscovery: backends in order, the first non-empty answer wins, each within
its share of the caller's deadline.

Backends here are small fakes whose class names are what the aggregate's messages show. Every
test runs under an absolute ``trio.fail_after`` (:func:`tests.helpers.running.run`); the tests
of the shares run under ``MockClock(autojump_threshold=0)`` and assert exact virtual times.
"""

from __future__ import annotations

import logging

import pytest
import trio

from bootstrap import ContactPoint, UsageError
from bootstrap.discovery import AggregateDiscovery, Discovery, DiscoveryError, StaticDiscovery
from bootstrap.discovery.deadline import lookup_budget
from tests.helpers.running import autojump_clock, run

LOGGER = "bootstrap.discovery.aggregate"
A = ContactPoint("10.0.0.1", 8558)
B = ContactPoint("10.0.0.2", 8558)


class Backend:
    """A fake backend: after ``seconds`` answers ``found`` or raises ``error``, and records that
    it was asked."""

    def __init__(
        self,
        calls: list[str],
        *,
        found: list[ContactPoint] | None = None,
        error: Exception | None = None,
        seconds: float = 0.0,
    ) -> None:
        self.calls = calls
        self.found = found or []
        self.error = error
        self.seconds = seconds

    async def lookup(self) -> list[ContactPoint]:
        self.calls.append(type(self).__name__)
        await trio.sleep(self.seconds)  # a checkpoint even at 0: a lookup may be cancelled
        if self.error is not None:
            raise self.error
        return list(self.found)


class Kubernetes(Backend):
    pass


class Dns(Backend):
    pass


class Static(Backend):
    pass


class Slow(Backend):
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


class Hanging:
    """A backend that never answers and does not bound its own lookups."""

    async def lookup(self) -> list[ContactPoint]:
        await trio.sleep_forever()
        raise AssertionError("unreachable")


def test_cancellation_is_not_swallowed() -> None:
    """Cancelling a lookup cancels it, wherever it is in the chain; it is not an error, and the
    backends after the one it cancelled are not asked."""
    aggregate = AggregateDiscovery([Hanging(), StaticDiscovery([A])])

    async def test() -> bool:
        async with trio.open_nursery() as nursery:
            with trio.CancelScope() as scope:
                nursery.start_soon(cancel_after, scope, 0.05)
                await aggregate.lookup()
        return scope.cancelled_caught

    assert run(test, clock=autojump_clock())


async def cancel_after(scope: trio.CancelScope, seconds: float) -> None:
    await trio.sleep(seconds)
    scope.cancel()


def test_the_callers_deadline_is_the_callers_timeout() -> None:
    """When the last backend has no answer by the caller's deadline (the node's
    discovery_timeout), the caller's own scope is cancelled: it reports its timeout."""
    aggregate = AggregateDiscovery([Hanging(), Hanging()])

    async def test() -> tuple[bool, float]:
        start = trio.current_time()
        with trio.move_on_after(3.0) as scope:
            await aggregate.lookup()
        return scope.cancelled_caught, trio.current_time() - start

    assert run(test, clock=autojump_clock()) == (True, 3.0)


def test_a_hung_backend_is_cut_at_its_share_and_the_next_gets_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Under a 3 s deadline the first of two backends gets 1.5 s; hung, it is cut then, its
    failure says so, and the second answers with the time left."""
    calls: list[str] = []
    aggregate = AggregateDiscovery([Hanging(), Slow(calls, found=[A], seconds=1.0)])

    async def test() -> tuple[list[ContactPoint], float]:
        start = trio.current_time()
        with trio.fail_after(3.0):
            found = await aggregate.lookup()
        return found, trio.current_time() - start

    assert run(test, clock=autojump_clock()) == ([A], 2.5)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "Hanging failed (using Slow's answer instead): no answer within its share of the "
        "lookup's time (1.5 s)"
    ]


def test_a_backend_sees_its_share_as_its_deadline() -> None:
    """A backend that bounds its own lookups (bootstrap.discovery.deadline) is held to its share:
    under 3 s, the first of two sees 1.5 s; the second, starting at once, all 3 s."""
    seen: list[float] = []

    class Budgeted:
        async def lookup(self) -> list[ContactPoint]:
            seen.append(lookup_budget().seconds)
            raise DiscoveryError("gave up")

    aggregate = AggregateDiscovery([Budgeted(), Budgeted()])

    async def test() -> None:
        with trio.fail_after(3.0), pytest.raises(DiscoveryError):
            await aggregate.lookup()

    run(test, clock=autojump_clock())
    assert seen == [1.5, 3.0]


def test_each_backend_shares_the_time_left_when_it_starts() -> None:
    """Backend i of n gets (time left) / (n - i): what a quick one leaves goes to the rest.
    Under 4 s: the first answers empty after 1 s, so the second gets 3 / 2 = 1.5 s (cut at
    2.5), and the third has the 1.5 s left; it fails at 3.0, and the error lists all three."""
    calls: list[str] = []
    aggregate = AggregateDiscovery(
        [
            Slow(calls, seconds=1.0),
            Hanging(),
            Slow(calls, error=DiscoveryError("SERVFAIL"), seconds=0.5),
        ]
    )

    async def test() -> tuple[str, float]:
        start = trio.current_time()
        with trio.fail_after(4.0), pytest.raises(DiscoveryError) as raised:
            await aggregate.lookup()
        return str(raised.value), trio.current_time() - start

    assert run(test, clock=autojump_clock()) == (
        "Slow: found no contact points; "
        "Hanging: no answer within its share of the lookup's time (1.5 s); "
        "Slow: SERVFAIL",
        3.0,
    )


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
