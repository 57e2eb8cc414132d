"""Stateful test: a CampaignStore on disk and a MemoryStore, driven by the same random sequence of
adds (with duplicates and invalid lineage), reopens, stats, plot rows and state blobs, must always
agree (DESIGN.md, "Style, by example")."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from neurofuzz.corpus import CampaignStore, MemoryStore

# a fixed pool (no RNG) so that duplicates are frequent; shapes differ to exercise the hash
POOL = [
    torch.zeros(1, 2, 2),
    torch.ones(1, 2, 2),
    torch.arange(4, dtype=torch.float32).reshape(1, 2, 2) / 4,
    torch.arange(4, dtype=torch.float32).reshape(4, 1, 1) / 4,  # same bytes, other shape
    torch.linspace(0, 1, 12).reshape(3, 2, 2),
    -torch.zeros(1, 2, 2),  # same values as POOL[0], other bytes
]
images = st.one_of(
    st.sampled_from(range(len(POOL))).map(lambda i: POOL[i]),
    st.sampled_from(range(len(POOL))).map(lambda i: POOL[i]),
    st.lists(st.floats(-1, 2, width=32, allow_nan=False), min_size=4, max_size=4).map(
        lambda v: torch.tensor(v, dtype=torch.float32).reshape(1, 2, 2)
    ),
)
ORACLES = ["misclassified", "pred_changed"]
LINEAGE = ["seed", "seed", "child", "child", "child+root", "root only", "root not a seed", "mismatch",
           "missing parent"]


def outcome(f):
    """(exception type, None) or (None, value) of calling f."""
    try:
        return None, f()
    except Exception as e:  # noqa: BLE001 - the type is what is compared
        return type(e), None


class DiskMatchesMemory(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="neurofuzz-stateful-"))
        self.disk = CampaignStore.create(self.dir / "camp", setup={"metric": "nc", "k": [1, 2]})
        self.mem = MemoryStore(setup={"metric": "nc", "k": [1, 2]})
        self.ids: list[int] = []
        self.plot_columns = ["t", "execs", "cov"]

    @initialize()
    def setup_matches(self) -> None:
        assert self.disk.setup == self.mem.setup

    @rule(
        x=images,
        failure=st.booleans(),
        oracle=st.sampled_from(ORACLES),
        label=st.integers(0, 9),
        pred=st.integers(-1, 9),
        how=st.sampled_from(LINEAGE),
        pick=st.integers(0, 1000),
        gain=st.integers(0, 50),
        t=st.floats(0, 1e6, allow_nan=False),
    )
    def add(self, x, failure, oracle, label, pred, how, pick, gain, t) -> None:
        root = parent = None
        if self.ids:
            parent_e = self.mem.get(self.ids[pick % len(self.ids)])
            roots = [i for i in self.ids if self.mem.get(i).is_root]
            other_root = roots[pick % len(roots)]
            root, parent = {
                "seed": (None, None),
                "child": (None, parent_e.id),
                "child+root": (parent_e.root, parent_e.id),
                "root only": (other_root, None),
                "root not a seed": (parent_e.id, None),  # refused unless the pick is a seed
                "mismatch": (other_root, parent_e.id),  # refused unless the roots agree
                "missing parent": (None, 10_000 + pick),
            }[how]
        kw = dict(kind="failure" if failure else "queue", oracle=oracle if failure else None, label=label,
                  pred=pred, parent=parent, root=root, gains={"nc": gain},
                  chain=[{"op": "noise", "sigma": t / 1e6}], iteration=len(self.ids), time_found=t,
                  extra={"note": "x"} if gain % 2 else None)
        d_err, d = outcome(lambda: self.disk.add(x, **kw))
        m_err, m = outcome(lambda: self.mem.add(x, **kw))
        assert d_err == m_err
        event(f"add: {'refused' if d_err else 'duplicate' if d.duplicate else 'new'} {kw['kind']}")
        if d is not None:
            assert d.record() == m.record() and d.duplicate == m.duplicate
            assert torch.equal(d.load(), m.load()) and torch.equal(d.load(), x)
            if not d.duplicate:
                assert d.id not in self.ids and all(d.id > i for i in self.ids)
                self.ids.append(d.id)

    @rule()
    def reopen(self) -> None:
        self.disk.close()
        self.disk = CampaignStore.open(self.dir / "camp")
        assert self.disk.recovered == {"temp_files": 0, "orphans": 0, "plot_bytes_truncated": 0}

    @rule(execs=st.integers(0, 10**9), cov=st.floats(0, 1, allow_nan=False))
    def stats(self, execs, cov) -> None:
        s = {"execs_done": execs, "coverage": cov, "corpus_count": self.mem.count("queue")}
        self.disk.write_stats(s)
        self.mem.write_stats(s)

    @rule(execs=st.integers(0, 10**6), cov=st.floats(0, 1, allow_nan=False), wrong_keys=st.booleans())
    def plot(self, execs, cov, wrong_keys) -> None:
        row = {"t": len(self.ids), "execs": execs, "cov": cov}
        if wrong_keys:
            row = {"t": 1, "other": 2}
        d_err, _ = outcome(lambda: self.disk.append_plot(row))
        m_err, _ = outcome(lambda: self.mem.append_plot(row))
        assert d_err == m_err

    @rule(name=st.sampled_from(["coverage", "scheduler"]), step=st.integers(0, 100))
    def state(self, name, step) -> None:
        obj = {"step": step, "map": torch.arange(step % 5), "ids": list(self.ids)}
        self.disk.save_state(name, obj)
        self.mem.save_state(name, obj)

    @precondition(lambda self: self.ids)
    @rule(pick=st.integers(0, 1000))
    def lineage(self, pick) -> None:
        i = self.ids[pick % len(self.ids)]
        d, m = self.disk.lineage(i), self.mem.lineage(i)
        assert [e.record() for e in d] == [e.record() for e in m]
        assert d[0].is_root and d[-1].id == i and [e.depth for e in d] == list(range(len(d)))

    @invariant()
    def agree(self) -> None:
        d, m = self.disk.entries(), self.mem.entries()
        assert [e.record() for e in d] == [e.record() for e in m]
        assert [e.id for e in d] == self.ids
        for kind in (None, "queue", "failure"):
            assert self.disk.count(kind) == self.mem.count(kind)
        for o in ORACLES:
            assert [e.id for e in self.disk.entries(oracle=o)] == [e.id for e in self.mem.entries(oracle=o)]
        assert self.disk.read_stats() == self.mem.read_stats()
        assert self.disk.read_plot() == self.mem.read_plot()
        assert self.disk.state_names() == self.mem.state_names()
        for n in self.mem.state_names():
            a, b = self.disk.load_state(n), self.mem.load_state(n)
            assert a["step"] == b["step"] and a["ids"] == b["ids"] and torch.equal(a["map"], b["map"])

    @invariant()
    def files_match_index(self) -> None:
        root = self.dir / "camp"
        on_disk = sorted(p.relative_to(root).as_posix() for p in root.glob("*/**/*.npy"))
        assert on_disk == sorted(e.path.relative_to(root).as_posix() for e in self.disk.entries())
        for e in self.disk.entries()[-2:]:
            assert np.array_equal(np.load(e.path), self.mem.get(e.id).load().numpy())

    def teardown(self) -> None:
        self.disk.close()
        self.mem.close()
        shutil.rmtree(self.dir, ignore_errors=True)


DiskMatchesMemory.TestCase.settings = settings(
    max_examples=40, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestDiskMatchesMemory = DiskMatchesMemory.TestCase
