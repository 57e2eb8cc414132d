"""`neurofuzz coverage` and `neurofuzz evaluate` on the user's own model and data (issue 12,
item 5): --model/--weights/--mean/--std/--data like `profile` and `fuzz`, and their one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from neurofuzz.fuzzer.cli import main

NET = '''from torch import nn


def make_net(n_classes: int = 4) -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, n_classes))
'''


@pytest.fixture
def user(tmp_path, monkeypatch):
    """A model file, its weights, labelled data, unlabelled data and a TorchScript file, in the cwd."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mynet.py").write_text(NET)
    import importlib.util

    spec = importlib.util.spec_from_file_location("mynet_for_test", tmp_path / "mynet.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = mod.make_net()
    torch.save(net.state_dict(), tmp_path / "net.pt")
    (tmp_path / "net.ts").write_bytes(b"")  # named like a TorchScript file: refused before it is read
    g = np.random.default_rng(0)
    x = g.random((24, 1, 6, 6), dtype=np.float32)
    y = g.integers(0, 4, 24).astype(np.int64)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    np.savez(tmp_path / "train.npz", x=x[:16], y=y[:16])
    np.savez(tmp_path / "nolabels.npz", x=x)
    return tmp_path


MODEL = ["--model", "mynet.py:make_net", "--weights", "net.pt"]


def run_json(argv, capsys) -> dict:
    rc = main(argv)
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    return json.loads(cap.out)


def test_coverage_of_a_user_model(user, capsys):
    r = run_json(["coverage", *MODEL, "--data", "data.npz", "--json"], capsys)
    assert r["model"] == "mynet.py:make_net" and r["inputs"] == 24 and r["profiled_inputs"] == 24
    assert sorted(r["coverage"]) == ["kmnc", "nbc", "nc", "snac", "tknc"]
    assert all(0 <= v <= 1 for v in r["coverage"].values()) and 0 <= r["accuracy"] <= 1
    assert set(r["per_layer"]["nc"]) == {"0", "3"}  # the model's Conv2d and Linear layers
    r2 = run_json(["coverage", *MODEL, "--data", "data.npz", "--profile-data", "train.npz", "--json"], capsys)
    assert r2["profiled_inputs"] == 16
    assert main(["profile", *MODEL, "--data", "train.npz", "--out", "p.pt"]) == 0
    capsys.readouterr()
    r3 = run_json(["coverage", *MODEL, "--data", "data.npz", "--profile", "p.pt", "--json"], capsys)
    assert r3["coverage"] == r2["coverage"]  # the same profile, saved or computed
    r4 = run_json(["coverage", *MODEL, "--mean", "0.5", "--std", "0.25", "--data", "data.npz", "--json"], capsys)
    assert r4["coverage"] != r["coverage"]  # the normalisation is applied inside the model
    assert main(["coverage", *MODEL, "--data", "nolabels.npz"]) == 0
    assert "(no labels)" in capsys.readouterr().out.splitlines()[0]


@pytest.mark.parametrize("argv,needle", [
    (["coverage", *MODEL], "--data is required"),
    (["coverage", *MODEL, "--data", "missing.npz"], "not found"),
    (["coverage", *MODEL, "--data", "data.npz", "--profile", "p.pt", "--profile-data", "train.npz"], "not both"),
    (["coverage", "--model", "mynet.py:nothing", "--data", "data.npz"], "nothing"),
    (["coverage", *MODEL, "--data", "data.npz", "--batch-size", "0"], "--batch-size"),
    (["evaluate", *MODEL, "--data", "data.npz"], "--train-data"),
    (["evaluate", "--model", "net.ts", "--data", "data.npz", "--train-data", "train.npz"], "module:factory"),
    (["evaluate", *MODEL, "--data", "nolabels.npz", "--train-data", "train.npz"], "labels"),
    (["evaluate", *MODEL, "--data", "data.npz", "--train-data", "train.npz", "--epochs", "0"], "--epochs"),
])
def test_user_model_errors_are_one_line(user, capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("neurofuzz: error: ") and err.count("\n") == 1 and needle in err, err


def test_evaluate_a_user_model(user, capsys):
    argv = ["evaluate", *MODEL, "--data", "data.npz", "--train-data", "train.npz", "--epochs", "1", "--json"]
    r = run_json(argv, capsys)
    assert r["nad"]["settings"]["epochs"] == 1 and r["data"].startswith("data.npz (24 images, 1x6x6)")
    assert 0 <= r["undefended"]["clean_accuracy"] <= 1 and 0 <= r["nad"]["fgsm_transfer_accuracy"] <= 1
    assert r["attack_metrics_fgsm_on_undefended"]["misclassification_rate"] >= 0


@pytest.mark.slow
def test_evaluate_a_user_model_is_reproducible(user, capsys):
    argv = ["evaluate", *MODEL, "--data", "data.npz", "--train-data", "train.npz", "--epochs", "2", "--json"]
    r, again = run_json(argv, capsys), run_json(argv, capsys)
    assert again["nad"]["clean_accuracy"] == r["nad"]["clean_accuracy"]  # the fresh model comes from --seed
    assert again["undefended"] == r["undefended"]
