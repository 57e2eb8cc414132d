"""Monitor: the status block's content, throttled plain lines for logs, in-place redraw on a tty."""

from __future__ import annotations

import io
import re
import types

import pytest

from neurofuzz.fuzzer import monitor as monitor_module
from neurofuzz.fuzzer.monitor import Monitor


def stats(**over):
    st = {
        "run_time": 65.7, "iterations": 12, "mutants": 3456, "mutants_per_sec": 52.6, "invalid_mutants": 78,
        "queue_size": 90, "failures_total": 11, "failures_stored": 7, "seconds_since_last_find": 4.4,
        "cov_nc": 0.5, "cov_kmnc": 0.123456, "cov_nbc": 0.0,
        "failures_misclassified": 9, "failures_nonfinite": 2,
    }
    st.update(over)
    return st


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


class CountingStream(io.StringIO):
    flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


@pytest.fixture
def clock(monkeypatch):
    """A fake monotonic clock for the monitor module only."""
    now = [1000.0]
    monkeypatch.setattr(monitor_module, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    return now


# ---------------------------------------------------------------------------- render
def test_render_contains_the_numbers():
    lines = Monitor(io.StringIO()).render(stats(), "running")
    assert len(lines) == 4
    head, cov, corpus, fails = lines
    assert head.startswith("neurofuzz [running]")
    assert "run 1m05s" in head and "iterations 12" in head and "mutants 3456 (53/s, 78 invalid)" in head
    assert cov.split() == ["coverage", "nc", "0.5000", "kmnc", "0.1235", "nbc", "0.0000"]
    # 11 failures in 65.7 s: 10.0 per minute
    assert "queue 90" in corpus and "failures 11 (7 stored, 10.0/min)" in corpus and "last find 4s ago" in corpus
    assert fails.split() == ["failures", "misclassified", "9", "nonfinite", "2"]


def test_render_without_per_oracle_failures():
    st = stats(failures_total=0, failures_stored=0)
    del st["failures_misclassified"], st["failures_nonfinite"]
    fails = Monitor(io.StringIO()).render(st, "running")[3]
    assert fails.split() == ["failures", "none"]
    assert "total" not in fails and "stored" not in fails


@pytest.mark.parametrize("seconds,text", [(0, "0m00s"), (59.9, "0m59s"), (61, "1m01s"), (3599, "59m59s"),
                                          (3600, "1h00m00s"), (3 * 3600 + 62, "3h01m02s")])
def test_render_run_time(seconds, text):
    head = Monitor(io.StringIO()).render(stats(run_time=seconds), "done")[0]
    assert head.startswith(f"neurofuzz [done]  run {text} ")


# ---------------------------------------------------------------------------- plain (log) mode
def test_plain_line_content():
    out = io.StringIO()
    Monitor(out, interval=0, live=False).update(stats(), "running")
    # issue 12: no bracketed "[1m05s]" prefix (it read like an escape code); plain key=value words
    assert out.getvalue() == ("neurofuzz: running it=12 time=1m05s mutants=3456 (53/s) queue=90 failures=11 "
                              "last_find=4s nc=0.5000 kmnc=0.1235 nbc=0.0000\n")
    assert "\x1b" not in out.getvalue() and "[" not in out.getvalue()


def test_plain_mode_interval_zero_writes_every_update():
    out = io.StringIO()
    m = Monitor(out, interval=0, live=False)
    for i in range(5):
        m.update(stats(iterations=i), "running")
    lines = out.getvalue().splitlines()
    assert [re.search(r"it=(\d+)", ln).group(1) for ln in lines] == ["0", "1", "2", "3", "4"]


def test_plain_mode_large_interval_throttles_but_final_status_is_written():
    out = io.StringIO()
    m = Monitor(out, interval=3600, live=False)
    for i in range(5):
        m.update(stats(iterations=i), "running")
    m.update(stats(iterations=5), "stopped")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert " running it=0 " in lines[0]  # the first update is always shown
    assert " stopped it=5 " in lines[1]


def test_plain_mode_one_line_per_interval(clock):
    out = io.StringIO()
    m = Monitor(out, interval=10.0, live=False)
    for t in [0, 1, 5, 9.99, 10, 12, 19.5, 20.5, 25, 31]:
        clock[0] = 1000.0 + t
        m.update(stats(iterations=int(t * 100)), "running")
    its = [re.search(r"it=(\d+)", ln).group(1) for ln in out.getvalue().splitlines()]
    # written at t = 0, 10, 20.5 and 31: at least `interval` after the previous line, never sooner
    assert its == ["0", "1000", "2050", "3100"]


def test_plain_mode_final_status_is_written_even_right_after_a_line(clock):
    out = io.StringIO()
    m = Monitor(out, interval=10.0, live=False)
    m.update(stats(), "running")
    m.update(stats(), "done")  # same instant
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and " done " in lines[1]


def test_plain_mode_flushes_each_line():
    out = CountingStream()
    m = Monitor(out, interval=3600, live=False)
    m.update(stats(), "running")
    m.update(stats(), "running")  # throttled: nothing written, nothing flushed
    m.update(stats(), "done")
    assert out.flushes == 2


def test_default_stream_is_stderr_and_not_live(capsys):
    m = Monitor(interval=0)
    assert m.live is False  # pytest's captured stderr is not a terminal
    m.update(stats(), "running")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "running it=12" in captured.err


# ---------------------------------------------------------------------------- live (tty) mode
def test_live_mode_is_detected_from_a_tty():
    assert Monitor(TTY()).live is True
    assert Monitor(io.StringIO()).live is False
    assert Monitor(TTY(), live=False).live is False
    assert Monitor(io.StringIO(), live=True).live is True


def test_live_mode_redraws_in_place():
    out = TTY()
    m = Monitor(out, interval=3600)
    m.update(stats(iterations=1), "running")
    first = out.getvalue()
    assert "\x1b[4F" not in first and not re.search(r"\x1b\[\d*[AF]", first)  # nothing to move over yet
    assert first.count("\n") == 4 and first.count("\x1b[2K") == 4
    assert first == "".join(f"\x1b[2K{line}\n" for line in m.render(stats(iterations=1), "running"))

    m.update(stats(iterations=2), "running")  # live mode ignores the interval
    second = out.getvalue()[len(first):]
    assert second.startswith("\x1b[4F")  # cursor up over the 4 lines of the previous block
    assert second.count("\x1b[2K") == 4 and "iterations 2" in second

    m.update(stats(iterations=3), "done")
    third = out.getvalue()[len(first) + len(second):]
    assert third.startswith("\x1b[4F") and "neurofuzz [done]" in third and "iterations 3" in third
