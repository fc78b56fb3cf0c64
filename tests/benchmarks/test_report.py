"""The churn report's tables: a node that counts nothing itself (Pekko) reads "n/a", never 0,
and the ratio table has a pair of columns per anchor in the run."""

from __future__ import annotations

from typing import Any

from benchmarks.report import ratio_table, stalled_table


def _stalled(
    strategy: str, *, sockets: float, connections: float, own_counts: bool
) -> dict[str, Any]:
    return {
        "scenario": "stalled",
        "strategy": strategy,
        "probe_interval": 1.0,
        "late_arrival": {"formed": True, "seconds_after_last_start": 1.5, "clusters_formed": 1},
        "summary": {
            "tcp_sockets_per_node": sockets,
            "tcp_sockets_per_node_at_end": sockets,
            "time_wait_per_node_at_end": 0,
            "connections_per_node_kernel": connections,
            "new_connections_per_node_per_second_driver": 0.0 if own_counts else None,
            "new_connections_per_node_per_second_kernel": 0.0,
            "cpu_percent_per_node": 1.0,
            "rss_mib_per_node": 40.0,
            "requests_served_per_node_per_second": 2.0 if own_counts else None,
        },
    }


DOCUMENT = {
    "runs": [
        _stalled("ours-watch", sockets=34, connections=17, own_counts=True),
        _stalled("anchor", sockets=340, connections=1700, own_counts=True),
        _stalled("pekko", sockets=68, connections=34, own_counts=False),
    ]
}


def test_figures_a_node_does_not_count_read_not_available() -> None:
    rows = {line.split(" | ")[1]: line for line in stalled_table(DOCUMENT).splitlines()[2:]}
    assert "| n/a / 0 |" in rows["pekko"]
    assert "| 40 MiB | n/a |" in rows["pekko"]
    assert "| 0 / 0 |" in rows["ours-watch"]
    assert "| 40 MiB | 2 |" in rows["ours-watch"]


def test_the_founder_is_shown_apart_where_the_run_measured_it() -> None:
    ours = _stalled("ours-watch", sockets=8, connections=4, own_counts=True)
    ours["summary"].update(
        tcp_sockets_founder=34, tcp_sockets_per_non_founder=6.2, tcp_sockets_per_non_founder_max=9
    )
    older = _stalled("anchor", sockets=340, connections=1700, own_counts=True)
    rows = {
        line.split(" | ")[1]: line
        for line in stalled_table({"runs": [ours, older]}).splitlines()[2:]
    }
    assert "| 8 / 8 | 34 / 6.2 (max 9) |" in rows["ours-watch"]
    assert "| 340 / 340 | n/a |" in rows["anchor"]


def test_the_ratio_table_has_each_anchor_over_ours() -> None:
    header, _, row = ratio_table(DOCUMENT).splitlines()
    assert "anchor sockets at end / ours-watch" in header
    assert "pekko sockets at end / ours-watch" in header
    assert row == "| 1 s | 10.0x | 10.0x | 100.0x | 2.0x | 2.0x | 2.0x |"
