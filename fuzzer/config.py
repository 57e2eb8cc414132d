"""Campaign configuration: a dataclass, loadable from TOML, validated at the boundary.

Example ``campaign.toml``::

    seed = 7
    seeds_per_batch = 8          # seeds picked per iteration
    mutants_per_seed = 32        # mutants per seed (the power schedule redistributes them)
    feedback = ["nbc", "snac"]   # an input is kept if it raises coverage on any of these
    oracles = ["misclassified", {name = "nonfinite"}]   # names, or tables {name = ..., params...}

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

Every value is checked once, when the config is built (``FuzzConfig(...)``, :meth:`FuzzConfig.from_dict`,
:meth:`FuzzConfig.from_toml`, ``dataclasses.replace``): types, finiteness (no NaN or Inf anywhere),
ranges, names and parameters of mutators / metrics / scheduler / oracles. A bad value raises one
:class:`~neurofuzz.ground.errors.UserError` naming the key and the fix; the stored values are the
normalised ones (ints for whole numbers, floats for reals, oracle entries as tables). Assigning a
field later (``cfg.seed = 3``, ``cfg.budget.seconds = 10``) checks the new value the same way;
changing a list or table in place is not checked: build a new config with ``dataclasses.replace``.

Limits (refused beyond, before anything is allocated): ``seed`` in ``[0, 2**63-1]``;
``seeds_per_batch`` <= ``MAX_SEEDS_PER_BATCH`` (4096); ``mutants_per_seed`` and
``seeds_per_batch * mutants_per_seed`` (the mutants of one iteration) <= ``MAX_MUTANTS_PER_ITERATION``
(65536); whole-number budgets <= 2**63-1.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from neurofuzz.ground.errors import UserError

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
DEFAULT_FEEDBACK = ["nbc", "snac"]
MAX_SEED = 2**63 - 1
MAX_SEEDS_PER_BATCH = 4096
MAX_MUTANTS_PER_ITERATION = 65536  # seeds_per_batch * mutants_per_seed
MAX_COUNT = 2**63 - 1  # whole-number budgets (stored as SQLite integers)


# ---------------------------------------------------------------------------- scalar checks
def _whole(key: str, v: Any, lo: int, hi: int, hint: str = "") -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise UserError(f"{key} must be a whole number{hint}, got {v!r}")
    v = int(v)
    if not lo <= v <= hi:
        bound = "2**63-1" if hi == 2**63 - 1 else str(hi)
        raise UserError(f"{key} must lie in [{lo}, {bound}]{hint}, got {v}")
    return v


def _real(key: str, v: Any, lo: float, hi: float = math.inf, hint: str = "") -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise UserError(f"{key} must be a number{hint}, got {v!r}")
    v = float(v)
    if not math.isfinite(v):
        raise UserError(f"{key} must be a finite number{hint}, got {v}")
    if not lo <= v <= hi:
        rng = f">= {lo:g}" if hi == math.inf else f"in [{lo:g}, {hi:g}]"
        raise UserError(f"{key} must be {rng}{hint}, got {v:g}")
    return v


def _flag(key: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise UserError(f"{key} must be true or false, got {v!r}")
    return v


class _Checked:
    """Dataclass mixin: every assignment to a field goes through ``_CHECKS[name]``."""

    _CHECKS: dict[str, Callable[[str, Any], Any]] = {}
    _PREFIX = ""

    def __setattr__(self, name: str, value: Any) -> None:
        check = self._CHECKS.get(name)
        if check is not None:
            value = check(f"{self._PREFIX}{name}", value)
        object.__setattr__(self, name, value)

    @classmethod
    def coerce(cls, v: Any, key: str):
        """``v`` as an instance: an instance is copied (so configs never share one), a table is
        checked for unknown keys."""
        if isinstance(v, cls):
            return dataclasses.replace(v)
        if not isinstance(v, dict):
            raise UserError(f"{key} must be a table, e.g. [{key}], got {v!r}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(v) - set(known))
        if unknown:
            raise UserError(f"bad config: unknown {key} key(s) {unknown}; valid: {', '.join(known)}")
        return cls(**v)


@dataclass
class Budget(_Checked):
    """Stop conditions; 0 means "no limit". The campaign stops at the first one reached."""

    seconds: float = 0.0
    iterations: int = 0
    mutants: int = 0
    plateau_seconds: float = 0.0  # stop when no input was retained for this long

    _PREFIX = "budget."
    _CHECKS = {
        "seconds": lambda k, v: _real(k, v, 0.0, hint=" (seconds; 0 = no limit)"),
        "iterations": lambda k, v: _whole(k, v, 0, MAX_COUNT, " (0 = no limit)"),
        "mutants": lambda k, v: _whole(k, v, 0, MAX_COUNT, " (0 = no limit)"),
        "plateau_seconds": lambda k, v: _real(k, v, 0.0, hint=" (seconds; 0 = no limit)"),
    }

    def unlimited(self) -> bool:
        return not (self.seconds or self.iterations or self.mutants or self.plateau_seconds)


@dataclass
class Constraint(_Checked):
    """DeepHunter's validity rule; ``ssim`` is an optional floor (0 = off)."""

    alpha: float = 0.02
    beta: float = 0.2
    ssim: float = 0.0
    enabled: bool = True

    _PREFIX = "constraint."
    _CHECKS = {
        "alpha": lambda k, v: _real(k, v, 0.0, 1.0),
        "beta": lambda k, v: _real(k, v, 0.0, 1.0),
        "ssim": lambda k, v: _real(k, v, 0.0, 1.0),
        "enabled": _flag,
    }


# ---------------------------------------------------------------------------- compound checks
def _check_plain(key: str, v: Any) -> None:
    """Values inside tables and lists: TOML/JSON types only, numbers finite."""
    if isinstance(v, bool) or isinstance(v, str) or v is None:
        return
    if isinstance(v, numbers.Real):
        if not math.isfinite(float(v)):
            raise UserError(f"{key} must be a finite number, got {v}")
        return
    if isinstance(v, (list, tuple)):
        for i, item in enumerate(v):
            _check_plain(f"{key}[{i}]", item)
        return
    if isinstance(v, dict):
        for k, item in v.items():
            if not isinstance(k, str):
                raise UserError(f"{key} has a key {k!r} that is not a string")
            _check_plain(f"{key}.{k}", item)
        return
    raise UserError(f"{key} must be a number, string, boolean, list or table, got {type(v).__name__}")


def _entries(key: str, v: Any, kind: str, example: str) -> list[dict[str, Any]]:
    """A list of ``{"name": ..., **params}`` entries; a bare string entry means ``{"name": s}``."""
    if not isinstance(v, (list, tuple)):
        raise UserError(f"{key} must be a list of {kind} names or tables, e.g. {example}, got {v!r}")
    out = []
    for i, m in enumerate(v):
        if isinstance(m, str):
            m = {"name": m}
        if not isinstance(m, dict) or not isinstance(m.get("name"), str) or not m["name"]:
            raise UserError(f"each {key} entry needs a name, e.g. {example}; entry {i} is {m!r}")
        _check_plain(f"{key}[{i}]", m)
        out.append(dict(m))
    return out


def _check_mutators(key: str, v: Any) -> list[dict[str, Any]]:
    from neurofuzz.mutators import create

    out = _entries(key, v, "mutator", '[[mutators]] name = "rotate"')
    if not out:
        raise UserError("no mutators configured; list at least one under [[mutators]]")
    for m in out:
        create(m["name"], **{k: val for k, val in m.items() if k != "name"})  # raises on bad params
    return out


def _check_oracles(key: str, v: Any) -> list[dict[str, Any]]:
    import inspect

    from neurofuzz.fuzzer.oracles import ORACLES

    out = _entries(key, v, "oracle", 'oracles = ["misclassified", {name = "nonfinite"}]')
    seen: set[str] = set()
    for o in out:
        name = o["name"]
        if name in seen:
            raise UserError(f"oracle {name!r} is listed twice; list each oracle once")
        seen.add(name)
        cls = ORACLES.get(name)  # raises on an unknown name, listing the known ones
        params = {k: val for k, val in o.items() if k != "name"}
        resources = set(getattr(cls, "resources", ()))
        given = sorted(resources & set(params))
        if given:
            raise UserError(f"the {name} oracle's {', '.join(given)} is not a config value; "
                            "it is given when the campaign starts (for the CLI: --reference-model)")
        if resources:  # cannot be built here: check the parameter names only
            sig = inspect.signature(cls)
            takes_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
            accepted = [n for n, p in sig.parameters.items()
                        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and n not in resources]
            unknown = sorted(set(params) - set(accepted))
            if unknown and not takes_any:
                raise UserError(f"oracle {name!r} does not take parameters {', '.join(unknown)}; "
                                f"it takes: {', '.join(accepted) or 'none'}")
        else:
            ORACLES.build(name, **params)  # raises on bad parameter names / values
    return out


def _check_metrics(key: str, v: Any) -> dict[str, dict[str, Any]]:
    import torch

    from neurofuzz.coverage.profile import NeuronProfile
    from neurofuzz.coverage.suite import METRICS, build_metric

    if isinstance(v, (list, tuple)) and all(isinstance(n, str) for n in v):
        v = {n: {} for n in v}
    if not isinstance(v, dict):
        raise UserError(f"metrics must be a table of name = parameters, e.g. [metrics] nc = {{ threshold = 0.5 }}, got {v!r}")
    if not v:
        raise UserError("no coverage metrics configured under [metrics]")
    toy = NeuronProfile(layers={"a": 2}, low=torch.zeros(2), high=torch.ones(2), mean=torch.zeros(2),
                        std=torch.ones(2))
    out = {}
    for name, params in v.items():
        if not isinstance(params, dict):
            raise UserError(f"metric {name}: parameters must be a table, e.g. {name} = {{}}")
        kind = params.get("metric", name)
        if kind not in METRICS:
            hint = (f"choose from {', '.join(METRICS)}" if "metric" in params else
                    f"choose from {', '.join(METRICS)}, or name an instance: {name} = {{ metric = \"kmnc\", k = 1000 }}")
            raise UserError(f"unknown coverage metric {kind!r} (metrics.{name}); {hint}")
        if not isinstance(name, str) or not name.isidentifier():
            raise UserError(f"metric name {name!r} must be a plain identifier (letters, digits, _)")
        _check_plain(f"metrics.{name}", params)
        build_metric(kind, profile=toy, **{k: p for k, p in params.items() if k != "metric"})  # raises on bad values
        out[name] = dict(params)
    return out


def _check_feedback(key: str, v: Any) -> list[str]:
    from neurofuzz.coverage.suite import METRICS

    if not isinstance(v, (list, tuple)) or not all(isinstance(f, str) for f in v):
        raise UserError(f'feedback must be a list of metric names, e.g. feedback = ["nbc"], got {v!r}')
    unknown = [f for f in v if not f.isidentifier()]  # whether each is configured is checked against [metrics]
    if unknown:
        raise UserError(f"feedback names unknown metric(s) {unknown}; choose from {', '.join(METRICS)}")
    return list(dict.fromkeys(v))


def _check_scheduler(key: str, v: Any) -> dict[str, Any]:
    from neurofuzz.fuzzer.schedulers import SCHEDULERS, build_scheduler

    if not isinstance(v, dict):
        raise UserError(f'scheduler must be a table, e.g. [scheduler] name = "power", got {v!r}')
    if v.get("name") not in SCHEDULERS:
        raise UserError(f"unknown scheduler {v.get('name')!r}; choose from {', '.join(SCHEDULERS)}")
    _check_plain("scheduler", v)
    build_scheduler(**v)  # raises on bad parameters
    return dict(v)


def _check_choice(key: str, v: Any) -> str:
    if v not in ("adaptive", "uniform", "adaptive-per-mutant"):
        raise UserError(f"{key} must be 'adaptive' or 'uniform', got {v!r} "
                        "('adaptive-per-mutant', the per-mutant yield of earlier versions, is accepted for ablations)")
    return v


def _guard(check: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    """A component's own checks may raise TypeError / ValueError: make them one-line UserErrors."""
    def run(key: str, v: Any) -> Any:
        try:
            return check(key, v)
        except UserError:
            raise
        except (TypeError, ValueError, KeyError) as e:
            raise UserError(f"bad config value for {key}: {' '.join(str(e).split())}") from None

    return run


@dataclass
class FuzzConfig(_Checked):
    seed: int = 0
    seeds_per_batch: int = 8
    mutants_per_seed: int = 32
    mutators: list[dict[str, Any]] = field(default_factory=lambda: [dict(m) for m in DEFAULT_MUTATORS])
    metrics: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {"nc": {"threshold": 0.5}, "tknc": {"k": 2}, "kmnc": {"k": 100}, "nbc": {}, "snac": {},
                                 "kmnc_fine": {"metric": "kmnc", "k": 1000}}
    )  # kmnc_fine: KMNC with 10x finer sections, a candidate of the widening feedback (feedback_patience)
    # Retain an input when it raises coverage on one of these. Default: the boundary metrics. Measured
    # (benchmarks/campaign.py): feeding back KMNC's interior sections floods the queue with
    # near-duplicates and loses to an unguided baseline; boundary feedback beats it from few seeds.
    # Default names missing from `metrics` are dropped (all metrics if none is left); names given
    # explicitly must be configured metrics.
    feedback: list[str] = field(default_factory=lambda: list(DEFAULT_FEEDBACK))
    scheduler: dict[str, Any] = field(default_factory=lambda: {"name": "power"})
    # entries {"name": ..., **params} (a string s stands for {"name": s}); see oracle_names()
    oracles: list[dict[str, Any]] = field(default_factory=lambda: [{"name": "misclassified"}, {"name": "nonfinite"}])
    constraint: Constraint = field(default_factory=Constraint)
    budget: Budget = field(default_factory=Budget)
    # "adaptive": each seed's mutator drawn by its yield so far (retained + new failing (root, class) pairs per
    # forward-pass equivalent spent, 20% of the budget uniform; see fuzzer/mutator_choice.py); "uniform": drawn
    # uniformly; "adaptive-per-mutant": the old rule (retained + failing per mutant), for ablations
    mutator_choice: str = "adaptive"
    guided: bool = True  # False: the unguided baseline (nothing is added to the queue; coverage is still measured)
    save_all_failures: bool = False  # False: keep failures that are new per (root, oracle, class) or raise coverage
    stats_interval: float = 2.0  # seconds between fuzzer_stats rewrites (each preceded by a sync to disk)
    fsync_every_write: bool = False  # True: fsync each iteration's writes (power-loss safe at every step, slower)
    checkpoint_interval: float = 30.0  # seconds between state checkpoints
    cache_mb: float = 256.0  # memory for queue images (the queue itself lives on disk)
    # > 0: after this many iterations in a row without a retained input, the metric that would have kept the most
    # mutants joins the feedback (fuzzer/feedback.py; a finer instance only after its coarser one); 0: the
    # feedback stays as configured. Measured (benchmarks/guidance.py, README): 25 beats 0 on held-out coverage.
    feedback_patience: int = 25

    _CHECKS = {
        "seed": lambda k, v: _whole(k, v, 0, MAX_SEED),
        "seeds_per_batch": lambda k, v: _whole(k, v, 1, MAX_SEEDS_PER_BATCH),
        "mutants_per_seed": lambda k, v: _whole(k, v, 1, MAX_MUTANTS_PER_ITERATION),
        "mutators": _guard(_check_mutators),
        "metrics": _guard(_check_metrics),
        "feedback": _guard(_check_feedback),
        "scheduler": _guard(_check_scheduler),
        "oracles": _guard(_check_oracles),
        "constraint": lambda k, v: Constraint.coerce(v, k),
        "budget": lambda k, v: Budget.coerce(v, k),
        "mutator_choice": _check_choice,
        "guided": _flag,
        "save_all_failures": _flag,
        "stats_interval": lambda k, v: _real(k, v, 0.0, hint=" (seconds)"),
        "fsync_every_write": _flag,
        "checkpoint_interval": lambda k, v: _real(k, v, 0.0, hint=" (seconds)"),
        "cache_mb": lambda k, v: _real(k, v, 1.0, hint=" (MB)"),
        "feedback_patience": lambda k, v: _whole(k, v, 0, 10**6),
    }
    _CROSS = {"seeds_per_batch", "mutants_per_seed", "metrics", "feedback"}

    def __post_init__(self) -> None:
        object.__setattr__(self, "_built", True)
        self._cross_check()

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self._CROSS or not self.__dict__.get("_built"):
            super().__setattr__(name, value)
            return
        before = {k: self.__dict__[k] for k in self._CROSS}
        super().__setattr__(name, value)
        try:
            self._cross_check()
        except UserError:
            self.__dict__.update(before)  # a refused assignment changes nothing
            raise

    def _cross_check(self) -> None:
        """Checks between fields (each field was checked on its own when it was set)."""
        n = self.seeds_per_batch * self.mutants_per_seed
        if n > MAX_MUTANTS_PER_ITERATION:
            raise UserError(f"seeds_per_batch * mutants_per_seed = {self.seeds_per_batch} * {self.mutants_per_seed} = {n} "
                            f"mutants per iteration, more than {MAX_MUTANTS_PER_ITERATION}; lower one of them")
        missing = [f for f in self.feedback if f not in self.metrics]
        if self.feedback == DEFAULT_FEEDBACK or not self.feedback:
            kept = [f for f in self.feedback if f in self.metrics] or list(self.metrics)
            if kept != self.feedback:
                object.__setattr__(self, "feedback", kept)  # normalised once, at construction
        elif missing:
            raise UserError(f"feedback metric(s) {missing} are not configured under [metrics]; add them there "
                            "or drop them from feedback")

    def validate(self) -> "FuzzConfig":
        """A config is checked when it is built; kept for old callers. Returns ``self``."""
        return self

    def oracle_names(self) -> list[str]:
        """The configured oracles' names, in order."""
        return [o["name"] for o in self.oracles]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FuzzConfig":
        if not isinstance(d, dict):
            raise UserError(f"a config must be a table of keys, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(f"unknown config key(s) {unknown}; valid: {sorted(known)}")
        return cls(**d)

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
            raise UserError(f"config file {path} is not valid TOML: {' '.join(str(e).split())}") from None
        try:
            return cls.from_dict(data)
        except UserError as e:
            raise UserError(f"{e} (in {path})") from None
