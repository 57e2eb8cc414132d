"""CoverageSuite: one forward pass, several metrics, per-input gains.

The suite owns one :class:`ActivationRecorder` (hooks registered once, for the suite's life or a
``with`` block) and a set of metrics over the same layers. :meth:`CoverageSuite.evaluate` runs
the model once on a batch and returns the logits, every metric's cells and per-input novelty
*without* changing any history; :meth:`CoverageSuite.commit` then commits explicitly.

Metrics by name (``build_metric``): ``nc`` (threshold, scaled), ``tknc`` (k), ``kmnc`` (k),
``nbc`` (std_widen), ``snac`` (std_widen). KMNC, NBC and SNAC need a :class:`NeuronProfile`.
A spec entry may name an instance of a type (``{"kmnc_fine": {"metric": "kmnc", "k": 1000}}``,
see :func:`build_spec`).

Example::

    >>> import torch
    >>> from neurofuzz.fuzzer.zoo import builtin_target, load_digits32
    >>> from neurofuzz.coverage import CoverageSuite, NeuronProfile
    >>> target = builtin_target()
    >>> profile = NeuronProfile.from_data(target, load_digits32("train")[0])
    >>> suite = CoverageSuite.default(target, profile)
    >>> x, _ = load_digits32("test")
    >>> with suite:
    ...     ev = suite.evaluate(x[:64])
    ...     suite.commit(ev)
    >>> sorted(suite.values()) == ["kmnc", "nbc", "nc", "snac", "tknc"]
    True
    >>> int(ev.gains["kmnc"].sum()) == suite.metrics["kmnc"].covered_count()
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from neurofuzz.coverage.base import CoverageMetric
from neurofuzz.coverage.bknc import BKNC
from neurofuzz.coverage.kmnc import KMNC
from neurofuzz.coverage.nbc import NBC
from neurofuzz.coverage.nc import NC
from neurofuzz.coverage.nlc import NLC
from neurofuzz.coverage.profile import NeuronProfile
from neurofuzz.coverage.recorder import ActivationRecorder
from neurofuzz.coverage.snac import SNAC
from neurofuzz.coverage.surprise import DSA, LSA
from neurofuzz.coverage.tknc import TKNC
from neurofuzz.coverage.tknp import TKNP
from neurofuzz.ground.errors import UserError
from neurofuzz.ground.registry import Registry

METRICS: Registry[CoverageMetric] = Registry("coverage metric")
for _cls in (NC, TKNC, KMNC, NBC, SNAC, BKNC, TKNP, NLC, LSA, DSA):
    METRICS.register(_cls)
_NEEDS_PROFILE = {"kmnc", "nbc", "snac"}
_PARAMS = {"nc": {"threshold", "scaled"}, "tknc": {"k"}, "kmnc": {"k"}, "nbc": {"std_widen"}, "snac": {"std_widen"},
           "bknc": {"k"}, "tknp": {"k", "table", "hash_seed"}, "nlc": {"tol"},
           "lsa": {"fit", "buckets", "lower", "upper", "var_threshold"}, "dsa": {"fit", "buckets", "lower", "upper"}}
DEFAULT_SPEC: dict[str, dict[str, Any]] = {
    "nc": {"threshold": 0.5}, "tknc": {"k": 2}, "kmnc": {"k": 100}, "nbc": {}, "snac": {},
}


def metric_kind(name: str, params: dict[str, Any] | None) -> str:
    """The metric type of a configured entry: ``params["metric"]`` for a named instance
    (``kmnc_fine = { metric = "kmnc", k = 1000 }``), else the entry's name itself."""
    return str((params or {}).get("metric", name))


def build_spec(spec: dict[str, dict[str, Any]], *, profile: NeuronProfile | None = None,
               device: str | torch.device = "cpu") -> dict[str, CoverageMetric]:
    """``{entry name: metric}`` for a ``[metrics]`` table; an entry with a ``metric`` key is a
    named instance of that type, so one type can be configured twice (say KMNC at k = 100 and at
    k = 1000)."""
    out = {}
    for n, p in spec.items():
        p = dict(p or {})
        kind = metric_kind(n, p)
        p.pop("metric", None)
        out[n] = build_metric(kind, profile=profile, device=device, **p)
    return out


def build_metric(name: str, *, layers: dict[str, int] | None = None, profile: NeuronProfile | None = None,
                 device: str | torch.device = "cpu", **params: Any) -> CoverageMetric:
    """Create metric ``name`` with validated parameters."""
    if name not in METRICS:
        raise UserError(f"unknown coverage metric {name!r}; choose from {', '.join(METRICS)}")
    bad = sorted(set(params) - _PARAMS[name])
    if bad:
        raise UserError(f"{name}: unknown parameter(s) {bad}; valid: {sorted(_PARAMS[name])}")
    try:
        if name in _NEEDS_PROFILE:
            if profile is None:
                raise UserError(f"{name} needs a neuron profile; create one with `neurofuzz profile`")
            return METRICS[name](profile, device=device, **params)
        if layers is None:
            if profile is None:
                raise UserError(f"{name}: give the layer layout or a profile")
            layers = profile.layers
        return METRICS[name](layers, device=device, **params)
    except (TypeError, ValueError) as e:
        if isinstance(e, UserError):
            raise
        raise UserError(f"{name}: bad parameter value in {params!r} ({e})") from None


@dataclass
class Evaluation:
    """Result of one forward pass: logits ``[B, n_classes]``, cells and gains per metric."""

    logits: torch.Tensor
    cells: dict[str, torch.Tensor]
    gains: dict[str, torch.Tensor]

    def total_gain(self, names: list[str] | None = None) -> torch.Tensor:
        """Per-input sum of gains over ``names`` (all metrics if None): int64 ``[B]``."""
        keys = names if names is not None else list(self.gains)
        return torch.stack([self.gains[k] for k in keys]).sum(0)


class CoverageSuite:
    """Run ``target`` once per batch and update several metrics.

    Args:
        target: a :class:`~neurofuzz.fuzzer.Target` (or any module returning logits).
        metrics: ``{name: metric}``, all on the recorder's layers.
        recorder: the observer; default records the same layers as ``profile``.
    """

    def __init__(self, target: nn.Module, metrics: dict[str, CoverageMetric], recorder: ActivationRecorder) -> None:
        if not metrics:
            raise UserError("a coverage suite needs at least one metric")
        self.target = target
        self.metrics = dict(metrics)
        self.recorder = recorder

    @classmethod
    def default(cls, target: nn.Module, profile: NeuronProfile, spec: dict[str, dict[str, Any]] | None = None,
                *, recorder: ActivationRecorder | None = None, check_model: bool = True) -> "CoverageSuite":
        """Build metrics from ``spec`` (default: all five, see ``DEFAULT_SPEC``) over ``profile``'s layers."""
        rec = recorder or ActivationRecorder(target, reduction=profile.reduction)
        known = set(rec.layer_names)
        # a hooked module returning a tuple / dict records "<module>.<item>"
        missing = [n for n in profile.layers if n not in known and n.rsplit(".", 1)[0] not in known]
        if missing:
            raise UserError(f"profile layers {missing} are not in this model; re-profile it")
        profile.check_compatible(model=target if check_model else None, reduction=rec.reduction)
        device = getattr(target, "device", None) or next((p.device for p in target.parameters()), torch.device("cpu"))
        spec = DEFAULT_SPEC if spec is None else spec
        metrics = build_spec(spec, profile=profile, device=device)
        return cls(target, metrics, rec)

    def __enter__(self) -> "CoverageSuite":
        self.recorder.attach()
        return self

    def __exit__(self, *exc: object) -> None:
        self.recorder.detach()

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor) -> Evaluation:
        """Forward ``x`` once; measure every metric and count novelty. Changes no history."""
        attached = self.recorder.n_hooks > 0
        self.recorder.attach()
        try:
            self.recorder.pop()
            logits = self.target(x)
            acts = self.recorder.pop()
        finally:
            if not attached:
                self.recorder.detach()
        flat: dict[tuple, torch.Tensor] = {}  # flatten once per layout, not once per metric
        cells = {}
        for n, m in self.metrics.items():
            key = (tuple(m.layers.items()), m.device)
            if key not in flat:
                flat[key] = m.flatten(acts)
            cells[n] = m.measure_flat(flat[key])
        gains = {n: self.metrics[n].novelty(c) for n, c in cells.items()}
        return Evaluation(logits, cells, gains)

    def commit(self, ev: Evaluation, mask: torch.Tensor | None = None) -> None:
        for n, m in self.metrics.items():
            m.commit(ev.cells[n], mask)

    def values(self) -> dict[str, float]:
        return {n: m.value() for n, m in self.metrics.items()}

    def per_layer(self) -> dict[str, dict[str, float]]:
        return {n: m.per_layer() for n, m in self.metrics.items()}

    def state_dict(self) -> dict[str, Any]:
        return {n: m.state_dict() for n, m in self.metrics.items()}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        if set(d) != set(self.metrics):
            raise UserError(f"stored coverage has metrics {sorted(d)}, this suite has {sorted(self.metrics)}")
        for n, m in self.metrics.items():
            m.load_state_dict(d[n])

    def merge(self, other: "CoverageSuite") -> None:
        for n, m in self.metrics.items():
            m.merge(other.metrics[n])

    def merge_state(self, state: dict[str, Any]) -> None:
        """Merge another suite's :meth:`state_dict` (another worker's coverage) into this one; each
        metric's ``merge`` rule applies (OR of cell maps for the cell metrics)."""
        import copy

        twins = self.__dict__.setdefault("_merge_twins", {})
        for n, m in self.metrics.items():
            if n not in state:
                raise UserError(f"the coverage state to merge has no metric {n!r} (it has {sorted(state)})")
            twin = twins.get(n)
            if twin is None:
                twin = twins[n] = copy.deepcopy(m)
            twin.load_state_dict(state[n])
            m.merge(twin)

    def not_shareable(self) -> list[str]:
        """Metrics whose merge is not idempotent (merging a worker's state twice counts it twice),
        so they cannot be shared between workers that exchange whole states."""
        return [n for n, m in self.metrics.items() if not getattr(m, "idempotent_merge", True)]
