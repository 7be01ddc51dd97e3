"""One reply of the root model: run its code blocks (and a prose ``FINAL``) in the REPL, and
turn what they did into the delivered answer or the feedback for the next turn."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass

from .._foundation.events import CodeExecuted, Event, SandboxRestarted
from ..sandbox import RESERVED_NAMES, ExecResult, FinalValue, Sandbox
from .feedback import output_of, status_of
from .parsing import extract_code_blocks, find_prose_final, truncate_output, unquote_literal
from .profiles import BlockOutput, variables_cell
from .prompts import Prompts


@dataclass(frozen=True)
class Handled:
    """What one reply gave: the delivered answer (if any) and the feedback text."""

    final: FinalValue | None
    feedback: str
    #: What each block did, for a prompt profile's turn format (see :mod:`.profiles`).
    blocks: tuple[BlockOutput, ...] = ()


@dataclass
class ReplyRunner:
    """Runs the root's replies of one run in its sandbox (once ``ready`` is done).
    ``answer_content`` is the latest answer the REPL's ``answer`` held: what a stopped run
    returns."""

    sandbox: Sandbox
    ready: asyncio.Task[None]
    prompts: Prompts
    output_chars: int
    emit: Callable[[Event], None]
    run_id: str
    depth: int
    restarted_note: Callable[[str], str]
    #: Told each cell's (turn, block, code, whole output) once it ran; may raise to stop the
    #: run there (a replay that no longer matches its record).
    on_cell: Callable[[int, int, str, str], None] = lambda *_: None
    answer_content: str | None = None

    async def run(self, text: str, iteration: int, last: bool = False,
                  shown_chars: int | None = None) -> Handled:
        """Run the code of one reply; its blocks' outputs are shown within ``shown_chars``
        (head and tail; ``output_chars`` when None), shared among them.

        A strict prose ``FINAL(...)``/``FINAL_VAR(...)`` line (see ``find_prose_final``) is taken
        after the reply's blocks have run without error (or, in the ``last`` turn, which has no
        later one to fix them, after any): ``FINAL_VAR(name)`` and a bare ``FINAL(identifier)``
        are resolved in the REPL (a variable of that name is delivered), any other
        ``FINAL(argument)`` is what the same call in a code block delivers for a literal (see
        ``unquote_literal``), else the text itself."""
        prompts = self.prompts
        reply = extract_code_blocks(text)
        prose_final = find_prose_final(reply.prose)
        if not reply.blocks and prose_final is None:
            return Handled(None, prompts.no_code)
        literal: FinalValue | None = None
        final_code: str | None = None
        if prose_final is not None:
            argument = unquote_literal(prose_final.argument)
            if prose_final.kind == "FINAL_VAR":
                final_code = f"FINAL_VAR({argument!r})"
            elif prose_final.argument.isidentifier():
                final_code = f"FINAL({argument!r})"
            else:
                literal = FinalValue(argument, "FINAL")
        if not reply.blocks and literal is not None:
            return Handled(literal, "")
        await self.ready
        blocks = reply.blocks + ((final_code,) if final_code is not None else ())
        budget = self.output_chars if shown_chars is None else shown_chars
        per_block = max(budget // len(blocks), 200)
        parts: list[str] = []
        notes: list[str] = []
        outputs: list[BlockOutput] = []
        failed = False
        for number, code in enumerate(blocks, 1):
            if number > len(reply.blocks) and failed and not last:  # prose FINAL after a failure
                notes.append(prompts.prose_final_ignored)
                break
            result = await self.sandbox.execute(code)
            failed = failed or result.error is not None
            if result.answer_content is not None:
                self.answer_content = result.answer_content
            shown = truncate_output(output_of(result), per_block)
            self.emit(
                CodeExecuted(
                    run_id=self.run_id, depth=self.depth, iteration=iteration, block=number,
                    code=code, output=shown, output_chars=len(result.stdout) + len(result.stderr),
                    error=result.error, duration_s=result.duration_s,
                    timed_out=result.timed_out, restarted=result.restarted,
                    restored=list(result.restored),
                )
            )
            self.on_cell(iteration, number, code, output_of(result))
            if prompts.turns is not None:
                outputs.append(await self._block_output(result, prompts.turns.variables))
            parts.append(prompts.block_output.format(
                block=number, status=status_of(result), output=shown))
            if result.restored:
                names = ", ".join(f"`{n}`" for n in result.restored)
                they = "it was" if len(result.restored) == 1 else "they were"
                notes.append(prompts.restored.format(names=names, they=they))
            if result.restarted:
                self.emit(SandboxRestarted(run_id=self.run_id, depth=self.depth,
                                           reason=result.error or "worker restarted"))
                notes.append(self.restarted_note(result.error or "hard timeout"))
            if result.final is not None:
                return Handled(result.final, "", tuple(outputs))
        if literal is not None:
            if not failed or last:
                return Handled(literal, "", tuple(outputs))
            notes.append(prompts.prose_final_ignored)
        return Handled(None, "\n\n".join(parts) + ("\n\n" + "".join(notes) if notes else ""),
                       tuple(outputs))

    async def _block_output(self, result: ExecResult, variables: bool) -> BlockOutput:
        """A block's output for a turn format; with ``variables``, the names the model's code
        has made so far, asked of the REPL by one more (unrecorded, unreported) cell."""
        # an error as the official loop shows one: its last line ("NameError: ...")
        last = result.error.strip().splitlines()[-1] if result.error and result.error.strip() \
            else ""
        stderr = result.stderr + (f"\n{last}" if last else "")
        if not variables:
            return BlockOutput(result.stdout, stderr)
        listed = await self.sandbox.execute(variables_cell(RESERVED_NAMES))
        try:
            names = json.loads(listed.stdout)
        except ValueError:
            names = []
        return BlockOutput(result.stdout, stderr,
                           tuple(n for n in names if isinstance(n, str)))
