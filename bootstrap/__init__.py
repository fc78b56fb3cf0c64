"""cluster-bootstrap: replicas of a service find each other and form exactly one cluster.

The public API is re-exported here; see ``docs/`` for the design and every setting.
"""

from ._version import __version__
from .core import *  # noqa: F403 - the core's ``__all__`` is this package's API of record
from .core import __all__ as _core_all

__all__ = ["__version__", *_core_all]
