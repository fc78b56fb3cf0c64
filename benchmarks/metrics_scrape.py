"""``python -m benchmarks.metrics_scrape URL``: one node's ``connections_opened`` from ``/metrics``.

The churn benchmark runs this inside the node's own network namespace (the host cannot reach
it there) and compares the figure with the kernel's count of the node's connections. Prints one
JSON object: ``{"connections_opened": N}``, or ``{"error": "..."}`` when the scrape fails.
"""

from __future__ import annotations

import json
import sys

import httpx
from prometheus_client.parser import text_string_to_metric_families

SERIES = "cluster_bootstrap_connections_opened_total"


def connections_opened(url: str) -> int:
    """The counter as Prometheus would read it from ``url``."""
    response = httpx.get(url, timeout=5.0)
    response.raise_for_status()
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == SERIES:
                return int(sample.value)
    raise LookupError(f"{url} exports no {SERIES}")


def main() -> None:
    try:
        print(json.dumps({"connections_opened": connections_opened(sys.argv[1])}))
    except (httpx.HTTPError, LookupError, ValueError) as error:
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}))


if __name__ == "__main__":
    main()
