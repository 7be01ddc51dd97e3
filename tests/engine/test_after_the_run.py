"""Nothing of a run happens after its ``run.finished``: a thread of model code that outlives
the run (in-process, where it cannot be killed) gets errors, never a sub-call, a booking or an
event (a late refusal once showed up after the result, so the figures disagreed)."""

from __future__ import annotations

import threading

from fastrlm import RLM, Budget
from fastrlm.events import Event, RunFinished
from fastrlm.testing import ScriptedLM

from .helpers import repl

BACKGROUND = (
    "import threading\n"
    "seen = []\n"
    "def keep_asking():\n"
    "    for i in range(400):\n"
    "        try:\n"
    "            seen.append(llm_query(f'late {i}'))\n"
    "        except Exception as exc:\n"
    "            seen.append(repr(exc))\n"
    "threading.Thread(target=keep_asking, name='model-background', daemon=True).start()\n"
    "FINAL('done')"
)


def test_a_thread_of_model_code_that_outlives_its_run_is_never_served() -> None:
    events: list[Event] = []
    sub = ScriptedLM(lambda m: "sub answer", model="scripted/sub")
    rlm = RLM(ScriptedLM([repl(BACKGROUND)], model="scripted/root"), sub, sandbox="none",
              budget=Budget(max_iterations=2), on_event=events.append)
    result = rlm.completion("q", "ctx")
    assert result.answer == "done"
    calls_at_the_end = len(sub.calls)
    for thread in threading.enumerate():
        if thread.name == "model-background":
            thread.join(timeout=60)  # a safety net only: its calls fail at once now
            assert not thread.is_alive()
    finished = max(i for i, e in enumerate(events) if isinstance(e, RunFinished))
    assert events[finished + 1:] == []
    assert len(sub.calls) == calls_at_the_end
    assert result.subcalls == calls_at_the_end
