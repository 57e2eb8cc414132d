"""The oneDNN / ideep cache bound (neurofuzz.ground.native_caches).

The memory test runs each case in a fresh process (the caches read their capacity once per
process) and feeds the built-in LeNet-5 batch sizes it has not seen yet; the unbounded case is
measured too, so the test shows the growth it guards against rather than assuming it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from neurofuzz.ground.native_caches import CACHE_VARIABLES, DEFAULT_CAPACITY, bound_native_caches

PROBE = r"""
import ctypes, json, os
import torch
from neurofuzz.fuzzer.zoo import builtin_target  # imports neurofuzz.ground, which sets the bound
torch.set_num_threads(1)  # after it: this call creates ideep's cache, with the capacity then in force
target = builtin_target()

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

x = torch.rand(192, 1, 32, 32, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    for n in range(1, 65):  # warm-up: the allocator and the first cache entries
        target(x[:n])
    first = target(x[:5])  # its kernels are evicted by the sizes below once the caches are capped
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    before = rss()
    for n in range(65, 193):  # 128 batch sizes not seen yet
        target(x[:n])
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    growth = rss() - before
    same = bool(torch.equal(target(x[:5]), first))
print(json.dumps({"growth_mb": growth, "same_output": same, **{k: os.environ.get(k) for k in %r}}))
""" % (CACHE_VARIABLES,)


def _probe(env_extra: dict[str, str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in CACHE_VARIABLES}
    env.update(env_extra, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_unset_variables_get_the_default(monkeypatch):
    for name in CACHE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert bound_native_caches() == {name: str(DEFAULT_CAPACITY) for name in CACHE_VARIABLES}
    assert all(os.environ[name] == str(DEFAULT_CAPACITY) for name in CACHE_VARIABLES)


def test_a_value_the_user_set_is_kept(monkeypatch):
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "1024")
    monkeypatch.delenv("LRU_CACHE_CAPACITY", raising=False)
    assert bound_native_caches(8) == {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "1024", "LRU_CACHE_CAPACITY": "8"}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and calls glibc malloc_trim")
def test_new_batch_sizes_do_not_grow_memory_once_bounded():
    bounded = _probe({})
    assert bounded["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == bounded["LRU_CACHE_CAPACITY"] == str(DEFAULT_CAPACITY)
    unbounded = _probe({name: "1024" for name in CACHE_VARIABLES})  # the libraries' own default
    assert unbounded["growth_mb"] > 8.0, unbounded  # what the bound removes (about 120 KB per size here)
    assert bounded["growth_mb"] < 2.0, bounded
    assert bounded["same_output"] and unbounded["same_output"]  # a rebuilt kernel computes the same bits
