"""`neurofuzz evaluate` on the built-in model: the zoo wiring of the tutorial experiment.

The library pieces take models and data as arguments (:func:`neurofuzz.evaluators.tutorial.run_tutorial`,
:class:`neurofuzz.defenses.NAD`, :data:`neurofuzz.defenses.NAD_DIGITS`); this module, on the CLI's
side of the layers, supplies the built-in digits LeNet-5 and the digits splits.

Example (about a minute: the NAD model trains in 10-20 s)::

    >>> from neurofuzz.evaluators.tutorial import format_tutorial
    >>> r = run_tutorial(seed=0)                                      # doctest: +SKIP
    >>> print(format_tutorial(r))                                     # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from neurofuzz.defenses.adversarial_training import NAD, NAD_DIGITS
from neurofuzz.evaluators import tutorial
from neurofuzz.fuzzer.zoo import LeNet5, builtin_target, load_digits32


def seeded_lenet5(seed: int) -> nn.Module:
    """A LeNet-5 initialised from ``seed`` alone (uniform +-1/sqrt(fan_in) weights, zero biases,
    the initialisation of :func:`~neurofuzz.fuzzer.zoo.train_lenet5_digits`); the global RNG is
    left as it was."""
    g = torch.Generator().manual_seed(int(seed))
    with torch.random.fork_rng(devices=[]):
        model = LeNet5()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                bound = 1.0 / p[0].numel() ** 0.5
                p.copy_(torch.empty_like(p).uniform_(-bound, bound, generator=g))
            else:
                p.zero_()
    return model


def nad_digits(seed: int = 0, **overrides: Any) -> nn.Module:
    """Train a LeNet-5 on the digits train split from scratch with NAD in the setting
    :data:`~neurofuzz.defenses.NAD_DIGITS` (FGSM eps 0.3 examples replace 70% of every batch;
    Adam lr 2e-3; 40 epochs of batch 64; one thread).

    ``overrides`` replace entries of ``NAD_DIGITS`` or pass other :class:`~neurofuzz.defenses.NAD`
    arguments (``callback=``...). Measured on the 360 test images (shared 2-core CPU, 10-22 s of training):

    ========  ===========  ===========  ============
    seed      clean acc.   FGSM-0.3     PGD-0.1 (20)
    ========  ===========  ===========  ============
    none      0.994        0.025        0.256
    0         0.992        0.947        0.019
    1         0.969        0.956        0.042
    2         0.986        0.950        0.017
    3         0.983        0.964        0.086
    ========  ===========  ===========  ============

    (``none``: the shipped undefended LeNet-5.) The robustness is to FGSM itself: the model
    learns to defeat the single gradient-sign step (label leaking and gradient masking, Kurakin
    et al. 2017; Tramer et al. 2018) and is *less* robust than the undefended model to PGD at
    eps 0.1. Use :class:`~neurofuzz.defenses.PAD` (measured: fine-tuning the shipped model with
    PGD eps 0.1, 5 steps, 5 epochs raises PGD-0.1 accuracy to 0.62 at clean 0.975) or
    :class:`~neurofuzz.defenses.EnsembleAdversarialTraining` for other threat models.
    """
    x, y = load_digits32("train")
    settings = {**NAD_DIGITS, "seed": seed, **overrides}
    return NAD(seeded_lenet5(seed), **settings).fit(x, y)


def run_tutorial(*, seed: int = 0, eps: float = 0.3, progress: Callable[[str], None] | None = None,
                 **nad_overrides: Any) -> dict[str, Any]:
    """The tutorial experiment on the built-in LeNet-5 and the 360 digits test images, with a NAD
    model trained by :func:`nad_digits` (``nad_overrides`` go there, e.g. ``epochs=``)."""
    x, y = load_digits32("test")
    settings = {k: nad_overrides.get(k, v) for k, v in NAD_DIGITS.items()}
    return tutorial.run_tutorial(
        builtin_target(), x, y, lambda: nad_digits(seed=seed, **nad_overrides), eps=eps, seed=seed,
        settings=settings, data=f"digits test split ({len(x)} images, 1x32x32 in [0, 1])", progress=progress,
    )
