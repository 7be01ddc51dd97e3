"""Sub-LLMs with tools (``RLM(sub_tools=...)``, Prime Intellect's RLMEnv design).

With sub-tools, one ``llm_query(prompt)`` is a small tool-calling agent on the sub-model: the
model may call host tools for up to ``Limits.max_tool_rounds`` rounds, then answers; the root
sees only the final text. Every round is one sub-call through the tree's budget ledger (counted
against ``max_subcalls``, its tokens and dollars booked), so a sub-agent can never pass a limit:
a refused round ends the agent with the refusal's ``[error: budget_...]`` text.

Providers with native tool calling (``lm.supports_tools``: the OpenAI and Anthropic providers)
get the tools as schemas; any other model gets the **JSON fallback**: the tools are listed in the
prompt and a reply that is only a JSON object ``{"tool": name, "arguments": {...}}`` (or a list
of them) is a call; the results come back in a user message.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping, Sequence
from typing import Literal

from .._foundation.wire import MAX_TOOL_JSON_CHARS
from ..lm import LM, ChatMessage, ImagePart, ToolCall
from ..sandbox import tool_arguments
from .call_tree import CallTree, SubcallOutcome
from .ledger import Account
from .parsing import truncate_output
from .prompts import Prompts
from .tools import Tool, run_tool

ToolProtocol = Literal["auto", "native", "json"]
#: Tool calls one round may run; a model asking for more gets an error for the rest.
MAX_CALLS_PER_ROUND = 16
PROTOCOLS: tuple[str, ...] = ("auto", "native", "json")
_FENCE = re.compile(r"\A```(?:json)?\s*\n(.*?)\n?```\Z", re.DOTALL)
_TOOL_NAME = re.compile(r'"tool"\s*:\s*"([^"\\]{1,200})"')
#: The longest JSON-fallback reply decoded: every call of a round at its largest.
MAX_REPLY_JSON_CHARS = MAX_CALLS_PER_ROUND * (MAX_TOOL_JSON_CHARS + 1024)


def uses_native_tools(lm: LM, protocol: str) -> bool:
    """Whether ``lm`` gets tools natively (else the JSON fallback)."""
    if protocol == "json":
        return False
    return protocol == "native" or bool(getattr(lm, "supports_tools", False))


def json_tool_calls(text: str, round_: int) -> list[ToolCall]:
    """The tool calls of a JSON-fallback reply, or ``[]`` when it is an answer. A call is a
    reply that is only (maybe fenced) JSON: ``{"tool": "name", "arguments": {...}}``, a list of
    those, or ``{"tool_calls": [...]}``. A reply too large or too deeply nested to decode
    that names a tool is one call with the reply's text as its arguments, which
    :func:`~fastrlm.sandbox._hostcalls.tool_arguments` refuses when it runs. Pure."""
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    if not body or body[0] not in "[{":
        return []
    if len(body) > MAX_REPLY_JSON_CHARS:
        return _undecodable(body, round_)
    try:
        data = json.loads(body)
    except RecursionError:
        return _undecodable(body, round_)
    except ValueError:
        return []
    if isinstance(data, dict) and isinstance(data.get("tool_calls"), list):
        data = data["tool_calls"]
    items = data if isinstance(data, list) else [data]
    calls = []
    for index, item in enumerate(items):
        if not (isinstance(item, dict) and isinstance(item.get("tool"), str)):
            return []
        arguments = item.get("arguments", {})
        if not isinstance(arguments, dict):
            arguments = json.dumps(arguments)
        calls.append(ToolCall(f"json-{round_}-{index}", item["tool"], arguments))
    return calls


def _undecodable(body: str, round_: int) -> list[ToolCall]:
    """A reply too large or too deeply nested to decode: one call with the reply's text as its
    arguments (refused when it runs) when its start names a tool, else an answer."""
    named = _TOOL_NAME.search(body, 0, 4096)
    return [ToolCall(f"json-{round_}-0", named.group(1), body)] if named else []


def tool_listing(tools: Sequence[Tool]) -> str:
    """One line per tool with its JSON schema, for the JSON fallback prompt."""
    return "\n".join(
        f"- {t.name}: {t.description or '(no description)'} Arguments (JSON schema): "
        f"{json.dumps(t.parameters, ensure_ascii=False)}"
        for t in tools
    )


async def agent_subcall(
    tree: CallTree,
    lm: LM,
    prompt: str,
    images: list[ImagePart] | None = None,
    cache_prefix: int = 0,
    *,
    tools: Sequence[Tool],
    protocol: str,
    prompts: Prompts,
    run_id: str,
    depth: int,
    account: Account,
) -> SubcallOutcome:
    """One ``llm_query`` answered by a tool-calling agent on ``lm``; never raises (but for
    cancellation). Returns the final text, or the ``[error: ...]`` text of the round that was
    refused or failed. ``cache_prefix``: the characters its batch shares
    (:meth:`CallTree.fan_out`), marked on its first message in every round."""
    refusal = tree.admit(lm, prompt, account)
    if refusal is not None:
        return refusal
    native = uses_native_tools(lm, protocol)
    by_name = {t.name: t for t in tools}
    schemas = [t.schema() for t in tools]
    first = prompt if native else prompt + "\n\n" + prompts.sub_tools_json.format(
        tools=tool_listing(tools))
    messages: list[ChatMessage] = [{"role": "user", "content": first}]
    if images:
        messages[0]["images"] = images
    if cache_prefix:
        messages[0]["cache_prefix"] = cache_prefix
    agent_id = tree.new_call_id()
    max_rounds = tree.limits.max_tool_rounds
    result_chars = max(tree.limits.output_chars, 2_000)
    for round_ in range(1, max_rounds + 2):
        last = round_ > max_rounds
        if last:
            messages.append({"role": "user", "content": prompts.sub_tools_done.format(
                rounds=max_rounds)})
        size = sum(_chars(m) for m in messages)
        refusal = tree.window_refusal(lm, size, f"the sub-agent's conversation grew past it "
                                      f"after {round_ - 1} tool round(s)")
        if refusal is not None:
            return refusal
        answered = await tree.sub_round(
            lm, messages, messages[-1]["content"], run_id=run_id, depth=depth, account=account,
            tools=schemas if native and not last else None, round=round_, agent_id=agent_id,
            call_id=agent_id if round_ == 1 else None,
        )
        if isinstance(answered, SubcallOutcome):
            return answered
        response = answered[0]
        calls = list(response.tool_calls) if native else json_tool_calls(response.text, round_)
        if not calls or last:
            return SubcallOutcome(response.text)
        checked = [_checked(call) if index < MAX_CALLS_PER_ROUND else {}
                   for index, call in enumerate(calls)]  # calls past the cap are not copied
        calls = [  # echoed to the model as they are used: a refused value goes no further
            ToolCall(c.id, c.name, arguments if isinstance(arguments, dict) else {})
            for c, arguments in zip(calls, checked, strict=True)
        ]
        replies = list(await asyncio.gather(*(
            _run(tree, by_name, call.name, arguments, run_id=run_id, depth=depth,
                 agent_id=agent_id)
            for call, arguments in zip(calls[:MAX_CALLS_PER_ROUND], checked, strict=False)
        )))
        replies += [f"error (tool_limit): at most {MAX_CALLS_PER_ROUND} tool calls run per "
                    "round; this one did not run"] * (len(calls) - MAX_CALLS_PER_ROUND)
        shown = [truncate_output(reply, result_chars) for reply in replies]
        if native:
            messages.append({"role": "assistant", "content": response.text,
                             "tool_calls": [c.to_dict() for c in calls]})
            messages.extend({"role": "tool", "tool_call_id": c.id, "content": text}
                            for c, text in zip(calls, shown, strict=True))
        else:
            messages.append({"role": "assistant", "content": response.text})
            results = "\n\n".join(f"Result of {c.name}:\n{text}"
                                  for c, text in zip(calls, shown, strict=True))
            messages.append({"role": "user", "content": prompts.sub_tools_results.format(
                results=results, rounds_left=max_rounds - round_)})
    raise AssertionError("unreachable: the last round always returns")


def _chars(message: ChatMessage) -> int:
    """How many characters ``message`` sends: its text and the tool calls it echoes (their
    arguments are sent back to the model too)."""
    echoed = message.get("tool_calls") or ()
    return len(message["content"]) + sum(len(json.dumps(call, ensure_ascii=False))
                                         for call in echoed)


def _checked(call: ToolCall) -> dict[str, object] | str:
    """The arguments of ``call`` checked where they arrive (the provider's parse bounds
    nothing): a JSON copy of them, or past the limits of
    :func:`~fastrlm.sandbox._hostcalls.tool_arguments` the refusal's text."""
    try:
        return tool_arguments(call.name, call.arguments)
    except (TypeError, ValueError) as exc:
        return f"error (bad_arguments): {exc}"


async def _run(tree: CallTree, tools: Mapping[str, Tool], name: str,
               arguments: dict[str, object] | str, *, run_id: str, depth: int,
               agent_id: str) -> str:
    """One tool call of a sub-agent, as the text its model sees (``arguments``: checked, or
    the refusal's text)."""
    if isinstance(arguments, str):
        return arguments
    reply = await run_tool(tools, name, arguments, counter=tree.tool_counter,
                           emit=tree.emit, run_id=run_id, depth=depth, subcall_id=agent_id)
    if reply["ok"] is True:
        return str(reply["json"])
    return f"error ({reply['kind']}): {reply['message']}"
