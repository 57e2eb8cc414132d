"""Detector-based objective: a detector that misses an adversarial input is a failure.

:class:`DetectorMiss` flags the inputs that the model misclassifies (prediction != label) *and*
that the detector does not flag, i.e. the adversarial examples that get past the defense. It
wraps a fitted detector object, so it is not a config-buildable oracle and is not registered in
:data:`neurofuzz.fuzzer.oracles.ORACLES` (importing this module changes no registry): build it
and hand it to a campaign ready-made, ``Fuzzer.create(..., extra_oracles=[DetectorMiss(det)])``;
its failures go to ``failures/detector_miss/``. ``det`` is any object with
``detect(x) -> bool [B]``, e.g. a :mod:`~neurofuzz.defenses.detectors` detector after ``fit``.
A stateful detector (:class:`~neurofuzz.defenses.detectors.SimilarityDetector`) sees every
checked batch as a stream of queries.

Example::

    >>> import torch
    >>> from neurofuzz.fuzzer.oracles import OracleContext
    >>> class Flags:  # a stand-in detector that flags the first input only
    ...     def detect(self, x): return torch.tensor([True] + [False] * (len(x) - 1))
    >>> ctx = OracleContext(x=torch.zeros(3, 1, 4, 4), logits=torch.tensor([[0., 1.], [0., 1.], [1., 0.]]),
    ...                     labels=torch.tensor([0, 0, 0]), root_preds=torch.tensor([0, 0, 0]))
    >>> DetectorMiss(Flags()).check(ctx).tolist()
    [False, True, False]
"""

from __future__ import annotations

from typing import Any

import torch

from neurofuzz.fuzzer.oracles import Oracle, OracleContext
from neurofuzz.ground.errors import UserError


class DetectorMiss(Oracle):
    """Failure = misclassified and not detected.

    Args:
        detector: an object with ``detect(x) -> bool [B]`` (fitted).
    """

    name = "detector_miss"

    def __init__(self, detector: Any) -> None:
        if not callable(getattr(detector, "detect", None)):
            raise UserError(
                f"DetectorMiss needs a fitted detector with detect(x), got {type(detector).__name__}: "
                "pass e.g. DetectorMiss(neurofuzz.defenses.FeatureSqueezing(model).fit(x_clean)) "
                "to Fuzzer.create(..., extra_oracles=[...])"
            )
        self.detector = detector

    @torch.no_grad()
    def check(self, ctx: OracleContext) -> torch.Tensor:
        wrong = ctx.preds != ctx.labels.to(ctx.logits.device)
        detected = torch.as_tensor(self.detector.detect(ctx.x), dtype=torch.bool).to(wrong.device)
        if detected.shape != wrong.shape:
            raise UserError(f"detector_miss: the detector returned shape {list(detected.shape)} for {len(wrong)} inputs")
        return wrong & ~detected
