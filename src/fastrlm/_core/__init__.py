"""The engine: one RLM run tree, from ``RLM.completion()`` to the provider and back.

The room's files, by role (docs/architecture.md has the contracts):

- ``facade``: :class:`RLM`, the public facade (configuration, completion/acompletion/stream).
- ``run_loop``: :class:`Run`, the root loop of one run (root or child); a Run is its sandbox's
  host bridge and starts child RLMs.
- ``call_tree``: :class:`CallTree`, every LM call of a tree (ledger, one concurrency limit,
  events, cache).
- ``ledger``: :class:`BudgetLedger`, the one accountant (reserve, attempt booking, settle,
  queueing, anomalies).
- ``budget`` / ``limits`` / ``stop``: the configuration values :class:`Budget`, :class:`Limits`
  and the typed :class:`StopReason`.
- ``run_values``: :class:`RunConfig` (an RLM's one frozen configuration), :class:`Outcome`, run
  ids.
- ``events``: the typed events; ``result``: :class:`RLMResult`.
- ``prompts`` / ``paper_prompts``: every prompt the engine sends; ``parsing`` and ``feedback``:
  the pure functions that read replies and shape what the model is shown.

This ``__init__`` imports nothing, so the edges (``lm``, ``sandbox``) can import a leaf such as
``limits`` without loading the engine.
"""
