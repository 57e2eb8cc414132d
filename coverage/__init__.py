"""neurofuzz.coverage: forward-hook recorder, neuron profile and coverage metrics.

Definitions (one each; see the metric modules for the edge cases):

* NC(t)  - share of neurons whose (per-input, per-layer min-max scaled by default) value > t.
* TKNC(k) - share of neurons that were among their layer's top-k (ties included) for some input.
* KMNC(k) - share of the k equal sections of each neuron's profiled [low, high] hit by some input;
  ``high`` falls in the last section; neurons with low == high are excluded.
* NBC    - (upper-corner + lower-corner neurons) / (2 |N|), corners strictly outside [low, high].
* SNAC   - upper-corner neurons / |N|.
* BKNC(k) - share of neurons that were among their layer's bottom-k (ties included) for some input.
* TKNP(k) - distinct top-k patterns (each layer's top-k set, over all layers), hashed into a table.
* NLC    - sum over layers of mean |covariance| row norm of the committed inputs (raw, not a ratio).
* LSA / DSA - surprise coverage: share of buckets of [0, upper] hit by an input's likelihood- /
  distance-based surprise adequacy against training traces (a :class:`SurpriseFit`).
"""

from neurofuzz.coverage.base import CoverageMetric, cells_to_dense
from neurofuzz.coverage.bknc import BKNC
from neurofuzz.coverage.kmnc import KMNC
from neurofuzz.coverage.nbc import NBC
from neurofuzz.coverage.nc import NC
from neurofuzz.coverage.nlc import NLC
from neurofuzz.coverage.profile import NeuronProfile
from neurofuzz.coverage.recorder import ActivationRecorder
from neurofuzz.coverage.snac import SNAC
from neurofuzz.coverage.suite import DEFAULT_SPEC, METRICS, CoverageSuite, Evaluation, build_metric
from neurofuzz.coverage.surprise import DSA, LSA, SurpriseFit, SurpriseMetric
from neurofuzz.coverage.tknc import TKNC
from neurofuzz.coverage.tknp import TKNP

__all__ = [
    "ActivationRecorder", "BKNC", "CoverageMetric", "CoverageSuite", "DEFAULT_SPEC", "DSA", "Evaluation", "KMNC",
    "LSA", "METRICS", "NBC", "NC", "NLC", "NeuronProfile", "SNAC", "SurpriseFit", "SurpriseMetric", "TKNC",
    "TKNP", "build_metric", "cells_to_dense",
]
