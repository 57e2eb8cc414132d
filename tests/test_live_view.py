"""Live view (issue 12, item 4): budget progress and ETA, the progress bar, the terminal block and
the plain log lines (no bracketed prefix, no escape code)."""

from __future__ import annotations

import io
import re

import pytest

from neurofuzz.fuzzer.config import Budget
from neurofuzz.fuzzer.monitor import Monitor
from neurofuzz.reports.live import bar, budget_progress, duration, live_lines, plain_line


def st(**over):
    s = {"run_time": 40.0, "iterations": 10, "mutants": 2560, "mutants_per_sec": 64.0, "invalid_mutants": 3,
         "queue_size": 50, "failures_total": 6, "failures_stored": 4, "seconds_since_last_find": 7.0,
         "cov_nc": 0.25, "failures_misclassified": 6}
    s.update(over)
    return s


class TTY(io.StringIO):
    encoding = "utf-8"

    def isatty(self) -> bool:
        return True


START = {"run_time": 20.0, "iterations": 0, "mutants": 0}


@pytest.mark.parametrize("budget,kind,fraction,eta", [
    (Budget(seconds=80), "time", 0.25, 60.0),                 # 20 s of 80 since the run started at 20 s
    (Budget(iterations=40), "iterations", 0.25, 60.0),        # 10 of 40 in 20 s: 30 more at 2 s each
    (Budget(mutants=10240), "mutants", 0.25, 60.0),
    (Budget(plateau_seconds=28), "plateau", 0.25, 21.0),      # 7 s without a find of 28
    ({"seconds": 30, "iterations": 40}, "time", 2 / 3, 10.0),  # the budget closest to stopping wins; ETA the sooner
])
def test_budget_progress_each_kind(budget, kind, fraction, eta):
    p = budget_progress(budget, st(), START)
    assert p.kind == kind
    assert p.fraction == pytest.approx(fraction)
    assert p.eta == pytest.approx(eta)


def test_no_budget_no_progress_and_unknown_eta_before_the_first_iteration():
    assert budget_progress(None, st(), START) is None
    assert budget_progress(Budget(), st(), START) is None  # every limit 0: no budget
    p = budget_progress(Budget(iterations=5), st(run_time=20.0, iterations=0), START)
    assert p.fraction == 0.0 and p.eta is None
    done = budget_progress(Budget(iterations=5), st(iterations=9), START)  # beyond the budget: clamped
    assert done.fraction == 1.0 and done.eta == 0.0


def test_bar_and_duration():
    assert bar(0.0, width=4, ascii=True) == "[----]"
    assert bar(1.0, width=4, ascii=True) == "[####]"
    assert bar(0.5, width=8) == "[████····]"
    assert len(bar(0.37, width=20)) == 22  # partial cells keep the width
    assert bar(2.0, width=3, ascii=True) == "[###]"  # clamped
    assert [duration(s) for s in (0, 65, 3725)] == ["0m00s", "1m05s", "1h02m05s"]


def test_terminal_block_has_a_budget_line_with_bar_and_eta():
    lines = live_lines(st(), "running", budget_progress(Budget(seconds=80), st(), START))
    assert len(lines) == 5 and lines[0].startswith("neurofuzz [running]")
    assert re.fullmatch(r"  budget     \[█{7}.·{22}\]  25% of 1m20s  ETA 1m00s", lines[1]), lines[1]
    assert "9.0/min" in lines[3] and "last find 7s ago" in lines[3]  # 6 failures in 40 s


def test_fault_counters_are_shown_when_the_stats_carry_them():
    s = st(failing_pairs=5, failing_seeds=3, confusions=4, time_to_first_failure=2.25)
    assert live_lines(s, "running")[-1] == "  revealed   pairs 5  seeds broken 3  confusions 4  first failure 2.2s"
    assert "failing_pairs=5 failing_seeds=3 confusions=4 time_to_first_failure=2.25" in plain_line(s, "running")
    assert not any("revealed" in ln for ln in live_lines(st(), "running"))
    none_yet = st(failing_pairs=0, failing_seeds=0, confusions=0, time_to_first_failure=-1.0)  # -1: no failure yet
    assert live_lines(none_yet, "running")[-1] == "  revealed   pairs 0  seeds broken 0  confusions 0"
    assert "time_to_first_failure" not in plain_line(none_yet, "running")


def test_plain_lines_have_no_prefix_that_reads_like_an_escape_code():
    line = plain_line(st(), "running", budget_progress(Budget(iterations=40), st(), START))
    assert line == ("neurofuzz: running it=10 time=0m40s mutants=2560 (64/s) queue=50 failures=6 last_find=7s "
                    "nc=0.2500 budget=25% eta=1m00s")
    assert not line.startswith("[") and "\x1b" not in line


def test_monitor_counts_the_budget_from_its_first_update_on_a_tty():
    out = TTY()
    m = Monitor(out, budget=Budget(seconds=100))
    assert m.live and not m.ascii
    m.update(st(run_time=500.0), "running")  # a resumed campaign: its time starts at 500 s
    m.update(st(run_time=550.0), "running")
    block = out.getvalue().split("\x1b[5F")[-1]
    assert "50% of 1m40s  ETA 0m50s" in block and block.count("\x1b[2K") == 5


def test_monitor_uses_ascii_on_a_non_utf8_terminal_and_plain_lines_off_a_terminal():
    class Latin1(TTY):
        encoding = "latin-1"

    out = Latin1()
    Monitor(out, budget={"iterations": 20}).update(st(), "running")
    assert "[" + "-" * 30 + "]" in out.getvalue() and "█" not in out.getvalue()
    log = io.StringIO()
    m = Monitor(log, interval=0, live=False, budget={"iterations": 20})
    m.update(st(iterations=0), "running")
    m.update(st(iterations=10), "stopped")
    first, last = log.getvalue().splitlines()
    assert first.startswith("neurofuzz: running it=0 ") and "budget=0%" in first
    assert last.startswith("neurofuzz: stopped it=10 ") and "budget=50%" in last
