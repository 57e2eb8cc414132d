"""`neurofuzz evaluate`: the tutorial experiment (FGSM on the built-in model, NAD defense).

The full experiment (40 NAD epochs) is a slow test; the default run drives the same CLI path with
a 2-epoch NAD (the NAD_DIGITS setting patched for the test) and checks everything that does not
depend on how long the defended model trained. NAD's gain itself is checked by the fast test in
test_defenses.py.
"""

from __future__ import annotations

import json

import pytest
import torch

from neurofuzz.defenses import NAD_DIGITS
from neurofuzz.evaluators.tutorial import TARGET_ADV_ACC, TARGET_CLEAN_DROP, format_tutorial, run_tutorial
from neurofuzz.fuzzer.cli import main
from neurofuzz.ground import Target, UserError

NAD_KEYS = {"clean_accuracy", "fgsm_transfer_accuracy", "fgsm_whitebox_accuracy", "pgd20_eps0.1_accuracy",
            "training_seconds", "settings"}


def _check_undefended_part(r: dict) -> None:
    u = r["undefended"]
    assert u["clean_accuracy"] > 0.99
    assert u["fgsm_accuracy"] < 0.1  # FGSM eps 0.3 breaks the undefended model
    assert u["pgd20_eps0.1_accuracy"] < 0.5  # measured 0.256
    am = r["attack_metrics_fgsm_on_undefended"]
    assert abs(am["linf_abs"] - 0.3) < 1e-6 and am["misclassification_rate"] > 0.9
    assert am["misclassification_rate"] == pytest.approx(1 - u["fgsm_accuracy"], abs=1e-6)
    assert r["data"] == "digits test split (360 images, 1x32x32 in [0, 1])" and r["eps"] == 0.3 and r["seed"] == 0


def _check_consistent(r: dict) -> None:
    """meets_target and the defense metrics follow from the reported accuracies."""
    u, d = r["undefended"], r["nad"]
    assert set(d) == NAD_KEYS
    small_drop = u["clean_accuracy"] - d["clean_accuracy"] <= TARGET_CLEAN_DROP
    assert r["meets_target"] == {"whitebox": d["fgsm_whitebox_accuracy"] >= TARGET_ADV_ACC and small_drop,
                                 "transfer": d["fgsm_transfer_accuracy"] >= TARGET_ADV_ACC and small_drop}
    # CAV: the defended model's accuracy minus the undefended one's, on the same data
    assert r["defense_metrics_clean"]["cav"] == pytest.approx(d["clean_accuracy"] - u["clean_accuracy"], abs=1e-6)
    assert r["defense_metrics_fgsm_transfer"]["cav"] == pytest.approx(
        d["fgsm_transfer_accuracy"] - u["fgsm_accuracy"], abs=1e-6)
    text = format_tutorial(r)
    assert "NAD" in text and "CAV" in text and "misclassification_rate" in text
    assert f"{d['fgsm_whitebox_accuracy']:.4f}" in text


def test_evaluate_cli_runs_the_experiment_with_a_short_nad(capsys, monkeypatch):
    monkeypatch.setitem(NAD_DIGITS, "epochs", 2)
    assert main(["evaluate", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    _check_undefended_part(r)
    _check_consistent(r)
    assert r["nad"]["settings"] == {**NAD_DIGITS, "epochs": 2}  # the report states what was trained
    assert r["meets_target"] == {"whitebox": False, "transfer": False}  # 2 epochs are not enough


@pytest.mark.slow
def test_evaluate_reproduces_the_tutorial(capsys):
    assert main(["evaluate", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    u, d = r["undefended"], r["nad"]
    _check_undefended_part(r)
    _check_consistent(r)
    assert d["fgsm_whitebox_accuracy"] >= 0.8  # the target ...
    assert u["clean_accuracy"] - d["clean_accuracy"] <= 0.03  # ... at almost no clean cost
    assert r["meets_target"]["whitebox"] is True
    assert d["settings"] == NAD_DIGITS


def test_evaluate_rejects_bad_eps(capsys):
    assert main(["evaluate", "--eps", "0"]) == 2
    assert capsys.readouterr().err.startswith("neurofuzz: error: --eps")


def test_run_tutorial_takes_any_model_and_rejects_bad_input():
    from torch import nn

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(8, 1, 4, 4, generator=g), torch.randint(0, 2, (8,), generator=g)
    with torch.random.fork_rng(devices=[]):
        net, other = nn.Sequential(nn.Flatten(), nn.Linear(16, 2)), nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    target = Target(net, bounds=(0.0, 1.0))
    said: list[str] = []
    r = run_tutorial(target, x, y, lambda: other, eps=0.1, seed=3, settings={"epochs": 0}, progress=said.append)
    assert said[1] == "training the NAD model (epochs 0, seed 3) ..." and said[0].startswith("FGSM eps 0.1")
    assert "FGSM eps 0.1 accuracy, crafted on the undefended model" in format_tutorial(r)
    assert r["data"] == "8 images, 1x4x4 in [0, 1]" and r["nad"]["settings"] == {"epochs": 0} and r["seed"] == 3
    preds = Target(other).predict(x)
    assert r["nad"]["clean_accuracy"] == pytest.approx(float((preds == y).float().mean()))
    with pytest.raises(UserError, match="must be a neurofuzz Target"):
        run_tutorial(net, x, y, lambda: other)
    with pytest.raises(UserError, match="one integer label per input"):
        run_tutorial(target, x, y[:3], lambda: other)
    with pytest.raises(UserError, match="empty"):
        run_tutorial(target, x[:0], y[:0], lambda: other)
    with pytest.raises(UserError, match="eps must be > 0"):
        run_tutorial(target, x, y, lambda: other, eps=0.0)
    with pytest.raises(UserError, match="must return the trained nn.Module"):
        run_tutorial(target, x, y, lambda: "not a model")
