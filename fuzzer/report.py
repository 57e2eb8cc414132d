"""Coverage reports."""

from __future__ import annotations

from typing import Any

from neurofuzz.coverage import CoverageSuite, NeuronProfile
from neurofuzz.fuzzer.zoo import accuracy, builtin_target, load_digits32


def builtin_coverage_report(batch_size: int = 256) -> dict[str, Any]:
    """Profile the built-in LeNet-5 on the digits train split and measure all five metrics
    (default parameters) on the test split."""
    target = builtin_target()
    x_train, _ = load_digits32("train")
    x_test, y_test = load_digits32("test")
    profile = NeuronProfile.from_data(target, x_train, batch_size=batch_size)
    suite = CoverageSuite.default(target, profile)
    with suite:
        for i in range(0, len(x_test), batch_size):
            suite.commit(suite.evaluate(x_test[i : i + batch_size]))
    return {
        "model": "lenet5-digits",
        "accuracy": accuracy(target, x_test, y_test),
        "profiled_inputs": profile.count,
        "inputs": len(x_test),
        "metrics": {n: m.config() for n, m in suite.metrics.items()},
        "coverage": suite.values(),
        "per_layer": suite.per_layer(),
    }
