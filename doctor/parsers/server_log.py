"""A llama-server log, turn by turn: how much of each prompt came from the cache.

Every build logs, per task, the prompt eval time and the tokens it processed; the rest
varies: older builds print ``new prompt, ... n_prompt_tokens = N`` (later ``task.n_tokens
= N``) and warn "forcing full prompt re-processing" (a trace line, off by default, in
2026 builds); newer ones end a task with ``stop processing: n_tokens = T`` (prompt plus
generated). From those, a turn's prompt size, the tokens processed and so the tokens
reused. The timing lines come on one line (``task 7 | prompt eval time = ...``) or, in
older builds, on the lines after ``task 7 |``. A router (``llama-server --models-dir``,
2026) prefixes each child's lines with ``[port]`` and every child numbers its tasks from
0, so a task is known by its port and number.
"""

from __future__ import annotations

import re

from msgspec import Struct

_TASK = re.compile(r"\btask (-?\d+) \|(.*)$")
_PROMPT = re.compile(r"new prompt, .*?(?:n_prompt_tokens|task\.n_tokens) = (\d+)")
# A timing line on its own may carry a router's "[42027] " or a compose "llama-1  | "
_EVAL = re.compile(r"^(?:\[\s*\d+\]|[\w.-]+\s+\|)?\s*(prompt eval|eval) time = +([\d.]+) ms / +"
                   r"(\d+) tokens")
_ROUTER = re.compile(r"^\[\s*(\d+)\]")
_STOP = re.compile(r"stop processing: n_tokens = (\d+)")
FORCED = "forcing full prompt re-processing"


class Turn(Struct):
    """One request in a llama-server log: how much of the prompt it reused."""
    task: int
    prompt_tokens: int | None = None
    processed: int | None = None  # prompt tokens computed (not from the cache)
    prompt_ms: float | None = None
    generated: int | None = None
    forced: bool = False  # the server said it had to re-process the whole prompt
    stop_tokens: int | None = None

    @property
    def prompt(self) -> int | None:
        """The prompt's length: as logged, else the tokens at the end less those generated,
        plus the last one sampled, which is never fed back (48343 at the end after 269
        generated is a prompt of 48075)."""
        if self.prompt_tokens is not None:
            return self.prompt_tokens
        if self.stop_tokens is not None and self.generated:
            return max(0, self.stop_tokens - self.generated + 1)
        return None

    @property
    def cached(self) -> int | None:
        if self.prompt is None or self.processed is None:
            return None
        return max(0, self.prompt - self.processed)


def read_turns(text: str) -> list[Turn]:
    """The completed turns of a log (those with a prompt eval time), in order."""
    turns: dict[tuple[str | None, int], Turn] = {}
    current: dict[str | None, int | None] = {}  # each router child's task in progress
    for line in text.splitlines():
        router = _ROUTER.match(line)
        port = router.group(1) if router else None
        match = _TASK.search(line)
        rest = line
        if match:
            current[port] = int(match.group(1))
            rest = match.group(2)
            if current[port] < 0:
                current[port] = None
                continue
        task = current.get(port)
        if task is None:
            continue
        turn = turns.get((port, task))
        if turn is None:
            turn = turns[(port, task)] = Turn(task)
        _read_line(turn, rest)
    return [turn for turn in turns.values() if turn.processed is not None]


def _read_line(turn: Turn, text: str) -> None:
    if FORCED in text:
        turn.forced = True
    if (prompt := _PROMPT.search(text)):
        turn.prompt_tokens = int(prompt.group(1))
    if (stop := _STOP.search(text)):
        turn.stop_tokens = int(stop.group(1))
    if (timing := _EVAL.search(text)):
        if timing.group(1) == "prompt eval":
            turn.prompt_ms, turn.processed = float(timing.group(2)), int(timing.group(3))
        else:
            turn.generated = int(timing.group(3))
