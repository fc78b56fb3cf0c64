"""``python -m benchmarks.metrics_scrape URL``: one node's connection counters from ``/metrics``.

The churn benchmark runs this inside the node's own network namespace (the host cannot reach
it there) and compares the figures with the kernel's count of the node's connections. Prints
one JSON object, ``{"connections_opened": N, "connects_cancelled": M}``, or
``{"error": "..."}`` when the scrape fails.
"""

from __future__ import annotations

import json
import sys

import httpx
from prometheus_client.parser import text_string_to_metric_families

SERIES = {
    "cluster_bootstrap_connections_opened_total": "connections_opened",
    "cluster_bootstrap_connects_cancelled_total": "connects_cancelled",
}
SOURCE_ADDRESS = "127.0.0.1"


def connection_counters(url: str) -> dict[str, int]:
    """The counters as Prometheus would read them from ``url``.

    The connection leaves from 127.0.0.1 (every namespace has ``lo``), never from a node's own
    address: the kernel's count of the node's connections must not include the scrape.
    """
    transport = httpx.HTTPTransport(local_address=SOURCE_ADDRESS)
    with httpx.Client(transport=transport, timeout=5.0) as client:
        response = client.get(url)
    response.raise_for_status()
    found = {
        SERIES[sample.name]: int(sample.value)
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name in SERIES
    }
    if len(found) != len(SERIES):
        raise LookupError(f"{url} lacks some of {sorted(SERIES)}")
    return found


def main() -> None:
    try:
        print(json.dumps(connection_counters(sys.argv[1])))
    except (httpx.HTTPError, LookupError, ValueError) as error:
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}))


if __name__ == "__main__":
    main()
