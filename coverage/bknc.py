"""BKNC(k): bottom-k neuron coverage, the mirror of TKNC (Ma et al., DeepGauge, ASE 2018).

For each input and each layer, the neurons whose value is among the layer's k *smallest* are
covered; ``value() = |union over inputs of bottom-k neurons| / all neurons``. Ties as in TKNC,
mirrored: a neuron is in the bottom k when its value is <= the layer's k-th smallest value, so
tied neurons are all covered. ``k`` >= the layer size covers the whole layer. NaN never covers.
One cell per neuron; novelty, commit and merge (OR) are the base contract's.

Args:
    layers: ordered ``{layer: n_neurons}``.
    k: neurons per layer and input (>= 1).

Example::

    >>> import torch
    >>> from neurofuzz.coverage import BKNC
    >>> m = BKNC({"a": 4}, k=1)
    >>> m.measure({"a": torch.tensor([[1.0, 0.0, 0.0, 3.0]])}).int().tolist()
    [[0, 1, 1, 0]]
"""

from __future__ import annotations

import torch

from neurofuzz.coverage.tknc import TKNC
from neurofuzz.ground.errors import UserError


class BKNC(TKNC):
    name = "bknc"

    def __init__(self, layers: dict[str, int], *, k: int = 2, device: str | torch.device = "cpu") -> None:
        if int(k) < 1:
            raise UserError(f"bknc: k must be >= 1, got {k}")
        super().__init__(layers, k=k, device=device)

    def _measure(self, v: torch.Tensor) -> torch.Tensor:
        # the bottom k of v are the top k of -v (NaN stays NaN and is left out by TKNC)
        return super()._measure(-v)
