"""The engine: one RLM run tree, from ``RLM.completion()`` to the provider and back.

The room's files, by role (docs/architecture.md has the contracts):

- ``facade``: :class:`RLM`, the public facade (configuration, completion/acompletion/stream);
  ``session``: :class:`Session`, its door for many questions over one REPL.
- ``engine``: ``configure`` (one run's overrides) and ``answer`` (a run to its result), shared by
  the facade and sessions; ``sync``: :class:`SyncRunner`, the one sync-over-async runner.
- ``run_loop``: :class:`Run`, the root loop of one run (root or child): turns only. Its parts:
  ``reply`` (one reply's code in the REPL), ``bridge`` (the sandbox's host bridge: sub-calls,
  child RLMs, tools), ``typed`` (typed-output checks), ``continuation`` (a one-off run or a
  session's next question, and the session state).
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
