"""The real JVM anchor: an Apache Pekko node with Pekko Management's Cluster Bootstrap.

The Java project beside this file builds it (see README.md); :mod:`benchmarks.pekko.driver`
builds the jar and runs nodes from Python, for the benchmark and ``tests/interop/``.
"""
