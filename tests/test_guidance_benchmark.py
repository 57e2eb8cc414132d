"""benchmarks/guidance.py: the referee on a hand-made corpus (fast) and the smoke run (slow)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from neurofuzz.corpus import MemoryStore

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "guidance.py"


def load_script():
    spec = importlib.util.spec_from_file_location("guidance_benchmark", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def tiny_model() -> nn.Module:
    with torch.random.fork_rng():  # default init draws from the global RNG
        lin = nn.Linear(4, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
        lin.bias.zero_()
    return nn.Sequential(nn.Flatten(), lin).eval()  # modules "0" (4 pixels) and "1" (2 outputs)


def test_referee_on_a_hand_made_corpus():
    g = load_script()
    model = tiny_model()
    referee = g.Referee(model, torch.stack([torch.zeros(1, 2, 2), torch.ones(1, 2, 2)]))  # low 0, high 1
    assert referee.neurons == {"mean": 6, "element": 6}
    s = MemoryStore()
    step = [{"mutator": "m", "params": {}, "config": {}}]
    seed = s.add(torch.zeros(1, 2, 2), kind="queue", label=0, pred=0)
    s.add(torch.full((1, 2, 2), 0.5), kind="queue", label=0, pred=0, parent=seed.id, chain=step, time_found=1.0,
          iteration=1)
    for oracle in ("misclassified", "prediction_changed"):  # one image, two oracles: one input
        s.add(torch.ones(1, 2, 2), kind="failure", oracle=oracle, label=0, pred=1, parent=seed.id, chain=step,
              time_found=3.0, iteration=2)
    out = g.judge(s, referee, [0.5, 2.0, 5.0])
    assert list(out) == ["0.5", "2.0", "5.0"]
    # KMNC(100) over 6 neurons: zeros -> section 0 (6 cells), 0.5 -> section 50 (+6), 1.0 = high -> 99 (+6)
    assert [out[t]["kmnc_mean"] for t in out] == [0.01, 0.02, 0.03]
    assert [out[t]["kmnc_element"] for t in out] == [0.01, 0.02, 0.03]
    assert [out[t]["nbc_mean"] for t in out] == [0.0, 0.0, 0.0]  # nothing strictly outside [0, 1]
    assert [out[t]["inputs"] for t in out] == [1, 2, 3] and [out[t]["queue"] for t in out] == [1, 2, 2]
    assert [out[t]["failing_pairs"] for t in out] == [0, 0, 1]
    assert [out[t]["failing_seeds"] for t in out] == [0, 0, 1]
    assert [out[t]["time_to_first_failure"] for t in out] == [None, None, 3.0]
    # NC(0.5, scaled per input and layer): zeros cover nothing; 0.5 everywhere scales to 0; ones too
    assert out["5.0"]["nc_mean"] == 0.0
    # TKNC(2): a constant layer ties: every neuron is in the top 2 of the seed already
    assert out["0.5"]["tknc_mean"] == 1.0


def test_coloured_digits_are_seeded_and_in_range():
    g = load_script()
    x, y = g.coloured_digits(seed=0)
    assert x.shape == (1797, 3, 32, 32) and y.shape == (1797,) and set(y.tolist()) == set(range(10))
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert torch.equal(x[:5], g.coloured_digits(seed=0)[0][:5])
    assert not torch.equal(x[:5], g.coloured_digits(seed=1)[0][:5])


@pytest.mark.slow
def test_smoke_run_prints_the_json_table(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--times", "2,5", "--repeats", "1", "--variants",
                           "default,unguided", "--archs", "lenet"], capture_output=True, text=True, timeout=300,
                          check=True)
    d = json.loads(proc.stdout)
    assert "lenet, 360 seeds (1 runs each)" in proc.stderr and "\n| unguided | " in proc.stderr  # the table
    assert d["setup"]["times"] == [2.0, 5.0] and d["setup"]["variants"] == ["default", "unguided"]
    lenet = d["archs"]["lenet"]
    assert set(lenet) == {"info", "seeds_20", "seeds_360"}
    for key in ("seeds_20", "seeds_360"):
        for v in ("default", "unguided"):
            mean = lenet[key][v]["mean"]
            assert list(mean) == ["2.0", "5.0"] and len(lenet[key][v]["runs"]) == 1
            for t in mean.values():
                for m in ("kmnc", "nbc", "snac", "nc", "tknc"):
                    assert 0.0 <= t[f"{m}_mean"] <= 1.0 and 0.0 <= t[f"{m}_element"] <= 1.0
                assert t["inputs"] >= int(key.split("_")[1]) - 5 and t["failing_pairs"] >= 0
            assert mean["5.0"]["kmnc_mean"] >= mean["2.0"]["kmnc_mean"]  # a corpus only grows


def test_each_ablation_removes_one_part_of_the_default():
    g = load_script()
    d = g.config("default", 0, 5.0, None)
    assert d.feedback_patience == 25 and d.metrics["kmnc_fine"] == g.FINE and d.mutator_choice == "adaptive"
    static, no_fine = g.config("static", 0, 5.0, None), g.config("no_fine", 0, 5.0, None)
    assert static.feedback_patience == 0 and "kmnc_fine" not in static.metrics
    assert no_fine.feedback_patience == 25 and "kmnc_fine" not in no_fine.metrics
    per_mutant = g.config("yield_per_mutant", 0, 5.0, None)
    assert per_mutant.mutator_choice == "adaptive-per-mutant" and per_mutant.metrics == d.metrics
    assert g.config("fine_first", 0, 5.0, None).metrics == d.metrics  # its order is dropped at run time
    assert g.config("unguided", 3, 5.0, None).guided is False and g.config("unguided", 3, 5.0, None).seed == 3


def test_the_markdown_table_of_a_result():
    g = load_script()
    point = {"kmnc_mean": 0.5, "nbc_mean": 0.25, "queue": 7, "failing_seeds": 2, "failing_pairs": 3, "other": 1}
    assert g._fmt(18.6667, "failing_seeds") == "18.7" and g._fmt(0.97061, "kmnc_element") == "0.971"
    later = {**point, "kmnc_mean": 0.75, "queue": 9}
    res = {"archs": {"lenet": {"info": {}, "seeds_20": {
        "default": {"mean": {"5.0": point, "10.0": later}, "runs": [{}, {}]},
        "unguided": {"mean": {"5.0": point, "10.0": {**point, "failing_pairs": None}}, "runs": [{}, {}]}}}}}
    lines = g.table(res).strip().splitlines()
    assert lines[0] == ("lenet, 20 seeds (2 runs each); columns: kmnc_mean, nbc_mean, queue, failing_seeds, "
                        "failing_pairs at t = 5.0 / 10.0 s")
    assert lines[1] == "| variant | kmnc_mean | nbc_mean | queue | failing_seeds | failing_pairs |"
    assert lines[3] == "| default | 0.500 / 0.750 | 0.250 / 0.250 | 7 / 9 | 2 / 2 | 3 / 3 |"
    assert lines[4] == "| unguided | 0.500 / 0.500 | 0.250 / 0.250 | 7 / 7 | 2 / 2 | 3 / - |"
