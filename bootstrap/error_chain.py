"""Walking an exception's chain: the error a user needs is usually several wrappers deep."""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["causes"]


def causes(error: BaseException) -> Iterator[BaseException]:
    """``error`` and what it wraps: causes, contexts and group members, breadth first.

    httpx wraps httpcore wraps trio's "all attempts to connect failed" ``OSError``, whose cause
    is a group holding ``ConnectionRefusedError``; the prober and the Kubernetes backend both
    look down this chain for the error that explains a failure.
    """
    seen: set[int] = set()
    queue = [error]
    while queue:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            queue.extend(current.exceptions)
        # httpcore's pool re-raises with ``from None``, dropping the cause, but its exceptions
        # carry the original error as their argument.
        queue.extend(arg for arg in current.args if isinstance(arg, BaseException))
        if current.__cause__ is not None:
            queue.append(current.__cause__)
        elif current.__context__ is not None and not current.__suppress_context__:
            queue.append(current.__context__)
