"""The coding agent with context offloading (v3's strongest non-RLM row, OpenCode / Claude Code
style): the context is not in the prompt but in files of a workspace, and the agent works on them
with tools, one action per turn:

- ``READ <path> [<first line> [<lines>]]``: numbered lines of a file (at most ``read_lines``
  lines and ``observation_chars`` characters a turn);
- ``GREP <regex>``: matching lines of every file as ``path:line: text`` (at most ``grep_hits``;
  a pattern is at most :data:`MAX_PATTERN_CHARS` characters);
- a ```python block: runs in a fastrlm sandbox where ``context`` is the workspace (a read-only
  file tree: relative path -> contents), its output shown next turn;
- ``ANSWER: ...``: ends the run.

A string context becomes ``context_NNN.txt`` files of about ``file_chars`` characters cut at line
ends; a list context one file per document (``doc_NNNN.txt``). No sub-model: the agent has only
its tools. Runs out of turns -> ``stop_reason="max_iterations"`` with the last reply.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import ProviderError
from ..lm import LM, ChatMessage
from ._codeact import _CODE, _no_subcalls
from ._meter import Meter, MethodResult, finish

#: The longest GREP pattern accepted (a model-made value, bounded before it is compiled).
MAX_PATTERN_CHARS = 500

SYSTEM = """\
You are a coding agent answering a question about a large input that is stored as files in your \
workspace (it is not in this conversation). Each reply must contain exactly one action:
- READ <path> [<first line> [<number of lines>]]: shows numbered lines of a file (up to {lines});
- GREP <regular expression>: shows matching lines of every file as path:line: text (up to {hits});
- a ```python fenced block: runs in a persistent Python interpreter where `context` maps each \
file's relative path to its text; you see what it prints;
- ANSWER: your final answer (ends the task).
Look at the files before answering; think briefly, then act."""

FIRST = """\
The workspace holds {count} file(s), {chars:,} characters in all:
{listing}

Question: {question}"""

_READ = re.compile(r"^READ[ \t]+(\S+)(?:[ \t]+(\d+))?(?:[ \t]+(\d+))?[ \t]*$", re.M)
_GREP = re.compile(r"^GREP[ \t]+(.+?)[ \t]*$", re.M)
_ANSWER = re.compile(r"ANSWER:\s*(.*)", re.S)


def write_workspace(context: str | list[str], root: Path, file_chars: int) -> dict[str, str]:
    """Write ``context`` as files under ``root``; returns relative path -> text."""
    files: dict[str, str] = {}
    if isinstance(context, list):
        for i, doc in enumerate(context):
            files[f"doc_{i + 1:04d}.txt"] = doc
    else:
        start, part = 0, 1
        while start < len(context) or part == 1:
            end = min(start + file_chars, len(context))
            if end < len(context):
                cut = context.rfind("\n", start, end)
                end = cut + 1 if cut > start else end
            files[f"context_{part:03d}.txt"] = context[start:end]
            start, part = end, part + 1
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    return files


@dataclass
class WorkspaceAgent:
    """The agent (see the module docstring)."""

    model: LM
    max_iterations: int = 30
    sandbox: str = "auto"
    file_chars: int = 200_000
    read_lines: int = 200
    grep_hits: int = 50
    observation_chars: int = 20_000
    name: str = "coding-agent"

    def _read(self, files: dict[str, str], path: str, first: int, count: int) -> str:
        text = files.get(path.strip("'\"").removeprefix("./"))
        if text is None:
            return f"No file {path!r}; the files are: {', '.join(sorted(files))[:2000]}"
        lines = text.splitlines()
        first = max(first, 1)
        shown = lines[first - 1 : first - 1 + min(max(count, 1), self.read_lines)]
        body = "\n".join(f"{first + i}: {line}" for i, line in enumerate(shown))
        return f"{path} lines {first}-{first + len(shown) - 1} of {len(lines)}:\n{body}"

    def _grep(self, files: dict[str, str], pattern: str) -> str:
        if len(pattern) > MAX_PATTERN_CHARS:
            return f"The pattern is {len(pattern):,} characters; at most {MAX_PATTERN_CHARS}."
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            return f"Not a regular expression: {exc}"
        hits: list[str] = []
        for path in sorted(files):
            for number, line in enumerate(files[path].splitlines(), 1):
                if regex.search(line):
                    hits.append(f"{path}:{number}: {line[:300]}")
                    if len(hits) >= self.grep_hits:
                        return "\n".join(hits) + f"\n(first {self.grep_hits} matches shown)"
        return "\n".join(hits) or "No match."

    async def run(
        self, question: str, context: str | list[str], meter: Meter | None = None
    ) -> MethodResult:
        meter = meter or Meter()
        from ..sandbox import HandlerBridge, create_sandbox

        reply, actions = "", {"read": 0, "grep": 0, "python": 0}
        with tempfile.TemporaryDirectory(prefix="fastrlm-workspace-") as tmp:
            root = Path(tmp)
            files = write_workspace(context, root, self.file_chars)
            listing = "\n".join(
                f"- {p} ({len(t):,} characters, {t.count(chr(10)) + 1:,} lines)"
                for p, t in list(files.items())[:200]
            ) + ("\n- ..." if len(files) > 200 else "")
            messages: list[ChatMessage] = [
                {"role": "system",
                 "content": SYSTEM.format(lines=self.read_lines, hits=self.grep_hits)},
                {"role": "user", "content": FIRST.format(
                    count=len(files), chars=sum(len(t) for t in files.values()),
                    listing=listing, question=question)},
            ]
            sb: Any = None
            try:
                for turn in range(1, self.max_iterations + 1):
                    reply = await meter.complete(self.model, messages)
                    messages.append({"role": "assistant", "content": reply})
                    code, read = _CODE.search(reply), _READ.search(reply)
                    grep, answer = _GREP.search(reply), _ANSWER.search(reply)
                    if code:
                        actions["python"] += 1
                        if sb is None:
                            sb = create_sandbox(self.sandbox)
                            await sb.start(root, HandlerBridge(
                                {"llm_query": _no_subcalls, "rlm_query": _no_subcalls}))
                        res = await sb.execute(code.group(1))
                        out = res.stdout + res.stderr + (res.error or "")
                        observation = f"Output:\n```\n{out or '(no output)'}\n```"
                    elif read:
                        actions["read"] += 1
                        first = int(read.group(2) or 1)
                        count = int(read.group(3) or self.read_lines)
                        observation = self._read(files, read.group(1), first, count)
                    elif grep:
                        actions["grep"] += 1
                        observation = self._grep(files, grep.group(1))
                    elif answer:
                        return finish(meter, answer.group(1).strip(), iterations=turn,
                                      files=len(files), actions=actions)
                    else:
                        observation = (
                            "No action found. Reply with READ, GREP, a ```python block, or "
                            "ANSWER: ..."
                        )
                    if len(observation) > self.observation_chars:
                        observation = (observation[: self.observation_chars]
                                       + "\n[... output cut: narrow the READ or GREP ...]")
                    messages.append({"role": "user", "content": observation})
            except ProviderError as exc:
                return finish(meter, reply, "error", iterations=len(messages) // 2,
                              error=str(exc), files=len(files), actions=actions)
            finally:
                if sb is not None:
                    await sb.close()
        return finish(meter, reply, "max_iterations", iterations=self.max_iterations,
                      files=len(files), actions=actions)
