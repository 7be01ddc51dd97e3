"""The foundations: what every layer of fastrlm shares. Nothing here imports any other part of
fastrlm (tests/test_import_graph.py checks it); this ``__init__`` imports nothing.

- ``errors``: the exception tree (``RLMError`` and below); ``stop``: :class:`StopReason` and
  which reasons are limits (``is_limit``); ``result``: :class:`RLMResult`; ``events``: the
  typed events, ``to_dict`` / ``event_from_dict``.
- ``budget`` / ``limits``: the configuration values :class:`Budget` and :class:`Limits` (and
  ``DEFAULT_LIMITS``); ``validate``: the one rule table every number a user sets passes.
- ``usage`` / ``pricing`` / ``windows``: token counts, prices (and ``PriceTable.unpriced``,
  the rule a dollar limit needs), models' context windows.
- ``home``: the one reader of ``$FASTRLM_HOME`` and every path under it; ``schema``: versioned
  SQLite state (the run index, the sub-call cache).
- ``files``: the one opener of user files (regular files only, opened then verified, bounded
  walks) that the loaders and directory contexts use.
- ``gate``: :class:`RetryGate` and ``current_gate`` (a provider's retry loop asks the run's
  budget before each retry; the engine's ledger implements it); ``images``: :class:`ImagePart`;
  ``net``: which hosts are this machine (``is_loopback``); ``wire``: the caps on tool-call JSON
  that crosses into the host.
- ``httpd``: the one HTTP server stack (aiohttp) of the server, the live view and the fakes.
"""
