"""Oracles on hand-made contexts, build_oracle errors and registration of custom oracles."""

from __future__ import annotations

import pytest
import torch

from neurofuzz.fuzzer.config import FuzzConfig
from neurofuzz.ground.errors import UserError
from neurofuzz.fuzzer.oracles import ORACLES, Oracle, OracleContext, build_oracle, register_oracle

NAN, INF = float("nan"), float("inf")


def ctx(logits, labels, root_preds=None, x=None) -> OracleContext:
    logits = torch.tensor(logits, dtype=torch.float32)
    b = logits.shape[0]
    return OracleContext(
        x=torch.zeros(b, 1, 2, 2) if x is None else x,
        logits=logits,
        labels=torch.tensor(labels),
        root_preds=torch.tensor(labels if root_preds is None else root_preds),
    )


def test_misclassified():
    c = ctx([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [0.0, 0.0, 5.0], [1.0, 4.0, 0.0]], labels=[0, 2, 2, 0])
    out = build_oracle("misclassified").check(c)
    assert out.dtype == torch.bool
    assert out.tolist() == [False, True, False, True]


def test_misclassified_ignores_root_preds():
    c = ctx([[3.0, 1.0], [0.0, 2.0]], labels=[0, 1], root_preds=[1, 0])
    assert build_oracle("misclassified").check(c).tolist() == [False, False]


def test_prediction_changed():
    c = ctx([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [0.0, 0.0, 5.0]], labels=[0, 0, 0], root_preds=[0, 2, 2])
    assert build_oracle("prediction_changed").check(c).tolist() == [False, True, False]


def test_nan_logits_never_win_the_argmax():
    # NaN is treated as -inf for the prediction, so a NaN in one class does not make it the prediction
    c = ctx([[NAN, 1.0, 0.0], [0.0, NAN, 2.0], [NAN, NAN, NAN]], labels=[1, 2, 0])
    assert c.preds.tolist()[:2] == [1, 2]
    assert build_oracle("misclassified").check(c).tolist()[:2] == [False, False]


@pytest.mark.parametrize("bad", [NAN, INF, -INF])
def test_nonfinite_flags_nan_and_infinities(bad):
    c = ctx([[1.0, 2.0], [bad, 0.0], [0.0, bad], [-1e30, 1e30]], labels=[1, 0, 0, 1])
    assert build_oracle("nonfinite").check(c).tolist() == [False, True, True, False]


def test_nonfinite_all_finite_batch():
    c = ctx([[1.0, 2.0], [3.0, -4.0]], labels=[0, 0])
    assert not build_oracle("nonfinite").check(c).any()


def test_disagreement_with_reference_callable():
    seen = []

    def reference(x):
        seen.append(x)
        # predicts class 1 when the input's mean is above 0.5, else class 0
        m = x.flatten(1).mean(1)
        return torch.stack([0.5 - m, m - 0.5], 1)

    x = torch.stack([torch.full((1, 2, 2), v) for v in (0.0, 1.0, 0.9, 0.1)])
    c = ctx([[2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, 2.0]], labels=[0, 0, 1, 1], x=x)
    out = build_oracle("disagreement", reference=reference).check(c)
    assert out.tolist() == [False, True, False, True]
    assert len(seen) == 1 and seen[0] is x  # the reference sees the (raw) inputs


def test_disagreement_runs_without_grad():
    w = torch.ones(4, 2, requires_grad=True)

    def reference(x):
        out = x.flatten(1) @ w
        assert not out.requires_grad
        return out

    c = ctx([[1.0, 0.0]], labels=[0], x=torch.ones(1, 1, 2, 2))
    assert build_oracle("disagreement", reference=reference).check(c).tolist() == [False]


def test_disagreement_with_an_identical_model_never_fires_even_with_nan():
    logits = [[NAN, 1.0, 0.0], [0.0, 3.0, 1.0]]
    c = ctx(logits, labels=[1, 1])
    out = build_oracle("disagreement", reference=lambda x: torch.tensor(logits)).check(c)
    assert out.tolist() == [False, False]


def test_build_oracle_unknown_name():
    with pytest.raises(UserError) as e:
        build_oracle("crash")
    msg = str(e.value)
    assert "crash" in msg and "misclassified" in msg and "nonfinite" in msg


def test_disagreement_without_reference_is_a_user_error():
    with pytest.raises(UserError, match="second model"):
        build_oracle("disagreement")
    with pytest.raises(UserError, match="second model"):
        build_oracle("disagreement", reference=None)


def test_build_oracle_bad_kwargs_is_a_user_error():
    with pytest.raises(UserError):
        build_oracle("misclassified", foo=1)


def test_register_oracle_makes_it_buildable_and_configurable():
    class LowConfidence(Oracle):
        name = "test_low_confidence"

        def __init__(self, threshold: float = 0.6) -> None:
            self.threshold = threshold

        def check(self, c: OracleContext) -> torch.Tensor:
            return c.logits.softmax(1).max(1).values < self.threshold

    assert "test_low_confidence" not in ORACLES
    try:
        assert register_oracle(LowConfidence) is LowConfidence
        o = build_oracle("test_low_confidence", threshold=0.9)
        assert isinstance(o, LowConfidence) and o.threshold == 0.9
        c = ctx([[5.0, 0.0], [0.1, 0.0]], labels=[0, 0])
        assert o.check(c).tolist() == [False, True]
        # a registered oracle is accepted by the config validation too
        FuzzConfig(oracles=["misclassified", "test_low_confidence"]).validate()
    finally:
        ORACLES.pop("test_low_confidence", None)
    with pytest.raises(UserError):
        build_oracle("test_low_confidence")


def test_register_oracle_without_name():
    class Nameless(Oracle):
        pass

    with pytest.raises(TypeError, match="Nameless"):
        register_oracle(Nameless)
    assert "" not in ORACLES
