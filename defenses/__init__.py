"""neurofuzz.defenses: adversarial training, input-transformation defenses and detectors.

* :mod:`~neurofuzz.defenses.adversarial_training` -- :class:`AdversarialTrainer`, :class:`NAD`
  (FGSM, Goodfellow et al. 2015), :class:`PAD` (PGD, Madry et al. 2018),
  :class:`EnsembleAdversarialTraining` (Tramer et al. 2018), the measured setting :data:`NAD_DIGITS`.
* :mod:`~neurofuzz.defenses.transforms` -- :class:`TransformDefense` (a Target) with
  :class:`JpegCompression` (Guo et al. 2018), :class:`BitDepthReduction`,
  :class:`MedianSmoothing` (Xu et al. 2018).
* :mod:`~neurofuzz.defenses.detectors` -- ``fit`` / ``score`` / ``detect``:
  :class:`FeatureSqueezing`, :class:`SpatialSmoothing`, :class:`MagNet`, :class:`SimilarityDetector`.
* :mod:`~neurofuzz.defenses.oracles` -- :class:`DetectorMiss`, the ``detector_miss`` fuzzing
  objective: a ready-built oracle around a fitted detector, passed to a campaign as
  ``Fuzzer.create(..., extra_oracles=[DetectorMiss(det)])``. Importing this package registers
  nothing anywhere.

No module here imports the demo model zoo: models and data are arguments (the built-in wiring of
``neurofuzz evaluate`` is :mod:`neurofuzz.fuzzer.tutorial_job`).
"""

from neurofuzz.defenses.adversarial_training import (
    NAD_DIGITS, PAD, NAD, AdversarialTrainer, EnsembleAdversarialTraining, EpochStats, linear_ramp,
)
from neurofuzz.defenses.detectors import Detector, FeatureSqueezing, MagNet, SimilarityDetector, SpatialSmoothing
from neurofuzz.defenses.oracles import DetectorMiss
from neurofuzz.defenses.transforms import BitDepthReduction, JpegCompression, MedianSmoothing, TransformDefense

__all__ = [
    "AdversarialTrainer", "NAD", "PAD", "EnsembleAdversarialTraining", "EpochStats", "linear_ramp", "NAD_DIGITS",
    "TransformDefense", "JpegCompression", "BitDepthReduction", "MedianSmoothing",
    "Detector", "FeatureSqueezing", "SpatialSmoothing", "MagNet", "SimilarityDetector",
    "DetectorMiss",
]
