"""Scheduler work buffers: ``plan`` computes its weights in preallocated rows and per-lineage
sums, and must choose exactly what the plain formulas choose. Pinned plan sequences (computed
with the scheduler before its buffers were introduced), a bit-for-bit comparison with a reference
written from the documented formulas, buffer reuse, and the queue's image-cache and id-column
helpers."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest
import torch

from neurofuzz.fuzzer.queue import IdColumns, ImageCache
from neurofuzz.fuzzer.schedulers import SCHEDULERS, build_scheduler

# sha256 (first 16 hex digits) of the workload below: every plan, then the final picks, found,
# gain and group columns. Computed with fuzzer/schedulers.py as it was before the work buffers
# (n-sized temporaries in every plan); the buffered version must reproduce them bit for bit.
PINNED = {
    ("decay", True): "9684ab3adc389492", ("decay", False): "1242307d223ac0ee",
    ("gain", True): "51f5a8188012090b", ("gain", False): "2b0735e001ea3f9f",
    ("power", True): "9a382e06b27ce4d5", ("power", False): "2ce66c46387dcbf5",
    ("uniform", True): "ffe22ae8fb447ef7", ("uniform", False): "2ccc9dd30cae151a",
}


def reference_weights(s) -> torch.Tensor:
    """The choice weights written straight from the documented formulas (new tensors everywhere)."""
    p, f, g = s.picks, s.found, s.gain
    w = {"uniform": torch.ones_like(p), "decay": (1.0 - p / getattr(s, "gamma", 1.0)).clamp_min(getattr(s, "p_min", 0)),
         "gain": (1 + g + f) / (1 + p), "power": (1 + g + f) / (1 + p)}[s.name].clamp_min(1e-12)
    if s.stratify:
        grp = s.group
        is_root = grp == torch.arange(len(grp))
        w = torch.where(is_root, torch.zeros_like(w), w)
        tot = torch.zeros_like(w).index_add_(0, grp, w)[grp]
        w = torch.where(is_root, torch.ones_like(w), w / tot.clamp_min(1e-300))
        w = torch.where(is_root & (tot == 0), 2 * torch.ones_like(w), w)
    return w


def workload(name: str, stratify: bool, seed: int = 0, on_plan=None):
    """A campaign-like sequence: 3 roots planned with replacement, 27 more roots, then 60 plans
    with credits and children (some under a random root), a ``retain`` that orphans lineages,
    and a state_dict round trip."""
    s = build_scheduler(name, stratify=stratify)
    r = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    nid, roots = 1, []

    def plan(n_seeds, n_mutants):
        if on_plan is not None:
            on_plan(s)
        return s.plan(n_seeds, n_mutants, g)

    for _ in range(3):
        s.add(nid, gain=float(r.uniform(0, 5)))
        roots.append(nid)
        nid += 1
    out = [plan(8, 4)]
    for _ in range(27):
        s.add(nid, gain=float(r.uniform(0, 5)))
        roots.append(nid)
        nid += 1
    for it in range(60):
        p = plan(8, 5)
        out.append(p)
        for eid, _n in p:
            k = int(r.integers(0, 3))
            if k:
                s.credit(eid, k)
            for _ in range(k):
                root = roots[int(r.integers(len(roots)))] if r.random() < 0.1 else None
                s.add(nid, gain=float(r.choice([0.0, r.uniform(0, 40)])),
                      root=root if root is not None else (eid if eid in roots else roots[eid % len(roots)]))
                nid += 1 + int(r.integers(0, 2))  # failures take ids too
        if it == 25:
            s.retain({i for i in s.ids if i % 7 != 3})
        if it == 40:
            buf = io.BytesIO()
            torch.save(s.state_dict(), buf)
            buf.seek(0)
            t = build_scheduler(name, stratify=stratify)
            t.load_state_dict(torch.load(buf, weights_only=True))
            s = t
    return out, s


@pytest.mark.parametrize("name,stratify", sorted(PINNED))
def test_plan_sequence_is_pinned(name, stratify):
    plans, s = workload(name, stratify)
    h = hashlib.sha256(json.dumps(plans).encode())
    for a in (s.picks, s.found, s.gain, s.group):
        h.update(a.numpy().tobytes())
    assert len(s) == 492
    assert h.hexdigest()[:16] == PINNED[name, stratify]


@pytest.mark.parametrize("stratify", [True, False])
@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_plan_weights_equal_the_reference_bit_for_bit(name, stratify, monkeypatch):
    seen, expected = [], []
    original = torch.multinomial
    monkeypatch.setattr(torch, "multinomial", lambda w, *a, **k: seen.append(w.clone()) or original(w, *a, **k))
    workload(name, stratify, seed=1, on_plan=lambda s: expected.append(reference_weights(s)))
    assert len(seen) == len(expected) == 61
    for w, ref in zip(seen, expected):
        assert w.dtype == torch.float64 and torch.equal(w, ref)


def test_large_queue_matches_the_reference_and_reuses_its_buffer(monkeypatch):
    s = build_scheduler("power")
    r = np.random.default_rng(2)
    for i in range(50):
        s.add(i, gain=float(r.uniform(0, 5)))
    for i in range(50, 6000):
        s.add(i, gain=float(r.uniform(0, 40)), root=int(r.integers(0, 60)))  # roots 50..59 are children
    ptrs, seen = [], []
    original = torch.multinomial

    def spy(w, *a, **k):
        ptrs.append(w.data_ptr())
        seen.append(w.clone())
        return original(w, *a, **k)

    monkeypatch.setattr(torch, "multinomial", spy)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        ref = reference_weights(s)
        s.plan(16, 8, g)
        assert torch.equal(seen[-1], ref)
    assert len(set(ptrs)) == 1  # the same preallocated row every plan, no new n-sized tensor
    assert ptrs[0] == s._w.data_ptr()


def test_a_root_that_is_not_a_root_keeps_its_own_group():
    """``root=`` naming a child: the new entry's group is that child's row (not its lineage)."""
    s = build_scheduler("gain")
    s.add(1)
    s.add(2, gain=3.0, root=1)
    s.add(3, gain=1.0, root=2)
    s.add(4, gain=5.0, root=2)
    s.add(5)
    assert s.group.tolist() == [0, 0, 1, 1, 4]
    ref = reference_weights(s)
    seen = []
    original = torch.multinomial
    mp = pytest.MonkeyPatch()
    mp.setattr(torch, "multinomial", lambda w, *a, **k: seen.append(w.clone()) or original(w, *a, **k))
    try:
        s.plan(2, 2, torch.Generator().manual_seed(0))
    finally:
        mp.undo()
    (w,) = seen
    # entry 2 is alone in group 0 beside root 1; entries 3 and 4 share group 1 (no root): 2 : 6 of 1
    assert torch.allclose(w, torch.tensor([1.0, 1.0, 2 / 8, 6 / 8, 2.0], dtype=torch.float64), atol=1e-15)
    assert torch.equal(w, ref)


def test_retain_orphans_and_reload_keep_the_groups():
    s = build_scheduler("uniform")
    for i in range(3):
        s.add(i)
    s.add(10, root=0)
    s.add(11, root=1)
    s.add(12, root=1)
    assert s.retain({0, 10, 11, 12, 2}) == 1  # root 1 dropped: 11 and 12 become their own groups
    assert s.ids == [0, 2, 10, 11, 12] and s.group.tolist() == [0, 1, 0, 3, 4]
    t = build_scheduler("uniform")
    t.load_state_dict(s.state_dict())
    assert t.group.tolist() == s.group.tolist() and t.state_dict()["group"].dtype == torch.float64
    t.add(13, root=0)
    assert t.group.tolist()[-1] == 0 and 13 in t and len(t) == 6


def test_nbytes_counts_the_work_rows():
    s = build_scheduler("uniform")
    base = s.nbytes
    for i in range(1000):
        s.add(i)
    # per row: 3 float64 columns, 2 float64 work rows, int32 lineage, bool root, int32 id (+ id -> row)
    assert s.nbytes - base >= 1000 * (3 * 8 + 2 * 8 + 4 + 1 + 4)
    assert s.nbytes < 1000 * 2 * (3 * 8 + 2 * 8 + 4 + 1 + 4 + 4) + base


def test_image_cache_keeps_a_batch_row_on_its_own():
    g = torch.Generator().manual_seed(0)
    batch = torch.rand(64, 1, 8, 8, generator=g)
    cache = ImageCache(lambda i: torch.zeros(1, 8, 8), max_mb=1)
    cache.put(1, batch[3])
    x = cache.get(1)
    assert torch.equal(x, batch[3])
    # a view would keep the whole 64-row batch alive behind a 256-byte cache entry
    assert x.untyped_storage().nbytes() == x.nbytes == cache.nbytes == 256
    own = torch.rand(1, 8, 8, generator=g)
    cache.put(2, own)
    assert cache.get(2).data_ptr() == own.data_ptr()  # a tensor of its own is not copied


def test_id_columns_set_many_widens_and_writes():
    c = IdColumns(1, capacity=10)
    c.set_many(np.array([1, 4, 7]), np.array([0, 1, 2]))
    assert [int(c.get(i)[0]) for i in (1, 4, 7)] == [0, 1, 2] and 2 not in c
    c.set_many(np.array([9]), np.array([2**40]))
    assert c.data.dtype == np.int64 and int(c.get(9)[0]) == 2**40 and int(c.get(4)[0]) == 1
