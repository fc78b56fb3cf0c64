"""Scaffolding shared by the test modules: one job per module, each written once.

* :mod:`.running`: run one async test under trio within an absolute deadline (:func:`run`), on
  the real clock or under virtual time (:func:`autojump_clock`).
* :mod:`.fake_node`: the node side of a :class:`~bootstrap.server.ManagementApp` (what it
  serves, what the app told it), and the constants the server-side tests share.
* :mod:`.asgi_websocket`: a websocket client speaking ASGI messages to an app in-process.
* :mod:`.watch_peer`: peers' watch servers on in-memory streams, through real trio-websocket
  handshakes: what a prober is given as ``connect_websocket``.
* :mod:`.reports`: the ``report`` callback given to a prober, keeping each event and its time.
* :mod:`.ports`: a free TCP port on loopback.

Test modules import scaffolding from here, never from another test module.
"""
