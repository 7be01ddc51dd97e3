"""The DSPy bridge, driven by DSPy itself: ``dspy.RLM`` with scripted models (``DummyLM``) on
fastrlm's isolated sandbox, and ``dspy.LM`` pointed at an in-process ``fastrlm serve``."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest

# dspy refreshes litellm's model-price table over the network on the first LM call unless told
# to use the bundled copy: tests never reach the network.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
dspy = pytest.importorskip("dspy")
from dspy.primitives.code_interpreter import (  # noqa: E402
    CodeExecutionError,
    CodeInterpreterError,
    FinalOutput,
)
from dspy.utils import DummyLM  # noqa: E402

from fastrlm import RLM, Budget  # noqa: E402
from fastrlm.integrations import dspy as bridge  # noqa: E402
from fastrlm.integrations.dspy import FastRLMInterpreter  # noqa: E402
from fastrlm.sandbox import SandboxLimits, _layers  # noqa: E402
from fastrlm.server import RLMServer  # noqa: E402
from fastrlm.testing import ScriptedLM, skip_unless_sandbox  # noqa: E402

pytestmark = pytest.mark.sandbox

DOCUMENT = "".join(f"page {i}: {'the fox' if i % 3 == 0 else 'a dog'}\n" for i in range(9))


@pytest.fixture(scope="module", autouse=True)
def _isolated_layer() -> None:
    try:
        _layers.plans_for("auto")
    except Exception as exc:  # noqa: BLE001 - SandboxUnavailableError, with the reason
        pytest.skip(f"no isolated sandbox layer here: {exc}")


class EchoSubLM:
    """A sub-model for ``llm_query``: answers ``sub:<prompt>`` and counts its calls."""

    model = "echo/sub"

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def __call__(self, prompt: str, **_: Any) -> list[str]:
        self.prompts.append(prompt)
        return [f"sub:{prompt}"]


def step(code: str, reasoning: str = "next") -> dict[str, str]:
    """One root turn of ``dspy.RLM``: its reasoning and a code block."""
    return {"reasoning": reasoning, "code": f"```python\n{code}\n```"}


class Recorder:
    """An interpreter factory that keeps what it made and every cell each one ran."""

    def __init__(self, **options: Any) -> None:
        self.made: list[FastRLMInterpreter] = []
        self.cells: list[str] = []
        self.answers: list[tuple[str | None, str]] = []  # (model asked for, answer) of host calls
        self.defined: list[tuple[str, object]] = []  # (name, value) put into a REPL by define
        self.factory = FastRLMInterpreter.factory(**options)
        self.execution_instructions = self.factory.execution_instructions

    def __call__(self) -> FastRLMInterpreter:
        interpreter = self.factory()
        self.made.append(interpreter)
        return interpreter


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    """A Recorder whose sandboxes log each cell's code into ``recorder.cells``."""
    made = Recorder(limits=SandboxLimits(exec_timeout_s=0.5, hard_grace_s=0.5))
    real = bridge.create_sandbox

    def logging_sandbox(kind: str, limits: SandboxLimits) -> Any:
        sandbox = real(kind, limits)
        execute = sandbox.execute

        async def logged(code: str) -> Any:
            made.cells.append(code)
            return await execute(code)

        sandbox.execute = logged  # type: ignore[method-assign]
        define = sandbox.define

        async def logged_define(name: str, value: object = None, **kwargs: Any) -> None:
            made.defined.append((name, value))
            await define(name, value, **kwargs)

        sandbox.define = logged_define  # type: ignore[method-assign]
        return sandbox

    answer = bridge._Bridge.llm_query_batched

    async def logged_answer(self: Any, prompts: list[str], model: str | None) -> list[str]:
        answers = await answer(self, prompts, model)
        made.answers += [(model, text) for text in answers]
        return answers

    monkeypatch.setattr(bridge, "create_sandbox", logging_sandbox)
    monkeypatch.setattr(bridge._Bridge, "llm_query_batched", logged_answer)
    yield made


def run_rlm(signature: str, steps: list[dict[str, str]], factory: Any, *, max_llm_calls: int = 50,
            **inputs: Any) -> tuple[Any, Any]:
    """``dspy.RLM(signature)`` run with ``steps`` as its root model: (prediction, root LM)."""
    rlm = dspy.RLM(signature, max_iters=len(steps), sub_lm=EchoSubLM(),
                   interpreter_factory=factory, max_llm_calls=max_llm_calls)
    root = DummyLM(steps)
    with dspy.context(lm=root):
        return rlm(**inputs), root


def outputs(prediction: Any) -> list[str]:
    return [entry["output"] for entry in prediction.trajectory]


def test_a_typed_signature_runs_end_to_end_in_the_isolated_sandbox(recorder: Recorder) -> None:
    prediction, root = run_rlm(
        "context: str, query: str -> answer: str, count: int, pages: list[int]",
        [
            step("hits = [i for i, line in enumerate(context.splitlines()) if 'fox' in line]\n"
                 "print(len(hits), llm_query(query))"),
            step("import os\nprint(os.getpid() != HOST_PID)".replace("HOST_PID", str(os.getpid()))),
            step("SUBMIT(answer=llm_query('sum up'), count=len(hits), pages=hits)"),
        ],
        recorder, context=DOCUMENT, query="where is the fox?",
    )
    assert prediction.answer == "sub:sum up"
    assert prediction.count == 3 and prediction.pages == [0, 3, 6]
    assert outputs(prediction)[:2] == ["3 sub:where is the fox?\n", "True\n"]
    prompt = str(root.history[0]["messages"])
    assert "fastrlm" in prompt and "longer than 0.5 s gets a TimeoutError" in prompt
    interpreter = recorder.made[0]
    assert interpreter.layer is not None and interpreter.layer.split("+")[0] in (
        "bwrap", "landlock")
    assert interpreter._sandbox is None  # dspy.RLM shut it down


def test_a_hanging_cell_is_killed_and_the_module_recovers(recorder: Recorder) -> None:
    prediction, _ = run_rlm(
        "context, query -> answer",
        [
            step("kept = 41\nwhile True:\n    pass"),
            step("print(kept + 1)"),
            step("import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True:\n"
                 "    pass"),
            step("import dspy\n"
                 "print('kept' in globals(), len(context), hasattr(dspy, '__file__'))"),
            step("SUBMIT(answer=query + ' ' + str(len(context)))"),
        ],
        recorder, context=DOCUMENT, query="still here",
    )
    soft, after_soft, hard, after_hard = outputs(prediction)[:4]
    assert "TimeoutError" in soft and after_soft == "42\n"  # soft: interrupted, state kept
    assert "SandboxRestarted" in hard and "hard time limit" in hard
    # hard: killed; state gone, inputs back, and DSPy's facade (its setup cell) replayed: `dspy`
    # in the worker is the shim, not the real package from site-packages
    assert after_hard == f"False {len(DOCUMENT)} False\n"
    assert prediction.answer == f"still here {len(DOCUMENT)}"


@pytest.mark.parametrize("kind", ["bwrap", "landlock"])
def test_escape_attempts_fail_inside_dspy_rlm(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    skip_unless_sandbox(kind)
    secret = tmp_path / "id_rsa"
    secret.write_text("PRIVATE KEY")
    monkeypatch.setenv("FASTRLM_TEST_SECRET", "sk-live-secret")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    port = listener.getsockname()[1]
    attempts = (
        "report = {}\n"
        "def attempt(name, fn):\n"
        "    try:\n"
        "        report[name] = repr(fn())\n"
        "    except BaseException as exc:\n"
        "        report[name] = 'blocked:' + type(exc).__name__\n"
        "attempt('shadow', lambda: open('/etc/shadow').read())\n"
        f"attempt('host_file', lambda: open({str(secret)!r}).read())\n"
        "attempt('env', lambda: __import__('os').environ.get('FASTRLM_TEST_SECRET'))\n"
        f"attempt('socket', lambda: __import__('socket').create_connection(('127.0.0.1', {port}),"
        " 1))\n"
        "attempt('spawn', lambda: __import__('subprocess').run(['id']))\n"
        "attempt('write', lambda: open('/usr/fastrlm-escape', 'w'))\n"
        "SUBMIT(report=report)"
    )
    try:
        factory = FastRLMInterpreter.factory(sandbox=kind)
        prediction, _ = run_rlm("context -> report: dict[str, str]", [step(attempts)], factory,
                                context=DOCUMENT)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing reached the host's loopback
    finally:
        listener.close()
    report = prediction.report
    assert report["env"] == "None"
    for name in ("shadow", "host_file", "socket", "spawn", "write"):
        assert report[name].startswith("blocked:"), (name, report[name])
    assert not os.path.exists("/usr/fastrlm-escape")


def test_inputs_cross_to_the_worker_once(recorder: Recorder) -> None:
    big = "needle " + "x" * 200_000
    prediction, _ = run_rlm(
        "context, notes -> answer",
        [
            step("notes = notes.upper()[:6]\nprint(len(context))"),
            step("print(notes)"),
            step("SUBMIT(answer=notes + str(len(context)))"),
        ],
        recorder, context=big, notes=big,
    )
    # not re-sent: the rebinding held
    assert outputs(prediction)[:2] == [f"{len(big)}\n", "NEEDLE\n"]
    assert prediction.answer == f"NEEDLE{len(big)}"
    # `notes` crossed once, through the sandbox's define (no host call carried it), and its
    # staged payload was released once the assignment cell had used it
    assert [name for name, value in recorder.defined
            if isinstance(value, str) and big in value] == ["_fastrlm_input_notes"]
    assert recorder.defined[-1] == ("_fastrlm_input_notes", None)
    assert not any(big in text for _model, text in recorder.answers)
    assert not any("x" * 1000 in cell for cell in recorder.cells)  # never as source
    # `context` went into the worker's sealed buffer instead: once, when it first arrived
    assert recorder.made[0].workers_started == 2


@pytest.mark.sandbox
@pytest.mark.parametrize("kind", ["bwrap", "landlock", "process", "none"])
def test_inputs_go_in_through_define_on_every_layer(kind: str) -> None:
    """The one way into a live REPL: each payload defined under its staged name, rebuilt by
    the assignment cell, then released (no host call carries it)."""
    skip_unless_sandbox(kind)
    inputs = {"n": {"a": [1, 2]}, "s": "abcdef", "b": b"\x00\x01"}
    with FastRLMInterpreter(sandbox=kind) as interpreter:
        out = interpreter.execute("print(type(n).__name__, n['a'], s[:3], b, _fastrlm_input_s, "
                                  "_fastrlm_input_b)", inputs)
        assert out == "dict [1, 2] abc b'\\x00\\x01' None None\n"
        assert interpreter.execute("s = 'mine'\nprint(s)", inputs) == "mine\n"  # still a
        # variable of the model's, not a name the REPL restores


# dspy's own sub-agent path (SandboxLM over DummyLM) passes messages= to the LM, which dspy 3.4
# deprecates; it is dspy calling dspy, not this bridge.
@pytest.mark.filterwarnings("ignore:Passing OpenAI-style message dictionaries:DeprecationWarning")
def test_user_tools_and_dspy_sub_agents_run_on_the_host(recorder: Recorder) -> None:
    calls: list[dict[str, Any]] = []

    def lookup(key: str, times: int = 1) -> dict[str, Any]:
        """Look a key up in the host's table."""
        calls.append({"key": key, "times": times})
        return {"key": key, "value": [os.getpid()] * times}

    def broken(key: str) -> str:
        """Always fails."""
        raise KeyError(key)

    steps = [
        step("found = lookup(key='a', times=2)\nprint(found['key'], len(found['value']))"),
        step("try:\n    broken(key='zz')\nexcept RuntimeError as exc:\n    print(exc)"),
        step("import dspy\nsub = dspy.Predict('question -> reply')(question='hi').reply\n"
             "SUBMIT(answer=sub + ' ' + str(found['value'][0]))"),
    ]
    rlm = dspy.RLM("context -> answer", max_iters=3, tools=[lookup, broken],
                   sub_lm=DummyLM([{"reply": "from the host"}]), interpreter_factory=recorder)
    with dspy.context(lm=DummyLM(steps)):
        prediction = rlm(context=DOCUMENT)
    # a failed tool is a ToolError in the cell: a RuntimeError, as in DSPy's own interpreters
    assert outputs(prediction)[:2] == ["a 2\n", "broken: KeyError: 'zz' [tool_error]\n"]
    assert calls == [{"key": "a", "times": 2}]
    assert prediction.answer == f"from the host {os.getpid()}"  # the tool ran in this process


def test_sub_calls_past_dspy_budget_or_to_other_models_are_error_answers(
    recorder: Recorder,
) -> None:
    prediction, _ = run_rlm(
        "context -> answer",
        [
            step("print(llm_query_batched(['a', 'b']))"),
            step("print(llm_query('c'))"),
            step("print(llm_query('d', model='gpt-9'), rlm_query('e'))"),
            step("SUBMIT(answer='done')"),
        ],
        recorder, context=DOCUMENT, max_llm_calls=2,
    )
    batched, refused, other = outputs(prediction)[:3]
    assert batched == "['sub:a', 'sub:b']\n"
    assert refused.startswith("[error: subcall_failed: RuntimeError: LLM call limit exceeded")
    assert "[error: unknown_model:" in other and "[error: subcalls_disabled:" in other
    assert prediction.answer == "done"


async def test_dspy_rlm_acall_runs_in_the_sandbox_too(recorder: Recorder) -> None:
    rlm = dspy.RLM("context -> size: int", max_iters=2, sub_lm=EchoSubLM(),
                   interpreter_factory=recorder)
    with dspy.context(lm=DummyLM([step("print(llm_query('hi'))"),
                                  step("SUBMIT(size=len(context))")])):
        prediction = await rlm.acall(context=DOCUMENT)
    assert outputs(prediction)[0] == "sub:hi\n" and prediction.size == len(DOCUMENT)


@pytest.fixture
def interpreter() -> Iterator[FastRLMInterpreter]:
    made = FastRLMInterpreter(output_fields=[{"name": "answer", "type": "str"}],
                              limits=SandboxLimits(exec_timeout_s=5.0, hard_grace_s=1.0))
    with made:
        yield made


@pytest.mark.slow  # pandas and pyarrow import in the worker: seconds on a loaded machine
def test_dataframe_inputs_arrive_as_dataframes_or_rows(interpreter: FastRLMInterpreter) -> None:
    pd = pytest.importorskip("pandas")
    table = pd.DataFrame({"city": ["Oslo", "Lima"], "n": [2, 5]})
    printed = interpreter.execute(
        "print(type(table).__name__, int(table['n'].sum()), str(table['n'].dtype))",
        {"table": table, "context": table},
    )
    assert printed == "DataFrame 7 int64\n"
    rows = interpreter.execute("print(context)", {"table": table, "context": table})
    assert rows == "[{'city': 'Oslo', 'n': 2}, {'city': 'Lima', 'n': 5}]\n"


def test_tool_calls_json_cannot_carry_fail_in_the_cell(interpreter: FastRLMInterpreter) -> None:
    interpreter.tools["opaque"] = lambda: object()
    interpreter.tools["echo"] = lambda text: text
    interpreter.tools["model"] = lambda: Unserializable(value=object())
    # DSPy's rule: a result JSON cannot hold comes back as its str; a pydantic model that
    # cannot be dumped is an error the cell sees
    assert interpreter.execute("opaque()").startswith("<object object at")
    with pytest.raises(CodeExecutionError, match=r"CodeInterpreterError: model returned what JSON "
                       r"cannot hold.*Unable to serialize Unserializable as JSON.*bad_result"):
        interpreter.execute("model()")
    with pytest.raises(CodeExecutionError, match="the arguments must be JSON"):
        interpreter.execute("echo(object())")
    with pytest.raises(CodeExecutionError, match=r"echo\(\): missing a required argument"):
        interpreter.execute("echo()")
    assert interpreter.execute("print(echo(text=[1, 'two']))") == "[1, 'two']\n"
    del interpreter.tools["echo"]  # gone from the REPL too, before the next cell
    with pytest.raises(CodeExecutionError, match=r"NameError: \[\"name 'echo' is not defined"):
        interpreter.execute("echo('x')")


def test_protocol_edges(interpreter: FastRLMInterpreter, monkeypatch: pytest.MonkeyPatch) -> None:
    assert interpreter.execute("x = 1") == ""
    assert interpreter.execute("x + 1") == 2
    with pytest.raises(SyntaxError):
        interpreter.execute("def broken(:")
    with pytest.raises(CodeExecutionError, match="ZeroDivisionError"):
        interpreter.execute("print('before')\n1 / 0")
    assert interpreter.execute("SUBMIT('done')\nprint('never')") == FinalOutput({"answer": "done"})
    with pytest.raises(CodeExecutionError, match="unexpected keyword argument 'wrong'"):
        interpreter.execute("SUBMIT(wrong=1)")
    assert "`answer` is kept by the sandbox" in interpreter.execute("answer = 5\nprint(1)")
    with pytest.raises(CodeInterpreterError, match="taken by fastrlm's REPL"):
        interpreter.execute("1", {"FINAL": 1})
    with pytest.raises(CodeInterpreterError, match="input 'bad' cannot be sent"):
        interpreter.execute("1", {"bad": object(), "good": 2})
    assert interpreter.execute("print(good + 1)", {"good": 2}) == "3\n"  # the refusal left no trace
    fetched = interpreter.execute("print(llm_query('good', model='fastrlm.dspy.input'))")
    assert "[error: unknown_model" in fetched  # no side channel: inputs go in by define
    assert interpreter.execute("print(_fastrlm_input_good)") == "None\n"  # released once bound
    monkeypatch.setattr(bridge, "MAX_INPUT_BYTES", 60)
    assert interpreter.execute("print(len(fits))", {"fits": "y" * 60}) == "60\n"
    with pytest.raises(CodeInterpreterError, match="takes 62 bytes .* pass it as `context`"):
        interpreter.execute("1", {"long": "\u00e9" * 31})  # 31 characters, 2 bytes each
    with pytest.raises(CodeInterpreterError, match="make a new interpreter for another one"):
        interpreter.execute("1", {"context": "one"})
        interpreter.execute("1", {"context": "two"})


async def test_the_bridge_calls_tools_as_their_signatures_bind() -> None:
    def fail() -> None:
        raise ValueError("no")

    def spread(first: int, *rest: int, scale: int = 1, **named: int) -> list[int]:
        return [v * scale for v in (first, *rest, *named.values())]

    tools = {"add": lambda a, b: a + b, "fail": fail, "nan": lambda: float("nan"),
             "spread": spread, "llm_query": lambda prompt: prompt}
    host = bridge._Bridge(FastRLMInterpreter(tools))
    assert await host.call_tool("add", {"a": 1, "b": 2}) == {"ok": True, "json": "3"}
    assert await host.call_tool("spread", {"first": 1, "rest": [2], "scale": 10,
                                           "named": {"x": 3}}) == {"ok": True,
                                                                   "json": "[10, 20, 30]"}
    assert await host.call_tool("fail", {}) == {"ok": False, "kind": "tool_error",
                                                "message": "ValueError: no"}
    assert await host.call_tool("nan", {}) == {"ok": True, "json": '"nan"'}  # DSPy's str
    huge = await host.call_tool("add", {"a": "x" * (16 * 1024 * 1024), "b": "y"})
    assert huge["kind"] == "bad_result" and "over the limit" in str(huge["message"])
    assert (await host.call_tool("add", {"a": 1, "c": 2}))["kind"] == "bad_arguments"
    for missing in ("gone", "llm_query"):  # llm_query is the REPL's own, never a tool call
        assert (await host.call_tool(missing, {}))["kind"] == "unknown_tool"


class Unserializable(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)
    value: object


# ---------------------------------------------------------------- DSPy's interpreter contract
# Each test pins one point of the contract DSPy's own PythonInterpreter keeps (and its suites
# check): dspy.RLM and users' code rely on them.


def test_tools_are_added_changed_and_removed_between_cells_of_a_live_worker(
    interpreter: FastRLMInterpreter,
) -> None:
    """DSPy re-registers tools on a live interpreter (its pooled interpreter, dspy.RLM's
    per-call tools): the REPL follows without losing its state or restarting its worker."""
    assert interpreter.execute("kept = 41") == ""
    interpreter.tools["late"] = lambda n: n + 1
    assert interpreter.execute("late(kept)") == 42
    interpreter.tools["late"] = lambda n, k=2: n * k  # changed: the new signature and code
    assert interpreter.execute("late(kept, k=3)") == 123
    assert interpreter.execute("import inspect\nstr(inspect.signature(late))") == "(n, k=2)"
    interpreter.tools.clear()
    with pytest.raises(CodeExecutionError, match="NameError"):
        interpreter.execute("late(1)")
    assert interpreter.execute("kept") == 41 and interpreter.workers_started == 1


def test_a_tool_rebound_by_the_model_is_bound_again_before_the_next_cell(
    interpreter: FastRLMInterpreter,
) -> None:
    interpreter.tools["double"] = lambda n: 2 * n
    assert interpreter.execute("double = None") == ""
    assert interpreter.execute("double(4)") == 8
    # a forged call of the dispatcher for a tool that is not there is refused on the host
    with pytest.raises(CodeExecutionError, match="no host tool 'os' now"):
        interpreter.execute("_fastrlm_tool('os', {})")


def test_execute_returns_the_trailing_expressions_python_value(
    interpreter: FastRLMInterpreter,
) -> None:
    assert interpreter.execute("2 + 2") == 4
    assert interpreter.execute("x = 1.5\nx") == 1.5
    assert interpreter.execute("{'a': [1, (2, 3)], 'b': None}") == {"a": [1, [2, 3]], "b": None}
    assert interpreter.execute("sorted({3, 1, 2})") == [1, 2, 3]
    assert interpreter.execute("'text'") == "text"
    assert interpreter.execute("float('nan')") != interpreter.execute("0")  # NaN crosses
    assert interpreter.execute("print('shown')\n7") == 7  # a value wins over prints, as DSPy's
    assert interpreter.execute("print('shown')\nNone") == "shown\n"
    assert interpreter.execute("object()").startswith("<object object at")  # no JSON: its str
    # fastrlm's own FINAL still ends a DSPy run with its text as the one output
    assert interpreter.execute("FINAL('plain')\n5") == FinalOutput({"answer": "plain"})


def test_printed_output_keeps_its_final_newline_and_nothing_printed_is_empty(
    interpreter: FastRLMInterpreter,
) -> None:
    assert interpreter.execute("print('a')\nprint('b')") == "a\nb\n"
    assert interpreter.execute("print('no newline', end='')") == "no newline"
    assert interpreter.execute("y = 2") == ""


def test_errors_are_worded_as_dspys_interpreter_words_them(
    interpreter: FastRLMInterpreter,
) -> None:
    with pytest.raises(CodeExecutionError) as failed:
        interpreter.execute("print('before')\nraise ValueError(772459456, 'x')")
    assert str(failed.value) == "ValueError: [772459456, 'x']"
    notes = "\n".join(failed.value.__notes__)  # the traceback and the prints, for a reader
    assert 'File "<dspy-cell>", line 2' in notes and "printed before the error:\nbefore" in notes
    assert "_fastrlm_run" not in notes  # the bridge's own frames are not the model's
    with pytest.raises(CodeExecutionError,
                       match=r"^NameError: \[\"name 'nope' is not defined\"\]\n"):
        interpreter.execute("nope + 1")
    with pytest.raises(CodeExecutionError, match=r"^KeyboardInterrupt: "):
        interpreter.execute("raise KeyboardInterrupt")  # no args: its last traceback line
    with pytest.raises(SyntaxError) as bad:
        interpreter.execute("parse(error")
    assert str(bad.value) == "Invalid Python syntax. message: "  # DSPy's text, exactly
    assert "'(' was never closed" in bad.value.__notes__[0]  # the detail, for a reader
    with pytest.raises(CodeExecutionError, match=r"missing 1 required positional argument"):
        interpreter.execute("SUBMIT()")
    with pytest.raises(CodeExecutionError, match="^CodeInterpreterError: "):  # a model's class
        interpreter.execute("class CodeInterpreterError(Exception): pass\n"
                            "raise CodeInterpreterError('spoof')")
    assert interpreter.execute("print('still alive')") == "still alive\n"


def test_interpreter_errors_are_worded_as_dspys(interpreter: FastRLMInterpreter) -> None:
    with pytest.raises(CodeInterpreterError, match="Invalid variable name: 'for'"):
        interpreter.execute("1", {"for": 1})
    with pytest.raises(CodeInterpreterError, match="Unable to serialize Unserializable as JSON"):
        interpreter.execute("1", {"value": Unserializable(value=object())})
    holder: dict[str, FastRLMInterpreter] = {"it": interpreter}
    interpreter.tools["nested"] = lambda: holder["it"].execute("1")
    with pytest.raises(CodeExecutionError, match="cannot execute recursively"):
        interpreter.execute("nested()")
    interpreter.shutdown()
    with pytest.raises(CodeInterpreterError, match="session has ended"):
        interpreter.execute("1")


def test_a_hidden_environment_variable_reads_as_dspys_does(
    interpreter: FastRLMInterpreter, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DSPy's check: code reading a variable the sandbox hides gives ``""`` from ``execute``
    (the value is None, so the cell's printed output is returned, and it printed nothing)."""
    monkeypatch.setenv("FASTRLM_DSPY_SECRET", "leaked")
    assert interpreter.execute("import os\nresult = os.getenv('FASTRLM_DSPY_SECRET')\nresult"
                               ) == ""


def test_inputs_tools_and_values_follow_dspys_json_rules(interpreter: FastRLMInterpreter) -> None:
    import collections
    import dataclasses

    @dataclasses.dataclass
    class Hit:
        doc: int
        title: str

    Pair = collections.namedtuple("Pair", "left right")
    interpreter.tools["hit"] = lambda: Hit(3, "t")
    interpreter.tools["pair"] = lambda: Pair(1, 2)
    interpreter.tools["nothing"] = lambda: None
    assert interpreter.execute("hit()") == {"doc": 3, "title": "t"}
    assert interpreter.execute("pair()['right']") == 2
    assert interpreter.execute("type(nothing()).__name__") == "str"  # None comes back as ""
    assert interpreter.execute("x", {"x": {"s": {"b", "a"}, "t": (1, 2)}}) == {
        "s": ["a", "b"], "t": [1, 2]}
    assert interpreter.execute("1 if x == float('inf') else 0", {"x": float("inf")}) == 1


def test_bad_options_are_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="unknown sandbox kind"):
        FastRLMInterpreter.factory(sandbox="firecracker")
    with pytest.raises(ValueError, match="taken by fastrlm's REPL"):
        FastRLMInterpreter(tools={"context": len})
    with pytest.raises(CodeInterpreterError, match="session has ended"):
        made = FastRLMInterpreter()
        made.shutdown()
        made.execute("1")
    with pytest.raises(CodeInterpreterError, match="output field name 'class' is not"):
        FastRLMInterpreter(output_fields=[{"name": "class"}]).execute("1")


async def test_dspy_lm_talks_to_fastrlm_serve() -> None:
    root = ScriptedLM(
        lambda messages: "```repl\nFINAL('[[ ## answer ## ]]\\nserved ' + str(len(context)) + "
                         "'\\n\\n[[ ## completed ## ]]')\n```",
        model="scripted/root",
    )
    server = RLMServer(RLM(root, ScriptedLM(lambda m: "sub", model="scripted/sub"),
                           sandbox="none", trace=True, budget=Budget(max_iterations=3)),
                       server_key="test-key")
    async with server:
        await server.start("127.0.0.1", 0)
        lm = dspy.LM("openai/rlm", api_base=server.base_url, api_key="test-key",
                     cache=False, num_retries=0)
        with dspy.context(lm=lm):
            prediction = await dspy.Predict("question -> answer").acall(question="How big?")
    assert prediction.answer.startswith("served ")
    assert any("How big?" in str(m) for call in root.calls for m in call)


def test_fastrlm_imports_no_dspy_and_a_missing_dspy_names_the_extra() -> None:
    code = (
        "import sys, fastrlm, fastrlm.integrations\n"
        "assert 'dspy' not in sys.modules\n"
        "sys.modules['dspy'] = None\n"
        "from fastrlm import MissingExtraError\n"
        "try:\n"
        "    import fastrlm.integrations.dspy\n"
        "except MissingExtraError as exc:\n"
        "    assert \"pip install 'fastrlm[dspy]'\" in str(exc), exc\n"
        "else:\n"
        "    raise AssertionError('imported without dspy')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_raw_tool_call_past_the_limits_never_reaches_a_dspy_tool(
    interpreter: FastRLMInterpreter,
) -> None:
    seen: list[int] = []
    interpreter.tools["echo"] = lambda text: seen.append(len(text)) or "ok"
    code = ("v = 'x' * (40 * 2**20)\n"
            "r = llm_query.__self__._host_call('tool', {'name': 'echo', 'arguments': "
            "{'text': v}})\nprint(r['kind'], r['message'][:90])\nprint(echo('hi'))")
    first, second = interpreter.execute(code).splitlines()
    assert first.startswith("bad_arguments echo(): the arguments hold") and "characters" in first
    assert second == "ok" and seen == [2]


async def test_a_dspy_tool_raising_any_base_exception_is_the_models_to_see() -> None:
    class Unordered:
        def __lt__(self, other: object) -> bool:
            raise SystemExit("from __lt__")

    def dump() -> set[Unordered]:  # a set is sorted to become a list
        return {Unordered(), Unordered()}

    def interrupt() -> None:
        raise KeyboardInterrupt("sync")

    async def interrupt_async() -> None:
        raise KeyboardInterrupt("async")

    async def sub_model(prompt: str) -> str:
        raise KeyboardInterrupt("async")

    async def cancelled_async() -> None:
        raise asyncio.CancelledError("its own")

    def leave() -> None:
        raise SystemExit(3)

    tools = {"interrupt": interrupt, "interrupt_async": interrupt_async, "leave": leave,
             "cancelled_async": cancelled_async, "dump": dump,
             "llm_query": sub_model}
    host = bridge._Bridge(FastRLMInterpreter(tools))
    replies = {name: await host.call_tool(name, {}) for name in tools if name != "llm_query"}
    assert replies["interrupt"] == {"ok": False, "kind": "tool_error",
                                    "message": "KeyboardInterrupt: sync"}
    assert replies["interrupt_async"]["message"] == "KeyboardInterrupt: async"
    assert replies["leave"]["message"] == "SystemExit: 3"
    assert replies["cancelled_async"]["message"] == "CancelledError: its own"
    assert replies["dump"]["kind"] == "bad_result"
    assert "SystemExit: from __lt__" in str(replies["dump"]["message"])
    assert await host.llm_query_batched(["a", "b"], None) == [
        "[error: subcall_failed: KeyboardInterrupt: async]"] * 2
