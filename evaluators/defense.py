"""Defense evaluation, after MindArmour's ``DefenseEvaluate`` (and DEEPSEC's utility metrics,
Ling et al., IEEE S&P 2019).

For ``N`` inputs with labels ``y_i``, probabilities ``r_i`` of the raw model and ``q_i`` of the
defended model (rows summing to 1), predictions ``a_i = argmax r_i``, ``b_i = argmax q_i``:

* ``acc_raw = |{i : a_i = y_i}| / N``, ``acc_def = |{i : b_i = y_i}| / N``.
* ``CAV = acc_def - acc_raw`` (classification accuracy variance), in [-1, 1].
* ``CRR = |{i : a_i != y_i and b_i = y_i}| / N`` (classification rectify ratio).
* ``CSR = |{i : a_i = y_i and b_i != y_i}| / N`` (classification sacrifice ratio).
  Both divide by all ``N`` inputs (as MindArmour and DEEPSEC do), so ``CAV = CRR - CSR``.
* ``B = {i : a_i = y_i and b_i = y_i}`` (correct for both).
* ``CCV = mean_{i in B} |q_i[y_i] - r_i[y_i]|`` (classification confidence variance).
* ``COS = mean_{i in B} JSD(r_i, q_i)`` (classification output stability), with the
  Jensen-Shannon divergence in nats ``JSD(P, Q) = KL(P || M) / 2 + KL(Q || M) / 2``,
  ``M = (P + Q) / 2``, ``KL(P || M) = sum_k P_k ln(P_k / M_k)`` and ``0 ln 0 = 0``; it lies in
  ``[0, ln 2]``. (``scipy.spatial.distance.jensenshannon`` returns its square root.)

When ``B`` is empty, CCV and COS are NaN ("undefined: no input both models classify right";
MindArmour returns -1). Usually the data is clean test data; any labelled data works.

Example::

    >>> import torch
    >>> raw = torch.tensor([[0.9, 0.1], [0.4, 0.6], [0.8, 0.2]], dtype=torch.float64)
    >>> dfd = torch.tensor([[0.7, 0.3], [0.6, 0.4], [0.3, 0.7]], dtype=torch.float64)
    >>> r = defense_metrics(raw, dfd, torch.tensor([0, 0, 0]))
    >>> r.cav, r.crr, r.csr, round(r.ccv, 6), r.n_both_correct
    (0.0, 0.3333333333333333, 0.3333333333333333, 0.2, 1)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch

from neurofuzz.evaluators._common import as_images, as_labels, as_probs, check_batch_size, mean_or_nan, model_probs, spans
from neurofuzz.ground.errors import UserError


def js_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Row-wise Jensen-Shannon divergence (nats, float64 ``[B]``) of probability rows ``[B, K]``:
    ``KL(P || M) / 2 + KL(Q || M) / 2`` with ``M = (P + Q) / 2`` and ``0 ln 0 = 0``."""
    p, q = p.to(torch.float64), q.to(torch.float64)
    m = (p + q) / 2

    def kl(a: torch.Tensor) -> torch.Tensor:  # m >= a / 2, so m > 0 wherever a > 0
        return (torch.special.xlogy(a, a) - torch.special.xlogy(a, m)).sum(dim=1)

    return ((kl(p) + kl(q)) / 2).clamp_min(0.0)


@dataclass(frozen=True)
class DefenseReport:
    """Defense metrics; see the module docstring for the formulas. NaN: no input is classified
    correctly by both models."""

    n: int
    acc_raw: float
    acc_def: float
    cav: float
    crr: float
    csr: float
    ccv: float
    cos: float
    n_both_correct: int

    def to_dict(self) -> dict[str, Any]:
        """All fields as a plain dict (NaN stays a float NaN)."""
        return asdict(self)

    def format(self) -> str:
        """One ``name value`` line per metric."""
        return "\n".join(f"{k:<16}{v:.6g}" if isinstance(v, float) else f"{k:<16}{v}" for k, v in self.to_dict().items())


class DefenseEvaluator:
    """Streaming defense evaluation: :meth:`update` per batch of probabilities, then :meth:`result`."""

    def __init__(self) -> None:
        self._n = self._raw_ok = self._def_ok = self._rect = self._sacr = self._both = 0
        self._ccv = self._cos = 0.0

    def update(self, raw_probs: torch.Tensor, def_probs: torch.Tensor, y: torch.Tensor) -> None:
        """Add a batch: probabilities ``[B, K]`` of the raw and the defended model, labels ``[B]``
        (or one-hot ``[B, K]``)."""
        n = len(raw_probs)
        r, q = as_probs(raw_probs, n, "raw_probs"), as_probs(def_probs, n, "def_probs")
        if r.shape != q.shape:
            raise UserError(f"raw_probs {list(r.shape)} and def_probs {list(q.shape)} must have the same shape")
        y = as_labels(y, n, "y")
        if n and (int(y.min()) < 0 or int(y.max()) >= r.shape[1]):
            raise UserError(f"labels y must lie in [0, {r.shape[1] - 1}] (the probabilities have {r.shape[1]} classes)")
        a, b = r.argmax(dim=1) == y, q.argmax(dim=1) == y
        both = a & b
        self._n += n
        self._raw_ok += int(a.sum())
        self._def_ok += int(b.sum())
        self._rect += int((~a & b).sum())
        self._sacr += int((a & ~b).sum())
        self._both += int(both.sum())
        if bool(both.any()):
            yb = y[both].view(-1, 1)
            self._ccv += float((q[both].gather(1, yb) - r[both].gather(1, yb)).abs().sum())
            self._cos += float(js_divergence(r[both], q[both]).sum())

    def result(self) -> DefenseReport:
        """The metrics over every batch seen so far."""
        if self._n == 0:
            raise UserError("no inputs were evaluated; give at least one labelled example")
        n = self._n
        return DefenseReport(
            n=n,
            acc_raw=self._raw_ok / n,
            acc_def=self._def_ok / n,
            cav=(self._def_ok - self._raw_ok) / n,
            crr=self._rect / n,
            csr=self._sacr / n,
            ccv=mean_or_nan(self._ccv, self._both),
            cos=mean_or_nan(self._cos, self._both),
            n_both_correct=self._both,
        )


def defense_metrics(raw_probs: torch.Tensor, def_probs: torch.Tensor, y: torch.Tensor) -> DefenseReport:
    """Defense metrics from the two models' probabilities ``[N, K]`` and labels ``y [N]``."""
    ev = DefenseEvaluator()
    ev.update(raw_probs, def_probs, y)
    return ev.result()


def evaluate_defense(
    raw_model: Callable[[torch.Tensor], Any],
    defended_model: Callable[[torch.Tensor], Any],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int = 256,
) -> DefenseReport:
    """Run both models (callables returning logits; softmax applied here) on ``x [N, C, H, W]``,
    ``batch_size`` inputs at a time, and compute the defense metrics against labels ``y [N]``."""
    check_batch_size(batch_size)
    x = as_images(x, "x")
    if len(y) != len(x):
        raise UserError(f"{len(x)} inputs but {len(y)} labels; give one label per input")
    ev = DefenseEvaluator()
    for sl in spans(len(x), batch_size):
        xb = x[sl]
        ev.update(model_probs(raw_model, xb, "inputs"), model_probs(defended_model, xb, "inputs"), y[sl])
    return ev.result()


__all__ = ["DefenseEvaluator", "DefenseReport", "defense_metrics", "evaluate_defense", "js_divergence"]
