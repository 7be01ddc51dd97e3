"""Operational limits: how wide, how long, how much is shown. Budgets live in ``_core.budget``.

A foundations module (it imports nothing of fastrlm but validation), so that providers (``lm``)
and the engine read the same value without ``lm`` depending on the engine."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .validate import LIMITS_RULES, check_fields, check_flag


@dataclass(frozen=True, slots=True)
class Limits:
    """How the engine runs calls and shows output.

    - ``max_concurrency``: LM calls in flight at once over the whole call tree. ``None``: the
      sub-model provider's ``default_concurrency`` (a table per provider, local servers higher:
      ``fastrlm.lm._registry``; 64 for a model that names none).
    - ``max_concurrent_children``: child RLMs (each with its own worker) running at once, per
      depth level.
    - ``request_timeout_s`` / ``max_retries``: per LM call, passed to providers.
    - ``output_chars``: the most of a turn's output the root model sees (head and tail; the cut
      says how long it was). Less when the conversation nears ``history_chars``: the room left
      is shared among the turns before the next compaction may come (never under 500
      characters). Each output is shown once and then kept as it was, so every request
      extends the previous one and a provider's prompt cache serves all of it but the newest
      turn (``fastrlm._core.history``).
    - ``history_chars``: the ceiling of the root's conversation. A compaction settles every
      REPL output but the latest to a one-line note of its size, in one step (the model's code
      stays): when the conversation passes this size, or once ten outputs are open and
      settling them pays for the prompt cache's one miss within the next ten requests. So at
      least nine requests in ten extend the previous one.
    - ``full_history``: favour what the model sees over cost: every output is shown at
      ``output_chars``, never shortened; only ``history_chars`` compacts, eliding the oldest
      outputs whole until the conversation is a quarter of it.
    - ``subcall_window_chars``: the largest sub-call prompt in characters: told to the root model
      and enforced (a longer prompt comes back as an ``[error: ...]`` string). ``None``: derived
      from the sub-model's context window (``fastrlm._foundation.windows``).
    - ``root_max_tokens`` / ``sub_max_tokens``: per-call output caps (also what the budget gate
      reserves as a call's worst case).
    - ``trace_full_prompts``: record whole sub-call prompts and replies in events and traces,
      not previews (the trace viewer then opens each sub-call to its whole texts).
    - ``worker_memory_mb``: the sandbox worker's memory limit (heap, shared memory, tmpfs);
      ``None`` sizes it from the context: 1 GiB + the context buffer + 3x the decoded context.
    - ``scratch_mb``: the worker's scratch directory quota (also 10,000 files at most).
    - ``max_answer_chars``: the longest answer a cell may deliver; longer ones are refused with
      a message to the model, and the run goes on.
    - ``worker_env``: variables added to the worker's otherwise empty environment.
    - ``max_output_retries``: with ``completion(output=T)``, how many answers that do not
      match ``T`` are sent back to the model before the run ends with ``invalid_output``.
    - ``question_chars``: the longest user message the root model is shown whole as the
      question. A longer one is read in the REPL, where it must be (the context, or part of
      it: drop-in use, the server's conversation); the root sees its size, head and tail
      (``fastrlm._core.prompts.question_home``). A longer question beside a context that does
      not hold it is refused with :class:`~fastrlm.ContextError`.
    - ``max_tool_rounds``: with ``RLM(sub_tools=...)``, the tool rounds one ``llm_query`` may
      take before its sub-model must answer (each round is one sub-call).
    - ``warmup_prefix_tokens``: a batch of sub-calls (``llm_query_batched``, ``llm_map``,
      ``llm_filter``, a level of ``llm_reduce``) whose prompts share a prefix of at least this
      many tokens (estimated: 4 characters a token) sends one prompt first and the rest once it
      is answered, so they read the prompt cache it wrote instead of each writing its own.
      ``None``: the sub-model provider's own (Anthropic: the smallest prompt it caches for the
      model, 1,024 to 4,096 tokens; never for OpenAI-compatible servers, which cache concurrent
      requests by themselves); ``0``: never.
    """

    max_concurrency: int | None = None
    max_concurrent_children: int = 8
    request_timeout_s: float = 300.0
    max_retries: int = 5
    output_chars: int = 2_000
    history_chars: int = 30_000
    full_history: bool = False
    subcall_window_chars: int | None = None
    root_max_tokens: int = 32_768
    sub_max_tokens: int = 16_384
    trace_full_prompts: bool = False
    worker_memory_mb: int | None = None
    scratch_mb: int = 512
    max_answer_chars: int = 64 * 1024 * 1024
    worker_env: dict[str, str] = field(default_factory=dict, hash=False)
    max_tool_rounds: int = 8
    max_output_retries: int = 3
    question_chars: int = 4_000
    warmup_prefix_tokens: int | None = None

    def __post_init__(self) -> None:
        """Raises :class:`~fastrlm.InvalidSettingError` (a ``ValueError``) naming the field and
        its accepted range (:data:`fastrlm._foundation.validate.LIMITS_RULES`)."""
        check_fields(self, LIMITS_RULES, "Limits")
        check_flag("Limits.trace_full_prompts", self.trace_full_prompts)
        check_flag("Limits.full_history", self.full_history)
        _check_worker_env(self.worker_env)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _check_worker_env(env: object) -> None:
    if not isinstance(env, dict):
        raise ValueError("Limits.worker_env must be a dict of str names to str values")
    for name, value in env.items():
        if not (isinstance(name, str) and isinstance(value, str)):
            raise ValueError("worker_env maps str names to str values")
        if not name or "=" in name or "\0" in name or "\0" in value:
            raise ValueError(f"worker_env: {name!r} is not a valid environment variable")


#: The limits a provider or engine part uses when it is given none.
DEFAULT_LIMITS = Limits()
