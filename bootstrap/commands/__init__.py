"""Subcommands of ``cluster-bootstrap``: each module offers ``add_arguments`` and ``run``."""
