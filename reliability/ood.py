"""Out-of-distribution detection by feature clusters on an intermediate layer.

After MindArmour's ``OodDetectorFeatureCluster`` and the k-means/nearest-centroid view of deep
features (cf. Lee et al. 2018, "A simple unified framework for detecting out-of-distribution
samples", which scores distances of features to class centroids). The features of one layer
(recorded by :class:`~neurofuzz.coverage.ActivationRecorder`: conv maps reduced per channel by
``reduction="mean"`` or kept whole by ``"element"``) are standardised with the training data's
mean and std and clustered with scikit-learn's ``KMeans``; an input's *score* is its distance to
the nearest centroid, and the threshold is the ``1 - fpr`` quantile of the scores of held-out
clean data, so about ``fpr`` of clean inputs are flagged.

Uses:

* a detector: ``detector(x)`` -> bool ``[N]``, True where an input is out of distribution;
* an oracle: :meth:`FeatureClusterOOD.silent_failures` -> bool ``[N]``, True where the detector
  *accepts* an input but the model gets it wrong (a failure nothing in deployment would flag);
* a filter for a corpus export: :func:`ood_filter` on numpy arrays.

Example::

    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2)).eval()
    >>> g = torch.Generator().manual_seed(0)
    >>> clean = torch.rand(200, 1, 2, 2, generator=g) * 0.2
    >>> det = FeatureClusterOOD(net, layer="1", n_clusters=3).fit(clean[:150], calibration=clean[150:], seed=0)
    >>> float(det(clean[150:]).float().mean()) <= 0.1, bool(det(clean[:5] + 5.0).all())
    (True, True)
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from neurofuzz.coverage.recorder import ActivationRecorder
from neurofuzz.ground.errors import UserError

__all__ = ["FeatureClusterOOD", "ood_filter"]


class FeatureClusterOOD:
    """Nearest-centroid distance of one layer's standardised features.

    Args:
        model: an ``nn.Module`` or Target taking raw inputs ``x [N, C, H, W]``.
        layer: the layer whose output is the feature (a ``named_modules()`` name, e.g. ``"fc2"``).
        n_clusters: k of k-means (default 10: one per class of a 10-class model).
        reduction: ``"mean"`` (one feature per conv channel) or ``"element"``.
        batch_size: inputs per forward pass.
    """

    def __init__(self, model: nn.Module, *, layer: str, n_clusters: int = 10, reduction: str = "element",
                 batch_size: int = 512) -> None:
        if n_clusters < 1:
            raise UserError(f"n_clusters must be >= 1, got {n_clusters}")
        self.model, self.layer, self.n_clusters, self.batch_size = model, layer, int(n_clusters), int(batch_size)
        self.recorder = ActivationRecorder(model, types=(), names=[layer], reduction=reduction)
        if self.recorder.layer_names != [layer]:
            raise UserError(f"layer {layer!r} names {len(self.recorder.layer_names)} modules; give one module name")
        self.centroids: torch.Tensor | None = None
        self.threshold: float | None = None

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The layer's raw features ``[N, F]`` (float32)."""
        out = []
        with self.recorder as rec:
            for i in range(0, len(x), self.batch_size):
                self.model(x[i : i + self.batch_size])
                out.append(rec.pop()[self.layer].cpu())
        return torch.cat(out) if out else torch.empty(0, 0)

    def fit(self, x_train: torch.Tensor, *, calibration: torch.Tensor, fpr: float = 0.05, seed: int = 0) -> "FeatureClusterOOD":
        """Cluster the features of ``x_train``; set the threshold at ``fpr`` on the clean, held-out
        ``calibration`` inputs (not used for clustering). Returns ``self``."""
        from sklearn.cluster import KMeans

        if not 0.0 < fpr < 1.0:
            raise UserError(f"fpr must lie in (0, 1), got {fpr}")
        if len(x_train) < self.n_clusters or len(calibration) == 0:
            raise UserError(f"fit needs at least n_clusters={self.n_clusters} training and one calibration input")
        f = self.features(x_train).double()
        self.mu, self.sigma = f.mean(0), f.std(0).clamp_min(1e-6)
        km = KMeans(n_clusters=self.n_clusters, n_init=4, random_state=int(seed)).fit(((f - self.mu) / self.sigma).numpy())
        self.centroids = torch.from_numpy(km.cluster_centers_)
        cal = self.score(calibration).double()
        self.threshold = float(torch.quantile(cal, 1.0 - fpr, interpolation="higher"))
        self.fpr = float(fpr)
        return self

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Distance of each input's standardised feature to the nearest centroid, ``[N]`` float32."""
        if self.centroids is None:
            raise UserError("the OOD detector is not fitted; call fit(x_train, calibration=...) first")
        f = (self.features(x).double() - self.mu) / self.sigma
        return torch.cdist(f, self.centroids).min(1).values.float()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """True where ``x`` is out of distribution (score above the threshold), bool ``[N]``."""
        s = self.score(x)
        return s > self.threshold

    def accepts(self, x: torch.Tensor) -> torch.Tensor:
        return ~self(x)

    @torch.no_grad()
    def silent_failures(self, x: torch.Tensor, *, labels: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
        """The oracle: True where the detector accepts ``x`` but the model's prediction (from
        ``logits`` if given, else a forward pass) differs from ``labels`` (NaN logits count as wrong)."""
        if logits is None:
            logits = torch.cat([self.model(x[i : i + self.batch_size]) for i in range(0, len(x), self.batch_size)])
        wrong = (logits.argmax(1).cpu() != labels.cpu()) | ~torch.isfinite(logits).all(1).cpu()
        return self.accepts(x).cpu() & wrong


def ood_filter(detector: FeatureClusterOOD, x: np.ndarray, y: np.ndarray | None = None, *, keep: str = "in",
               batch_size: int = 512) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Keep the inputs of ``x [N, C, H, W]`` (float, raw space) the detector accepts (``keep="in"``)
    or flags (``keep="out"``). Returns ``(x_kept, y_kept or None, mask [N] bool)``; a corpus
    export can apply it to its arrays."""
    if keep not in ("in", "out"):
        raise UserError(f"keep must be 'in' or 'out', got {keep!r}")
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    flags = torch.cat([detector(xt[i : i + batch_size]) for i in range(0, len(xt), batch_size)]) if len(xt) else torch.zeros(0, dtype=torch.bool)
    mask = (~flags if keep == "in" else flags).numpy()
    return x[mask], (y[mask] if y is not None else None), mask
