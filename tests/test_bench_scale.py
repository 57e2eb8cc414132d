"""benchmarks/scale.py and benchmarks/scale_mock.py: the fast pieces (no benchmark run)."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def scale():
    return load("scale")


def test_mock_factory_loads_through_the_cli_loader_and_sleeps(monkeypatch):
    from neurofuzz.fuzzer.io import load_model

    monkeypatch.setenv("SCALE_MOCK_MS", "30")
    net = load_model(f"{BENCH / 'scale_mock.py'}:make_net")
    assert net.forward_ms == 30.0
    x = torch.rand(7, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    with torch.no_grad():
        out = net(x)
    assert time.perf_counter() - t0 >= 0.03  # time.sleep sleeps at least that long
    assert out.shape == (7, 4) and torch.isfinite(out).all()
    again = load_model(f"{BENCH / 'scale_mock.py'}:make_net")  # every worker builds the same model
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))


def test_mock_refuses_a_bad_sleep(monkeypatch):
    mock = load("scale_mock")
    monkeypatch.setenv("SCALE_MOCK_MS", "fast")
    with pytest.raises(ValueError, match="SCALE_MOCK_MS"):
        mock.make_net()
    monkeypatch.setenv("SCALE_MOCK_MS", "-1")
    with pytest.raises(ValueError, match="0, 60000"):
        mock.make_net()
    monkeypatch.delenv("SCALE_MOCK_MS")
    assert mock.make_net().forward_ms == mock.DEFAULT_MS


def test_parser_defaults_quick_and_overrides(scale):
    a = scale.resolve(scale.build_parser().parse_args([]))
    assert (a.time, a.mutants, a.sim_time, a.repeats) == (60.0, 60000, 20.0, 2)
    assert a.sections == list(scale.SECTIONS) and a.sim_workers == [1, 2, 4, 8]
    q = scale.resolve(scale.build_parser().parse_args(["--quick"]))
    assert (q.time, q.mutants, q.sim_time) == (15.0, 20000, 8.0)
    o = scale.resolve(scale.build_parser().parse_args(["--quick", "--time", "3", "--sections", "ray"]))
    assert o.time == 3.0 and o.sections == ["ray"]
    with pytest.raises(SystemExit, match="unknown section"):
        scale.resolve(scale.build_parser().parse_args(["--sections", "speed"]))
    with pytest.raises(SystemExit, match="positive"):
        scale.resolve(scale.build_parser().parse_args(["--repeats", "0"]))


def test_commands_are_the_cli_users_run(scale, tmp_path):
    a = scale.resolve(scale.build_parser().parse_args(["--sync-every", "7"]))
    cmd, n, env = scale.variant_cmd("workers_2", tmp_path / "c", a, ["--time", "5"])
    assert cmd[:4] == [sys.executable, "-m", "neurofuzz.fuzzer.cli", "fuzz"] and "--quiet" in cmd
    assert cmd[cmd.index("--workers") + 1] == "2" and cmd[cmd.index("--sync-every") + 1] == "7" and n == 2
    cmd, n, env = scale.variant_cmd("plain_1thread", tmp_path / "c", a, ["--time", "5"])
    assert "--workers" not in cmd and n is None and env["OMP_NUM_THREADS"] == "1"


def rec(rate: float, wall: float, loop: float, rc: int = 0) -> dict:
    return {"rc": rc, "stats_mutants_per_sec": rate, "wall_mutants_per_sec": wall, "loop_mutants_per_sec": loop}


def test_throughput_summary_medians_and_ratios(scale):
    runs = {"plain": [rec(100, 50, 100), rec(300, 70, 300)],
            "workers_1": [rec(90, 40, 95), rec(110, 60, 105), rec(1e9, 1e9, 1e9, rc=1)],  # failed: left out
            "workers_2": [rec(360, 100, 400)]}
    s = scale.summarise_throughput(runs)
    assert s["median"]["plain"]["stats_mutants_per_sec"] == 200 and s["median"]["workers_1"]["wall_mutants_per_sec"] == 50
    assert s["ratios"]["workers_2/plain"]["stats_mutants_per_sec"] == 1.8
    assert s["ratios"]["workers_2/workers_1"]["loop_mutants_per_sec"] == 4.0
    assert s["ratios"]["workers_2_loop/plain_loop"] == 2.0
    assert s["workers_2_loop/best_single_loop"] == 2.0 and s["target_met"] is True  # 400 / max(200, 100)
    assert scale.summarise_throughput({"plain": [rec(1, 1, 1, rc=1)]})["median"]["plain"]["stats_mutants_per_sec"] is None


def test_coverage_diff_names_the_metrics_lower_with_two_workers(scale):
    cov = {"plain": {"nc": 0.5, "nbc": 0.4}, "workers_1": {"nc": 0.6, "nbc": 0.5}, "workers_2": {"nc": 0.7, "nbc": 0.45}}
    d = scale.coverage_diff(cov)
    assert d["workers_2-workers_1"] == {"nc": pytest.approx(0.1), "nbc": pytest.approx(-0.05)}
    assert d["lower_with_2_workers_than_workers_1"] == ["nbc"] and d["lower_with_2_workers_than_plain"] == []


def pubs() -> dict:
    return {"w1": {"time": 10.0, "mutants": 1000, "iterations": 4, "final": True, "syncs": 4, "sync_seconds": 0.5,
                   "wait_seconds": 0.2, "imported": 3, "timeouts": 0},
            "w2": {"time": 5.0, "mutants": 1500, "iterations": 6, "final": True, "syncs": 6, "sync_seconds": 0.5,
                   "wait_seconds": 0.0, "imported": 1, "timeouts": 1}}


def test_sync_shares_loop_rate_and_simulated_point(scale):
    ws = scale.worker_figures(pubs())
    assert ws["w1"]["sync_share"] == 0.05 and ws["w1"]["wait_share"] == 0.02 and ws["w2"]["sync_share"] == 0.1
    assert scale.loop_rate(pubs()) == 400.0  # 1000 / 10 + 1500 / 5
    s = scale.sync_summary([{"label": "x", "rc": 0, "workers": ws}, {"label": "bad", "rc": 2}])
    assert [r["label"] for r in s["runs"]] == ["x"] and s["mean_sync_share"] == 0.075 and s["max_sync_share"] == 0.1
    r = {"rc": 0, "mutants": 2500, "workers": ws, "load_before": [1, 1, 1], "load_after": [2, 2, 2],
         **rec(250, 200, 400)}
    p = scale.simulated_point(r, 2, rec(100, 100, 160))
    assert p["speedup_stats"] == 2.5 and p["speedup_loop"] == 2.5 and p["seconds_per_sync"] == 0.1
    assert p["mean_imported"] == 2 and p["timeouts"] == 1
    assert scale.simulated_point({"rc": 1, "error": ["boom"], "command": "c"}, 4, None)["error"] == ["boom"]


def test_ray_section_is_skipped_when_ray_does_not_import(scale, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    assert scale.ray_status().startswith("skipped: ray not installed")
    a = scale.resolve(scale.build_parser().parse_args(["--sections", "ray"]))
    assert scale.ray(tmp_path, a)["skipped"].startswith("skipped: ray not installed")
