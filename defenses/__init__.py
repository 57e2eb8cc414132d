"""neurofuzz.defenses: adversarial training, input-transformation defenses and detectors.

* :mod:`~neurofuzz.defenses.adversarial_training` -- :class:`AdversarialTrainer`, :class:`NAD`
  (FGSM, Goodfellow et al. 2015), :class:`PAD` (PGD, Madry et al. 2018),
  :class:`EnsembleAdversarialTraining` (Tramer et al. 2018), :func:`nad_digits`.
* :mod:`~neurofuzz.defenses.transforms` -- :class:`TransformDefense` (a Target) with
  :class:`JpegCompression` (Guo et al. 2018), :class:`BitDepthReduction`,
  :class:`MedianSmoothing` (Xu et al. 2018).
* :mod:`~neurofuzz.defenses.detectors` -- ``fit`` / ``score`` / ``detect``:
  :class:`FeatureSqueezing`, :class:`SpatialSmoothing`, :class:`MagNet`, :class:`SimilarityDetector`.
* :mod:`~neurofuzz.defenses.oracles` -- the ``detector_miss`` fuzzing objective
  (``build_oracle("detector_miss", detector=det)``), registered on import of this package.
"""

from neurofuzz.defenses.adversarial_training import (
    PAD, NAD, AdversarialTrainer, EnsembleAdversarialTraining, EpochStats, linear_ramp, nad_digits,
)
from neurofuzz.defenses.detectors import Detector, FeatureSqueezing, MagNet, SimilarityDetector, SpatialSmoothing
from neurofuzz.defenses.oracles import DetectorMiss
from neurofuzz.defenses.transforms import BitDepthReduction, JpegCompression, MedianSmoothing, TransformDefense

__all__ = [
    "AdversarialTrainer", "NAD", "PAD", "EnsembleAdversarialTraining", "EpochStats", "linear_ramp", "nad_digits",
    "TransformDefense", "JpegCompression", "BitDepthReduction", "MedianSmoothing",
    "Detector", "FeatureSqueezing", "SpatialSmoothing", "MagNet", "SimilarityDetector",
    "DetectorMiss",
]
