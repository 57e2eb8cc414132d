"""Surprise adequacy (LSA, DSA) and surprise coverage (Kim et al., "Guiding Deep Learning System
Testing using Surprise Adequacy", ICSE 2019).

Both compare an input's activation trace ``a`` (the flat activations of the chosen layers) with
the traces of the training data, held in a :class:`SurpriseFit`. LSA's trace is every layer of
the fit; DSA's is every layer but the logits layer (unless that is the only one).

* LSA(x) = ``-log kde(a)``, ``kde`` a Gaussian KDE (``scipy.stats.gaussian_kde``, Scott's
  bandwidth) over the training traces, after dropping neurons whose training variance is
  below ``var_threshold`` (their covariance would be singular). One KDE over all training
  traces (not one per class): LSA needs no labels or predictions.
* DSA(x) = ``dist_a / dist_b``: ``x_a`` is the training trace of the input's *predicted* class
  nearest to ``a`` (``dist_a``, Euclidean) and ``dist_b`` the distance from ``x_a`` to the
  nearest training trace of another class. DSA needs the training labels (stored in the fit)
  and the input's predicted class, taken as the argmax of the fit's ``logits_layer``, which
  must be a recorded layer (e.g. the last ``nn.Linear``).
* Surprise coverage: ``[lower, upper]`` is cut into ``buckets`` equal buckets; an input covers
  the bucket of its SA (``upper`` itself in the last one; SA outside ``[lower, upper]`` or NaN
  covers none). ``value() = covered buckets / buckets``. ``lower`` defaults to 0 for DSA (as in
  the paper) and, for LSA, to the smallest LSA of the training traces (``-log`` of a density
  above 1 is negative, so 0 is no floor for LSA); ``upper`` defaults to ``lower + 2 * (max -
  lower)``, ``max`` the largest SA of the training traces themselves, each left out of its own
  reference (LSA: of the KDE; DSA: of its neighbours). Min / max use traces of finite SA.

Args (``lsa`` / ``dsa``): ``fit`` (a :class:`SurpriseFit` or the path of one saved with
:meth:`SurpriseFit.save`; in a TOML config, ``lsa = { fit = "sa.pt" }``), ``buckets``,
``lower``, ``upper``; LSA also ``var_threshold``. The campaign's recorder must record the fit's
layers with the fit's reduction (its default records every conv / linear layer, channel means).
Cost per input: DSA one distance to every training trace; LSA one KDE term per training trace.

Cells are the bucket ids (sparse form ``[B, 1]``), so novelty (batch order), commit and merge
(OR) are the base contract's; merging equals the one-worker map exactly.
:meth:`SurpriseMetric.surprise` returns the SA values themselves.

Example::

    >>> import torch
    >>> from neurofuzz.coverage import DSA, SurpriseFit
    >>> fit = SurpriseFit(acts={"f": torch.tensor([[0., 0.], [1., 0.]])}, labels=torch.tensor([0, 1]),
    ...                   logits_layer="f")
    >>> m = DSA(fit=fit, buckets=4, upper=2.0)
    >>> x = {"f": torch.tensor([[0.5, -0.5]])}   # predicted class 0; x_a = [0, 0]
    >>> m.surprise(x).tolist(), m.measure(x).tolist()
    ([0.7071067811865476], [[1]])
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from neurofuzz.coverage.base import CoverageMetric
from neurofuzz.coverage.recorder import ActivationRecorder
from neurofuzz.ground.errors import UserError

FORMAT = "neurofuzz-surprise-fit/1"


class SurpriseFit:
    """Training traces ``acts`` (``{layer: float [N, n]}``), labels ``int64 [N]`` and the name of
    the layer holding the logits (for DSA's predicted class; ``None`` if unavailable)."""

    def __init__(self, *, acts: dict[str, torch.Tensor], labels: torch.Tensor, logits_layer: str | None = None) -> None:
        if not acts:
            raise UserError("surprise fit: no layers")
        ns = {a.shape[0] for a in acts.values()}
        if len(ns) != 1 or any(a.dim() != 2 for a in acts.values()) or labels.shape != (next(iter(ns)),):
            raise UserError("surprise fit: every layer must be [N, n] and labels [N] for the same N")
        if next(iter(ns)) < 2:
            raise UserError("surprise fit: need at least 2 training inputs")
        self.acts = {k: v.detach().double().cpu() for k, v in acts.items()}
        self.labels = labels.long().cpu()
        self.logits_layer = logits_layer

    def hash(self) -> str:
        """Short content hash of the traces and labels (part of a metric's definition)."""
        h = hashlib.sha256()
        for name, a in self.acts.items():
            h.update(name.encode() + b"\0" + a.numpy().tobytes())
        h.update(self.labels.numpy().tobytes() + (self.logits_layer or "").encode())
        return h.hexdigest()[:16]

    @classmethod
    @torch.no_grad()
    def from_data(cls, target: nn.Module, x: torch.Tensor, y: torch.Tensor, *, layers: list[str],
                  logits_layer: str | None = None, reduction: str = "mean", batch_size: int = 256) -> "SurpriseFit":
        """Record ``layers`` (and ``logits_layer``) of ``target`` over training data ``x, y``."""
        names = list(dict.fromkeys(layers + ([logits_layer] if logits_layer else [])))
        rec = ActivationRecorder(target, types=(), names=names, reduction=reduction)
        parts: dict[str, list[torch.Tensor]] = {n: [] for n in names}
        with rec:
            for i in range(0, len(x), batch_size):
                target(x[i : i + batch_size])
                for n, a in rec.pop().items():
                    parts[n].append(a.cpu())
        missing = [n for n in names if not parts.get(n)]
        if missing:
            raise UserError(f"surprise fit: layers {missing} recorded nothing; check the module names")
        return cls(acts={n: torch.cat(parts[n]) for n in names}, labels=torch.as_tensor(y), logits_layer=logits_layer)

    def save(self, path: str | Path) -> None:
        torch.save({"format": FORMAT, "layers": list(self.acts), "acts": list(self.acts.values()),
                    "labels": self.labels, "logits_layer": self.logits_layer or ""}, os.fspath(path))

    @classmethod
    def load(cls, path: str | Path) -> "SurpriseFit":
        p = Path(path)
        if not p.is_file():
            raise UserError(f"surprise fit file {str(p)!r} not found; create it with SurpriseFit.from_data(...).save()")
        try:
            d = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable file is the user's to fix
            raise UserError(f"cannot read surprise fit {str(p)!r}: {type(e).__name__}") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise UserError(f"{str(p)!r} is not a neurofuzz surprise fit ({FORMAT})")
        acts, names = d.get("acts"), d.get("layers")
        if not (isinstance(acts, list) and isinstance(names, list) and len(acts) == len(names)
                and all(isinstance(a, torch.Tensor) and a.is_floating_point() for a in acts)
                and isinstance(d.get("labels"), torch.Tensor)):
            raise UserError(f"surprise fit {str(p)!r} is corrupted (layers / acts / labels)")
        return cls(acts=dict(zip(names, acts)), labels=d["labels"], logits_layer=d.get("logits_layer") or None)


class SurpriseMetric(CoverageMetric):
    """Surprise coverage over the SA of subclass ``_sa``; see the module docstring."""

    needs_predictions = False

    def __init__(self, layers: dict[str, int] | None = None, *, fit: "SurpriseFit | str | Path",
                 buckets: int = 100, upper: float | None = None, lower: float | None = None,
                 device: str | torch.device = "cpu") -> None:
        # ``layers`` (given by ``build_metric``) is not used: the fit names the layers
        fit = fit if isinstance(fit, SurpriseFit) else SurpriseFit.load(fit)
        if int(buckets) < 1:
            raise UserError(f"{self.name}: buckets must be >= 1, got {buckets}")
        self.fit, self.fit_hash = fit, fit.hash()
        self.sa_layers = [n for n in fit.acts if n != fit.logits_layer or not self.needs_predictions] or list(fit.acts)
        if self.needs_predictions and not fit.logits_layer:
            raise UserError(f"{self.name} needs the predicted class: fit it with logits_layer=<the logits module>")
        need = list(dict.fromkeys(self.sa_layers + ([fit.logits_layer] if self.needs_predictions else [])))
        super().__init__({n: fit.acts[n].shape[1] for n in need}, cells_per_neuron=1, device=device)
        self.buckets = int(buckets)
        self.train = torch.cat([fit.acts[n] for n in self.sa_layers], 1)
        self._prepare()
        train_sa = self._train_sa() if upper is None or (lower is None and self.name == "lsa") else None
        if train_sa is not None:
            train_sa = train_sa[np.isfinite(train_sa)]
            if len(train_sa) == 0:
                raise UserError(f"{self.name}: no training trace has a finite SA; give lower and upper")
        default_low = float(train_sa.min()) if self.name == "lsa" and train_sa is not None else 0.0
        self.lower = float(lower) if lower is not None else default_low
        self.upper = float(upper) if upper is not None else self.lower + 2.0 * (float(train_sa.max()) - self.lower)
        if not (np.isfinite(self.lower) and np.isfinite(self.upper) and self.upper > self.lower):
            raise UserError(f"{self.name}: need finite lower < upper, got [{self.lower}, {self.upper}]")
        self.n_neurons, self.m = 1, self.buckets
        self.covered = torch.zeros(self.buckets, dtype=torch.bool, device=self.device)
        self.valid = torch.ones(1, dtype=torch.bool, device=self.device)

    @property
    def sparse(self) -> bool:
        return True

    def config(self) -> dict[str, Any]:
        return {"buckets": self.buckets, "lower": self.lower, "upper": self.upper, "layers": self.sa_layers, "fit": self.fit_hash}

    def _prepare(self) -> None:
        """Precompute what ``_sa`` needs from the training traces."""

    def _train_sa(self) -> np.ndarray:
        raise NotImplementedError

    def _sa(self, v: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def surprise(self, acts: dict[str, torch.Tensor]) -> torch.Tensor:
        """SA per input, float64 ``[B]``."""
        return self._sa(self.flatten(acts))

    def _measure(self, v: torch.Tensor) -> torch.Tensor:
        sa = self._sa(v).to(self.device)
        ok = (sa >= self.lower) & (sa <= self.upper)
        b = ((sa - self.lower) / (self.upper - self.lower) * self.buckets).nan_to_num(-1.0).floor().clamp(0, self.buckets - 1).long()
        return torch.where(ok, b, torch.full_like(b, -1)).unsqueeze(1)

    def _sa_trace(self, v: torch.Tensor) -> torch.Tensor:
        """The SA layers' part of flat activations ``v`` (layer order of ``self.layers``)."""
        parts, start = [], 0
        for n, k in self.layers.items():
            if n in self.sa_layers:
                parts.append(v[:, start : start + k])
            start += k
        return torch.cat(parts, 1).double().cpu()

    def per_layer(self) -> dict[str, float]:
        """SA spans the chosen layers: every layer reports the one value."""
        return {n: self.value() for n in self.layers}


class LSA(SurpriseMetric):
    """Likelihood-based surprise coverage (``var_threshold``: drop neurons with lower training variance)."""

    name = "lsa"

    def __init__(self, layers: dict[str, int] | None = None, *, fit: "SurpriseFit | str | Path",
                 buckets: int = 100, upper: float | None = None, lower: float | None = None,
                 var_threshold: float = 1e-5, device: str | torch.device = "cpu") -> None:
        self.var_threshold = float(var_threshold)
        super().__init__(layers, fit=fit, buckets=buckets, upper=upper, lower=lower, device=device)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "var_threshold": self.var_threshold}

    def _prepare(self) -> None:
        from scipy.stats import gaussian_kde

        t = self.train.numpy()
        self.keep = np.flatnonzero(t.var(0) >= self.var_threshold)
        if len(self.keep) == 0:
            raise UserError(f"lsa: every neuron's training variance is below var_threshold={self.var_threshold}")
        if len(t) <= len(self.keep):
            raise UserError(f"lsa: {len(t)} training traces for {len(self.keep)} neurons; the KDE needs more "
                            "traces than neurons (fit on more data or fewer layers)")
        try:
            self.kde = gaussian_kde(t[:, self.keep].T)
        except np.linalg.LinAlgError:
            raise UserError("lsa: the training traces are linearly dependent; raise var_threshold or "
                            "choose other layers") from None

    def _train_sa(self) -> np.ndarray:
        """LSA of each training trace against the KDE of the *other* traces (leave-one-out: with
        its own kernel a training trace looks far less surprising than any new input)."""
        from scipy.special import logsumexp

        t = self.train.numpy()[:, self.keep]
        chol = np.linalg.cholesky(self.kde.covariance)
        z = np.linalg.solve(chol, t.T).T  # whitened: kernel distance is Euclidean in z
        sq = (z * z).sum(1)
        maha = np.maximum(sq[:, None] + sq[None, :] - 2 * z @ z.T, 0.0)
        log_k0 = -0.5 * len(self.keep) * np.log(2 * np.pi) - np.log(np.diag(chol)).sum()
        np.fill_diagonal(maha, np.inf)
        return -(log_k0 + logsumexp(-0.5 * maha, axis=1) - np.log(len(t) - 1))

    def _sa(self, v: torch.Tensor) -> torch.Tensor:
        a = self._sa_trace(v).numpy()[:, self.keep]
        bad = ~np.isfinite(a).all(1)
        out = np.full(len(a), np.nan)
        if (~bad).any():
            out[~bad] = -self.kde.logpdf(a[~bad].T)
        return torch.from_numpy(out)


class DSA(SurpriseMetric):
    """Distance-based surprise coverage (predicted class from the fit's ``logits_layer``)."""

    name = "dsa"
    needs_predictions = True

    def _prepare(self) -> None:
        self.labels = self.fit.labels
        if len(self.labels.unique()) < 2:
            raise UserError("dsa: the training labels must hold at least two classes")

    def _nearest(self, a: torch.Tensor, cls: torch.Tensor, *, same: bool, exclude: torch.Tensor | None = None):
        d = torch.cdist(a, self.train)
        mask = (self.labels[None, :] == cls[:, None]) if same else (self.labels[None, :] != cls[:, None])
        if exclude is not None:
            mask[torch.arange(len(a)), exclude] = False
        d = torch.where(mask, d, torch.full_like(d, float("inf")))
        return d.min(1)

    def _dsa(self, a: torch.Tensor, cls: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
        dist_a, idx = self._nearest(a, cls, same=True, exclude=exclude)
        dist_b, _ = self._nearest(self.train[idx], cls, same=False)
        return dist_a / dist_b

    def _train_sa(self) -> np.ndarray:
        out = [self._dsa(self.train[i : i + 512], self.labels[i : i + 512], torch.arange(i, min(i + 512, len(self.train))))
               for i in range(0, len(self.train), 512)]
        return torch.cat(out).numpy()

    def _sa(self, v: torch.Tensor) -> torch.Tensor:
        start = 0
        for n, k in self.layers.items():
            if n == self.fit.logits_layer:
                pred = v[:, start : start + k].argmax(1).cpu()
            start += k
        a = self._sa_trace(v)
        out = self._dsa(a.nan_to_num(nan=float("inf")), pred)
        return torch.where(torch.isfinite(a).all(1), out, torch.full_like(out, float("nan")))
