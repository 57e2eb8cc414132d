"""The CLI error contract, walked over every subcommand.

Every error a user can cause ends as ONE line on stderr, ``neurofuzz: error: ...``, saying what was
wrong and how to fix it; exit status 2; no traceback; and a campaign passed in is left exactly as
it was (its index rows and the names, sizes and SHA-256 of all its files).

One campaign is made per module (``neurofuzz fuzz --out DIR --iterations 2 --quiet`` on the
builtin model); each case runs ``main(argv)`` in-process, a few run the real entry point in a
subprocess (to see what C libraries print on file descriptor 2).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from neurofuzz.fuzzer.cli import COMMANDS, build_parser, main
from neurofuzz.fuzzer.zoo import load_digits32

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

FAST = ["--iterations", "2", "--quiet"]
SUBCOMMANDS = ["demo", "coverage", "profile", "fuzz", "status", "export", "replay", "mutators", "evaluate",
               "report", "triage", "faults", "encrypt", "decrypt", "obfuscate", "privacy"]


# ---------------------------------------------------------------------------- helpers
def snapshot(camp: Path) -> tuple:
    """The index rows plus (name, size, sha256) of every file under ``camp``."""
    files = []
    for p in sorted(camp.rglob("*")):
        if p.is_file():
            files.append((str(p.relative_to(camp)), p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest()))
    rows: list = []
    index = camp / "index.sqlite"
    if index.is_file():
        try:  # immutable: reading must not create -wal / -shm files
            con = sqlite3.connect(f"file:{index}?mode=ro&immutable=1", uri=True)
            try:
                rows = con.execute("SELECT * FROM entries ORDER BY id").fetchall()
            finally:
                con.close()
        except sqlite3.DatabaseError:
            rows = ["unreadable"]
    return rows, files


def changes(before: tuple, after: tuple) -> str:
    """What differs between two snapshots, for the assertion message."""
    out = ["index rows differ"] if before[0] != after[0] else []
    a, b = {f[0]: f[1:] for f in before[1]}, {f[0]: f[1:] for f in after[1]}
    out += [f"{name}: {a.get(name)} -> {b.get(name)}" for name in sorted(set(a) | set(b)) if a.get(name) != b.get(name)]
    return "; ".join(out)


def one_error_line(rc: int, err: str, needles: tuple[str, ...] = ()) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, f"exit {rc}: {err}"
    assert len(lines) == 1, err
    assert lines[0].startswith("neurofuzz: error: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def png_bytes(width: int, height: int, *, extra_chunks: bytes = b"", rows: bytes | None = None) -> bytes:
    """A grayscale 8-bit PNG written by hand (a huge one costs little memory: rows are streamed)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    comp = zlib.compressobj(6)
    if rows is None:
        row = b"\x00" * (width + 1)
        idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    else:
        idat = comp.compress(rows) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra_chunks + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


class Ctx:
    """Files a case needs, made on demand in the test's tmp directory."""

    def __init__(self, tmp: Path, request) -> None:
        self.tmp, self._request = tmp, request
        self.new = tmp / "new"  # a campaign / output that must not come into being
        self.baseline = None  # the campaign's snapshot, once a case asked for the campaign

    @property
    def camp(self) -> Path:
        """The module's campaign (made on first use, so cases without one do not wait for it);
        its state is recorded before the case runs (so one bad case does not fail the next ones)."""
        camp = self._request.getfixturevalue("campaign")[0]
        if self.baseline is None:
            self.baseline = snapshot(camp)
        return camp

    def file(self, name: str, text: str) -> str:
        p = self.tmp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
        return str(p)

    def toml(self, text: str) -> str:
        return self.file("c.toml", text)

    def npz(self, n: int = 12, **override) -> str:
        x, y = load_digits32("test")
        arrays = {"x": x[:n].numpy(), "y": y[:n].numpy()}
        arrays.update(override)
        p = self.tmp / "seeds.npz"
        np.savez(p, **arrays)
        return str(p)

    def folder(self, *classes: str, size: int = 32) -> str:
        root = self.tmp / "imgs"
        img = (load_digits32("test")[0][0, 0].numpy() * 255).astype(np.uint8)
        for c in classes:
            (root / c).mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(root / c / "a.png"), cv2.resize(img, (size, size)))
        return str(root)

    def symlinked_folder(self, *, link_dir: bool = False) -> str:
        root = Path(self.folder("0"))
        outside = self.tmp / "outside"
        outside.mkdir()
        shutil.copy(root / "0" / "a.png", outside / "b.png")
        if link_dir:
            (root / "1").symlink_to(outside, target_is_directory=True)
        else:
            (root / "0" / "b.png").symlink_to(outside / "b.png")
        return str(root)

    def huge_png_folder(self) -> str:
        (self.tmp / "huge" / "0").mkdir(parents=True)
        (self.tmp / "huge" / "0" / "big.png").write_bytes(png_bytes(10000, 10000))
        return str(self.tmp / "huge")

    def model(self, body: str, name: str = "mynet.py") -> str:
        self.file(name, "import torch\nfrom torch import nn\n" + textwrap.dedent(body))
        return f"./{name}:make"

    def garbled(self, how: str = "bytes") -> str:
        copy = self.tmp / "garbled"
        shutil.copytree(self.camp, copy)
        index = copy / "index.sqlite"
        if how == "bytes":
            index.write_bytes(b"garbage" * 100)
        elif how == "schema":
            con = sqlite3.connect(index)
            con.execute("DROP TABLE entries")
            con.execute("CREATE TABLE entries (a)")
            con.commit()
            con.close()
        for suffix in ("-wal", "-shm"):
            Path(f"{index}{suffix}").unlink(missing_ok=True)
        return str(copy)


NAN_MODEL = """
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(32 * 32, 10)
        def forward(self, x):
            return self.fc(x.flatten(1)) * float("nan")
    def make():
        return M()
"""
THREE_CLASSES = """
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.fc = nn.Linear(2 * 30 * 30, 3)
        def forward(self, x):
            return self.fc(self.conv(x).flatten(1))
    def make():
        import warnings
        warnings.warn("a third-party library is deprecated", UserWarning)
        return M()
"""
RGB_MODEL = """
    def make():
        return nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(2 * 30 * 30, 10))
"""

BIG = str(2**80)

# (id, argv builder, needles in the error line). "{camp}" marks a case that passes the campaign in.
CASES: list = [
    # -------------------------------------------------------------- no command / top level
    ("no-command", lambda c: [], ("command",)),
    ("unknown-command", lambda c: ["fuzzz"], ("fuzzz",)),
    # -------------------------------------------------------------- demo
    ("demo-time-nan", lambda c: ["demo", "--out", str(c.new), "--time", "nan", "--quiet"], ("--time",)),
    ("demo-time-inf", lambda c: ["demo", "--out", str(c.new), "--time", "inf", "--quiet"], ("--time",)),
    ("demo-time-negative", lambda c: ["demo", "--out", str(c.new), "--time", "-1", "--quiet"], ("--time",)),
    ("demo-time-word", lambda c: ["demo", "--out", str(c.new), "--time", "soon"], ("--time", "soon")),
    ("demo-seed-huge", lambda c: ["demo", "--out", str(c.new), "--time", "1", "--seed", BIG, "--quiet"], ("seed",)),
    ("demo-unknown-flag", lambda c: ["demo", "--bogus"], ("--bogus",)),
    # -------------------------------------------------------------- coverage
    ("coverage-unknown-flag", lambda c: ["coverage", "--bogus"], ("--bogus",)),
    ("coverage-extra-argument", lambda c: ["coverage", "extra"], ("extra",)),
    # -------------------------------------------------------------- profile
    ("profile-no-out", lambda c: ["profile"], ("--out",)),
    ("profile-batch-size-zero", lambda c: ["profile", "--out", str(c.new), "--batch-size", "0"], ("--batch-size",)),
    ("profile-device-nonsense", lambda c: ["profile", "--out", str(c.new), "--device", "nonsense"],
     ("nonsense", "available: cpu")),
    ("profile-missing-data", lambda c: ["profile", "--out", str(c.new), "--data", str(c.tmp / "none.npz")],
     ("not found",)),
    ("profile-bad-class-folder", lambda c: ["profile", "--out", str(c.new), "--data", c.folder("0", "-1")], ("-1",)),
    ("profile-out-is-a-directory", lambda c: ["profile", "--out", str(c.tmp), "--data", c.npz()],
     ("directory",)),
    ("profile-nan-logits", lambda c: ["profile", "--model", c.model(NAN_MODEL), "--data", c.npz(),
                                      "--out", str(c.new)], ("NaN",)),
    # -------------------------------------------------------------- fuzz: options
    ("fuzz-no-out", lambda c: ["fuzz"], ("--out",)),
    ("fuzz-time-nan", lambda c: ["fuzz", "--out", str(c.new), "--time", "nan", "--quiet"], ("--time",)),
    ("fuzz-time-inf", lambda c: ["fuzz", "--out", str(c.new), "--time", "inf", "--quiet"], ("--time",)),
    ("fuzz-plateau-nan", lambda c: ["fuzz", "--out", str(c.new), "--plateau", "nan", *FAST], ("--plateau",)),
    ("fuzz-iterations-negative", lambda c: ["fuzz", "--out", str(c.new), "--iterations", "-1", "--quiet"],
     ("iterations",)),
    ("fuzz-iterations-word", lambda c: ["fuzz", "--out", str(c.new), "--iterations", "many"], ("many",)),
    ("fuzz-seed-huge", lambda c: ["fuzz", "--out", str(c.new), "--seed", BIG, *FAST], ("seed", "2**63")),
    ("fuzz-seed-negative", lambda c: ["fuzz", "--out", str(c.new), "--seed", "-1", *FAST], ("seed",)),
    ("fuzz-unknown-mutator", lambda c: ["fuzz", "--out", str(c.new), "--mutators", "blurr", *FAST], ("blurr",)),
    ("fuzz-resume-and-force", lambda c: ["fuzz", "--out", str(c.new), "--resume", "--force"], ("--force",)),
    # -------------------------------------------------------------- fuzz: devices
    ("fuzz-device-cuda", lambda c: ["fuzz", "--out", str(c.new), "--device", "cuda", *FAST],
     ("'cuda'", "available: cpu")),
    ("fuzz-device-cuda-7", lambda c: ["fuzz", "--out", str(c.new), "--device", "cuda:7", *FAST],
     ("'cuda:7'", "available: cpu")),
    ("fuzz-device-nonsense", lambda c: ["fuzz", "--out", str(c.new), "--device", "nonsense", *FAST],
     ("'nonsense'", "available: cpu")),
    ("fuzz-device-meta", lambda c: ["fuzz", "--out", str(c.new), "--device", "meta", *FAST], ("'meta'",)),
    # -------------------------------------------------------------- fuzz: model
    ("fuzz-model-missing-file", lambda c: ["fuzz", "--out", str(c.new), "--model", "./nothere.py:make", *FAST],
     ("nothere.py", "not found")),
    ("fuzz-model-missing-module", lambda c: ["fuzz", "--out", str(c.new), "--model", "nf_nothere_xyz:make", *FAST],
     ("nf_nothere_xyz",)),
    ("fuzz-model-nan-logits", lambda c: ["fuzz", "--out", str(c.new), "--model", c.model(NAN_MODEL),
                                         "--seeds", c.npz(), *FAST], ("NaN",)),
    ("fuzz-bounds-nan", lambda c: ["fuzz", "--out", str(c.new), "--bounds", "0", "nan", *FAST], ("bounds",)),
    ("fuzz-bounds-inf", lambda c: ["fuzz", "--out", str(c.new), "--bounds", "0", "inf", *FAST], ("bounds",)),
    ("fuzz-std-zero", lambda c: ["fuzz", "--out", str(c.new), "--std", "0", *FAST], ("std",)),
    ("fuzz-mean-nan", lambda c: ["fuzz", "--out", str(c.new), "--mean", "nan", *FAST], ("mean",)),
    # -------------------------------------------------------------- fuzz: config values
    ("config-stats-interval-word", lambda c: ["fuzz", "--out", str(c.new), "--config", c.toml('stats_interval = "fast"'),
                                              *FAST], ("stats_interval", "fast")),
    ("config-guided-word", lambda c: ["fuzz", "--out", str(c.new), "--config", c.toml('guided = "no"'), *FAST],
     ("guided", "true or false")),
    ("config-stats-interval-negative", lambda c: ["fuzz", "--out", str(c.new), "--config",
                                                  c.toml("stats_interval = -1"), *FAST], ("stats_interval",)),
    ("config-checkpoint-nan", lambda c: ["fuzz", "--out", str(c.new), "--config", c.toml("checkpoint_interval = nan"),
                                         *FAST], ("checkpoint_interval",)),
    ("config-mutants-per-seed-huge", lambda c: ["fuzz", "--out", str(c.new), "--config",
                                                c.toml("mutants_per_seed = 2000000000"), *FAST],
     ("mutants_per_seed", "65536")),
    ("config-batch-too-big", lambda c: ["fuzz", "--out", str(c.new), "--config",
                                        c.toml("seeds_per_batch = 512\nmutants_per_seed = 512"), *FAST],
     ("65536",)),
    ("config-budget-inf", lambda c: ["fuzz", "--out", str(c.new), "--config", c.toml("[budget]\nseconds = inf"),
                                     "--quiet"], ("budget.seconds",)),
    ("config-alpha-nan", lambda c: ["fuzz", "--out", str(c.new), "--config", c.toml("[constraint]\nalpha = nan"),
                                    *FAST], ("constraint.alpha",)),
    ("config-oracles-string", lambda c: ["fuzz", "--out", str(c.new), "--config", c.toml('oracles = "misclassified"'),
                                         *FAST], ("oracles",)),
    ("config-oracle-bad-param", lambda c: ["fuzz", "--out", str(c.new), "--config",
                                           c.toml('oracles = [{name = "misclassified", level = 3}]'), *FAST],
     ("misclassified", "level")),
    ("config-seed-negative", lambda c: ["fuzz", "--out", str(c.new), "--config", c.toml("seed = -3"), *FAST],
     ("seed",)),
    ("config-fsync-number", lambda c: ["fuzz", "--out", str(c.new), "--config", c.toml("fsync_every_write = 1"),
                                       *FAST], ("fsync_every_write",)),
    # -------------------------------------------------------------- fuzz: labels and seed folders
    ("labels-ten", lambda c: ["fuzz", "--out", str(c.new), "--seeds", c.npz(y=np.full(12, 10)), *FAST], ("10",)),
    ("labels-negative", lambda c: ["fuzz", "--out", str(c.new), "--seeds", c.npz(y=np.full(12, -1)), *FAST],
     ("-1",)),
    ("labels-huge", lambda c: ["fuzz", "--out", str(c.new), "--seeds", c.npz(y=np.full(12, 10**12)), *FAST],
     (str(10**12),)),
    ("folder-class-minus-one", lambda c: ["fuzz", "--out", str(c.new), "--seeds", c.folder("0", "-1"), *FAST],
     ("'-1'",)),
    ("folder-class-ten", lambda c: ["fuzz", "--out", str(c.new), "--seeds", c.folder("0", "10"), *FAST], ("10",)),
    ("folder-class-space", lambda c: ["fuzz", "--out", str(c.new), "--seeds", c.folder("0", " 3"), *FAST],
     ("' 3'",)),
    ("folder-class-plus", lambda c: ["fuzz", "--out", str(c.new), "--seeds", c.folder("0", "+3"), *FAST],
     ("'+3'",)),
    ("folder-symlink-file", lambda c: ["fuzz", "--out", str(c.new), "--seeds", c.symlinked_folder(), *FAST],
     ("symlink", "outside")),
    ("folder-symlink-dir", lambda c: ["fuzz", "--out", str(c.new), "--seeds", c.symlinked_folder(link_dir=True),
                                      *FAST], ("symlink", "outside")),
    ("folder-huge-png", lambda c: ["fuzz", "--out", str(c.new), "--seeds", c.huge_png_folder(), *FAST],
     ("10000x10000", "pixels")),
    # -------------------------------------------------------------- fuzz: the campaign passed in
    ("fuzz-existing-campaign", lambda c: ["fuzz", "--out", str(c.camp), *FAST], ("--resume", "--force")),
    ("fuzz-resume-with-seed", lambda c: ["fuzz", "--out", str(c.camp), "--resume", "--seed", "3", *FAST], ("--seed",)),
    ("fuzz-resume-time-nan", lambda c: ["fuzz", "--out", str(c.camp), "--resume", "--time", "nan", "--quiet"],
     ("--time",)),
    ("fuzz-resume-device-cuda", lambda c: ["fuzz", "--out", str(c.camp), "--resume", "--device", "cuda", *FAST],
     ("'cuda'",)),
    ("fuzz-force-time-nan", lambda c: ["fuzz", "--out", str(c.camp), "--force", "--time", "nan", "--quiet"],
     ("--time",)),
    ("fuzz-force-bad-labels", lambda c: ["fuzz", "--out", str(c.camp), "--force", "--seeds",
                                         c.npz(y=np.full(12, 10)), *FAST], ("10",)),
    # -------------------------------------------------------------- status
    ("status-nowhere", lambda c: ["status", str(c.tmp / "nowhere")], ("nowhere",)),
    ("status-a-file", lambda c: ["status", c.file("plain.txt", "hello")], ("plain.txt",)),
    ("status-empty-dir", lambda c: ["status", str(c.tmp)], ()),
    ("status-garbled-index", lambda c: ["status", c.garbled()], ("index.sqlite",)),
    ("status-garbled-schema", lambda c: ["status", c.garbled("schema")], ("index.sqlite",)),
    ("status-no-dir", lambda c: ["status"], ("dir",)),
    # -------------------------------------------------------------- export
    ("export-no-out", lambda c: ["export", str(c.camp)], ("--out",)),
    ("export-bad-which", lambda c: ["export", str(c.camp), "--out", str(c.new), "--which", "some"], ("some",)),
    ("export-exists", lambda c: ["export", str(c.camp), "--out", c.file("taken.npz", "x")], ("--overwrite",)),
    ("export-into-campaign", lambda c: ["export", str(c.camp), "--out", str(c.camp / "corpus.npz")],
     ("inside the campaign",)),
    ("export-png-into-campaign", lambda c: ["export", str(c.camp), "--out", str(c.camp / "png"), "--format", "png"],
     ("inside the campaign",)),
    ("export-nowhere", lambda c: ["export", str(c.tmp / "nowhere"), "--out", str(c.new)], ("nowhere",)),
    ("export-garbled-index", lambda c: ["export", c.garbled(), "--out", str(c.new)], ("index.sqlite",)),
    ("export-garbled-schema", lambda c: ["export", c.garbled("schema"), "--out", str(c.new)], ("index.sqlite",)),
    # -------------------------------------------------------------- replay
    ("replay-device-nonsense", lambda c: ["replay", str(c.camp), "--device", "nonsense"], ("'nonsense'",)),
    ("replay-device-cuda", lambda c: ["replay", str(c.camp), "--device", "cuda"], ("'cuda'",)),
    ("replay-fewer-classes", lambda c: ["replay", str(c.camp), "--model", c.model(THREE_CLASSES)], ("3 classes",)),
    ("replay-wrong-input-shape", lambda c: ["replay", str(c.camp), "--model", c.model(RGB_MODEL)], ("shape",)),
    ("replay-nan-logits", lambda c: ["replay", str(c.camp), "--model", c.model(NAN_MODEL)], ("NaN",)),
    ("replay-nowhere", lambda c: ["replay", str(c.tmp / "nowhere")], ("nowhere",)),
    ("replay-garbled-index", lambda c: ["replay", c.garbled()], ("index.sqlite",)),
    ("replay-bad-which", lambda c: ["replay", str(c.camp), "--which", "most"], ("most",)),
    # -------------------------------------------------------------- mutators
    ("mutators-unknown", lambda c: ["mutators", "nope"], ("unknown mutator", "nope")),
    ("mutators-unknown-flag", lambda c: ["mutators", "--bogus"], ("--bogus",)),
    # -------------------------------------------------------------- evaluate
    ("evaluate-eps-zero", lambda c: ["evaluate", "--eps", "0"], ("--eps",)),
    ("evaluate-eps-nan", lambda c: ["evaluate", "--eps", "nan"], ("--eps",)),
    ("evaluate-eps-two", lambda c: ["evaluate", "--eps", "2"], ("--eps",)),
    ("evaluate-seed-huge", lambda c: ["evaluate", "--seed", BIG], ("--seed",)),
    ("evaluate-seed-negative", lambda c: ["evaluate", "--seed", "-1"], ("--seed",)),
    # -------------------------------------------------------------- report / triage
    ("report-nowhere", lambda c: ["report", str(c.tmp / "nowhere"), "--out", str(c.new)], ("nowhere",)),
    ("report-garbled-index", lambda c: ["report", c.garbled(), "--out", str(c.new)], ("index.sqlite",)),
    ("report-max-failures-negative", lambda c: ["report", str(c.camp), "--out", str(c.new), "--max-failures", "-1"],
     ("--max-failures",)),
    ("triage-nowhere", lambda c: ["triage", str(c.tmp / "nowhere")], ("nowhere",)),
    ("triage-minimise-negative", lambda c: ["triage", str(c.camp), "--minimise", "-1"], ("--minimise",)),
    ("triage-merge-negative", lambda c: ["triage", str(c.camp), "--merge-linf", "-1"], ("--merge-linf",)),
    # -------------------------------------------------------------- faults / encrypt / decrypt / obfuscate
    ("faults-rate-high", lambda c: ["faults", "--rate", "1.5"], ("rate", "1.5")),
    ("faults-unknown-layer", lambda c: ["faults", "--layers", "conv9"], ("conv9",)),
    ("faults-unknown-kind", lambda c: ["faults", "--kinds", "melt"], ("melt",)),
    ("faults-bits-past-31", lambda c: ["faults", "--bits", "5-40"], ("bit range",)),
    ("encrypt-nothing", lambda c: ["encrypt"], ("weights file",)),
    ("encrypt-key-on-command-line", lambda c: ["encrypt", c.file("w.pt", "x"), "--key", "ab" * 32],
     ("--key-file",)),
    ("encrypt-missing-weights", lambda c: ["encrypt", str(c.tmp / "nope.pt"), "--out", str(c.new),
                                           "--key-file", c.file("k.key", "00" * 32)], ("nope.pt",)),
    ("decrypt-missing", lambda c: ["decrypt", str(c.tmp / "nope.enc"), "--out", str(c.new)], ("nope.enc",)),
    ("decrypt-not-encrypted", lambda c: ["decrypt", c.file("plain.pt", "x"), "--out", str(c.new),
                                         "--key-file", c.file("k.key", "00" * 32)], ("not an encrypted",)),
    ("obfuscate-seed-negative", lambda c: ["obfuscate", "--out", str(c.new), "--seed", "-1"], ("--seed",)),
    # -------------------------------------------------------------- privacy
    ("privacy-delta-above-one", lambda c: ["privacy", "--delta", "1.5"], ("delta",)),
    ("privacy-epsilon-negative", lambda c: ["privacy", "--epsilons", "-1"], ("--epsilons",)),
    ("privacy-pool-too-small", lambda c: ["privacy", "--pool-size", "3"], ("3 examples",)),
]
XFAIL: dict = {}  # id -> pytest.mark.xfail(strict=False, reason="lead: resume contract"), if one must wait


@pytest.fixture(scope="module")
def campaign(tmp_path_factory) -> tuple[Path, tuple]:
    camp = tmp_path_factory.mktemp("campaign") / "camp"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["fuzz", "--out", str(camp), *FAST])
    assert rc == 0, err.getvalue()
    fresh = snapshot(camp)
    shutil.copytree(camp, camp.with_name("fresh"))
    _settle(camp)
    return camp, fresh


def _settle(camp: Path) -> None:
    """Open the index read-only once, as status / export / replay do: SQLite's WAL mode leaves
    ``index.sqlite-wal`` / ``-shm`` behind (see test_reading_a_campaign_leaves_no_files)."""
    from neurofuzz.corpus import CampaignStore

    with CampaignStore.open(camp, readonly=True) as store:
        store.count()


@pytest.fixture
def ctx(tmp_path, request, monkeypatch) -> Ctx:
    monkeypatch.chdir(tmp_path)
    return Ctx(tmp_path, request)


def run(capsys, argv: list[str]) -> tuple[int, str, str]:
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse must not exit by itself with a usage block
        rc = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return rc, out, err


def test_the_table_covers_every_subcommand():
    ap = build_parser()
    sub = next(a for a in ap._actions if a.__class__.__name__ == "_SubParsersAction")
    assert sorted(sub.choices) == sorted(SUBCOMMANDS) == sorted(COMMANDS)
    covered = {case[0].split("-")[0] for case in CASES}
    for name in SUBCOMMANDS:
        assert name in covered, name


@pytest.mark.parametrize("case", [pytest.param(c, id=c[0], marks=XFAIL.get(c[0], ())) for c in CASES])
def test_bad_arguments_give_one_line(case, ctx, capsys):
    name, argv_of, needles = case
    argv = argv_of(ctx)
    rc, _, err = run(capsys, argv)
    one_error_line(rc, err, needles)
    if ctx.baseline is not None:
        assert not changes(ctx.baseline, snapshot(ctx.camp)), "the campaign passed in was changed"
    assert not ctx.new.exists(), "a refused command left output behind"


@pytest.mark.parametrize("argv", [["status", "{camp}"], ["export", "{camp}", "--out", "{tmp}/c.npz"],
                                  ["replay", "{camp}", "--which", "failures"]], ids=["status", "export", "replay"])
def test_reading_a_campaign_leaves_no_files(campaign, tmp_path, capsys, argv):
    """The contract holds for commands that succeed too: reading a campaign changes no file of it."""
    camp = tmp_path / "camp"
    shutil.copytree(campaign[0].with_name("fresh"), camp)
    before = snapshot(camp)
    assert before == campaign[1]
    rc, _, err = run(capsys, [a.format(camp=camp, tmp=tmp_path) for a in argv])
    assert rc == 0, err
    assert not changes(before, snapshot(camp))


# ---------------------------------------------------------------------------- operating-system errors
def _raise(exc: BaseException):
    def run_(args):
        raise exc

    return run_


@pytest.mark.parametrize("code, resume, needles", [
    (errno.ENOSPC, False, ("the disk is full", "free space and run the same command with --resume to continue")),
    (errno.ENOSPC, True, ("the disk is full", "run the same command again to continue")),
    (errno.EROFS, True, ("read-only",)),
    (errno.EACCES, True, ("not writable",)),
    (errno.EPERM, True, ("not writable",)),
])
def test_os_errors_on_the_campaign(ctx, capsys, monkeypatch, code, resume, needles):
    help_, add, _ = COMMANDS["fuzz"]
    camp = ctx.tmp / "camp"
    exc = OSError(code, os.strerror(code), str(camp / "queue" / "x.npy"))
    monkeypatch.setitem(COMMANDS, "fuzz", (help_, add, _raise(exc)))
    rc, _, err = run(capsys, ["fuzz", "--out", str(camp), *(["--resume"] if resume else [])])
    line = one_error_line(rc, err, needles)
    if code != errno.ENOSPC:
        assert f"campaign directory {camp}" in line


def test_disk_full_while_exporting(ctx, capsys, monkeypatch):
    import neurofuzz.corpus

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(ctx.tmp / "c.npz"))

    monkeypatch.setattr(neurofuzz.corpus, "export_npz", full)
    rc, _, err = run(capsys, ["export", str(ctx.camp), "--out", str(ctx.tmp / "c.npz")])
    one_error_line(rc, err, ("disk is full",))


def test_keyboard_interrupt_is_130(ctx, capsys, monkeypatch):
    help_, add, _ = COMMANDS["status"]
    monkeypatch.setitem(COMMANDS, "status", (help_, add, _raise(KeyboardInterrupt())))
    rc, _, err = run(capsys, ["status", str(ctx.camp)])
    assert rc == 130 and "Traceback" not in err


def test_multi_line_user_error_is_printed_as_one_line(ctx, capsys, monkeypatch):
    from neurofuzz.ground.errors import UserError

    help_, add, _ = COMMANDS["status"]
    monkeypatch.setitem(COMMANDS, "status", (help_, add, _raise(UserError("first\nsecond\n  third"))))
    rc, _, err = run(capsys, ["status", str(ctx.camp)])
    one_error_line(rc, err, ("first", "third"))


# ---------------------------------------------------------------------------- things that must work
def test_model_given_as_a_file_path_replays(ctx, capsys):
    ctx.file("mynet.py", "from neurofuzz.fuzzer.zoo import load_lenet5_digits as make_net\n")
    rc, out, err = run(capsys, ["replay", str(ctx.camp), "--model", "./mynet.py:make_net"])
    assert rc == 0, err
    assert "accuracy" in out
    (ctx.tmp / "mypkg").mkdir()
    (ctx.tmp / "mypkg" / "__init__.py").write_text("")
    (ctx.tmp / "mypkg" / "models.py").write_text("from neurofuzz.fuzzer.zoo import load_lenet5_digits as make_net\n")
    rc, out, err = run(capsys, ["replay", str(ctx.camp), "--model", "mypkg.models:make_net", "--which", "queue"])
    assert rc == 0, err
    sys.modules.pop("mypkg.models", None)
    sys.modules.pop("mypkg", None)


def test_warnings_are_shown_once_after_a_success(ctx, capsys):
    ctx.file("warnnet.py", """
        import warnings
        from neurofuzz.fuzzer.zoo import load_lenet5_digits

        def make():
            for _ in range(3):
                warnings.warn("old API, please upgrade", FutureWarning)
            return load_lenet5_digits()
    """)
    rc, out, err = run(capsys, ["replay", str(ctx.camp), "--model", "./warnnet.py:make", "--which", "failures"])
    assert rc == 0, err
    assert err.strip().splitlines() == ["neurofuzz: warning: FutureWarning: old API, please upgrade"]


# ---------------------------------------------------------------------------- the real entry point
def _cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NEUROFUZZ_DEBUG")}
    return subprocess.run([sys.executable, "-m", "neurofuzz.fuzzer.cli", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_subprocess_library_warnings_are_not_printed_before_the_error(ctx):
    """A PNG whose ancillary chunk has a bad CRC makes libpng warn on fd 2; the error that follows
    (class 10 is not a class of a 10-class model) must still be the only line."""
    good = (load_digits32("test")[0][0, 0].numpy() * 255).astype(np.uint8)
    rows = b"".join(b"\x00" + bytes(r) for r in good)
    text = b"tEXt" + b"Comment\x00hello"
    bad_chunk = struct.pack(">I", len(text) - 4) + text + b"\x00\x00\x00\x00"  # wrong CRC
    for label in ("0", "10"):
        (ctx.tmp / "warn" / label).mkdir(parents=True)
        (ctx.tmp / "warn" / label / "a.png").write_bytes(png_bytes(32, 32, extra_chunks=bad_chunk, rows=rows))
    r = _cli("fuzz", "--seeds", str(ctx.tmp / "warn"), "--out", str(ctx.new), *FAST, cwd=ctx.tmp)
    one_error_line(r.returncode, r.stderr, ("10",))
    assert not ctx.new.exists()


def test_subprocess_nan_time_and_argparse_errors(ctx):
    r = _cli("fuzz", "--out", str(ctx.new), "--time", "nan", "--quiet", cwd=ctx.tmp)
    one_error_line(r.returncode, r.stderr, ("--time",))
    r = _cli("fuzz", "--out", str(ctx.new), "--time", "soon", cwd=ctx.tmp)
    one_error_line(r.returncode, r.stderr, ("--time", "soon"))
    assert not ctx.new.exists()
