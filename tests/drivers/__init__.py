"""Driver tests: the trio layer over the core, with in-memory transports and real sockets."""
