"""The integrity contract of campaigns with a user's own model: resume restores or refuses, budgets
on resume replace, --force never destroys before the new campaign started, counters never run
backwards, status tells a crash, SIGINT checkpoints and exits 130, stored-failure counts agree."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from neurofuzz.corpus import CampaignStore
from neurofuzz.fuzzer.cli import main

NET = textwrap.dedent('''
    import torch
    from torch import nn
    from neurofuzz.fuzzer.zoo import LeNet5

    class Normalised(nn.Module):
        """The built-in LeNet-5 for inputs normalised with mean 0.5, std 0.5."""
        def __init__(self):
            super().__init__()
            self.net = LeNet5()
        def forward(self, x):
            return self.net(x * 0.5 + 0.5)

    def make_net():
        return Normalised()
''')


@pytest.fixture(scope="module")
def user_model(tmp_path_factory):
    """A user's model file, weights, and seeds: the built-in LeNet-5 behind a normalisation."""
    from neurofuzz.fuzzer.zoo import builtin_target, load_digits32

    d = tmp_path_factory.mktemp("user")
    (d / "mynet.py").write_text(NET)
    sd = {f"net.{k}": v for k, v in builtin_target().module.state_dict().items()}
    torch.save(sd, d / "net.pt")
    x, y = load_digits32("test")
    np.savez(d / "seeds.npz", x=x[:40].numpy(), y=y[:40].numpy())
    return d


def _run(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _model(d: Path, *extra) -> list:
    return ["--model", f"{d / 'mynet.py'}:make_net", "--weights", d / "net.pt", *extra]


def _fuzz(capsys, d: Path, out: Path, *extra):
    return _run(capsys, "fuzz", *_model(d), "--mean", "0.5", "--std", "0.5", "--seeds", d / "seeds.npz",
                "--out", out, "--quiet", "--mutators", "gaussian_noise,contrast", *extra)


def _files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_resume_restores_the_recorded_model_and_normalisation(capsys, tmp_path, user_model):
    camp = tmp_path / "camp"
    rc, _, err = _fuzz(capsys, user_model, camp, "--iterations", "3")
    assert rc == 0, err
    with CampaignStore.open(camp, readonly=True) as s:
        setup = s.setup
        fails_before = s.count("failure")
    assert setup["mean"] == [0.5] and setup["std"] == [0.5] and setup["bounds"] == [0.0, 1.0]
    assert setup["model"].endswith("mynet.py:make_net") and Path(setup["weights"]).is_absolute()
    assert setup["input_shape"] == [1, 32, 32] and setup["n_classes"] == 10
    # no model option at all: everything comes from the record, and the campaign goes on
    rc, out, err = _run(capsys, "fuzz", "--out", camp, "--resume", "--iterations", "3", "--quiet")
    assert rc == 0, err
    with CampaignStore.open(camp, readonly=True) as s:
        stats = s.read_stats()
        assert stats["iterations"] == 6
        # the resumed run judged with the right normalisation: its failures are real failures
        from neurofuzz.fuzzer.zoo import builtin_target

        new = [e for e in s.entries(kind="failure") if e.iteration > 3]
        if new:
            xs = torch.stack([e.load() for e in new])
            assert (builtin_target().predict(xs) != torch.tensor([e.label for e in new])).all()
        assert s.count("failure") >= fails_before


@pytest.mark.parametrize("option, value, recorded", [
    ("--mean", ["0.4"], "[0.5]"), ("--std", ["1.0"], "[0.5]"), ("--bounds", ["0", "255"], "[0.0, 1.0]")])
def test_resume_refuses_a_contradicting_value_naming_the_record(capsys, tmp_path, user_model, option, value, recorded):
    camp = tmp_path / "camp"
    assert _fuzz(capsys, user_model, camp, "--iterations", "2")[0] == 0
    before = _files(camp)
    rc, _, err = _run(capsys, "fuzz", "--out", camp, "--resume", option, *value, "--iterations", "1", "--quiet")
    assert rc == 2
    line = err.strip()
    assert "\n" not in line and line.startswith("neurofuzz: error:") and recorded in line and "mynet.py" in line
    after = _files(camp)
    assert {k: v for k, v in after.items() if not k.startswith("index.sqlite-")} == \
        {k: v for k, v in before.items() if not k.startswith("index.sqlite-")}


def test_resume_refuses_other_weights(capsys, tmp_path, user_model):
    camp = tmp_path / "camp"
    assert _fuzz(capsys, user_model, camp, "--iterations", "2")[0] == 0
    sd = torch.load(user_model / "net.pt", weights_only=True)
    sd["net.fc3.bias"] = sd["net.fc3.bias"] + 1.0
    torch.save(sd, tmp_path / "other.pt")
    rc, _, err = _run(capsys, "fuzz", "--out", camp, "--resume", "--weights", tmp_path / "other.pt", "--iterations", "1")
    assert rc == 2 and "model weights (hash)" in err and err.count("\n") == 1


def test_a_budget_given_on_resume_replaces_the_old_one(capsys, tmp_path, user_model):
    camp = tmp_path / "camp"
    assert _fuzz(capsys, user_model, camp, "--iterations", "3")[0] == 0
    t0 = time.monotonic()
    rc, _, err = _run(capsys, "fuzz", "--out", camp, "--resume", "--time", "1.5", "--quiet")
    took = time.monotonic() - t0
    assert rc == 0, err
    with CampaignStore.open(camp, readonly=True) as s:
        st = s.read_stats()
        assert st["iterations"] > 3  # the old --iterations 3 budget no longer stops it at once
        assert s.setup["config"]["budget"]["iterations"] == 3  # the record keeps the first run's config
    assert took >= 1.5


def test_force_leaves_the_old_campaign_untouched_when_the_new_one_cannot_start(capsys, tmp_path, user_model):
    camp = tmp_path / "camp"
    assert _fuzz(capsys, user_model, camp, "--iterations", "2")[0] == 0
    before = _files(camp)
    x = np.load(user_model / "seeds.npz")["x"]
    np.savez(tmp_path / "wrong.npz", x=x[:5], y=(np.load(user_model / "seeds.npz")["y"][:5] + 1) % 10)
    rc, _, err = _run(capsys, "fuzz", *_model(user_model), "--mean", "0.5", "--std", "0.5", "--seeds",
                      tmp_path / "wrong.npz", "--out", camp, "--force", "--iterations", "1", "--quiet")
    assert rc == 2 and "no usable seed" in err
    assert _files(camp) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["camp", "wrong.npz"]  # nothing left beside it
    # and a --force that can start replaces it
    rc, _, err = _fuzz(capsys, user_model, camp, "--force", "--iterations", "1")
    assert rc == 0, err
    with CampaignStore.open(camp, readonly=True) as s:
        assert s.read_stats()["iterations"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["camp", "wrong.npz"]


def test_labels_outside_the_model_classes_and_nan_logits_are_refused(capsys, tmp_path, user_model):
    x = np.load(user_model / "seeds.npz")["x"][:4]
    for bad in ([0, 1, 2, 10], [0, -1, 2, 3], [0, 1, 2, 10**12]):
        np.savez(tmp_path / "s.npz", x=x, y=np.array(bad, dtype=np.int64))
        rc, _, err = _run(capsys, "fuzz", *_model(user_model), "--seeds", tmp_path / "s.npz", "--out",
                          tmp_path / "c", "--iterations", "1", "--quiet")
        assert rc == 2 and "is not a class of the model, which has 10 classes" in err, err
        assert not (tmp_path / "c").exists()
    (tmp_path / "nannet.py").write_text("import torch\n\ndef make_net():\n    return torch.nn.Sequential("
                                        "torch.nn.Flatten(), torch.nn.Linear(1024, 10), torch.nn.Dropout(p=0.0),"
                                        " torch.nn.Hardtanh(min_val=float('nan')))\n")
    np.savez(tmp_path / "s.npz", x=x, y=np.array([0, 1, 2, 3]))
    rc, _, err = _run(capsys, "fuzz", "--model", f"{tmp_path / 'nannet.py'}:make_net", "--seeds", tmp_path / "s.npz",
                      "--out", tmp_path / "c", "--iterations", "1", "--quiet")
    assert rc == 2 and ("NaN" in err or "nan" in err) and err.count("\n") == 1, err


def test_stats_count_every_stored_failure(capsys, tmp_path):
    camp = tmp_path / "camp"
    rc, _, err = _run(capsys, "fuzz", "--out", camp, "--iterations", "4", "--quiet", "--mutators", "fgsm")
    assert rc == 0, err
    with CampaignStore.open(camp, readonly=True) as s:
        assert s.read_stats()["failures_stored"] == s.count("failure") > 0


def test_missing_profile_on_resume_is_one_line(capsys, tmp_path):
    camp = tmp_path / "camp"
    assert _run(capsys, "fuzz", "--out", camp, "--iterations", "1", "--quiet")[0] == 0
    (camp / "state" / "profile.pt").unlink()
    rc, _, err = _run(capsys, "fuzz", "--out", camp, "--resume", "--iterations", "1")
    assert rc == 2 and "state/profile.pt is missing" in err and err.count("\n") == 1


def _spawn(camp: Path, *extra) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "neurofuzz.fuzzer.cli", "fuzz", "--out", str(camp), "--quiet",
                             "--mutators", "gaussian_noise", *extra], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_stats(camp: Path, key: str, at_least: int, timeout: float = 240.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            text = (camp / "fuzzer_stats").read_text()
            vals = {k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in text.splitlines())}
            if float(vals.get(key, 0)) >= at_least:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"{key} never reached {at_least}")


def test_sigint_checkpoints_and_exits_130(tmp_path):
    camp = tmp_path / "camp"
    p = _spawn(camp, "--time", "120")
    _wait_for_stats(camp, "iterations", 2)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "--resume" in err
    with CampaignStore.open(camp, readonly=True) as s:
        assert s.read_stats()["status"] == "interrupted"
        ck = s.load_state("fuzzer")
        assert ck["counters"]["iterations"] == s.read_stats()["iterations"]


def test_after_kill_status_says_crashed_and_counters_never_run_backwards(capsys, tmp_path):
    camp = tmp_path / "camp"
    # stats every iteration, checkpoint never (after the first): a kill leaves counters ahead of it
    (tmp_path / "c.toml").write_text("stats_interval = 0.0\ncheckpoint_interval = 1000.0\n")
    p = _spawn(camp, "--time", "120", "--config", str(tmp_path / "c.toml"))
    _wait_for_stats(camp, "iterations", 20)
    p.kill()
    p.wait(timeout=30)
    rc, out, _ = _run(capsys, "status", camp, "--json")
    status = json.loads(out)["status"]
    assert rc == 0 and status == f"crashed (pid {p.pid} not running)"
    with CampaignStore.open(camp, readonly=True) as s:
        before_rows = s.read_plot()
        stored_before = s.count()
    killed_at = max(int(r["iterations"]) for r in before_rows)
    rc, _, err = _run(capsys, "fuzz", "--out", camp, "--resume", "--iterations", "2", "--quiet")
    assert rc == 0, err
    with CampaignStore.open(camp, readonly=True) as s:
        rows = s.read_plot()
        assert s.count() >= stored_before
        assert s.read_stats()["iterations"] >= killed_at + 2
    for key in ("run_time", "iterations", "mutants", "failures_total"):
        vals = [float(r[key]) for r in rows]
        assert vals == sorted(vals), f"plot_data {key} runs backwards: {vals}"


def test_a_damaged_queue_file_is_reported_by_id_and_deleting_it_lets_the_campaign_resume(capsys, tmp_path):
    camp = tmp_path / "camp"
    assert _run(capsys, "fuzz", "--out", camp, "--iterations", "3", "--quiet", "--mutators", "gaussian_noise")[0] == 0
    with CampaignStore.open(camp, readonly=True) as s:
        victim = max((e for e in s.entries("queue") if e.parent is not None), key=lambda e: e.id)
    arr = np.load(victim.path)
    arr[0, 0, 0] = np.nan
    np.save(victim.path, arr)
    rc, _, err = _run(capsys, "fuzz", "--out", camp, "--resume", "--iterations", "1", "--quiet")
    assert rc == 2 and f"entry {victim.id}" in err and err.count("\n") == 1, err
    with CampaignStore.open(camp, verify=False) as s:  # what the message says to do
        s.delete([victim.id], descendants=True)
    rc, _, err = _run(capsys, "fuzz", "--out", camp, "--resume", "--iterations", "2", "--quiet")
    assert rc == 0, err
