"""Jittered delays and capped exponential backoff, drawn from an injected ``random.Random``.

Jitter spreads the probes of many nodes so they do not fall into lock-step; the exponent backs
off from a peer (or a discovery backend) that keeps failing. The cap keeps a peer that comes back
from waiting longer than ``*_backoff_max``.
"""

from __future__ import annotations

import random

__all__ = ["backoff_delay", "jittered"]

# 2**64 times any sane interval is far beyond every cap; stop there so the float never overflows.
_MAX_EXPONENT = 64


def jittered(base: float, jitter: float, rng: random.Random) -> float:
    """``base`` scaled by a uniform factor in ``[1 - jitter, 1 + jitter]``."""
    return base * rng.uniform(1 - jitter, 1 + jitter)


def backoff_delay(
    base: float, failures: int, cap: float, jitter: float, rng: random.Random
) -> float:
    """Delay after the ``failures``-th consecutive failure: ``min(cap, base * 2**k * U[1-j, 1+j])``.

    ``failures == 0`` is the healthy pace: ``base * U[1-j, 1+j]``, uncapped (the cap is >= base
    by validation, but jitter may carry a healthy delay slightly above it).
    """
    if failures <= 0:
        return jittered(base, jitter, rng)
    return min(cap, jittered(base * 2.0 ** min(failures, _MAX_EXPONENT), jitter, rng))
