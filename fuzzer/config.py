"""Campaign configuration: a dataclass, loadable from TOML, validated at the boundary.

Example ``campaign.toml``::

    seed = 7
    seeds_per_batch = 8          # seeds picked per iteration
    mutants_per_seed = 32        # mutants per seed (the power schedule redistributes them)
    feedback = ["nbc", "snac"]   # an input is kept if it raises coverage on any of these
    oracles = ["misclassified", "nonfinite"]

    [metrics]                    # name = parameters
    nc = { threshold = 0.5 }
    kmnc = { k = 100 }
    nbc = {}

    [scheduler]
    name = "power"

    [[mutators]]
    name = "gaussian_noise"
    std = [0.01, 0.1]

    [constraint]
    alpha = 0.02
    beta = 0.2

    [budget]
    seconds = 60
    iterations = 0               # 0: no limit
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurofuzz.fuzzer.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_MUTATORS: list[dict[str, Any]] = [
    {"name": n}
    for n in (
        "translate", "scale", "shear", "rotate", "gaussian_blur", "motion_blur", "contrast",
        "gradient_luminance", "uniform_noise", "gaussian_noise", "salt_and_pepper_noise",
    )
]


@dataclass
class Budget:
    """Stop conditions; 0 means "no limit". The campaign stops at the first one reached."""

    seconds: float = 0.0
    iterations: int = 0
    mutants: int = 0
    plateau_seconds: float = 0.0  # stop when no input was retained for this long

    def unlimited(self) -> bool:
        return not (self.seconds or self.iterations or self.mutants or self.plateau_seconds)


@dataclass
class Constraint:
    """DeepHunter's validity rule; ``ssim`` is an optional floor (0 = off)."""

    alpha: float = 0.02
    beta: float = 0.2
    ssim: float = 0.0
    enabled: bool = True


@dataclass
class FuzzConfig:
    seed: int = 0
    seeds_per_batch: int = 8
    mutants_per_seed: int = 32
    mutators: list[dict[str, Any]] = field(default_factory=lambda: [dict(m) for m in DEFAULT_MUTATORS])
    metrics: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {"nc": {"threshold": 0.5}, "tknc": {"k": 2}, "kmnc": {"k": 100}, "nbc": {}, "snac": {}}
    )
    # Retain an input when it raises coverage on one of these. Default: the boundary metrics. Measured
    # (benchmarks/campaign.py): feeding back KMNC's interior sections floods the queue with
    # near-duplicates and loses to an unguided baseline; boundary feedback beats it from few seeds.
    feedback: list[str] = field(default_factory=lambda: ["nbc", "snac"])
    scheduler: dict[str, Any] = field(default_factory=lambda: {"name": "power"})
    oracles: list[str] = field(default_factory=lambda: ["misclassified", "nonfinite"])
    constraint: Constraint = field(default_factory=Constraint)
    budget: Budget = field(default_factory=Budget)
    # "adaptive": each seed's mutator drawn by its yield so far (retained + failing per mutant, 20% uniform);
    # "uniform": drawn uniformly
    mutator_choice: str = "adaptive"
    guided: bool = True  # False: the unguided baseline (nothing is added to the queue; coverage is still measured)
    save_all_failures: bool = False  # False: keep failures that are new per (root, oracle, class) or raise coverage
    stats_interval: float = 2.0  # seconds between fuzzer_stats rewrites (each preceded by a sync to disk)
    fsync_every_write: bool = False  # True: fsync each iteration's writes (power-loss safe at every step, slower)
    checkpoint_interval: float = 30.0  # seconds between state checkpoints

    def __post_init__(self) -> None:
        try:
            if isinstance(self.constraint, dict):
                self.constraint = Constraint(**self.constraint)
            if isinstance(self.budget, dict):
                self.budget = Budget(**self.budget)
        except TypeError as e:
            raise UserError(f"bad config: {e}") from None

    def validate(self) -> "FuzzConfig":
        """Check every field (types, names, ranges, mutator / metric / scheduler parameters);
        raise :class:`UserError` naming the problem. Returns ``self``."""
        try:
            return self._validate()
        except (TypeError, AttributeError, ValueError) as e:
            if isinstance(e, UserError):
                raise
            raise UserError(f"bad config value: {e}") from None

    def _validate(self) -> "FuzzConfig":
        import torch

        from neurofuzz.coverage.profile import NeuronProfile
        from neurofuzz.coverage.suite import METRICS, build_metric
        from neurofuzz.fuzzer.schedulers import build_scheduler
        from neurofuzz.fuzzer.oracles import ORACLES
        from neurofuzz.fuzzer.schedulers import SCHEDULERS
        from neurofuzz.mutators import create

        for key in ("seed", "seeds_per_batch", "mutants_per_seed"):
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool):
                raise UserError(f"{key} must be a whole number, got {v!r}")
        for key in ("seconds", "iterations", "mutants", "plateau_seconds"):
            v = getattr(self.budget, key)
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise UserError(f"budget.{key} must be a number, got {v!r}")
        for key in ("alpha", "beta", "ssim"):
            v = getattr(self.constraint, key)
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise UserError(f"constraint.{key} must be a number, got {v!r}")
        if self.seeds_per_batch < 1 or self.mutants_per_seed < 1:
            raise UserError("seeds_per_batch and mutants_per_seed must be >= 1")
        if not self.mutators:
            raise UserError("no mutators configured; list at least one under [[mutators]]")
        if self.mutator_choice not in ("adaptive", "uniform"):
            raise UserError(f"mutator_choice must be 'adaptive' or 'uniform', got {self.mutator_choice!r}")
        for m in self.mutators:
            if not isinstance(m, dict) or "name" not in m:
                raise UserError(f"each [[mutators]] entry needs a name, got {m!r}")
            create(m["name"], **{k: v for k, v in m.items() if k != "name"})  # raises on bad params
        if not self.metrics:
            raise UserError("no coverage metrics configured under [metrics]")
        toy = NeuronProfile(layers={"a": 2}, low=torch.zeros(2), high=torch.ones(2), mean=torch.zeros(2),
                            std=torch.ones(2))
        for name, params in self.metrics.items():
            if name not in METRICS:
                raise UserError(f"unknown coverage metric {name!r}; choose from {', '.join(METRICS)}")
            if not isinstance(params, dict):
                raise UserError(f"metric {name}: parameters must be a table, e.g. {name} = {{}}")
            build_metric(name, profile=toy, **params)  # raises on bad parameter names / values
        if not isinstance(self.feedback, list):
            raise UserError("feedback must be a list of metric names")
        unknown = [f for f in self.feedback if f not in METRICS]
        if unknown:
            raise UserError(f"feedback names unknown metric(s) {unknown}; choose from {', '.join(METRICS)}")
        missing = [f for f in self.feedback if f not in self.metrics]
        if missing and self.feedback != FuzzConfig.__dataclass_fields__["feedback"].default_factory():
            raise UserError(f"feedback metric(s) {missing} are not configured under [metrics]; add them there")
        self.feedback = [f for f in self.feedback if f in self.metrics] or list(self.metrics)
        for o in self.oracles:
            if o not in ORACLES:
                raise UserError(f"unknown oracle {o!r}; choose from {', '.join(ORACLES)}")
        if not isinstance(self.scheduler, dict):
            raise UserError('scheduler must be a table, e.g. [scheduler] name = "power"')
        if self.scheduler.get("name") not in SCHEDULERS:
            raise UserError(f"unknown scheduler {self.scheduler.get('name')!r}; choose from {', '.join(SCHEDULERS)}")
        build_scheduler(**self.scheduler)  # raises on bad parameters
        c = self.constraint
        if not (0 <= c.alpha <= 1 and 0 <= c.beta <= 1 and 0 <= c.ssim <= 1):
            raise UserError("constraint alpha, beta and ssim must lie in [0, 1]")
        b = self.budget
        if min(b.seconds, b.iterations, b.mutants, b.plateau_seconds) < 0:
            raise UserError("budgets must be >= 0 (0 means no limit)")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FuzzConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(f"unknown config key(s) {unknown}; valid: {sorted(known)}")
        d = dict(d)
        try:
            if "constraint" in d:
                d["constraint"] = Constraint(**d["constraint"])
            if "budget" in d:
                d["budget"] = Budget(**d["budget"])
            cfg = cls(**d)
        except TypeError as e:
            raise UserError(f"bad config: {e}") from None
        return cfg.validate()

    @classmethod
    def from_toml(cls, path: str | Path) -> "FuzzConfig":
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(f"config file {path} not found") from None
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"cannot read config file {path}: {e}") from None
        except tomllib.TOMLDecodeError as e:
            raise UserError(f"config file {path} is not valid TOML: {e}") from None
        return cls.from_dict(data)
