"""Live status of a running campaign.

On a terminal, a block of lines redrawn in place (coverage per metric, mutants/s, corpus size,
failures per oracle, time since the last find); otherwise one plain line every ``interval``
seconds (for logs and CI). Both go to stderr, so stdout stays clean for results.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


def _fmt_time(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Monitor:
    def __init__(self, stream: TextIO | None = None, *, interval: float = 10.0, live: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.interval = interval
        self._last = -1e9
        self._lines = 0

    def render(self, st: dict[str, Any], status: str) -> list[str]:
        cov = "  ".join(f"{k[4:]} {v:.4f}" for k, v in st.items() if k.startswith("cov_"))
        fails = "  ".join(f"{k[9:]} {v}" for k, v in st.items()
                          if k.startswith("failures_") and k not in ("failures_total", "failures_stored"))
        return [
            f"neurofuzz [{status}]  run {_fmt_time(st['run_time'])}  iterations {st['iterations']}  "
            f"mutants {st['mutants']} ({st['mutants_per_sec']:.0f}/s, {st['invalid_mutants']} invalid)",
            f"  coverage   {cov}",
            f"  corpus     queue {st['queue_size']}  failures {st['failures_total']} "
            f"({st['failures_stored']} stored)  last find {st['seconds_since_last_find']:.0f}s ago",
            f"  failures   {fails or 'none'}",
        ]

    def update(self, st: dict[str, Any], status: str) -> None:
        now = time.monotonic()
        final = status != "running"
        if self.live:
            lines = self.render(st, status)
            if self._lines:
                self.stream.write(f"\x1b[{self._lines}F")
            self.stream.write("".join(f"\x1b[2K{line}\n" for line in lines))
            self.stream.flush()
            self._lines = len(lines)
            return
        if final or now - self._last >= self.interval:
            self._last = now
            cov = " ".join(f"{k[4:]}={v:.4f}" for k, v in st.items() if k.startswith("cov_"))
            self.stream.write(
                f"[{_fmt_time(st['run_time'])}] {status} it={st['iterations']} mutants={st['mutants']} "
                f"({st['mutants_per_sec']:.0f}/s) queue={st['queue_size']} failures={st['failures_total']} {cov}\n"
            )
            self.stream.flush()
