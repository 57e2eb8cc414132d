"""``mutants(seeds, ...)``: a Hypothesis strategy over mutated seeds, for metamorphic property
tests ("the prediction is invariant under small natural changes"; metamorphic testing of
classifiers after Xie et al., JSS 2011, and DeepTest, Tian et al., ICSE 2018).

Each example draws a seed index, then a chain of ``min_chain..max_chain`` mutation steps; a step
is a mutator from ``mutators`` and, for each of its range parameters, a *strength* ``t`` in
``[-1, 1]`` (or ``[0, 1]`` when the mildest value is an end of the range; in steps of 1/1000) that maps linearly
from the parameter's mildest value (``t = 0``) to the ends of its configured range (``|t| = 1``),
plus an integer seed for a mutator's random fields (noise, masks). Hypothesis shrinks integers and
floats toward 0 and lists toward fewer elements, so a failing example shrinks toward seed 0, a
shorter chain and the mildest parameters: the counterexample reported is the mildest mutation
that still breaks the property. The mildest value of a parameter is its identity value from
:data:`MILD` (``contrast.alpha`` 1, ``scale.factor`` 1, ``jpeg.quality`` 100, ...; 0 for the
others), clipped into the configured range. Only mutators that need no model are accepted
(attacks are not metamorphic relations).

Example::

    >>> import torch
    >>> from hypothesis import find, settings
    >>> seeds = torch.full((2, 1, 8, 8), 0.4)
    >>> too_bright = lambda m: float(m.x.mean()) > 0.45  # a fragile "model"
    >>> m = find(mutants(seeds, mutators=["contrast"], max_chain=1), too_bright,
    ...          settings=settings(derandomize=True, database=None, max_examples=200))
    >>> m.seed_index, len(m.chain), 0.45 < float(m.x.mean()) < 0.47
    (0, 1, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from hypothesis import strategies as st

from neurofuzz.ground.errors import UserError
from neurofuzz.mutators import create
from neurofuzz.mutators.base import Range
from neurofuzz.mutators.registry import get

#: Strengths are drawn as whole multiples of 1/STEPS: Hypothesis shrinks an integer toward 0 in
#: magnitude (a float it shrinks toward "simple" values such as 1.0, which is not milder).
STEPS = 1000

#: The identity (mildest) value of parameters whose identity is not 0.
MILD: dict[str, dict[str, float]] = {
    "contrast": {"alpha": 1.0}, "scale": {"factor": 1.0, "aspect": 1.0}, "jpeg": {"quality": 100.0},
    "pixelate": {"scale": 1.0}, "snow": {"intensity": 0.0}, "rain": {"intensity": 0.0},
}


@dataclass(frozen=True, repr=False)
class Mutant:
    """One drawn example: ``x`` (float32 ``[C, H, W]``), ``label`` (``None`` without labels), the
    seed it came from (``seed_index``, ``seed``) and ``chain`` (``{"mutator", "params",
    "strength"}`` per step, in order). ``strength`` is the sum of ``|t|`` over the chain."""

    x: torch.Tensor
    label: int | None
    seed_index: int
    seed: torch.Tensor
    chain: tuple[dict[str, Any], ...]

    @property
    def strength(self) -> float:
        return float(sum(sum(abs(t) for t in step["strength"].values()) for step in self.chain))

    def __repr__(self) -> str:
        steps = " -> ".join(f"{s['mutator']}({', '.join(f'{k}={v:.4g}' for k, v in s['params'].items())})"
                            for s in self.chain) or "unmutated"
        return f"Mutant(seed_index={self.seed_index}, label={self.label}, chain={steps})"


def _plan(spec: str | dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, tuple[float, float, float, bool]]]:
    """(name, fixed config, {range key: (lo, hi, mild, integer)}) of one mutator spec."""
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    name = spec.pop("name", None)
    cls = get(name)
    if cls.needs_model:
        raise UserError(f"{name} is an attack (it needs the model); mutants() takes natural and affine mutators")
    config = create(name, **spec).config  # validated
    ranges = {}
    for key, sch in cls.schema.items():
        if isinstance(sch, Range) and config[key][0] < config[key][1]:
            lo, hi = config[key]
            mild = min(max(MILD.get(name, {}).get(key, 0.0), lo), hi)
            ranges[key] = (lo, hi, mild, sch.integer)
    return name, config, ranges


def _value(t: float, lo: float, hi: float, mild: float, integer: bool) -> float:
    v = mild + t * (hi - mild) if t >= 0 else mild + t * (mild - lo)
    v = min(max(v, lo), hi)
    return float(round(v)) if integer else v


def mutants(seeds: torch.Tensor, labels: Sequence[int] | torch.Tensor | None = None, *,
            mutators: Sequence[str | dict[str, Any]] = ("rotate", "translate", "contrast", "gaussian_blur"),
            max_chain: int = 2, min_chain: int = 1,
            bounds: tuple[float, float] = (0.0, 1.0)) -> st.SearchStrategy[Mutant]:
    """A strategy of :class:`Mutant` examples drawn from ``seeds``.

    Args:
        seeds: float32 images ``[N, C, H, W]`` inside ``bounds``.
        labels: ``N`` class labels (optional; ``Mutant.label`` is then ``None``).
        mutators: names (default parameters) or dicts ``{"name": ..., **ranges}``, e.g.
            ``{"name": "rotate", "angle": (-5, 5)}`` to bound how far a step may go.
        max_chain, min_chain: the number of mutation steps per example.
        bounds: the raw input range every mutant is clipped into.
    """
    if not isinstance(seeds, torch.Tensor) or seeds.dim() != 4 or len(seeds) == 0 or not seeds.is_floating_point():
        raise UserError(f"seeds must be a non-empty float tensor [N, C, H, W], got {getattr(seeds, 'shape', type(seeds))}")
    seeds = seeds.detach().float().cpu()
    ys = None if labels is None else [int(v) for v in torch.as_tensor(labels).flatten().tolist()]
    if ys is not None and len(ys) != len(seeds):
        raise UserError(f"{len(seeds)} seeds but {len(ys)} labels; give one label per seed")
    if not 0 <= min_chain <= max_chain:
        raise UserError(f"need 0 <= min_chain <= max_chain, got {min_chain} and {max_chain}")
    if not mutators:
        raise UserError("give at least one mutator")
    plans = [_plan(m) for m in mutators]

    @st.composite
    def step(draw: Any) -> tuple[dict[str, Any], Any]:
        name, config, ranges = plans[draw(st.integers(0, len(plans) - 1))]
        strength = {k: draw(st.integers(-STEPS if lo < mild else 0, STEPS if mild < hi else 0)) / STEPS
                    for k, (lo, hi, mild, _) in ranges.items()}
        values = {k: _value(strength[k], *ranges[k]) for k in ranges}
        rng = torch.Generator().manual_seed(draw(st.integers(0, 2**16 - 1)))  # few bits: quick to shrink
        m = create(name, **{**config, **{k: (v, v) for k, v in values.items()}})
        params = {k: v.item() for k, v in m.sample(1, rng).items()}
        return {"mutator": name, "params": params, "strength": strength}, m

    @st.composite
    def mutant(draw: Any) -> Mutant:
        i = draw(st.integers(0, len(seeds) - 1))
        steps = draw(st.lists(step(), min_size=min_chain, max_size=max_chain))
        x = seeds[i : i + 1]
        for record, m in steps:
            x = m.replay(x, record["params"], bounds=bounds)
        return Mutant(x=x[0], label=None if ys is None else ys[i], seed_index=i, seed=seeds[i],
                      chain=tuple(record for record, _ in steps))

    return mutant()
