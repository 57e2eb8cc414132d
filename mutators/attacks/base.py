"""Shared template of the gradient attacks (standalone and as mutators).

Every attack in this package is written once, as a pure ``perturb(run, x, p, **options)``
classmethod that receives per-input parameters ``p`` (tensors ``[B]``: ``eps``, ``alpha``,
``steps``, ``seed``...) and an :class:`AttackRun` that knows the model, the labels and the
bounds. The cross-cutting work lives here, once:

* :func:`run_attack` (the final template): validate the batch and the labels, put the model in
  eval mode (restoring every module's previous mode afterwards), enable autograd even under
  ``torch.no_grad()`` / ``inference_mode``, run ``perturb``, clip into bounds, detach.
* :meth:`AttackRun.grad`: the gradient of the loss with respect to the *input only*, through
  :func:`torch.autograd.grad`, so parameter ``.grad`` fields are never written.
* :func:`project_linf` / :func:`project_l2`: projection onto the eps-ball and clipping to the
  bounds, in one place.

Loss and reduction. The loss is cross-entropy on the logits with ``reduction="sum"``: each
input's gradient is then independent of the batch size (no ``1/B`` factor that could underflow),
and because every step here uses only the *direction* of the gradient (its sign, its L2- or
L1-normalised value) the steps equal those of mean-reduction implementations (torchattacks, ART)
-- bit for bit whenever ``1/B`` is exact (power-of-two batches). ``torch.sign`` is 0 at 0, so a
pixel with a zero gradient is not moved. Untargeted attacks ascend the loss of the true label;
targeted attacks descend the loss of the target label (they ascend ``-CE``).

Targets. Standalone, ``attack(x, y, target_labels=t)`` attacks towards ``t``; an attack built
with ``targeted=True`` and called without ``target_labels`` aims at the next class,
``(y + 1) mod n_classes``. As mutators, ``targeted="next"`` does the same and
``targeted="random"`` draws, per input, an offset recorded as the parameter ``shift``; the
target is ``(y + 1 + shift mod (n_classes - 1)) mod n_classes``, never the true label.

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

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from neurofuzz.fuzzer.errors import UserError
from neurofuzz.fuzzer.target import extract_logits
from neurofuzz.mutators.base import Choice, Mutator, Params

TARGET_MODES = ("no", "next", "random")


def target_labels_from(y: torch.Tensor, n_classes: int, shift: torch.Tensor | None = None) -> torch.Tensor:
    """Target labels that differ from ``y``: ``(y + 1 + shift mod (n - 1)) mod n`` (``shift=None``
    means 0, i.e. the next class)."""
    if n_classes < 2:
        raise UserError(f"a targeted attack needs at least 2 classes, the model has {n_classes}")
    k = 1 if shift is None else 1 + shift.to(y.device) % (n_classes - 1)
    return (y + k) % n_classes


class AttackRun:
    """What ``perturb`` needs: the model, the labels to attack and the bounds.

    ``labels`` are resolved lazily at the first forward pass (the number of classes is the width
    of the logits), so no extra forward pass is spent on it.
    """

    def __init__(
        self,
        model: nn.Module,
        y: torch.Tensor,
        *,
        bounds: tuple[float, float],
        targeted: bool,
        target_labels: torch.Tensor | None = None,
        shift: torch.Tensor | None = None,
    ) -> None:
        self.model = model
        self.y = y
        self.bounds = bounds
        self.targeted = targeted
        self._target_labels = target_labels
        self._shift = shift
        self.labels: torch.Tensor | None = None
        param = next((q for q in model.parameters() if q.is_floating_point()), None)
        self.model_dtype = param.dtype if param is not None else None

    def _resolve(self, n_classes: int) -> torch.Tensor:
        given = self._target_labels if self._target_labels is not None else self.y
        if int(given.min()) < 0 or int(given.max()) >= n_classes:
            what = "target_labels" if self._target_labels is not None else "labels y"
            raise UserError(f"{what} must lie in [0, {n_classes - 1}] (the model has {n_classes} classes)")
        if self.targeted and self._target_labels is None:
            return target_labels_from(self.y, n_classes, self._shift)
        return given

    def grad(self, x_adv: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """Gradient, with respect to ``x_adv`` only, of the objective the attack *ascends*:
        ``CE(logits, y)`` (untargeted) or ``-CE(logits, target)`` (targeted), summed over the
        batch. ``transform`` (differentiable) is applied to the input before the model."""
        x_adv = x_adv.detach().requires_grad_(True)
        x_in = x_adv if transform is None else transform(x_adv)
        if self.model_dtype is not None and x_in.dtype != self.model_dtype:
            x_in = x_in.to(self.model_dtype)  # differentiable cast; the gradient comes back in x's dtype
        logits = extract_logits(self.model(x_in))
        if logits.dim() != 2 or logits.shape[0] != x_adv.shape[0]:
            raise UserError(f"the model must return logits [B, n_classes]; got shape {tuple(logits.shape)}")
        if self.labels is None:
            self.labels = self._resolve(logits.shape[1])
        loss = F.cross_entropy(logits, self.labels, reduction="sum")
        (g,) = torch.autograd.grad(loss, x_adv)
        return g.neg_() if self.targeted else g


def view4(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-input tensor ``[B]`` as ``[B, 1, 1, 1]`` on ``like``'s device and dtype."""
    return t.to(device=like.device, dtype=like.dtype).view(-1, *([1] * (like.dim() - 1)))


def project_linf(x_adv: torch.Tensor, x: torch.Tensor, eps: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    """``clip(x + clip(x_adv - x, -eps, eps), lower, upper)`` (``eps`` is ``[B, 1, 1, 1]``)."""
    delta = torch.clamp(x_adv - x, min=-eps, max=eps)
    return (x + delta).clamp_(bounds[0], bounds[1])


def l2_norms(t: torch.Tensor) -> torch.Tensor:
    """Per-input L2 norms as ``[B, 1, 1, 1]``."""
    return torch.linalg.vector_norm(t.flatten(1), ord=2, dim=1).view(-1, *([1] * (t.dim() - 1)))


def project_l2(x_adv: torch.Tensor, x: torch.Tensor, eps: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    """Scale ``x_adv - x`` back into the L2 ball of radius ``eps``, then clip to the bounds.
    Clipping only moves coordinates towards ``x`` (which is inside the bounds), so the result
    stays inside the ball."""
    delta = x_adv - x
    factor = torch.clamp(eps / l2_norms(delta).clamp_min(1e-12), max=1.0)
    return (x + delta * factor).clamp_(bounds[0], bounds[1])


def random_fields(seeds: torch.Tensor, shape: torch.Size, kind: str, like: torch.Tensor) -> torch.Tensor:
    """One random field per input from its recorded seed (``kind``: ``uniform`` in [-1, 1],
    ``normal``, or ``sign`` of a normal draw), so that one input can be replayed alone."""
    fields = []
    for s in seeds.tolist():
        g = torch.Generator().manual_seed(int(s))
        if kind == "uniform":
            fields.append(torch.empty(shape).uniform_(-1.0, 1.0, generator=g))
        else:
            fields.append(torch.randn(shape, generator=g))
    out = torch.stack(fields).to(device=like.device, dtype=like.dtype)
    return out.sign_() if kind == "sign" else out


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Run with every submodule in eval mode; restore each module's previous mode afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _model_bounds(model: nn.Module, bounds: tuple[float, float] | None) -> tuple[float, float]:
    if bounds is None:
        bounds = getattr(model, "bounds", (0.0, 1.0))
    lo, hi = float(bounds[0]), float(bounds[1])
    if not lo < hi:
        raise UserError(f"bounds must satisfy lower < upper, got {bounds!r}")
    return lo, hi


def run_attack(
    perturb: Callable[..., torch.Tensor],
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    params: Params,
    *,
    name: str,
    bounds: tuple[float, float],
    targeted: bool = False,
    target_labels: torch.Tensor | None = None,
    options: dict[str, Any] | None = None,
) -> torch.Tensor:
    """Final template shared by every attack: validate, run ``perturb`` in eval mode with
    autograd enabled, clip into ``bounds`` and return a detached batch of ``x``'s shape."""
    if not isinstance(model, nn.Module):
        raise UserError(f"{name}: the model must be a torch.nn.Module (or a neurofuzz Target), got {type(model).__name__}")
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.dtype.is_floating_point:
        raise UserError(f"{name}: expected a float batch [B, C, H, W], got {getattr(x, 'shape', type(x))}")
    lo, hi = bounds
    if x.numel() and (float(x.min()) < lo - 1e-6 or float(x.max()) > hi + 1e-6):
        raise UserError(f"{name}: the batch has values outside the bounds [{lo:g}, {hi:g}]; clip it or pass matching bounds")

    def labels(t: Any, what: str) -> torch.Tensor:
        if not isinstance(t, torch.Tensor) or t.dtype.is_floating_point or t.dtype == torch.bool or t.shape != (x.shape[0],):
            got = getattr(t, "shape", type(t))
            raise UserError(f"{name}: {what} must be an integer tensor of shape [{x.shape[0]}], got {got}")
        return t.to(device=x.device, dtype=torch.long)

    y = labels(y, "labels y")
    if target_labels is not None:
        target_labels = labels(target_labels, "target_labels")
        targeted = True
    if x.shape[0] == 0:
        return x.detach().clone()
    with torch.inference_mode(False), torch.enable_grad(), eval_mode(model):
        x0 = x.detach().clone() if x.is_inference() else x.detach()
        run = AttackRun(model, y, bounds=(lo, hi), targeted=targeted, target_labels=target_labels, shift=params.get("shift"))
        x_adv = perturb(run, x0, params, **(options or {}))
    return x_adv.detach().clamp(lo, hi).to(dtype=x.dtype)


class Attack(ABC):
    """Standalone attack: ``attack = PGD(model, eps=0.3); x_adv = attack(x, y)``.

    Args (common to every attack):
        model: a :class:`~neurofuzz.fuzzer.Target` (bounds and normalisation taken from it) or
            any ``nn.Module`` returning logits for raw inputs.
        targeted: attack towards target labels; see :meth:`__call__`.
        bounds: input bounds; default: ``model.bounds`` if it has them, else ``(0, 1)``.
        seed: seeds the attack's own generator, used for random starts and input diversity when
            no ``rng`` is passed to :meth:`__call__` (the global RNG is never used).
    """

    name: ClassVar[str] = ""
    randomized: ClassVar[bool] = False

    def __init__(
        self,
        model: nn.Module,
        *,
        targeted: bool = False,
        bounds: tuple[float, float] | None = None,
        seed: int = 0,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise UserError(f"{self.name}: the model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.targeted = bool(targeted)
        self.bounds = _model_bounds(model, bounds)
        self._rng = torch.Generator().manual_seed(int(seed))

    @staticmethod
    def _positive(name: str, key: str, value: float, *, zero_ok: bool = False) -> float:
        value = float(value)
        if not (value > 0 or (zero_ok and value == 0)) or value != value or value == float("inf"):
            raise UserError(f"{name}: {key} must be {'>= 0' if zero_ok else '> 0'} and finite, got {value!r}")
        return value

    @staticmethod
    def _count(name: str, key: str, value: int, *, minimum: int = 0) -> int:
        if isinstance(value, bool) or not isinstance(value, int) and not (isinstance(value, float) and value.is_integer()):
            raise UserError(f"{name}: {key} must be an integer, got {value!r}")
        if int(value) < minimum:
            raise UserError(f"{name}: {key} must be >= {minimum}, got {value!r}")
        return int(value)

    def seeds(self, batch: int, rng: torch.Generator) -> torch.Tensor:
        """Per-input seeds of the random parts (random starts, input diversity)."""
        return Mutator.seeds(batch, rng)

    @abstractmethod
    def settings(self) -> tuple[dict[str, float], dict[str, Any]]:
        """``(per-input scalars such as eps/alpha/steps, fixed options passed to perturb)``."""

    @classmethod
    @abstractmethod
    def perturb(cls, run: AttackRun, x: torch.Tensor, p: Params, **options: Any) -> torch.Tensor:
        """The attack proper, on per-input parameters ``p`` (tensors ``[B]``)."""

    def __call__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        target_labels: torch.Tensor | None = None,
        rng: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Adversarial examples for ``x`` (``[B, C, H, W]`` in bounds) with true labels ``y``.

        ``target_labels`` makes the attack targeted towards them; without it an attack built
        with ``targeted=True`` aims at ``(y + 1) mod n_classes``. ``rng`` feeds random starts
        and input diversity (default: the attack's own generator, seeded at construction)."""
        scalars, options = self.settings()
        batch = x.shape[0] if isinstance(x, torch.Tensor) and x.dim() else 0
        params: Params = {k: torch.full((batch,), v, dtype=torch.float64) for k, v in scalars.items()}
        if "steps" in params:
            params["steps"] = params["steps"].long()
        if self.randomized:
            params["seed"] = self.seeds(batch, rng if rng is not None else self._rng)
        return run_attack(
            type(self).perturb, self.model, x, y, params, name=self.name, bounds=self.bounds,
            targeted=self.targeted, target_labels=target_labels, options=options,
        )

    def __repr__(self) -> str:
        scalars, options = self.settings()
        args = ", ".join(f"{k}={v!r}" for k, v in {**scalars, **options, "targeted": self.targeted}.items())
        return f"{type(self).__name__}({args})"


class AttackMutator(Mutator):
    """An attack as a registered mutator (``kind="attack"``, ``needs_model=True``).

    Subclasses set ``attack`` (the :class:`Attack` class whose ``perturb`` runs), a schema with
    the per-input ranges, and implement :meth:`draw` (the attack-specific parameters).
    ``eps`` and ``alpha`` are configured as fractions of the bounds' range (raw units for the
    default bounds ``(0, 1)``), like the other mutators' magnitudes.
    The ``targeted`` choice (``"no"``, ``"next"``, ``"random"``) is shared by all of them.
    """

    kind = "attack"
    needs_model = True
    attack: ClassVar[type[Attack]]
    scaled: ClassVar[tuple[str, ...]] = ("eps", "alpha")
    targeted_choice: ClassVar[Choice] = Choice(
        TARGET_MODES, "no", doc="no | next: (y+1) mod n | random: recorded per-input shift"
    )

    @abstractmethod
    def draw(self, batch: int, rng: torch.Generator) -> Params:
        """Attack-specific per-input parameters."""

    def options(self) -> dict[str, Any]:
        """Fixed (non per-input) options passed to ``perturb``."""
        return {}

    def prepare(self, p: Params) -> Params:
        """Turn recorded parameters into what ``perturb`` consumes (default: unchanged)."""
        return p

    def sample(self, batch: int, rng: torch.Generator) -> Params:
        params = self.draw(batch, rng)
        if self.config.get("targeted") == "random":
            params["shift"] = torch.randint(0, 2**31 - 1, (batch,), generator=rng, dtype=torch.int64)
        return params

    def apply(self, x: torch.Tensor, params: Params, **ctx: Any) -> torch.Tensor:
        mode = self.config.get("targeted", "no")
        p = dict(params)
        if mode != "random":
            p.pop("shift", None)
        if "steps" in p:
            p["steps"] = p["steps"].long()
        lo, hi = (float(b) for b in ctx.get("bounds") or (0.0, 1.0))
        if hi - lo != 1.0:  # eps and alpha are configured as fractions of the bounds' range
            p.update({k: p[k] * (hi - lo) for k in self.scaled if k in p})
        return run_attack(
            self.attack.perturb, ctx["target"], x, ctx["y"], self.prepare(p), name=self.name,
            bounds=(lo, hi), targeted=mode != "no", options=self.options(),
        )


def step_mask(steps: torch.Tensor, t: int, like: torch.Tensor) -> torch.Tensor | None:
    """``None`` if every input still runs step ``t``; else a ``[B, 1, 1, 1]`` bool mask of those
    that do (inputs may have drawn different step counts)."""
    active = steps > t
    if bool(active.all()):
        return None
    return view4(active, like).bool()
