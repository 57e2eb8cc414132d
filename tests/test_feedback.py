"""Feedback that widens when it saturates (``feedback_patience``, fuzzer/feedback.py)."""

from __future__ import annotations

import pytest
import torch

from neurofuzz.fuzzer.campaign import Campaign
from neurofuzz.fuzzer.config import Budget, FuzzConfig
from neurofuzz.fuzzer.feedback import AdaptiveFeedback
from neurofuzz.ground.errors import UserError

OK = torch.tensor([True, True, True, False])


def _g(**kw):
    return {k: torch.tensor(v) for k, v in kw.items()}


def test_the_metric_with_most_counterfactual_finds_joins_after_patience():
    fb = AdaptiveFeedback(["nbc"], ["nc", "kmnc", "snac", "nbc"], patience=3)
    for it in (1, 2):
        fb.observe(_g(nc=[1, 0, 0, 9], kmnc=[1, 1, 0, 0], snac=[0, 0, 0, 0], nbc=[0, 0, 0, 0]), eligible=OK,
                   retained=0, iteration=it)
    assert fb.active == ["nbc"] and fb.finds == {"nc": 2, "kmnc": 4, "snac": 0}  # the failing row 4 never counts
    fb.observe(_g(nc=[1, 1, 1, 0], kmnc=[0, 0, 0, 0], snac=[0, 0, 0, 0], nbc=[0, 0, 0, 0]), eligible=OK,
               retained=0, iteration=3)
    assert fb.active == ["nbc", "nc"] and fb.events == [[3, "nc"]]  # nc 5 > kmnc 4
    assert fb.candidates == ["kmnc", "snac"] and fb.idle == 0 and fb.finds == {"kmnc": 0, "snac": 0}


def test_a_retained_input_restarts_the_count_and_nothing_joins_without_finds():
    fb = AdaptiveFeedback(["nbc"], ["nc", "nbc"], patience=2)
    fb.observe(_g(nc=[1, 1, 1, 1], nbc=[0, 0, 0, 0]), eligible=OK, retained=0, iteration=1)
    fb.observe(_g(nc=[1, 0, 0, 0], nbc=[1, 0, 0, 0]), eligible=OK, retained=1, iteration=2)
    assert fb.idle == 0 and fb.finds == {"nc": 0} and fb.active == ["nbc"]
    for it in (3, 4):
        fb.observe(_g(nc=[0, 0, 0, 0], nbc=[0, 0, 0, 0]), eligible=OK, retained=0, iteration=it)
    assert fb.active == ["nbc"] and fb.events == [] and fb.idle == 0  # saturated, but no metric would have helped
    twin = AdaptiveFeedback(["x"], ["y"], patience=9)
    twin.load_state_dict(fb.state_dict())
    assert twin.state_dict() == fb.state_dict()


def test_patience_is_checked_in_the_config():
    with pytest.raises(UserError, match=r"feedback_patience must lie in \[0, 1000000\]"):
        FuzzConfig(feedback_patience=-1)
    with pytest.raises(UserError, match="feedback_patience must be a whole number"):
        FuzzConfig(feedback_patience=2.5)


def _campaign(path, target, x, y, train):
    cfg = FuzzConfig(seed=5, feedback_patience=2, budget=Budget(iterations=30),
                     mutators=[{"name": "gaussian_noise"}, {"name": "contrast"}])
    return Campaign.create(path, target, x[:24], y[:24], cfg, profile_data=train[:256])


def test_a_campaign_widens_its_feedback_reproducibly_and_resumes_with_it(tmp_path, digits_target, digits_test):
    from neurofuzz.fuzzer.zoo import load_digits32

    (x, y), train = digits_test, load_digits32("train")[0]
    runs = []
    for name in ("a", "b"):
        fz = _campaign(tmp_path / name, digits_target, x, y, train)
        fz.run()
        runs.append(fz.loop.adaptive.state_dict())
        fz.close()
    assert runs[0] == runs[1]  # same seed, same widening
    assert runs[0]["events"] and len(runs[0]["active"]) > 2  # it did saturate and widen here
    fz = Campaign.resume(tmp_path / "a", digits_target, budget=Budget(iterations=1))
    try:
        assert fz.loop.adaptive.active == runs[0]["active"] and fz.loop.feedback == runs[0]["active"]
    finally:
        fz.close()


def test_a_finer_instance_waits_for_its_coarser_one():
    fb = AdaptiveFeedback(["nbc"], ["kmnc", "kmnc_fine", "nbc"], patience=1, requires={"kmnc_fine": "kmnc"})
    fb.observe(_g(kmnc=[1, 0, 0, 0], kmnc_fine=[3, 3, 0, 0], nbc=[0, 0, 0, 0]), eligible=OK, retained=0, iteration=1)
    assert fb.active == ["nbc", "kmnc"]  # kmnc_fine found more, but kmnc is not in the feedback yet
    fb.observe(_g(kmnc=[0, 0, 0, 0], kmnc_fine=[1, 0, 0, 0], nbc=[0, 0, 0, 0]), eligible=OK, retained=0, iteration=2)
    assert fb.active == ["nbc", "kmnc", "kmnc_fine"] and fb.events == [[1, "kmnc"], [2, "kmnc_fine"]]


def test_refinement_order_and_named_instances_in_the_config():
    from neurofuzz.coverage import NeuronProfile
    from neurofuzz.coverage.suite import build_spec
    from neurofuzz.fuzzer.feedback import refinement_order

    p = NeuronProfile(layers={"a": 3}, low=torch.zeros(3), high=torch.ones(3), mean=torch.zeros(3), std=torch.ones(3))
    spec = {"kmnc_fine": {"metric": "kmnc", "k": 1000}, "kmnc": {"k": 100}, "kmnc_mid": {"metric": "kmnc", "k": 300},
            "nbc": {}}
    metrics = build_spec(spec, profile=p)
    assert metrics["kmnc_fine"].k == 1000 and metrics["kmnc_fine"].n_cells == 3000
    assert refinement_order(metrics) == {"kmnc_mid": "kmnc", "kmnc_fine": "kmnc_mid"}
    two_nc = build_spec({"nc": {}, "nc_high": {"metric": "nc", "threshold": 0.9}}, profile=p)
    assert refinement_order(two_nc) == {}  # same cells per neuron: no order between them
    cfg = FuzzConfig(metrics=spec, feedback=["nbc", "kmnc_fine"])
    assert cfg.metrics["kmnc_fine"] == {"metric": "kmnc", "k": 1000}
    with pytest.raises(UserError, match=r"unknown coverage metric 'kmnc_x' \(metrics.kmnc_x\).*name an instance"):
        FuzzConfig(metrics={"kmnc_x": {"k": 5}})
    with pytest.raises(UserError, match=r"unknown coverage metric 'foo' \(metrics.bar\); choose from"):
        FuzzConfig(metrics={"bar": {"metric": "foo"}})
    with pytest.raises(UserError, match=r"kmnc: bad parameter value|kmnc: k must be >= 1"):
        FuzzConfig(metrics={"kf": {"metric": "kmnc", "k": 0}})
    with pytest.raises(UserError, match=r"feedback metric\(s\) \['kmnc_fine'\] are not configured under \[metrics\]"):
        FuzzConfig(metrics={"nbc": {}}, feedback=["kmnc_fine"])
