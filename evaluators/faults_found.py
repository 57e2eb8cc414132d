"""Fault-revealing measures of a fuzz campaign, recounted from its store.

Coverage alone says little about how good a campaign is (Harel-Canada et al., "Is Neuron
Coverage a Meaningful Measure for Testing Deep Neural Networks?", FSE 2020; Yan et al.,
"Correlations between Deep Neural Network Model Coverage Criteria and Model Quality", FSE 2020).
What tells a user whether the fuzzer *found* something is how many distinct faults it revealed
and how natural the failing inputs are. These functions compute that from the entry index (and,
for naturalness, the stored images), so they hold for a running, finished or crashed campaign.

Definitions. A *found failure* is a stored failure entry with a mutation chain (depth > 0);
failures of depth 0 are seeds the model got wrong before any mutation (``seed_failures``) and
count nowhere else. One image flagged by two oracles is stored twice and counted once (by
content hash).

* ``failing_pairs``: distinct (root seed, predicted class) pairs among found failures. The loop
  always stores the first failure of each (root, oracle, predicted class), so this count is
  exact even though not every failing mutant is stored.
* ``failing_seeds``: distinct root seeds with at least one found failure, of ``seeds`` (queue
  entries of depth 0: the seeds that were fuzzed).
* ``confusions``: distinct (true class, predicted class) pairs with the two classes different.
* ``time_to_first_failure`` / ``first_failure_iteration``: campaign time (seconds, over resumes)
  and iteration of the earliest found failure; ``None`` without one.
* naturalness, per found failure against its root seed: SSIM
  (:func:`neurofuzz.mutators.constraints.ssim`, ``data_range`` = the bounds' width) and Linf;
  summarised as mean / median / min SSIM and mean / median / max Linf (NaN without failures).
* ``invalid_share``: mutants rejected by the validity rule / mutants, from ``fuzzer_stats``
  (``None`` when the stats do not have them).

Example::

    >>> import torch
    >>> from neurofuzz.corpus import MemoryStore
    >>> s = MemoryStore()
    >>> seed = s.add(torch.zeros(1, 4, 4), kind="queue", label=3, pred=3)
    >>> step = [{"mutator": "gaussian_noise", "params": {"std": 0.1}, "config": {}}]
    >>> _ = s.add(torch.full((1, 4, 4), 0.25), kind="failure", oracle="misclassified", label=3, pred=5,
    ...           parent=seed.id, chain=step, time_found=2.5, iteration=4)
    >>> s.write_stats({"mutants": 100, "invalid_mutants": 10})
    >>> m = fault_measures(s)
    >>> m.failing_pairs, m.failing_seeds, m.confusions, m.time_to_first_failure, m.linf_max, m.invalid_share
    (1, 1, 1, 2.5, 0.25, 0.1)
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch

from neurofuzz.corpus import BaseStore, Entry
from neurofuzz.mutators.constraints import ssim

#: Names of the measures as flat ``key : value`` items (for ``fuzzer_stats``-style output).
FLAT_KEYS = ("seeds", "seed_failures", "failures", "failing_pairs", "failing_seeds", "confusions",
             "time_to_first_failure", "first_failure_iteration", "ssim_mean", "ssim_median", "ssim_min",
             "linf_mean", "linf_median", "linf_max", "invalid_share")


@dataclass(frozen=True)
class Distance:
    """How far one failing input lies from its root seed: SSIM (1 = identical) and Linf."""

    ssim: float
    linf: float


@dataclass(frozen=True)
class FaultMeasures:
    """Fault-revealing measures of a campaign (see the module docstring for each definition)."""

    seeds: int
    seed_failures: int
    failures: int
    failing_pairs: int
    failing_seeds: int
    confusions: int
    time_to_first_failure: float | None
    first_failure_iteration: int | None
    ssim_mean: float
    ssim_median: float
    ssim_min: float
    linf_mean: float
    linf_median: float
    linf_max: float
    invalid_share: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        """A few lines of plain text."""
        def f(v: float | None, spec: str = ".4f") -> str:
            return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)

        first = ("none" if self.time_to_first_failure is None else
                 f"{self.time_to_first_failure:.1f} s (iteration {self.first_failure_iteration})")
        return "\n".join([
            f"failures found      {self.failures} distinct inputs ({self.seed_failures} seeds failed before mutation)",
            f"failing pairs       {self.failing_pairs} distinct (root seed, predicted class)",
            f"seeds broken        {self.failing_seeds} of {self.seeds}",
            f"class confusions    {self.confusions} distinct (true -> predicted)",
            f"first failure       {first}",
            f"SSIM to seed        mean {f(self.ssim_mean)}  median {f(self.ssim_median)}  min {f(self.ssim_min)}",
            f"Linf to seed        mean {f(self.linf_mean)}  median {f(self.linf_median)}  max {f(self.linf_max)}",
            f"rejected as invalid {f(self.invalid_share, '.2%')} of mutants",
        ])


def found_failures(store: BaseStore) -> list[Entry]:
    """The found failures: failure entries with a chain, one per distinct image (the first id)."""
    seen: set[str] = set()
    out = []
    for e in store.entries(kind="failure"):
        if e.depth > 0 and e.sha not in seen:
            seen.add(e.sha)
            out.append(e)
    return out


def distances_to_root(store: BaseStore, entries: Iterable[Entry], *, data_range: float = 1.0,
                      batch_size: int = 256) -> dict[int, Distance]:
    """``{entry id: Distance}`` of each entry to its root seed's image, computed in batches
    (each root image is loaded once per batch)."""
    entries = list(entries)
    out: dict[int, Distance] = {}
    for i in range(0, len(entries), batch_size):
        chunk = entries[i : i + batch_size]
        roots = {r: store.get(r).load() for r in {e.root for e in chunk}}
        x = torch.stack([e.load() for e in chunk]).double()
        ref = torch.stack([roots[e.root] for e in chunk]).double()
        s = ssim(ref, x, data_range=data_range).tolist()
        linf = (x - ref).flatten(1).abs().amax(1).tolist()
        out.update({e.id: Distance(float(a), float(b)) for e, a, b in zip(chunk, s, linf)})
    return out


def _data_range(store: BaseStore) -> float:
    b = (store.setup or {}).get("bounds") or (0.0, 1.0)
    return float(b[1]) - float(b[0])


def _summary(values: list[float]) -> tuple[float, float, float, float]:
    """(mean, median, min, max); NaN for an empty list."""
    if not values:
        return (math.nan,) * 4
    return statistics.fmean(values), statistics.median(values), min(values), max(values)


def _invalid_share(stats: Mapping[str, Any]) -> float | None:
    try:
        mutants, invalid = float(stats["mutants"]), float(stats["invalid_mutants"])
    except (KeyError, TypeError, ValueError):
        return None
    return invalid / mutants if mutants > 0 else None


def fault_measures(store: BaseStore, *, distances: Mapping[int, Distance] | None = None,
                   naturalness: bool = True) -> FaultMeasures:
    """The fault-revealing measures of the campaign in ``store`` (any corpus store; open a
    directory with ``CampaignStore.open(path, readonly=True)``). ``distances``: precomputed
    :func:`distances_to_root` values (missing ones are computed); ``naturalness=False`` skips
    loading images (SSIM / Linf are then NaN)."""
    failures = found_failures(store)
    seed_failures = len({e.sha for e in store.entries(kind="failure") if e.depth == 0})
    seeds = sum(1 for e in store.entries(kind="queue") if e.depth == 0)
    first = min(failures, key=lambda e: (e.time_found, e.iteration, e.id), default=None)
    if naturalness:
        known = dict(distances or {})
        todo = [e for e in failures if e.id not in known]
        known.update(distances_to_root(store, todo, data_range=_data_range(store)))
        dist = [known[e.id] for e in failures]
    else:
        dist = []
    s_mean, s_med, s_min, _ = _summary([d.ssim for d in dist])
    l_mean, l_med, _, l_max = _summary([d.linf for d in dist])
    return FaultMeasures(
        seeds=seeds,
        seed_failures=seed_failures,
        failures=len(failures),
        failing_pairs=len({(e.root, e.pred) for e in failures}),
        failing_seeds=len({e.root for e in failures}),
        confusions=len({(e.label, e.pred) for e in failures if e.label != e.pred}),
        time_to_first_failure=None if first is None else float(first.time_found),
        first_failure_iteration=None if first is None else int(first.iteration),
        ssim_mean=s_mean, ssim_median=s_med, ssim_min=s_min,
        linf_mean=l_mean, linf_median=l_med, linf_max=l_max,
        invalid_share=_invalid_share(store.read_stats()),
    )


def pairs_over_time(store: BaseStore) -> list[tuple[float, int]]:
    """``[(campaign time, distinct failing pairs so far)]``, one point per new pair, in time order:
    the curve of faults found."""
    seen: set[tuple[int, int]] = set()
    out = []
    for e in sorted(found_failures(store), key=lambda e: (e.time_found, e.id)):
        if (e.root, e.pred) not in seen:
            seen.add((e.root, e.pred))
            out.append((float(e.time_found), len(seen)))
    return out
