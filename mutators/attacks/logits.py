"""Logit helpers shared by the attacks that work on logits rather than on the cross-entropy
gradient of :meth:`~neurofuzz.mutators.attacks.base.AttackRun.grad` (CW-L2, DeepFool, JSMA and
the black-box attacks).

* :func:`forward_logits`: the model's logits for a batch (cast to the model's dtype, shape
  checked, ``run.labels`` resolved at the first call, as ``AttackRun.grad`` does). It does not
  choose the autograd mode: white-box callers differentiate through it, the black-box query
  oracle calls it under ``torch.no_grad()``.
* :func:`margin`: the margin loss of Carlini and Wagner (IEEE S&P 2017) and of the Square attack:
  ``z_y - max_{j != y} z_j`` (untargeted) or ``max_{j != t} z_j - z_t`` (targeted); a negative
  margin means the input is adversarial (up to ties).
* :func:`is_adversarial`: the decision criterion, ``margin < 0``: some other class strictly
  above ``y`` (untargeted) or ``t`` strictly above every other class (targeted). It implies the
  arg-max decision of ``Target.predict`` whatever the tie-breaking, so an input judged
  adversarial stays so when evaluated in a batch of another size (float rounding can break an
  exact tie either way).

Example::

    >>> import torch
    >>> z = torch.tensor([[2.0, 1.0, 0.5], [0.0, 3.0, 1.0]])
    >>> margin(z, torch.tensor([0, 0]), targeted=False)
    tensor([ 1., -3.])
    >>> is_adversarial(z, torch.tensor([0, 0]), targeted=False)
    tensor([False,  True])
"""

from __future__ import annotations

import torch

from neurofuzz.ground.errors import UserError
from neurofuzz.ground.target import extract_logits
from neurofuzz.mutators.attacks.base import AttackRun


def forward_logits(run: AttackRun, x: torch.Tensor) -> torch.Tensor:
    """Logits ``[n, n_classes]`` of ``run.model`` for ``x`` ``[n, C, H, W]``; resolves
    ``run.labels`` (true labels, or the targets of a targeted attack) at the first call."""
    x_in = x if run.model_dtype is None or x.dtype == run.model_dtype else x.to(run.model_dtype)
    logits = extract_logits(run.model(x_in))
    if logits.dim() != 2 or logits.shape[0] != x.shape[0]:
        raise UserError(f"the model must return logits [B, n_classes]; got shape {tuple(logits.shape)}")
    if run.labels is None:
        run.labels = run._resolve(logits.shape[1])
    return logits


def margin(logits: torch.Tensor, labels: torch.Tensor, *, targeted: bool) -> torch.Tensor:
    """``z_y - max_{j != y} z_j`` (untargeted) or ``max_{j != t} z_j - z_t`` (targeted), ``[n]``."""
    own = logits.gather(1, labels.view(-1, 1)).squeeze(1)
    mask = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, labels.view(-1, 1), True)
    other = logits.masked_fill(mask, float("-inf")).amax(1)
    return other - own if targeted else own - other


def is_adversarial(logits: torch.Tensor, labels: torch.Tensor, *, targeted: bool) -> torch.Tensor:
    """``margin < 0``: adversarial under any tie-breaking of the arg-max, bool ``[n]``."""
    return margin(logits, labels, targeted=targeted) < 0
