"""The foundations: what every layer of fastrlm shares, and imports nothing of fastrlm above it.

- ``limits``: :class:`Limits` (and ``DEFAULT_LIMITS``), read by providers and the engine alike.
- ``gate``: :class:`RetryGate` and ``current_gate``: how a provider's retry loop asks the run's
  budget before each retry (the engine's ledger implements and sets it).
- ``images``: :class:`ImagePart`, an image as it travels with a prompt.
- ``net``: which hosts are this machine (``is_loopback``).
- ``httpd``: the one HTTP server stack (aiohttp) of the server, the live view and the fakes.

Nothing here imports another part of fastrlm above the foundations (tests/test_import_graph.py
checks it); this ``__init__`` imports nothing.
"""
