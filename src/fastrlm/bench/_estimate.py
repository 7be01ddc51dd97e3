"""What a run will cost, estimated before it starts from the data's size and the prices.

The estimate is a model of each method's reading, not a bound (``--max-usd`` is the bound):

- ``base`` (and ``base-truncated``): the context up to the root model's window, once (``base``
  sends nothing for an input over its window: N/A, free); ``base-sc`` is priced as ``rlm``, the
  cost it is matched to.
- RLM rows: the sub-model reads the whole context once per level of depth (depth 0: the root
  reads :data:`NO_SUBCALL_READ` tokens of it through printed output), plus :data:`ROOT_TURNS`
  root turns of :data:`ROOT_TURN_TOKENS` each. An RLM that searches reads less: on
  BrowseComp+ (8.5M tokens a task) this says about $2.3 a task for GPT-5 / GPT-5-mini, where
  the paper's RLM spent $0.99.
- ``summary`` and ``simple-rlm``: the summariser / sub-model reads the whole context once, the
  root answers from notes; ``codeact*``: :data:`AGENT_TURNS` turns over the windowed context;
  ``coding-agent``: :data:`AGENT_TURNS` turns of :data:`ROOT_TURN_TOKENS`; controls are free.

Token counts are the instances' proxy counts (characters / 4); prices come from the run's price
table, and a model without a price is named (its cost counted as 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import PriceTable
from ._config import RLM_DEPTH, BenchConfig
from ._instance import Task
from ._meter import window_tokens

#: Root turns an RLM or agent run is assumed to take, and the tokens each turn sends.
ROOT_TURNS = 8
ROOT_TURN_TOKENS = 6_000
#: Output tokens assumed per root turn, and per sub-call answer.
TURN_OUTPUT_TOKENS = 600
#: Context tokens a sub-call reads (sizes the number of sub-call answers).
SUBCALL_READ_TOKENS = 100_000
#: Context a no-sub-call RLM reads through printed output.
NO_SUBCALL_READ = 30_000
#: Turns of a CodeAct or coding agent.
AGENT_TURNS = 6


@dataclass
class Estimate:
    """USD per method over the whole run, the instances and tokens it was made from, and the
    models the price table does not know."""

    usd: dict[str, float] = field(default_factory=dict)
    instances: int = 0
    context_tokens: int = 0
    unpriced: set[str] = field(default_factory=set)

    @property
    def total(self) -> float:
        return sum(self.usd.values())

    def text(self) -> str:
        """The lines the CLI prints before a run."""
        per = max(self.instances, 1)
        lines = [
            f"Cost estimate before the run (a rough model of each method's reading, not a bound; "
            f"--max-usd caps each RLM run): {self.instances} instance(s), about "
            f"{self.context_tokens / per:,.0f} context tokens each."
        ]
        lines += [f"  {m}: ${usd:,.2f} (about ${usd / per:,.3f} a task)"
                  for m, usd in self.usd.items()]
        lines.append(f"  total: ${self.total:,.2f}")
        if self.unpriced:
            lines.append(f"  not priced (counted as $0): {', '.join(sorted(self.unpriced))}; "
                         "add --price MODEL=IN,OUT")
        return "\n".join(lines)


def _usd(prices: PriceTable, model: str, tokens_in: float, tokens_out: float,
         unpriced: set[str]) -> float:
    price = prices.price(model)
    if price is None:
        unpriced.add(model)
        return 0.0
    return (tokens_in * price.input + tokens_out * price.output) / 1e6


def method_usd(method: str, tokens: int, config: BenchConfig, names: tuple[str, str, str],
               prices: PriceTable, unpriced: set[str]) -> float:
    """The estimated cost of ``method`` on one instance of ``tokens`` context tokens;
    ``names`` is (root, sub, summariser)."""
    root, sub, summ = names
    window = config.window or window_tokens(root)
    turns = _usd(prices, root, ROOT_TURNS * ROOT_TURN_TOKENS, ROOT_TURNS * TURN_OUTPUT_TOKENS,
                 unpriced)
    answers = max(tokens // SUBCALL_READ_TOKENS, 1) * TURN_OUTPUT_TOKENS
    if method in ("rlm", "rlm-depth-2", "rlm-depth-3", "base-sc"):
        depth = RLM_DEPTH.get(method, 1)
        return turns + depth * _usd(prices, sub, tokens, answers, unpriced)
    if method == "rlm-no-subcalls":
        return turns + _usd(prices, root, min(tokens, NO_SUBCALL_READ), 0, unpriced)
    if method == "base":
        return 0.0 if tokens > window else _usd(prices, root, tokens, 1_000, unpriced)
    if method == "base-truncated":
        return _usd(prices, root, min(tokens, window), 1_000, unpriced)
    if method in ("summary", "simple-rlm"):
        reader = summ if method == "summary" else sub
        return (_usd(prices, reader, tokens, answers, unpriced)
                + _usd(prices, root, ROOT_TURN_TOKENS, TURN_OUTPUT_TOKENS, unpriced))
    if method in ("codeact", "codeact-bm25", "codeact-subcalls"):
        seen = min(tokens, int(window * 0.6))
        return _usd(prices, root, AGENT_TURNS * (seen + ROOT_TURN_TOKENS),
                    AGENT_TURNS * TURN_OUTPUT_TOKENS, unpriced)
    if method == "coding-agent":
        return _usd(prices, root, AGENT_TURNS * ROOT_TURN_TOKENS * 2,
                    AGENT_TURNS * TURN_OUTPUT_TOKENS, unpriced)
    return 0.0  # the controls call no model


def estimate(config: BenchConfig, task: Task, names: tuple[str, str, str],
             prices: PriceTable) -> Estimate:
    """The estimate for ``config`` over ``task`` (see the module docstring). Reads the
    instances a file-backed task holds, or generates instance 0 of each length."""
    seed = config.seed if config.seed is not None else 0
    lengths = config.lengths or task.default_lengths
    n = config.n if config.n is not None else task.default_n
    sizes: list[int] = []
    for length in lengths:
        held = getattr(task, "instances", None)
        if callable(held):
            items = held(seed, length)
            # one at a time: a loaded set may build each instance on access (BrowseComp-Plus)
            sizes += [int(items[i].meta.get("tokens") or 0) for i in range(min(n, len(items)))]
        else:
            sizes += [int(task.instance(seed, length, 0).meta.get("tokens") or 0)] * n
    out = Estimate(instances=len(sizes), context_tokens=sum(sizes))
    for method in config.methods:
        out.usd[method] = sum(method_usd(method, t, config, names, prices, out.unpriced)
                              for t in sizes)
    return out
