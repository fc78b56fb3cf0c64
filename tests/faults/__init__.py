"""Fault injection across hosts: node processes in network namespaces, faults on the bridge.

Every test here starts real ``cluster-bootstrap node`` processes, one per network namespace
(:class:`benchmarks.isolation.NetnsIsolation`), injects a fault (a kill -9, a partition or packet
loss on the bridge with nftables, a peer whose answers arrive late, a DNS server whose records
flap or that never answers) and checks the cluster-level invariants of DESIGN section 6 from the
nodes' own ``/bootstrap/status``. The helpers are in :mod:`tests.faults.cluster`.

They need root, iproute2 and nftables: without them the tests are skipped locally and fail under
CI (``CI`` set), where ``.ci/run`` installs them.
"""
