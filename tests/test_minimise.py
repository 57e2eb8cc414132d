"""The minimiser (issue 12, item 2): its result still fails, is no larger than the original in
every recorded parameter, drops useless steps, and is stored beside the campaign with its lineage
without breaking the store's invariants; the report shows it."""

from __future__ import annotations

import json

import pytest
import torch

from neurofuzz.corpus import CampaignStore, MemoryStore
from neurofuzz.fuzzer.campaign import Campaign
from neurofuzz.fuzzer.cli import main
from neurofuzz.fuzzer.config import Budget, FuzzConfig
from neurofuzz.ground.errors import UserError
from neurofuzz.mutators import create
from neurofuzz.reports.minimise import NEUTRAL, load_minimised, minimise, save_minimised

IDENTITY = {"mutator": "contrast", "params": {"alpha": 1.0, "beta": 0.0}, "config": {}}  # changes nothing


def replay(x0: torch.Tensor, chain: list[dict]) -> torch.Tensor:
    x = x0[None]
    for step in chain:
        x = create(step["mutator"], **step["config"]).replay(x, step["params"])
    return x[0]


def assert_no_larger(orig: list[dict], new: list[dict], kept: list[int]) -> None:
    assert len(new) == len(kept) <= len(orig) and kept == sorted(kept)
    for step, k in zip(new, kept):
        old = orig[k]
        assert step["mutator"] == old["mutator"] and step["config"] == old["config"]
        assert set(step["params"]) == set(old["params"])
        neutral = NEUTRAL.get(step["mutator"], {})
        for p, v in step["params"].items():
            if p in neutral:
                assert abs(v - neutral[p]) <= abs(old["params"][p] - neutral[p]) + 1e-12, (step, old)
            else:
                assert v == old["params"][p], (p, step, old)


@pytest.fixture(scope="module")
def campaign(tmp_path_factory, digits_target, digits_test):
    x, y = digits_test
    cfg = FuzzConfig(seed=11, mutators=[{"name": "translate"}, {"name": "rotate"}, {"name": "contrast"}],
                     budget=Budget(iterations=4), seeds_per_batch=8, mutants_per_seed=16, fsync_every_write=False)
    path = tmp_path_factory.mktemp("mini") / "camp"
    fz = Campaign.create(path, digits_target, x[:40], y[:40], cfg, profile_data=x[:64])
    fz.run()
    fz.close()
    return path


@pytest.fixture(scope="module")
def minimised(campaign):
    with CampaignStore.open(campaign, readonly=True) as s:
        before = {"count": s.count(), "ids": [e.id for e in s.entries()]}
    assert main(["triage", str(campaign), "--minimise", "3", "--top", "2"]) == 0
    return before


def test_minimised_failures_still_fail_and_are_no_larger(campaign, minimised, digits_target):
    recs = load_minimised(campaign, images=True)
    assert len(recs) == 3
    with CampaignStore.open(campaign, readonly=True) as s:
        for r in recs:
            orig = s.get(r["id"])
            assert orig.kind == "failure" and r["root"] == orig.root and r["parent"] == orig.parent
            assert r["original_chain"] == orig.chain and r["oracle"] == orig.oracle
            assert r["status"] in ("minimised", "unchanged")
            x = replay(s.get(orig.root).load(), r["chain"])  # replays from the seed through the registry
            assert torch.equal(x, r["x"])
            pred = int(digits_target.predict(x[None])[0])
            assert pred == orig.pred == r["pred"] and pred != orig.label  # the same fault
            assert_no_larger(orig.chain, r["chain"], r["kept"])
            assert r["ssim"] >= r["original_ssim"] - 1e-9 or r["linf"] <= r["original_linf"] + 1e-9
    assert any(r["status"] == "minimised" for r in recs)


def test_the_store_is_left_as_it_was(campaign, minimised):
    files = sorted(p.name for p in (campaign / "minimised").iterdir())
    assert "manifest.json" in files and len(files) == 4
    with CampaignStore.open(campaign) as w:  # a writer's open: crash clean-up and image checks
        assert w.recovered == {"temp_files": 0, "orphans": 0, "plot_bytes_truncated": 0}
        assert w.verify(sha=True) == []
        assert [e.id for e in w.entries()] == minimised["ids"]
    assert sorted(p.name for p in (campaign / "minimised").iterdir()) == files


def test_report_shows_the_minimised_examples(campaign, minimised):
    from neurofuzz.reports.data import collect
    from neurofuzz.reports.html import render

    with CampaignStore.open(campaign, readonly=True) as s:
        text = render(collect(s, max_failures=0), {})  # the figures are tested in test_report_html.py
    sec = text[text.index('<section id="minimised">'):]
    assert sec.count('<div class="tile"') == 3 and sec.count("<img") == 9  # seed, found, minimised
    assert "was: " in sec and "now: " in sec


def test_a_useless_step_is_dropped_and_parameters_shrink(campaign, digits_target):
    with CampaignStore.open(campaign, readonly=True) as s:
        f = next(e for e in s.entries(kind="failure") if len(e.chain) == 1 and e.chain[0]["mutator"] == "translate")
        seed_x = s.get(f.root).load()
    m = MemoryStore()
    seed = m.add(seed_x, kind="queue", label=f.label, pred=f.label)
    chain = [IDENTITY, f.chain[0]]
    x = replay(seed_x, chain)
    bad = m.add(x, kind="failure", oracle="misclassified", label=f.label, pred=f.pred, parent=seed.id, chain=chain)
    r = minimise(m, bad, digits_target)
    assert r.status == "minimised" and r.steps_removed == 1 and r.kept == [1]
    assert_no_larger(chain, r.chain, r.kept)
    assert int(digits_target.predict(r.x[None])[0]) == f.pred
    before = abs(chain[1]["params"]["dx"]) + abs(chain[1]["params"]["dy"])
    after = abs(r.chain[0]["params"]["dx"]) + abs(r.chain[0]["params"]["dy"])
    assert after <= before and r.evaluations > 0


def test_unsupported_and_unreproducible_failures_are_left_alone(digits_target, tmp_path):
    s = MemoryStore()
    seed = s.add(torch.zeros(1, 32, 32), kind="queue", label=0, pred=0)
    step = [{"mutator": "gaussian_noise", "params": {"std": 0.001, "seed": 3}, "config": {}}]
    other = s.add(torch.ones(1, 32, 32), kind="failure", oracle="disagreement", label=0, pred=1, parent=seed.id,
                  chain=step)
    r = minimise(s, other, digits_target)
    assert r.status == "unsupported oracle" and r.x is None and r.chain == step
    fake = s.add(torch.ones(1, 32, 32), kind="failure", oracle="misclassified", label=0, pred=9, parent=seed.id,
                 chain=step)  # its chain does not give this image, nor a failure predicted 9
    r2 = minimise(s, fake, digits_target)
    assert r2.status == "not reproducible" and r2.x is None
    save_minimised(tmp_path, [r, r2])  # nothing to store: an empty manifest
    assert load_minimised(tmp_path) == []
    with pytest.raises(UserError, match="not a found failure"):
        minimise(s, seed, digits_target)


def test_triage_minimise_refuses_another_model_and_a_damaged_manifest(campaign, minimised, capsys, tmp_path):
    assert main(["triage", str(campaign), "--minimise", "1", "--mean", "0.5", "--std", "0.5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("neurofuzz: error: ") and "--mean" in err and err.count("\n") == 1
    manifest = campaign / "minimised" / "manifest.json"
    good = manifest.read_text()
    try:
        manifest.write_text("{not json")
        assert main(["report", str(campaign), "--out", str(tmp_path / "r.html")]) == 2
        err = capsys.readouterr().err
        assert "manifest.json is damaged" in err and err.count("\n") == 1
    finally:
        manifest.write_text(good)
    assert json.loads(manifest.read_text())["format"] == "neurofuzz-minimised"
