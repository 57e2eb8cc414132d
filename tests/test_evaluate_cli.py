"""`neurofuzz evaluate`: the tutorial experiment (FGSM on the built-in model, NAD defense)."""

from __future__ import annotations

import json

from neurofuzz.evaluators.tutorial import format_tutorial
from neurofuzz.fuzzer.cli import main


def test_evaluate_reproduces_the_tutorial(capsys):
    assert main(["evaluate", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    u, d = r["undefended"], r["nad"]
    assert u["clean_accuracy"] > 0.99
    assert u["fgsm_accuracy"] < 0.1  # FGSM eps 0.3 breaks the undefended model
    assert d["fgsm_whitebox_accuracy"] >= 0.8  # the target ...
    assert u["clean_accuracy"] - d["clean_accuracy"] <= 0.03  # ... at almost no clean cost
    assert r["meets_target"]["whitebox"] is True
    am = r["attack_metrics_fgsm_on_undefended"]
    assert abs(am["linf_abs"] - 0.3) < 1e-6 and am["misclassification_rate"] > 0.9
    text = format_tutorial(r)
    assert "NAD" in text and "CAV" in text and "misclassification_rate" in text


def test_evaluate_rejects_bad_eps(capsys):
    assert main(["evaluate", "--eps", "0"]) == 2
    assert capsys.readouterr().err.startswith("neurofuzz: error: --eps")
