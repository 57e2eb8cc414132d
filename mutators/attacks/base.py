"""Shared template of the attacks: one parameter declaration serves the standalone attack and
its mutator.

Every attack is written once, as a class that declares its parameters (:class:`Param`: default,
limits, the mutator's default range, doc) and a pure ``perturb(run, x, p, **options)``
classmethod that receives per-input parameters ``p`` (tensors ``[B]``: ``eps``, ``alpha``,
``steps``, ``seed``...) and an :class:`~neurofuzz.mutators.attacks.run.AttackRun` that knows the
model, the labels and the bounds. From the declaration come, with the same parameter names:

* the standalone constructor ``PGD(model, eps=0.3, alpha=0.01, steps=40)`` (keyword-only,
  validated against the limits; a real ``inspect.signature``) and its documentation;
* the registered mutator ``create("pgd", eps=(0.1, 0.3))`` (:func:`as_mutator`, the adapter
  :class:`AttackMutator`): its schema (a :class:`~neurofuzz.mutators.base.Range` per number,
  drawn per input, a :class:`~neurofuzz.mutators.base.Choice` per fixed option), its sampling,
  its ``apply`` and its documentation.

Both run the attack through the final template of :mod:`~neurofuzz.mutators.attacks.run`
(validation, eval mode, autograd, clipping; the loss and its reduction are described there),
whose names this module re-exports. The iteration of the PGD family is in
:mod:`~neurofuzz.mutators.attacks.iterative`.

Units. Standalone, every value is in raw input units. As a mutator, the parameters declared
``scaled`` (``eps``, ``alpha``...) are fractions of the bounds' range, like the other mutators'
magnitudes (the same numbers for the default bounds ``(0, 1)``); the standalone limits of a
scaled parameter are its limits times the range.

Targets. Standalone, ``attack(x, y, target_labels=t)`` attacks towards ``t``; an attack built
with ``targeted=True`` and called without ``target_labels`` aims at the next class,
``(y + 1) mod n_classes``. As mutators, ``targeted="next"`` does the same and
``targeted="random"`` draws, per input, an offset recorded as the parameter ``shift``; the
target is ``(y + 1 + shift mod (n_classes - 1)) mod n_classes``, never the true label.

Outcomes. ``perturb`` may return ``(x_adv, outcomes)``: per-input results such as the model
queries of a black-box attack. They come back explicitly: :meth:`Attack.run` returns them in an
:class:`~neurofuzz.mutators.attacks.run.AttackResult` (and ``attack.last_outcomes`` keeps them),
and the mutator records them with the drawn parameters (recomputed on replay).

Replay. As mutators, the attacks record every random choice (per-input seeds, offsets), so
replaying a batch with its recorded parameters reproduces it bit for bit. Replaying *one* input
alone runs the model on a batch of a different size, and float32 kernels (conv, GEMM) round
differently for different batch sizes (for the built-in LeNet-5 the logits of one image differ
by ~1e-12 between batch sizes 1 and 2). Sign-based attacks are insensitive to that in practice;
PGD-L2 uses gradient magnitudes, so a lone replay can differ from the batch result by float32
rounding (~1e-7).

References: Goodfellow et al., ICLR 2015 (FGSM); Kurakin et al., ICLR 2017 (BIM); Madry et al.,
ICLR 2018 (PGD); Tramer et al., ICLR 2018 (R+FGSM); Wong et al., ICLR 2020 (FGSM-RS);
Dong et al., CVPR 2018 (MI-FGSM); Xie et al., CVPR 2019 (DI-FGSM, M-DI2-FGSM).
"""

from __future__ import annotations

import dataclasses
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

import torch
from torch import nn

from neurofuzz.ground.errors import UserError
from neurofuzz.mutators.attacks.run import (
    TARGET_MODES, AttackResult, AttackRun, attack_batch, eval_mode, l2_norms, model_bounds, project_l2, project_linf,
    random_fields, run_attack, target_labels_from, view4,
)
from neurofuzz.mutators.base import Choice, Mutator, Params, Range
from neurofuzz.mutators.registry import register

__all__ = [
    "ALPHA", "EPS", "STEPS", "TARGET_MODES", "Attack", "AttackMutator", "AttackResult", "AttackRun", "Param",
    "as_mutator", "attack_batch", "eval_mode", "l2_norms", "project_l2", "project_linf", "random_fields",
    "run_attack", "target_labels_from", "view4",
]


@dataclass(frozen=True)
class Param:
    """One attack parameter, declared once for the standalone attack and its mutator.

    Attributes:
        default: the standalone default; ``None`` with ``derive``: computed from the others.
        limits: inclusive ``(lo, hi)`` of valid values, for both uses (see ``scaled``).
        draw: the mutator's default ``(lo, hi)`` range, drawn per input; default
            ``(default, default)``.
        doc: one line, shown in both documentations.
        integer: whole numbers (int64 per input).
        scaled: as a mutator, a fraction of the bounds' range; standalone, raw units within
            ``limits`` times the range.
        per_batch: as a mutator, drawn once per batch instead of once per input.
        choices: a fixed option (a ``Choice`` of the mutator, passed to ``perturb`` as a keyword)
            instead of a number.
        derive, rule: the standalone default when ``default`` is ``None``: ``derive(values)`` of
            the other values, described by ``rule``.
    """

    default: Any
    limits: tuple[float, float] = (0.0, 1.0)
    draw: tuple[float, float] | None = None
    doc: str = ""
    integer: bool = False
    scaled: bool = False
    per_batch: bool = False
    choices: tuple[Any, ...] | None = None
    derive: Callable[[dict[str, Any]], Any] | None = None
    rule: str = ""

    def but(self, **changes: Any) -> Param:
        """A copy with some fields changed (e.g. another default)."""
        return dataclasses.replace(self, **changes)

    def spec(self) -> Range | Choice:
        """The mutator's schema entry."""
        if self.choices is not None:
            return Choice(self.choices, self.default, doc=self.doc)
        return Range(*self.limits, self.draw or (self.default, self.default), integer=self.integer, doc=self.doc)

    def annotation(self) -> Any:
        kind = type(self.default) if self.choices is not None else int if self.integer else float
        return Optional[kind] if self.default is None else kind

    def check(self, attack: str, key: str, value: Any, scale: float) -> Any:
        """A standalone value, validated (``scale``: the bounds' range, for scaled limits)."""
        if self.choices is not None:
            return self.spec().validate(attack, key, value)
        lo, hi = (v * scale for v in self.limits) if self.scaled else self.limits
        try:
            number = float(value) if not isinstance(value, (bool, str)) else float("nan")
        except (TypeError, ValueError):
            number = float("nan")
        if not lo <= number <= hi or (self.integer and not number.is_integer()):
            what = "a whole number" if self.integer else "a number"
            raise UserError(f"{attack}: {key} must be {what} in [{lo:g}, {hi:g}], got {value!r}")
        return int(number) if self.integer else number

    def describe(self, key: str) -> str:
        """One line of documentation (the same for the attack and its mutator)."""
        default = self.rule if self.default is None else repr(self.default)
        if self.choices is not None:
            return f"{key}: {self.doc}; one of {list(self.choices)}, default {default}."
        draw = tuple(self.draw or (self.default, self.default))
        limits = f"[{self.limits[0]:g}, {self.limits[1]:g}]" + (" x the bounds' range" if self.scaled else "")
        per = " per batch" if self.per_batch else ""
        return f"{key}: {self.doc}; default {default}, as a mutator {draw}{per}; within {limits}."


# The mutators' default L-inf radii stay below DeepHunter's default validity rule (Linf < 0.2 of the
# range, mutators/constraints.py), so that their mutants are accepted (tests/test_attacks_validity.py).
EPS = Param(0.3, (0.0, 1.0), (0.05, 0.15), "L-infinity radius", scaled=True)
ALPHA = Param(0.01, (0.0, 1.0), None, "step size", scaled=True)
STEPS = Param(40, (0, 1000), None, "iterations", integer=True)
TARGETED_DOC = "no | next: (y+1) mod n | random: recorded per-input shift"


class Attack(ABC):
    """Standalone attack: ``attack = PGD(model, eps=0.3); x_adv = attack(x, y)``.

    Subclasses declare ``params`` (``{name: Param}``) and implement :meth:`perturb`; the keyword-only
    constructor, its validation and its documentation come from the declaration.

    Args (common to every attack):
        model: a :class:`~neurofuzz.ground.target.Target` (bounds and normalisation taken from
            it) or any ``nn.Module`` returning logits for raw inputs.
        targeted: attack towards target labels; see :meth:`__call__`.
        bounds: input bounds; default: ``model.bounds`` if it has them, else ``(0, 1)``.
        seed: seeds the attack's own generator, used for random starts and input diversity when
            no ``rng`` is passed to :meth:`__call__` (the global RNG is never used).

    After each call, ``last_outcomes`` holds the per-input outcomes (black-box attacks:
    ``queries``); :meth:`run` returns them with the batch as an :class:`AttackResult`.
    """

    name: ClassVar[str] = ""
    params: ClassVar[dict[str, Param]] = {}
    randomized: ClassVar[bool] = False  # draws per-input seeds (random starts, samples...)
    batch_seed: ClassVar[bool] = False  # one seed for the whole batch (shared random transforms)
    targeted_default: ClassVar[bool] = False
    outcome_keys: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" not in cls.__dict__:
            cls.__init__ = _constructor(cls)  # type: ignore[method-assign]
        if cls.__dict__.get("__doc__") and cls.params and "Args:" not in cls.__doc__:
            lines = ["Args:", "    model: a Target or an ``nn.Module`` returning logits."]
            lines += [f"    {p.describe(k)}" for k, p in cls.params.items()]
            lines += ["    targeted, bounds, seed: see :class:`~neurofuzz.mutators.attacks.base.Attack`.", "",
                      "Shapes: ``x`` float ``[B, C, H, W]`` in bounds, ``y`` int64 ``[B]`` -> ``x_adv`` like ``x``"
                      + "".join(f"; ``last_outcomes[{k!r}]`` int64 ``[B]``" for k in cls.outcome_keys) + "."]
            head, sep, tail = cls.__doc__.partition("\n    Example")
            args = "".join(f"    {line}\n" if line else "\n" for line in lines)
            cls.__doc__ = head.rstrip() + "\n\n" + args + (sep + tail if sep else "")

    def __init__(self, model: nn.Module, **kwargs: Any) -> None:
        cls = type(self)
        if not isinstance(model, nn.Module):
            raise UserError(f"{cls.name}: the model must be a torch.nn.Module, got {type(model).__name__}")
        self.targeted = bool(kwargs.pop("targeted", cls.targeted_default))
        self.bounds = model_bounds(model, kwargs.pop("bounds", None))
        self._rng = torch.Generator().manual_seed(int(kwargs.pop("seed", 0)))
        unknown = sorted(set(kwargs) - set(cls.params))
        if unknown:
            valid = sorted(cls.params) + ["bounds", "seed", "targeted"]
            raise UserError(f"{cls.name}: unknown parameter(s) {unknown}; valid: {valid}")
        self.model = model
        self.values = cls.resolve(kwargs, self.bounds[1] - self.bounds[0])
        for key, value in self.values.items():
            setattr(self, key, value)
        self.last_outcomes: Params = {}

    @classmethod
    def resolve(cls, given: dict[str, Any], scale: float) -> dict[str, Any]:
        """Validated standalone values: the given ones, the declared defaults, then the derived."""
        values: dict[str, Any] = {}
        for k, p in cls.params.items():
            value = given.get(k, p.default)
            if value is not None or p.derive is None:
                values[k] = p.check(cls.name, k, value, scale)
        for k, p in cls.params.items():
            if k not in values and p.derive is not None:
                values[k] = p.check(cls.name, k, p.derive(values), scale)
        cls.check_values(cls.name, {k: v if cls.params[k].choices else (v, v) for k, v in values.items()}, standalone=True)
        return {k: values[k] for k in cls.params}

    @classmethod
    def check_values(cls, name: str, values: dict[str, Any], *, standalone: bool) -> None:
        """Rules that tie parameters together; numbers come as ``(lo, hi)`` ranges (a standalone
        value ``v`` as ``(v, v)``). Raise :class:`UserError` when broken (default: none)."""

    @classmethod
    def draw_seeds(cls, batch: int, rng: torch.Generator) -> torch.Tensor:
        """Per-input seeds of the random parts (one shared seed if ``batch_seed``)."""
        return Mutator.seeds(1, rng).expand(batch).clone() if cls.batch_seed else Mutator.seeds(batch, rng)

    @classmethod
    @abstractmethod
    def perturb(cls, run: AttackRun, x: torch.Tensor, p: Params, **options: Any) -> torch.Tensor | tuple[torch.Tensor, Params]:
        """The attack proper, on per-input parameters ``p`` (tensors ``[B]``) and the fixed
        options (the declared choices); returns ``x_adv`` or ``(x_adv, outcomes)``."""

    @classmethod
    def execute(cls, model: nn.Module, x: torch.Tensor, y: torch.Tensor, p: Params, *, bounds: tuple[float, float],
                targeted: bool, options: dict[str, Any], target_labels: torch.Tensor | None = None) -> AttackResult:
        """:meth:`perturb` through :func:`attack_batch`; every declared outcome is present."""
        result = attack_batch(cls.perturb, model, x, y, p, name=cls.name, bounds=bounds, targeted=targeted,
                              target_labels=target_labels, options=options)
        for key in cls.outcome_keys:
            result.outcomes.setdefault(key, torch.zeros(result.x.shape[0], dtype=torch.long))
        return result

    def run(self, x: torch.Tensor, y: torch.Tensor, *, target_labels: torch.Tensor | None = None,
            rng: torch.Generator | None = None) -> AttackResult:
        """The attacked batch with its per-input outcomes; arguments as :meth:`__call__`."""
        batch = x.shape[0] if isinstance(x, torch.Tensor) and x.dim() else 0
        p: Params = {}
        for key, spec in self.params.items():
            if spec.choices is None:
                p[key] = torch.full((batch,), self.values[key], dtype=torch.int64 if spec.integer else torch.float64)
        if self.randomized:
            p["seed"] = self.draw_seeds(batch, rng if rng is not None else self._rng)
        options = {k: self.values[k] for k, spec in self.params.items() if spec.choices is not None}
        result = self.execute(self.model, x, y, p, bounds=self.bounds, targeted=self.targeted, options=options,
                              target_labels=target_labels)
        self.last_outcomes = result.outcomes
        return result

    def __call__(self, x: torch.Tensor, y: torch.Tensor, *, target_labels: torch.Tensor | None = None,
                 rng: torch.Generator | None = None) -> torch.Tensor:
        """Adversarial examples for ``x`` (``[B, C, H, W]`` in bounds) with true labels ``y``.

        ``target_labels`` makes the attack targeted towards them; without it an attack built
        with ``targeted=True`` aims at ``(y + 1) mod n_classes``. ``rng`` feeds random starts
        and input diversity (default: the attack's own generator, seeded at construction)."""
        return self.run(x, y, target_labels=target_labels, rng=rng).x

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in {**self.values, "targeted": self.targeted}.items())
        return f"{type(self).__name__}({args})"


def _constructor(cls: type[Attack]) -> Callable[..., None]:
    """``__init__(self, model, *, <declared params>, targeted, bounds, seed)`` with a real signature."""

    def __init__(self: Attack, model: nn.Module, **kwargs: Any) -> None:
        Attack.__init__(self, model, **kwargs)

    kw = inspect.Parameter.KEYWORD_ONLY
    sig = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
           inspect.Parameter("model", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=nn.Module)]
    sig += [inspect.Parameter(k, kw, default=p.default, annotation=p.annotation()) for k, p in cls.params.items()]
    sig += [inspect.Parameter("targeted", kw, default=cls.targeted_default, annotation=bool),
            inspect.Parameter("bounds", kw, default=None, annotation=Optional[tuple[float, float]]),
            inspect.Parameter("seed", kw, default=0, annotation=int)]
    __init__.__signature__ = inspect.Signature(sig, return_annotation=None)  # type: ignore[attr-defined]
    __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    return __init__


class AttackMutator(Mutator):
    """An attack as a registered mutator (``kind="attack"``, ``needs_model=True``), written once:
    :func:`as_mutator` makes one per attack class, its schema derived from ``attack.params``.

    Per input it draws every declared number from its configured range (``per_batch`` ones
    once per batch), a seed if the attack is randomized, and the target offset ``shift`` for
    ``targeted="random"``; the attack's outcomes (e.g. ``queries``) are recorded with them and
    ignored on replay. The ``targeted`` choice (``"no"``, ``"next"``, ``"random"``) is shared.
    """

    kind = "attack"
    needs_model = True
    attack: ClassVar[type[Attack]]

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        self.attack.check_values(self.name, {k: self.config[k] for k in self.attack.params}, standalone=False)

    def sample(self, batch: int, rng: torch.Generator) -> Params:
        params: Params = {}
        for key, spec in self.attack.params.items():
            if spec.choices is None:
                v = self.uniform(key, 1 if spec.per_batch else batch, rng)
                params[key] = v.expand(batch).clone() if spec.per_batch else v
        if self.attack.randomized:
            params["seed"] = self.attack.draw_seeds(batch, rng)
        if self.config["targeted"] == "random":
            params["shift"] = torch.randint(0, 2**31 - 1, (batch,), generator=rng, dtype=torch.int64)
        return params

    def apply(self, x: torch.Tensor, params: Params, **ctx: Any) -> tuple[torch.Tensor, Params]:
        mode = self.config["targeted"]
        lo, hi = (float(b) for b in ctx.get("bounds") or (0.0, 1.0))
        p: Params = {}
        for key, spec in self.attack.params.items():
            if spec.choices is None:
                v = params[key]
                p[key] = v.long() if spec.integer else v * (hi - lo) if spec.scaled and hi - lo != 1.0 else v
        if "seed" in params:
            p["seed"] = params["seed"]
        if mode == "random" and "shift" in params:
            p["shift"] = params["shift"]
        options = {k: self.config[k] for k, spec in self.attack.params.items() if spec.choices is not None}
        result = self.attack.execute(ctx["target"], x, ctx["y"], p, bounds=(lo, hi), targeted=mode != "no", options=options)
        return result.x, result.outcomes


def as_mutator(attack: type[Attack]) -> type[AttackMutator]:
    """Register the mutator of ``attack`` (named ``<Attack>Mutator``, in the attack's module)."""
    schema: dict[str, Range | Choice] = {k: p.spec() for k, p in attack.params.items()}
    schema["targeted"] = Choice(TARGET_MODES, "random" if attack.targeted_default else "no", doc=TARGETED_DOC)
    summary = (attack.__doc__ or attack.__name__).strip().splitlines()[0].rstrip(".")
    args = "".join(f"        {p.describe(k)}\n" for k, p in attack.params.items())
    doc = (f"{summary}, as a mutator (see :class:`{attack.__name__}`).\n\n    Args (numbers: ``(lo, hi)`` drawn per "
           f"input, or one value; scaled ones in fractions of the bounds' range):\n{args}"
           f"        targeted: {TARGETED_DOC}.\n")
    if attack.outcome_keys:
        doc += f"\n    Records, after the run, per input: {', '.join(attack.outcome_keys)}.\n"
    cls = type(f"{attack.__name__}Mutator", (AttackMutator,), {
        "__module__": attack.__module__, "__qualname__": f"{attack.__name__}Mutator", "__doc__": doc,
        "name": attack.name, "attack": attack, "schema": schema,
    })
    return register(cls)  # type: ignore[return-value]
