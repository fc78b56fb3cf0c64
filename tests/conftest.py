"""Test-suite wide configuration: hypothesis profiles.

``ci`` (the default, also used locally so the README command equals CI) runs at least 200
examples per property; ``long`` is for soak runs: ``pytest --hypothesis-profile long``.

Under CI (``CI`` set) the examples are derandomized: a submission's verdict must not depend on
which examples one run happened to draw. Local runs draw new examples each time, so every
developer run keeps exploring; what they find is kept in ``.hypothesis/`` and replayed.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=200,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=bool(os.environ.get("CI")),
)
settings.register_profile("dev", parent=settings.get_profile("ci"), max_examples=50)
settings.register_profile("long", parent=settings.get_profile("ci"), max_examples=5000)
settings.load_profile("ci")
