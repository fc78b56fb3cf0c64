"""Interop tests: our nodes and real Apache Pekko nodes (JVMs built from benchmarks/pekko/)."""
