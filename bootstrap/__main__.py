"""``python -m bootstrap``: the same program as the ``cluster-bootstrap`` console script."""

import sys

from .cli import main

sys.exit(main())
