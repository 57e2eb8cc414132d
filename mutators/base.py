"""The mutator contract.

A mutator turns a batch ``x: float32 [B, C, H, W]`` (raw image space, inside ``bounds``) into a
batch of the same shape, dtype and device. It never changes its input in place, never touches
the global RNG (randomness comes from the ``torch.Generator`` passed in), and records, for every
input, the parameters it drew. Applying the same mutator configuration with the same recorded
parameters to the same input reproduces the mutant exactly (:meth:`Mutator.replay`), which is
what lineage, replay and corpus export rely on. (Attacks query the model: replaying a whole
batch is exact, but replaying one input alone runs the model at another batch size, and float32
kernels round differently per batch size, so magnitude-based attacks such as PGD-L2 then agree
only to float rounding, ~1e-7.)

Subclasses implement two pure steps:

* :meth:`Mutator.sample` draws per-input parameters ``{name: tensor [B]}`` from the generator;
* :meth:`Mutator.apply` maps ``(x, params)`` to the mutant, deterministically. It may also
  return per-input *outcomes* (``(mutant, {name: tensor [B]})``, e.g. the model queries a
  black-box attack spent): :meth:`Mutator.mutate` records them with the parameters, and
  :meth:`Mutator.replay` recomputes them (they are results, not inputs).

The cross-cutting checks (validate the input, sample, apply, clip into bounds, check the
output) live once, in the final template method :meth:`Mutator.mutate`.

Example::

    >>> import torch
    >>> from neurofuzz.mutators import create
    >>> m = create("gaussian_noise", std=(0.05, 0.05))
    >>> x = torch.full((4, 1, 8, 8), 0.5)
    >>> out = m.mutate(x, torch.Generator().manual_seed(0))
    >>> torch.equal(m.replay(x, out.params), out.x)
    True
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from neurofuzz.ground.errors import UserError

Params = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Range:
    """Schema of one configurable parameter: the user gives ``(lo, hi)`` (or a single value)
    inside ``[limit_lo, limit_hi]``; per input a value is drawn uniformly from ``[lo, hi]``."""

    limit_lo: float
    limit_hi: float
    default: tuple[float, float]
    integer: bool = False
    doc: str = ""

    def validate(self, mutator: str, key: str, value: Any) -> tuple[float, float]:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = (value, value)
        if (
            not isinstance(value, (tuple, list))
            or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        ):
            raise UserError(f"{mutator}.{key}: expected a number or a [lo, hi] pair, got {value!r}")
        lo, hi = float(value[0]), float(value[1])
        if self.integer and not (lo.is_integer() and hi.is_integer()):
            raise UserError(f"{mutator}.{key}: {value!r} must be whole numbers")
        if not (self.limit_lo <= lo <= hi <= self.limit_hi):
            raise UserError(
                f"{mutator}.{key}: {value!r} is out of range; use lo <= hi within "
                f"[{self.limit_lo:g}, {self.limit_hi:g}]"
            )
        return (lo, hi)


@dataclass(frozen=True)
class Choice:
    """Schema of a parameter chosen from a fixed set of values (not drawn per input)."""

    options: tuple[Any, ...]
    default: Any
    doc: str = ""

    def validate(self, mutator: str, key: str, value: Any) -> Any:
        if value not in self.options:
            raise UserError(f"{mutator}.{key}: {value!r} is not one of {list(self.options)}")
        return value


@dataclass
class MutationResult:
    """A mutated batch and, per input, the parameters drawn (``params[name][i]``)."""

    x: torch.Tensor
    params: Params
    mutator: str
    config: dict[str, Any] = field(default_factory=dict)

    def params_of(self, i: int) -> dict[str, float | int]:
        """The parameters input ``i`` was mutated with, as plain Python numbers (JSON-ready)."""
        return {k: v[i].item() for k, v in self.params.items()}


class Mutator(ABC):
    """Base class of every mutator. See the module docstring for the contract.

    Class attributes:
        name: registry name (snake_case).
        kind: ``"natural"``, ``"affine"`` (counted by the affine-once validity rule) or ``"attack"``.
        schema: configurable parameters, ``{key: Range | Choice}``.
        needs_model: True if :meth:`apply` needs ``target`` and labels ``y`` (attacks).
    """

    name: ClassVar[str] = ""
    kind: ClassVar[str] = "natural"
    schema: ClassVar[dict[str, Range | Choice]] = {}
    needs_model: ClassVar[bool] = False

    def __init__(self, **config: Any) -> None:
        unknown = sorted(set(config) - set(self.schema))
        if unknown:
            raise UserError(
                f"{self.name}: unknown parameter(s) {unknown}; valid: {sorted(self.schema) or 'none'}"
            )
        self.config: dict[str, Any] = {}
        for key, spec in self.schema.items():
            value = config.get(key, spec.default)
            self.config[key] = spec.validate(self.name, key, value)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------------ to implement
    @abstractmethod
    def sample(self, batch: int, rng: torch.Generator) -> Params:
        """Draw per-input parameters ``{name: tensor [batch]}`` (CPU tensors) from ``rng``."""

    @abstractmethod
    def apply(self, x: torch.Tensor, params: Params, **ctx: Any) -> torch.Tensor | tuple[torch.Tensor, Params]:
        """Deterministic mutant of ``x`` for ``params``; must not modify ``x`` in place.
        ``ctx`` carries ``bounds`` and, for attacks, ``target`` and ``y``. May return
        ``(mutant, outcomes)``: per-input results recorded with the parameters."""

    # ------------------------------------------------------------------ helpers
    def uniform(self, key: str, batch: int, rng: torch.Generator) -> torch.Tensor:
        """Per-input values of a Range parameter drawn uniformly from the configured interval."""
        lo, hi = self.config[key]
        spec = self.schema[key]
        if isinstance(spec, Range) and spec.integer:
            return torch.randint(int(lo), int(hi) + 1, (batch,), generator=rng)
        return lo + (hi - lo) * torch.rand(batch, generator=rng, dtype=torch.float64)

    @staticmethod
    def seeds(batch: int, rng: torch.Generator) -> torch.Tensor:
        """Per-input integer seeds, for mutators that need random fields (noise, masks...)."""
        return torch.randint(0, 2**62, (batch,), generator=rng, dtype=torch.int64)

    # ------------------------------------------------------------------ template methods
    def mutate(
        self,
        x: torch.Tensor,
        rng: torch.Generator,
        *,
        bounds: tuple[float, float] = (0.0, 1.0),
        target: Any = None,
        y: torch.Tensor | None = None,
    ) -> MutationResult:
        """Draw parameters from ``rng``, apply them and return the mutants with their parameters."""
        self._check_input(x, bounds, target, y)
        params = self.sample(x.shape[0], rng)
        out, outcomes = self._run(x, params, bounds, target, y)
        return MutationResult(out, {**params, **outcomes}, self.name, dict(self.config))

    def replay(
        self,
        x: torch.Tensor,
        params: Params | dict[str, Any],
        *,
        bounds: tuple[float, float] = (0.0, 1.0),
        target: Any = None,
        y: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Reproduce mutants from recorded parameters (tensors ``[B]`` or per-input scalars)."""
        self._check_input(x, bounds, target, y)
        p = {k: _param_tensor(v) for k, v in params.items()}
        for k, v in p.items():
            if v.numel() == 1 and x.shape[0] != 1:
                p[k] = v.expand(x.shape[0]).clone()
        return self._run(x, p, bounds, target, y)[0]

    def _run(self, x, params, bounds, target, y) -> tuple[torch.Tensor, Params]:
        out = self.apply(x, params, bounds=bounds, target=target, y=y)
        out, outcomes = out if isinstance(out, tuple) else (out, {})
        out = out.to(dtype=x.dtype).clamp(bounds[0], bounds[1])
        if out.shape != x.shape or out.device != x.device:
            raise RuntimeError(f"{self.name}: output {tuple(out.shape)} on {out.device} breaks the contract")
        return out, outcomes

    def _check_input(self, x: torch.Tensor, bounds, target, y) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise UserError(f"{self.name}: expected a batch tensor [B, C, H, W], got {getattr(x, 'shape', type(x))}")
        if not x.dtype.is_floating_point:
            raise UserError(f"{self.name}: expected a floating-point batch, got {x.dtype}")
        if self.needs_model and (target is None or y is None):
            raise UserError(f"{self.name} is an attack: pass target= and y= (labels)")


def _param_tensor(v: Any) -> torch.Tensor:
    """Recorded parameters as a 1-D tensor; Python floats become float64 (as ``sample`` draws
    them), so a value that went through JSON replays exactly."""
    if isinstance(v, torch.Tensor):
        return v.reshape(-1)
    t = torch.as_tensor(v)
    if t.dtype == torch.float32:
        t = torch.as_tensor(v, dtype=torch.float64)
    return t.reshape(-1)


def per_input_generators(seeds: torch.Tensor) -> list[torch.Generator]:
    """One CPU generator per input, seeded from recorded per-input seeds."""
    return [torch.Generator().manual_seed(int(s)) for s in seeds.tolist()]
