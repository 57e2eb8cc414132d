"""Shared test configuration.

Every test runs under a fixture that fails it if it changed the global RNG state of torch,
numpy or ``random``: randomness in neurofuzz is always injected (DESIGN.md).

One Hypothesis settings profile serves the whole suite, registered and loaded here (before any
test module is imported, so every ``settings(...)`` object in a test module inherits from it):
derandomized (the same examples on every run and machine: a red test stays red), no deadline
and no ``too_slow`` health check (timings on a shared 2-core machine are noise), no example
database (nothing written into the checkout), a modest ``max_examples``, and the reproduction
blob printed on failure. A test may set its own ``max_examples`` (for its cost or its weight);
nothing else is set per test.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile("neurofuzz", derandomize=True, deadline=None, database=None, max_examples=50,
                          print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("neurofuzz")

torch.set_num_threads(1)  # on a shared 2-core machine, 1 thread is faster and steadier (OpenMP contention)


@pytest.fixture(autouse=True)
def _no_global_rng_leak(request):
    torch_state = torch.get_rng_state()
    np_state = np.random.get_state()
    py_state = random.getstate()
    yield
    if request.node.get_closest_marker("allow_global_rng"):
        return
    leaked = []
    if not torch.equal(torch_state, torch.get_rng_state()):
        leaked.append("torch")
    new_np = np.random.get_state()
    if not (np_state[0] == new_np[0] and np.array_equal(np_state[1], new_np[1]) and np_state[2:] == new_np[2:]):
        leaked.append("numpy")
    if py_state != random.getstate():
        leaked.append("random")
    if leaked:
        # restore so that one leaking test does not cascade into others
        torch.set_rng_state(torch_state)
        np.random.set_state(np_state)
        random.setstate(py_state)
        pytest.fail(f"test changed the global RNG state of: {', '.join(leaked)}")


@pytest.fixture(scope="session")
def digits_target():
    from neurofuzz.fuzzer.zoo import builtin_target

    return builtin_target()


@pytest.fixture(scope="session")
def digits_test():
    from neurofuzz.fuzzer.zoo import load_digits32

    return load_digits32("test")
