"""The live view of a running campaign: what :class:`neurofuzz.fuzzer.monitor.Monitor` draws.

Pure functions of one stats snapshot (the flat ``fuzzer_stats`` items), the budget and the
snapshot taken when the run started (budgets count from the start of each run):

* :func:`budget_progress` — how far the run is through its budget (time, iterations, mutants or
  plateau; with several, the one closest to stopping) and the estimated time left;
* :func:`bar` — a text progress bar (Unicode blocks, or ``#`` and ``-`` for other encodings);
* :func:`live_lines` — the block a terminal redraws in place: run, progress bar and ETA,
  coverage, corpus and rates, failures per oracle, the last find, and the fault-revealing
  measures when the stats carry them (:data:`FAULT_KEYS`);
* :func:`plain_line` — one line for logs and CI: ``neurofuzz: running it=12 time=1m05s ...``,
  plain ``key=value`` words, no escape code and nothing that reads like one.

Example::

    >>> st = {"run_time": 75.0, "iterations": 30, "mutants": 960, "mutants_per_sec": 12.0, "queue_size": 40,
    ...       "failures_total": 3, "failures_stored": 2, "seconds_since_last_find": 5.0, "cov_nc": 0.5}
    >>> p = budget_progress({"seconds": 100}, st, {"run_time": 25.0, "iterations": 0, "mutants": 0})
    >>> p.kind, p.fraction, p.eta
    ('time', 0.5, 50.0)
    >>> bar(0.5, width=10, ascii=True)
    '[#####-----]'
    >>> print(plain_line(st, "running", p).replace(" last", "\\n    last"))
    neurofuzz: running it=30 time=1m15s mutants=960 (12/s) queue=40 failures=3
        last_find=5s nc=0.5000 budget=50% eta=0m50s
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Fault-revealing counters shown when the stats carry them (stats key -> label).
FAULT_KEYS = {"failing_pairs": "pairs", "failing_seeds": "seeds broken", "confusions": "confusions",
              "time_to_first_failure": "first failure"}
_KINDS = (("seconds", "time"), ("iterations", "iterations"), ("mutants", "mutants"), ("plateau_seconds", "plateau"))


def duration(s: float) -> str:
    """``65`` -> ``1m05s``; ``3725`` -> ``1h02m05s``."""
    s = max(0, int(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


@dataclass(frozen=True)
class Progress:
    """How far a run is through its budget ``kind``: ``done`` of ``total`` (seconds, iterations,
    mutants), ``fraction`` in [0, 1], ``eta`` seconds left (``None`` when not yet known)."""

    kind: str
    done: float
    total: float
    fraction: float
    eta: float | None

    def describe(self) -> str:
        if self.kind in ("time", "plateau"):
            what = f"of {duration(self.total)}" + (" without a find" if self.kind == "plateau" else "")
        else:
            what = f"of {int(self.total)} {self.kind}"
        return f"{self.fraction:4.0%} {what}"


def _budget_items(budget: Any) -> dict[str, float]:
    if budget is None:
        return {}
    get = budget.get if isinstance(budget, Mapping) else (lambda k, d=None: getattr(budget, k, d))
    out = {}
    for key, _ in _KINDS:
        v = get(key, None)
        if v:
            out[key] = float(v)
    return out


def budget_progress(budget: Any, st: Mapping[str, Any], start: Mapping[str, Any] | None) -> Progress | None:
    """Progress through ``budget`` (a :class:`~neurofuzz.fuzzer.config.Budget` or a dict with
    ``seconds`` / ``iterations`` / ``mutants`` / ``plateau_seconds``; 0 or missing: no limit) at
    snapshot ``st``, counting from snapshot ``start`` (the run's first); ``None`` without a budget."""
    items = _budget_items(budget)
    if not items:
        return None
    start = start or {}
    elapsed = max(0.0, float(st.get("run_time", 0.0)) - float(start.get("run_time", 0.0)))
    found = []
    for key, kind in _KINDS:
        if key not in items:
            continue
        total = items[key]
        if kind == "time":
            done, eta = elapsed, total - elapsed
        elif kind == "plateau":
            done = float(st.get("seconds_since_last_find", 0.0))
            eta = total - done
        else:
            done = float(st.get(kind, 0)) - float(start.get(kind, 0))
            eta = (total - done) * elapsed / done if done > 0 and elapsed > 0 else None
        frac = min(1.0, max(0.0, done / total))
        found.append(Progress(kind, done, total, frac, None if eta is None else max(0.0, eta)))
    best = max(found, key=lambda p: p.fraction)
    etas = [p.eta for p in found if p.eta is not None]
    return Progress(best.kind, best.done, best.total, best.fraction, min(etas) if etas else None)


def bar(fraction: float, *, width: int = 30, ascii: bool = False) -> str:
    """``[#####-----]``-style bar of ``width`` cells (eighth-cell resolution with Unicode)."""
    f = min(1.0, max(0.0, float(fraction)))
    if ascii:
        n = int(round(f * width))
        return "[" + "#" * n + "-" * (width - n) + "]"
    eighths = int(round(f * width * 8))
    full, part = divmod(eighths, 8)
    partial = " ▏▎▍▌▋▊▉"[part] if part and full < width else ""
    return "[" + "█" * full + partial + "·" * (width - full - len(partial)) + "]"


def _coverage(st: Mapping[str, Any], sep: str, fmt: str) -> str:
    return sep.join(fmt.format(k[4:], float(v)) for k, v in st.items() if k.startswith("cov_"))


def _oracle_failures(st: Mapping[str, Any]) -> str:
    return "  ".join(f"{k[9:]} {v}" for k, v in st.items()
                     if k.startswith("failures_") and k not in ("failures_total", "failures_stored"))


def _fault_items(st: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The fault counters the stats carry (a time to first failure < 0 means none yet)."""
    out = []
    for key in FAULT_KEYS:
        v = st.get(key)
        if v in (None, "") or (key == "time_to_first_failure" and float(v) < 0):
            continue
        out.append((key, v))
    return out


def _faults(st: Mapping[str, Any]) -> str:
    return "  ".join(f"{FAULT_KEYS[k]} {float(v):.1f}s" if k == "time_to_first_failure" else f"{FAULT_KEYS[k]} {v}"
                     for k, v in _fault_items(st))


def live_lines(st: Mapping[str, Any], status: str, progress: Progress | None = None, *,
               ascii: bool = False) -> list[str]:
    """The terminal block: 4 lines, plus a budget line with a budget and a "revealed" line (fault-revealing measures) when the
    stats carry fault-revealing counters."""
    rate = float(st.get("failures_total", 0)) / float(st["run_time"]) * 60 if float(st.get("run_time", 0)) > 0 else 0.0
    lines = [
        f"neurofuzz [{status}]  run {duration(st['run_time'])}  iterations {st['iterations']}  "
        f"mutants {st['mutants']} ({float(st['mutants_per_sec']):.0f}/s, {st.get('invalid_mutants', 0)} invalid)",
        f"  coverage   {_coverage(st, '  ', '{} {:.4f}')}",
        f"  corpus     queue {st['queue_size']}  failures {st['failures_total']} "
        f"({st['failures_stored']} stored, {rate:.1f}/min)  last find {float(st['seconds_since_last_find']):.0f}s ago",
        f"  failures   {_oracle_failures(st) or 'none'}",
    ]
    if progress is not None:
        eta = "ETA -" if progress.eta is None else f"ETA {duration(progress.eta)}"
        lines.insert(1, f"  budget     {bar(progress.fraction, ascii=ascii)} {progress.describe()}  {eta}")
    faults = _faults(st)
    if faults:
        lines.append(f"  revealed   {faults}")
    return lines


def plain_line(st: Mapping[str, Any], status: str, progress: Progress | None = None) -> str:
    """One log line of ``key=value`` words (no escape code, no bracketed prefix)."""
    words = [f"neurofuzz: {status}", f"it={st['iterations']}", f"time={duration(st['run_time'])}",
             f"mutants={st['mutants']} ({float(st['mutants_per_sec']):.0f}/s)", f"queue={st['queue_size']}",
             f"failures={st['failures_total']}"]
    if "seconds_since_last_find" in st:
        words.append(f"last_find={float(st['seconds_since_last_find']):.0f}s")
    cov = _coverage(st, " ", "{}={:.4f}")
    if cov:
        words.append(cov)
    words += [f"{k}={v}" for k, v in _fault_items(st)]
    if progress is not None:
        words.append(f"budget={progress.fraction:.0%}")
        if progress.eta is not None:
            words.append(f"eta={duration(progress.eta)}")
    return " ".join(words)
