"""Live status of a running campaign.

On a terminal, a block of lines redrawn in place: the run, a progress bar of the budget with the
estimated time left (when the monitor is given the budget), coverage per metric, corpus and
rates, failures per oracle, the last find and, when the stats carry them, the fault-revealing
counters. Otherwise one plain ``key=value`` line every ``interval`` seconds (for logs and CI),
starting with ``neurofuzz:``. Both go to stderr, so stdout stays clean for results. What is drawn
is :mod:`neurofuzz.reports.live`.

Example::

    >>> import io
    >>> out = io.StringIO()
    >>> m = Monitor(out, interval=0, budget={"iterations": 100})
    >>> st = {"run_time": 2.0, "iterations": 0, "mutants": 0, "mutants_per_sec": 0.0, "queue_size": 5,
    ...       "failures_total": 0, "failures_stored": 0, "seconds_since_last_find": 0.0}
    >>> m.update(st, "running"); m.update({**st, "run_time": 12.0, "iterations": 25}, "running")
    >>> out.getvalue().splitlines()[-1]
    'neurofuzz: running it=25 time=0m12s mutants=0 (0/s) queue=5 failures=0 last_find=0s budget=25% eta=0m30s'
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from neurofuzz.reports.live import budget_progress, duration, live_lines, plain_line


def _fmt_time(s: float) -> str:
    return duration(s)


class Monitor:
    """``update(stats, status)`` after every stats report. ``budget``: the run's budget (a
    :class:`~neurofuzz.fuzzer.config.Budget` or a dict), for the progress bar and ETA; it may
    also be set later (``monitor.budget = campaign.config.budget``) before the run starts."""

    def __init__(self, stream: TextIO | None = None, *, interval: float = 10.0, live: bool | None = None,
                 budget: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.interval = interval
        self.budget = budget
        self._last = -1e9
        self._lines = 0
        self._start: dict[str, Any] | None = None  # the run's first snapshot: budgets count from it
        encoding = (getattr(self.stream, "encoding", None) or "").lower().replace("-", "")
        self.ascii = encoding not in ("utf8", "")  # StringIO has no encoding: Unicode is fine

    def progress(self, st: dict[str, Any]):
        return budget_progress(self.budget, st, self._start)

    def render(self, st: dict[str, Any], status: str) -> list[str]:
        return live_lines(st, status, self.progress(st), ascii=self.ascii)

    def update(self, st: dict[str, Any], status: str) -> None:
        if self._start is None:
            self._start = {k: st.get(k, 0) for k in ("run_time", "iterations", "mutants")}
        now = time.monotonic()
        final = status != "running"
        if self.live:
            lines = self.render(st, status)
            lines += [""] * (self._lines - len(lines))  # a shorter block clears what is left of the old one
            if self._lines:
                self.stream.write(f"\x1b[{self._lines}F")
            self.stream.write("".join(f"\x1b[2K{line}\n" for line in lines))
            self.stream.flush()
            self._lines = len(lines)
            return
        if final or now - self._last >= self.interval:
            self._last = now
            self.stream.write(plain_line(st, status, self.progress(st)) + "\n")
            self.stream.flush()
