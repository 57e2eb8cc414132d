"""`neurofuzz privacy`: bad input is one line and exit 2; the quick table runs (slow)."""

from __future__ import annotations

import json

import pytest
import torch

from neurofuzz.fuzzer.cli import main


def _one_line_error(capsys, argv, match):
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err, err
    assert err[-1].startswith("neurofuzz: error: ") and match in err[-1], err
    assert not any("Traceback" in line for line in err)


@pytest.mark.parametrize("delta", ["0", "1", "-1e-5", "2"])
def test_delta_outside_the_unit_interval(capsys, delta):
    _one_line_error(capsys, ["privacy", "--quick", f"--delta={delta}"], "delta must lie in (0, 1)")


def test_bad_epsilon(capsys):
    _one_line_error(capsys, ["privacy", "--quick", "--epsilons", "0"], "--epsilons must be numbers in (0, 1000)")


def test_model_without_trainable_parameters(capsys, tmp_path, monkeypatch):
    (tmp_path / "frozen_net.py").write_text(
        "import torch\n"
        "def make():\n"
        "    m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(1024, 10))\n"
        "    for p in m.parameters():\n"
        "        p.requires_grad_(False)\n"
        "    return m\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    with torch.random.fork_rng():
        _one_line_error(capsys, ["privacy", "--quick", "--model", "frozen_net.py:make"], "no trainable parameters")


def test_data_too_small_for_the_shadow_models(capsys):
    _one_line_error(capsys, ["privacy", "--quick", "--pool-size", "12"], "too few to train")


def test_target_epsilon_already_exceeded_by_a_checkpoint(capsys, tmp_path):
    from neurofuzz.fuzzer.commands.privacy import _seeded
    from neurofuzz.fuzzer.zoo import LeNet5, load_digits32
    from neurofuzz.privacy.dp_training import DPTrainer

    x, y = load_digits32("train")
    DPTrainer(_seeded(LeNet5, 1), noise=0.8, batch_size=128, optimizer="adam", seed=1).fit(
        x[:256], y[:256], epochs=1, checkpoint=tmp_path / "dp1.pt")
    _one_line_error(capsys, ["privacy", "--quick", "--epsilons", "0.5", "--checkpoint-dir", str(tmp_path)],
                    "target epsilon 0.5 is already exceeded")


@pytest.mark.slow
def test_the_quick_table_runs_with_progress_on_stderr(capsys):
    assert main(["privacy", "--quick", "--json"]) == 0
    out, err = capsys.readouterr()
    res = json.loads(out)
    names = [r["name"] for r in res["rows"]]
    assert names == ["normal", "dp_eps1", "dp_eps3", "dp_eps8", "overfit"]
    assert all(r["eps_rdp"] <= e + 1e-6 for r, e in zip(res["rows"][1:4], (1, 3, 8)))
    assert res["rows"][0]["test_acc"] > 0.95 and "neurofuzz privacy:" in err
    assert set(res["rows"][0]["mia"]) == {"threshold", "lira", "lr", "knn", "rf", "mlp"}
