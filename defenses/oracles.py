"""Detector-based objective: a detector that misses an adversarial input is a failure.

``detector_miss`` flags the inputs that the model misclassifies (prediction != label) *and*
that the detector does not flag, i.e. the adversarial examples that get past the defense. The
oracle is registered under that name on import of :mod:`neurofuzz.defenses`, and must be built
with a fitted detector: ``build_oracle("detector_miss", detector=det)`` (any object with
``detect(x) -> bool [B]``, e.g. a :mod:`~neurofuzz.defenses.detectors` detector after ``fit``).
A stateful detector (:class:`~neurofuzz.defenses.detectors.SimilarityDetector`) sees every
checked batch as a stream of queries.

Example::

    >>> import torch
    >>> from neurofuzz.fuzzer.oracles import OracleContext, build_oracle
    >>> class Flags:  # a stand-in detector that flags the first input only
    ...     def detect(self, x): return torch.tensor([True] + [False] * (len(x) - 1))
    >>> ctx = OracleContext(x=torch.zeros(3, 1, 4, 4), logits=torch.tensor([[0., 1.], [0., 1.], [1., 0.]]),
    ...                     labels=torch.tensor([0, 0, 0]), root_preds=torch.tensor([0, 0, 0]))
    >>> build_oracle("detector_miss", detector=Flags()).check(ctx).tolist()
    [False, True, False]
"""

from __future__ import annotations

from typing import Any

import torch

from neurofuzz.fuzzer.errors import UserError
from neurofuzz.fuzzer.oracles import Oracle, OracleContext, register_oracle


@register_oracle
class DetectorMiss(Oracle):
    """Failure = misclassified and not detected.

    Args:
        detector: an object with ``detect(x) -> bool [B]`` (fitted; required).
    """

    name = "detector_miss"

    def __init__(self, detector: Any = None) -> None:
        if detector is None or not callable(getattr(detector, "detect", None)):
            raise UserError(
                "the detector_miss oracle needs a fitted detector: build_oracle('detector_miss', detector=det) "
                "with e.g. neurofuzz.defenses.FeatureSqueezing(model).fit(x_clean)"
            )
        self.detector = detector

    @torch.no_grad()
    def check(self, ctx: OracleContext) -> torch.Tensor:
        wrong = ctx.preds != ctx.labels.to(ctx.logits.device)
        detected = torch.as_tensor(self.detector.detect(ctx.x), dtype=torch.bool).to(wrong.device)
        if detected.shape != wrong.shape:
            raise UserError(f"detector_miss: the detector returned shape {list(detected.shape)} for {len(wrong)} inputs")
        return wrong & ~detected
