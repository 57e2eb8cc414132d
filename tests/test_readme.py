"""README.md runs as written.

Every fenced ``bash`` and ``python`` block of the README is run, in the order it appears, in one
fresh temporary working directory: bash blocks with ``bash -e`` and this interpreter's ``bin``
folder first on ``PATH`` (so ``neurofuzz`` and ``python`` are the installed ones), python blocks
with this interpreter (fed on stdin, so the working directory is on the import path). Each must
exit with status 0.

A block is skipped only when the line right before its opening fence is the marker
``<!-- readme-test: skip (reason) -->``; only the quick-start set-up commands
(``bash scripts/demo.sh``, ``bash scripts/test.sh``) may carry it (running the suite inside the
suite would recurse). ``toml`` blocks must be valid campaign configs
(:meth:`FuzzConfig.from_toml`), and the Mutators section must name every registered mutator
under its kind.

The blocks are run with ``OMP_NUM_THREADS=1`` (this project's machines have 2 shared cores; one
thread is faster there for models this small); nothing else of the environment is changed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from neurofuzz.fuzzer.config import FuzzConfig
from neurofuzz.mutators import available, get

README = Path(__file__).resolve().parents[1] / "README.md"
SKIP_MARK = re.compile(r"^<!--\s*readme-test:\s*skip\s*\((?P<reason>.+)\)\s*-->\s*$")
FENCE = re.compile(r"^```(?P<lang>[A-Za-z0-9_+-]*)\s*$")
QUICK_START = ["bash scripts/demo.sh", "bash scripts/test.sh"]
BLOCK_TIMEOUT_S = 180


@dataclass
class Block:
    lang: str
    code: str
    line: int  # 1-based line of the opening fence
    skip: str | None  # the reason of a skip marker, if any


def readme_blocks(text: str) -> list[Block]:
    """The fenced blocks of a Markdown text (top-level ``` fences only), in order."""
    lines = text.splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start = i
        j = i + 1
        while j < len(lines) and lines[j].rstrip() != "```":
            j += 1
        if j == len(lines):
            raise AssertionError(f"README.md:{start + 1}: unclosed code fence")
        mark = SKIP_MARK.match(lines[start - 1]) if start > 0 else None
        out.append(Block(m.group("lang"), "\n".join(lines[start + 1 : j]) + "\n", start + 1,
                         mark.group("reason") if mark else None))
        i = j + 1
    return out


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))


def _commands(code: str) -> list[str]:
    """A shell block's commands, comments and blank lines dropped."""
    return [ln.split("#", 1)[0].strip() for ln in code.splitlines() if ln.split("#", 1)[0].strip()]


def test_skip_markers_are_well_formed():
    stray = [n for n, ln in enumerate(README.read_text(encoding="utf-8").splitlines(), 1)
             if "readme-test" in ln and not SKIP_MARK.match(ln)]
    assert not stray, f"malformed readme-test marker(s) on README.md line(s) {stray}"
    marked = sum(bool(SKIP_MARK.match(ln)) for ln in README.read_text(encoding="utf-8").splitlines())
    assert marked == sum(b.skip is not None for b in BLOCKS), "a skip marker is not right before a code fence"


def test_exactly_the_quick_start_blocks_are_skipped():
    skipped = [b for b in BLOCKS if b.skip is not None]
    assert skipped, "the quick-start block must carry the skip marker"
    assert all(b.lang == "bash" for b in skipped)
    assert [c for b in skipped for c in _commands(b.code)] == QUICK_START
    for b in BLOCKS:
        if b.skip is None:
            assert not any(q in b.code for q in QUICK_START), f"README.md:{b.line} runs a set-up command"


def test_readme_has_the_walkthrough_commands():
    code = "".join(b.code for b in BLOCKS if b.lang == "bash" and b.skip is None)
    for cmd in ("neurofuzz profile --model mynet.py:make_net", "neurofuzz fuzz --out camp --resume",
                "neurofuzz status camp", "neurofuzz export camp --out corpus.npz",
                "neurofuzz replay camp --model mynet.py:make_net --weights net.pt"):
        assert cmd in code


def test_toml_blocks_are_valid_configs(tmp_path):
    tomls = [b for b in BLOCKS if b.lang == "toml"]
    assert tomls
    for k, b in enumerate(tomls):
        p = tmp_path / f"block{k}.toml"
        p.write_text(b.code, encoding="utf-8")
        FuzzConfig.from_toml(p)  # raises a UserError naming the bad key


def _mutator_section() -> str:
    text = README.read_text(encoding="utf-8")
    m = re.search(r"^## Mutators\n(?P<body>.*?)^## ", text, re.S | re.M)
    assert m, "README.md has no '## Mutators' section"
    return m.group("body")


def test_mutator_section_names_every_registered_mutator_under_its_kind():
    body = _mutator_section()
    bullets = re.findall(r"^\* (?P<item>.*?)(?=^\* |^\s*$)", body, re.S | re.M)
    kinds = {"Natural": "natural", "Geometric": "affine", "Attacks": "attack"}
    named: dict[str, str] = {}
    for item in bullets:
        head = item.split()[0].rstrip(":(")
        assert head in kinds, f"unexpected bullet in the Mutators section: {item[:40]!r}"
        assert f'kind="{kinds[head]}"' in item
        for name in re.findall(r"`([a-z][a-z0-9_]*)`", item):
            assert name in available(), f"README names {name!r}, which is not a registered mutator"
            assert get(name).kind == kinds[head], f"{name!r} is listed as {kinds[head]}, but is {get(name).kind}"
            named[name] = kinds[head]
    missing = sorted(set(available()) - set(named))
    assert not missing, f"README's Mutators section misses registered mutator(s): {missing}"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["OMP_NUM_THREADS"] = "1"
    env.pop("PYTHONPATH", None)  # the installed package, as a user has it
    return env


def test_readme_blocks_run_in_order(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    runnable = [b for b in BLOCKS if b.lang in ("bash", "python") and b.skip is None]
    assert len(runnable) >= 4
    env = _env()
    for b in runnable:
        if b.lang == "bash":
            cmd, stdin = ["bash", "-e", "-c", b.code], None
        else:
            cmd, stdin = [sys.executable, "-"], b.code
        try:
            r = subprocess.run(cmd, input=stdin, cwd=work, env=env, capture_output=True, text=True,
                               timeout=BLOCK_TIMEOUT_S)
        except subprocess.TimeoutExpired as e:
            pytest.fail(f"README.md:{b.line} ({b.lang}) took more than {BLOCK_TIMEOUT_S} s\n{e.stdout}\n{e.stderr}")
        assert r.returncode == 0, (f"README.md:{b.line} ({b.lang}) exited {r.returncode}\n"
                                   f"--- stdout\n{r.stdout[-3000:]}\n--- stderr\n{r.stderr[-3000:]}")
    # the walkthrough left what it says it leaves
    for name in ("mynet.py", "net.pt", "train.npz", "seeds.npz", "profile.pt", "corpus.npz", "camp/fuzzer_setup"):
        assert (work / name).exists(), name
