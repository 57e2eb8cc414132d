"""The command line: every bad input gives one clear line and a non-zero exit, never a
traceback, and never damages an existing campaign; plus the kill -9 / resume test."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from neurofuzz.corpus import CampaignStore
from neurofuzz.fuzzer.cli import main
from neurofuzz.fuzzer.zoo import load_digits32

FAST = ["--iterations", "2", "--quiet"]


def _seeds(tmp_path: Path, n: int = 24, **override) -> Path:
    x, y = load_digits32("test")
    arrays = {"x": x[:n].numpy(), "y": y[:n].numpy()}
    arrays.update(override)
    p = tmp_path / "seeds.npz"
    np.savez(p, **arrays)
    return p


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _one_line_error(rc: int, err: str, *needles: str) -> None:
    assert rc == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("neurofuzz: error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])


def _tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and "neurofuzz" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["fuzz", "--help"])
    assert e.value.code == 0 and "--resume" in capsys.readouterr().out


def test_fuzz_status_export_replay(tmp_path, capsys):
    camp = tmp_path / "camp"
    rc, out, _ = _run(capsys, "fuzz", "--seeds", str(_seeds(tmp_path)), "--out", str(camp), "--seed", "1", *FAST)
    assert rc == 0 and str(camp) in out
    rc, out, _ = _run(capsys, "status", str(camp))
    assert rc == 0 and "iterations" in out and "finished" in out
    rc, out, _ = _run(capsys, "export", str(camp), "--out", str(tmp_path / "c.npz"))
    assert rc == 0
    with np.load(tmp_path / "c.npz") as z:
        assert z["x"].shape[1:] == (1, 32, 32) and len(z["x"]) == len(z["labels"]) > 0
    rc, out, _ = _run(capsys, "export", str(camp), "--out", str(tmp_path / "png"), "--format", "png")
    assert rc == 0 and (tmp_path / "png" / "manifest.jsonl").is_file()
    rc, out, _ = _run(capsys, "replay", str(camp))
    assert rc == 0 and "accuracy" in out


@pytest.mark.parametrize(
    "override, needle",
    [
        ({"x": np.zeros((4, 32, 32, 1, 1), np.float32)}, "[N, C, H, W]"),
        ({"x": np.zeros((24, 1, 32, 32), np.int64)}, "dtype"),
        ({"x": np.full((24, 1, 32, 32), np.nan, np.float32)}, "NaN"),
        ({"x": np.full((24, 1, 32, 32), 2.0, np.float32)}, "outside the bounds"),
        ({"x": np.zeros((0, 1, 32, 32), np.float32), "y": np.zeros(0, np.int64)}, "empty"),
        ({"y": np.zeros(5, np.int64)}, "labels"),
        ({"x": np.zeros((24, 3, 32, 32), np.float32)}, "model raised"),
    ],
    ids=["shape", "dtype", "nan", "bounds", "empty", "label-length", "channels"],
)
def test_bad_seeds(tmp_path, capsys, override, needle):
    rc, _, err = _run(capsys, "fuzz", "--seeds", str(_seeds(tmp_path, **override)), "--out", str(tmp_path / "c"), *FAST)
    _one_line_error(rc, err, needle)
    assert not (tmp_path / "c").exists()  # refused before anything was written


def test_missing_and_unreadable_files(tmp_path, capsys):
    rc, _, err = _run(capsys, "fuzz", "--seeds", str(tmp_path / "nope.npz"), "--out", str(tmp_path / "c"), *FAST)
    _one_line_error(rc, err, "not found")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"this is not a zip file")
    rc, _, err = _run(capsys, "fuzz", "--seeds", str(bad), "--out", str(tmp_path / "c"), *FAST)
    _one_line_error(rc, err, "cannot read seeds")
    rc, _, err = _run(capsys, "fuzz", "--config", str(tmp_path / "none.toml"), "--out", str(tmp_path / "c"), *FAST)
    _one_line_error(rc, err, "not found")
    toml = tmp_path / "c.toml"
    toml.write_text('[[mutators]]\nname = "no_such_mutator"\n')
    rc, _, err = _run(capsys, "fuzz", "--config", str(toml), "--out", str(tmp_path / "c"), *FAST)
    _one_line_error(rc, err, "no_such_mutator")


def test_checkpoint_that_is_not_a_state_dict(tmp_path, capsys):
    ckpt = tmp_path / "w.pt"
    torch.save([1, 2, 3], ckpt)
    rc, _, err = _run(capsys, "fuzz", "--model", "neurofuzz.fuzzer.zoo:LeNet5", "--weights", str(ckpt),
                      "--seeds", str(_seeds(tmp_path)), "--out", str(tmp_path / "c"), *FAST)
    _one_line_error(rc, err, "not a state_dict")
    torch.save({"conv1.weight": torch.zeros(1)}, ckpt)
    rc, _, err = _run(capsys, "fuzz", "--model", "neurofuzz.fuzzer.zoo:LeNet5", "--weights", str(ckpt),
                      "--seeds", str(_seeds(tmp_path)), "--out", str(tmp_path / "c"), *FAST)
    _one_line_error(rc, err, "do not fit")


def test_pickled_checkpoint_refused_without_opt_in(tmp_path, capsys):
    import argparse

    ckpt = tmp_path / "evil.pt"
    torch.save({"w": argparse.Namespace(a=1)}, ckpt)  # needs full unpickling
    args = ["fuzz", "--model", "neurofuzz.fuzzer.zoo:LeNet5", "--weights", str(ckpt),
            "--seeds", str(_seeds(tmp_path)), "--out", str(tmp_path / "c"), *FAST]
    rc, _, err = _run(capsys, *args)
    _one_line_error(rc, err, "cannot load weights", "--allow-pickle")
    rc, _, err = _run(capsys, *args, "--allow-pickle")  # opted in: unpickled, then judged
    _one_line_error(rc, err, "not a state_dict")


def test_model_that_raises(tmp_path, capsys, monkeypatch):
    (tmp_path / "badmodel.py").write_text(
        "import torch\n"
        "class M(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__(); self.fc = torch.nn.Linear(2, 2)\n"
        "    def forward(self, x):\n"
        "        raise RuntimeError('boom')\n"
        "def make():\n"
        "    return M()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    rc, _, err = _run(capsys, "fuzz", "--model", "badmodel:make", "--seeds", str(_seeds(tmp_path)),
                      "--out", str(tmp_path / "c"), *FAST)
    _one_line_error(rc, err, "boom")
    rc, _, err = _run(capsys, "fuzz", "--model", "badmodel:nothing", "--seeds", str(_seeds(tmp_path)),
                      "--out", str(tmp_path / "c"), *FAST)
    _one_line_error(rc, err, "nothing")


def test_existing_campaign_is_protected(tmp_path, capsys):
    camp = tmp_path / "camp"
    seeds = str(_seeds(tmp_path))
    assert _run(capsys, "fuzz", "--seeds", seeds, "--out", str(camp), *FAST)[0] == 0
    before = _tree_hash(camp)
    rc, _, err = _run(capsys, "fuzz", "--seeds", seeds, "--out", str(camp), *FAST)
    _one_line_error(rc, err, "--resume", "--force")
    assert _tree_hash(camp) == before
    # a corrupted index: resume names the file and leaves everything as it was
    (camp / "index.sqlite").write_bytes(b"garbage" * 100)
    for suffix in ("-wal", "-shm"):
        (camp / f"index.sqlite{suffix}").unlink(missing_ok=True)
    before = _tree_hash(camp)
    rc, _, err = _run(capsys, "fuzz", "--out", str(camp), "--resume", *FAST)
    _one_line_error(rc, err, "index.sqlite")
    assert _tree_hash(camp) == before
    rc, _, err = _run(capsys, "status", str(tmp_path / "nowhere"))
    _one_line_error(rc, err)


def _wait_for(pred, timeout: float) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_sigkill_then_resume(tmp_path):
    """Kill a running campaign with SIGKILL; resume; nothing listed before the kill is lost."""
    camp = tmp_path / "camp"
    seeds = _seeds(tmp_path, n=60)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "neurofuzz.fuzzer.cli", "fuzz", "--seeds", str(seeds), "--out", str(camp),
           "--seed", "5", "--time", "120", "--quiet"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def enough() -> bool:
            stats = camp / "fuzzer_stats"
            if not stats.exists():
                return False
            text = stats.read_text()
            return any(line.split(":")[0].strip() == "iterations" and int(line.split(":")[1]) >= 4
                       for line in text.splitlines())

        _wait_for(enough, 90)
        with CampaignStore.open(camp, readonly=True) as s:
            listed = {e.id: e.sha for e in s.entries()}
            iterations_seen = int(s.read_stats()["iterations"])
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    assert len(listed) > 60
    rc = subprocess.run([sys.executable, "-m", "neurofuzz.fuzzer.cli", "fuzz", "--out", str(camp), "--resume",
                         "--iterations", str(iterations_seen + 3), "--quiet"],
                        env=env, capture_output=True, text=True, timeout=300)
    assert rc.returncode == 0, rc.stderr
    assert "Traceback" not in rc.stderr
    with CampaignStore.open(camp, readonly=True) as s:
        now = {e.id: e for e in s.entries()}
        for i, sha in listed.items():
            assert now[i].sha == sha
            assert now[i].load().shape == (1, 32, 32)
        new_ids = sorted(set(now) - set(listed))
        assert new_ids and new_ids[0] > max(listed)
        assert int(s.read_stats()["iterations"]) >= iterations_seen
        assert s.read_stats()["status"] == "finished"


def test_profile_then_fuzz_with_profile_reference_and_config(tmp_path, capsys):
    """The documented workflow for a user's own model: factory + weights, profile, TOML config,
    a second model for differential testing."""
    from neurofuzz.fuzzer.zoo import load_lenet5_digits

    weights = tmp_path / "w.pt"
    torch.save(load_lenet5_digits().state_dict(), weights)
    model = ["--model", "neurofuzz.fuzzer.zoo:LeNet5", "--weights", str(weights)]
    train = tmp_path / "train.npz"
    xt, yt = load_digits32("train")
    np.savez(train, x=xt[:300].numpy(), y=yt[:300].numpy())
    rc, out, _ = _run(capsys, "profile", *model, "--data", str(train), "--out", str(tmp_path / "p.pt"))
    assert rc == 0 and "300 inputs" in out
    ref = tmp_path / "ref.pt"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        from neurofuzz.fuzzer.zoo import LeNet5

        torch.jit.save(torch.jit.script(LeNet5().eval()), ref)  # an untrained model: disagrees a lot
    cfg = tmp_path / "c.toml"
    cfg.write_text('seeds_per_batch = 2\nmutants_per_seed = 8\n[[mutators]]\nname = "contrast"\n'
                   '[scheduler]\nname = "gain"\n')
    camp = tmp_path / "camp"
    rc, out, err = _run(capsys, "fuzz", *model, "--seeds", str(_seeds(tmp_path)), "--profile", str(tmp_path / "p.pt"),
                        "--config", str(cfg), "--reference-model", str(ref), "--out", str(camp), *FAST)
    assert rc == 0, err
    with CampaignStore.open(camp, readonly=True) as s:
        assert s.setup["config"]["scheduler"]["name"] == "gain"
        assert "disagreement" in [o["name"] for o in s.setup["config"]["oracles"]]
        assert int(s.read_stats()["failures_disagreement"]) > 0
        assert s.count("failure", oracle="disagreement") > 0
    # resume may not change the setup
    rc, _, err = _run(capsys, "fuzz", *model, "--out", str(camp), "--resume", "--seed", "3", *FAST)
    _one_line_error(rc, err, "--seed", "cannot change")
    # a profile made for another model is refused with a clear line
    other = tmp_path / "other.pt"
    with torch.random.fork_rng(devices=[]):
        torch.save(LeNet5().state_dict(), other)
    rc, _, err = _run(capsys, "fuzz", "--model", "neurofuzz.fuzzer.zoo:LeNet5", "--weights", str(other),
                      "--seeds", str(_seeds(tmp_path)), "--profile", str(tmp_path / "p.pt"),
                      "--out", str(tmp_path / "c2"), *FAST)
    _one_line_error(rc, err, "different model")
    assert not (tmp_path / "c2").exists()
    # a TorchScript model can be replayed against, but not observed by hooks
    rc, _, err = _run(capsys, "fuzz", "--model", str(ref), "--seeds", str(_seeds(tmp_path)),
                      "--out", str(tmp_path / "c3"), *FAST)
    _one_line_error(rc, err, "TorchScript", "module.path:factory")
    rc, out, _ = _run(capsys, "replay", str(camp), "--model", str(ref))
    assert rc == 0 and "accuracy" in out


def test_mutators_command(capsys):
    rc, out, _ = _run(capsys, "mutators")
    assert rc == 0 and "gaussian_blur" in out and "pgd" in out
    rc, _, err = _run(capsys, "mutators", "nope")
    _one_line_error(rc, err, "unknown mutator")


def test_failed_start_leaves_no_half_made_campaign(tmp_path, capsys):
    """Every seed misclassified (labels shifted): the start fails and leaves nothing behind, so the
    same command with the right labels then works without --force."""
    x, y = load_digits32("test")
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=x[:24].numpy(), y=((y[:24] + 1) % 10).numpy())
    camp = tmp_path / "camp"
    rc, _, err = _run(capsys, "fuzz", "--seeds", str(bad), "--out", str(camp), *FAST)
    _one_line_error(rc, err, "no usable seed")
    assert not camp.exists()
    rc, _, _ = _run(capsys, "fuzz", "--seeds", str(_seeds(tmp_path)), "--out", str(camp), *FAST)
    assert rc == 0
