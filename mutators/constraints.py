"""Validity constraints on mutants: DeepHunter's rule, the affine-once rule, an SSIM floor.

DeepHunter (Xie et al., "DeepHunter: A Coverage-Guided Fuzz Testing Framework for Deep Neural
Networks", ISSTA 2019) keeps a mutant only if it stays recognisably the same image as its
lineage's *reference*:

    valid(ref, new)  <=>  L0(ref, new) < alpha * size   OR   Linf(ref, new) < beta * range

* ``L0`` = number of elements (pixels x channels) of the image that differ *at all* from the
  reference, ``size`` = number of elements of one image (``C*H*W``). Because it is measured
  against the reference rather than the parent, it is cumulative along the lineage.
* ``Linf`` = largest absolute difference to the reference; ``range`` = ``upper - lower`` of the
  bounds (DeepHunter's 255).
* Defaults ``alpha = 0.02``, ``beta = 0.2``. Both comparisons are strict. A mutant with a NaN or
  an infinite value is never valid.

Affine-once rule: an affine mutation (a mutator with ``kind == "affine"``: translation, scaling,
shear, rotation) may be applied at most once per lineage. It is not checked against the pixel
rule (a shift moves most pixels by a lot); instead the mutant *becomes the new reference* and the
lineage is marked; a second affine mutation is rejected. Later pixel mutations are measured
against the post-affine reference. :class:`LineageState` carries ``(reference, affine_used)``
and is meant to be stored as lineage metadata by the fuzz loop.

Optionally, ``ssim_min`` adds a floor on the structural similarity (:func:`ssim`, Wang et al.,
IEEE TIP 2004) to the reference for non-affine mutants: valid additionally requires
``SSIM(ref, new) >= ssim_min``.

Note: MindArmour's version of this check compares with the inequalities inverted and, for
inputs in [0, 1], never rejects anything; this module rejects exactly what the rule says.

Example::

    >>> import torch
    >>> c = Constraint()
    >>> ref = torch.zeros(2, 1, 10, 10)
    >>> new = ref.clone(); new[0, 0, 0, 0] = 1.0; new[1] += 0.5
    >>> c.check(ref, new).tolist()   # one pixel changed: valid; every pixel by 0.5: invalid
    [True, False]
    >>> state = LineageState.root(ref[0])
    >>> ok, states = c.admit(state, ref[:1] + 0.01, kind="affine")
    >>> ok.tolist(), states[0].affine_used
    ([True], True)
    >>> c.admit(states[0], ref[:1], kind="affine")[0].tolist()
    [False]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from neurofuzz.ground.errors import UserError

DEFAULT_ALPHA = 0.02
DEFAULT_BETA = 0.2


def _as_batch(x: torch.Tensor, what: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() not in (3, 4) or not x.dtype.is_floating_point:
        raise UserError(f"{what}: expected a float image [C, H, W] or batch [B, C, H, W], got {getattr(x, 'shape', type(x))}")
    return x.unsqueeze(0) if x.dim() == 3 else x


def _pair(x_ref: torch.Tensor, x_new: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ref, new = _as_batch(x_ref, "x_ref"), _as_batch(x_new, "x_new")
    if ref.shape[1:] != new.shape[1:] or ref.shape[0] not in (1, new.shape[0]):
        raise UserError(
            f"x_ref {tuple(ref.shape)} and x_new {tuple(new.shape)} must have the same image shape "
            "and batch size (or x_ref a single image)"
        )
    return ref.expand_as(new), new


def distances(x_ref: torch.Tensor, x_new: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image ``(L0 int64 [B], Linf float64 [B])`` of ``x_new`` to ``x_ref`` (a batch or one
    reference image broadcast over the batch)."""
    ref, new = _pair(x_ref, x_new)
    r, n = ref.flatten(1), new.flatten(1)
    return (n != r).sum(dim=1), _linf64(r, n)


def _linf64(ref: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """Per-row largest absolute difference of ``[B, D]`` tensors, in float64 (the difference of
    two float32 values is exact there)."""
    diff = new.double() - ref.double()
    return diff.abs().amax(dim=1) if diff.shape[1] else diff.new_zeros(diff.shape[0])


def finite_rows(x: torch.Tensor) -> torch.Tensor:
    """Bool ``[B]``: rows of ``x`` with no NaN or infinite value. Exact: a row whose sum is
    finite has only finite values; only rows whose sum is not (a non-finite value, or an overflow
    of large finite ones) are checked element by element."""
    flat = x.flatten(1)
    ok = torch.isfinite(flat.sum(dim=1))
    bad = (~ok).nonzero().flatten()
    if len(bad):
        ok[bad] = torch.isfinite(flat[bad]).all(dim=1)
    return ok


def linf_below(ref: torch.Tensor, new: torch.Tensor, bound: float) -> torch.Tensor:
    """Bool ``[B]``: ``Linf(ref, new) < bound`` per row of ``[B, D]`` tensors, decided exactly as
    :func:`distances` (float64) decides it. For float32 the largest difference is taken in
    float32 (rounding to nearest is monotonic, so it is the exact maximum rounded, within half an
    ulp); only the rows whose rounded maximum lies within two ulps of ``bound``, or overflowed,
    are redone in float64."""
    if new.dtype != torch.float32 or ref.dtype != torch.float32:
        return _linf64(ref, new) < bound
    d = (new - ref).abs().amax(dim=1).double() if new.shape[1] else new.new_zeros(new.shape[0], dtype=torch.float64)
    below = d < bound
    near = (((d - bound).abs() <= d * 2.0**-22 + 2.0**-126) | ~torch.isfinite(d)).nonzero().flatten()
    if len(near):
        below[near] = _linf64(ref[near], new[near]) < bound
    return below


def _gaussian_1d(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    k = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(k * k) / (2 * sigma * sigma))
    return g / g.sum()


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    data_range: float = 1.0,
    window_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Mean structural similarity per image (Wang, Bovik, Sheikh and Simoncelli, IEEE TIP 2004).

    Gaussian window (``window_size`` x ``window_size``, ``sigma``; shrunk to the largest odd size
    that fits images smaller than the window), statistics per channel ("valid" filtering, no
    padding), ``C1 = (k1 L)^2``, ``C2 = (k2 L)^2`` with ``L = data_range``; the SSIM map is
    averaged over channels and positions. Computed in float64. Any number of channels (1 and 3
    as usual). Identical images give exactly 1.

    Args:
        x, y: ``[B, C, H, W]`` (or ``[C, H, W]``); ``x`` may be a single image broadcast over ``y``.
    Returns:
        float64 ``[B]``.
    """
    ref, new = _pair(x, y)
    if data_range <= 0:
        raise UserError(f"ssim: data_range must be > 0, got {data_range!r}")
    ref, new = ref.double(), new.double()
    c, h, w = new.shape[1:]
    win = min(int(window_size), h, w)
    win -= 1 - win % 2
    if win < 1:
        raise UserError(f"ssim: window_size must be >= 1, got {window_size!r}")
    g = _gaussian_1d(win, sigma, torch.float64, new.device)
    gh, gw = g.view(1, 1, win, 1).repeat(c, 1, 1, 1), g.view(1, 1, 1, win).repeat(c, 1, 1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, gh, groups=c), gw, groups=c)

    mu_x, mu_y = blur(ref), blur(new)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    s_xx, s_yy, s_xy = blur(ref * ref) - mu_xx, blur(new * new) - mu_yy, blur(ref * new) - mu_xy
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    smap = ((2 * mu_xy + c1) * (2 * s_xy + c2)) / ((mu_xx + mu_yy + c1) * (s_xx + s_yy + c2))
    return smap.flatten(1).mean(dim=1)


def check(
    x_ref: torch.Tensor,
    x_new: torch.Tensor,
    *,
    alpha: float = DEFAULT_ALPHA,
    beta: float = DEFAULT_BETA,
    bounds: tuple[float, float] = (0.0, 1.0),
    ssim_min: float | None = None,
) -> torch.Tensor:
    """DeepHunter's pixel rule, batched: bool ``[B]``, True where
    ``L0 < alpha * size or Linf < beta * (upper - lower)`` (and, if ``ssim_min`` is given,
    ``SSIM >= ssim_min``) and ``x_new`` is finite. See the module docstring."""
    return Constraint(alpha=alpha, beta=beta, bounds=bounds, ssim_min=ssim_min).check(x_ref, x_new)


@dataclass(frozen=True)
class LineageState:
    """Per-lineage state of the validity rule: the reference image ``[C, H, W]`` (the root seed,
    or the image right after the lineage's affine mutation) and whether that affine mutation has
    happened. Immutable: children that keep the reference share the same object."""

    reference: torch.Tensor
    affine_used: bool = False

    @classmethod
    def root(cls, x: torch.Tensor) -> LineageState:
        """State of a fresh seed ``x`` (``[C, H, W]`` or ``[1, C, H, W]``)."""
        if x.dim() == 4 and x.shape[0] == 1:
            x = x[0]
        if x.dim() != 3:
            raise UserError(f"LineageState.root: expected one image [C, H, W], got {tuple(x.shape)}")
        return cls(x.detach().clone(), False)

    def child(self, x_new: torch.Tensor, kind: str) -> LineageState:
        """State of an accepted mutant ``x_new`` (``[C, H, W]``) made by a mutator of ``kind``."""
        if kind == "affine":
            return LineageState(x_new.detach().clone(), True)
        return self

    def metadata(self) -> dict[str, Any]:
        """JSON-ready part of the state (the reference image is stored as an image)."""
        return {"affine_used": self.affine_used}


class Constraint:
    """DeepHunter's validity rule with the affine-once rule and an optional SSIM floor.

    Args:
        alpha: L0 budget as a fraction of the image size, in [0, 1]; default 0.02.
        beta: Linf budget as a fraction of the bounds' range, in [0, 1]; default 0.2.
        bounds: ``(lower, upper)`` of valid inputs; default ``(0, 1)``.
        ssim_min: optional SSIM floor in [-1, 1] against the reference (non-affine mutants).
    """

    def __init__(
        self,
        *,
        alpha: float = DEFAULT_ALPHA,
        beta: float = DEFAULT_BETA,
        bounds: tuple[float, float] = (0.0, 1.0),
        ssim_min: float | None = None,
    ) -> None:
        for key, v in (("alpha", alpha), ("beta", beta)):
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 <= float(v) <= 1.0:
                raise UserError(f"constraint: {key} must be a number in [0, 1], got {v!r}")
        lo, hi = float(bounds[0]), float(bounds[1])
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise UserError(f"constraint: bounds must be finite with lower < upper, got {bounds!r}")
        if ssim_min is not None and not -1.0 <= float(ssim_min) <= 1.0:
            raise UserError(f"constraint: ssim_min must be in [-1, 1] or None, got {ssim_min!r}")
        self.alpha, self.beta = float(alpha), float(beta)
        self.bounds = (lo, hi)
        self.ssim_min = None if ssim_min is None else float(ssim_min)

    def __repr__(self) -> str:
        return f"Constraint(alpha={self.alpha:g}, beta={self.beta:g}, bounds={self.bounds}, ssim_min={self.ssim_min})"

    def check(self, x_ref: torch.Tensor, x_new: torch.Tensor) -> torch.Tensor:
        """The pixel rule (plus the SSIM floor if set) for ``x_new [B, C, H, W]`` against
        ``x_ref`` (``[B, C, H, W]`` or one image): bool ``[B]``."""
        ref, new = _pair(x_ref, x_new)
        return self._pixel(ref, new, finite_rows(new))

    def _pixel(self, ref: torch.Tensor, new: torch.Tensor, finite: torch.Tensor) -> torch.Tensor:
        size = new[0].numel()
        r, n = ref.flatten(1), new.flatten(1)
        l0 = (n != r).sum(dim=1)  # exact in any dtype, as distances' L0
        valid = (l0.double() < self.alpha * size) | linf_below(r, n, self.beta * (self.bounds[1] - self.bounds[0]))
        valid &= finite
        if self.ssim_min is not None and bool(valid.any()):
            valid &= ssim(ref, new, data_range=self.bounds[1] - self.bounds[0]) >= self.ssim_min
        return valid

    def judge(self, x_ref: torch.Tensor, x_new: torch.Tensor, *, affine: torch.Tensor,
              affine_used: torch.Tensor) -> torch.Tensor:
        """The whole rule, batched and without Python per mutant: bool ``[B]``. Row ``i`` is an
        affine mutant if ``affine[i]``: valid iff its lineage has not used an affine mutation
        (``affine_used[i]`` False) and it is finite; any other mutant is judged by
        :meth:`check` against its reference ``x_ref[i]`` (or one shared reference)."""
        new = _as_batch(x_new, "x_new")
        finite = finite_rows(new)
        ref, new = _pair(x_ref, new)
        pixel = torch.zeros_like(finite)
        rows = (~affine).nonzero().flatten()
        if len(rows) == len(new):
            pixel = self._pixel(ref, new, finite)
        elif len(rows):  # the pixel rule only where it applies
            pixel[rows] = self._pixel(ref[rows], new[rows], finite[rows])
        return torch.where(affine, finite & ~affine_used, pixel)

    def admit(
        self,
        states: LineageState | Sequence[LineageState],
        x_new: torch.Tensor,
        kind: str | Sequence[str],
    ) -> tuple[torch.Tensor, list[LineageState]]:
        """Judge mutants and return ``(valid bool [B], states of the mutants)``.

        ``states``: the parents' lineage states (one per mutant, or one shared by all);
        ``kind``: the mutator kind of each mutant (or one for all). Affine mutants are valid iff
        their lineage has not used an affine mutation yet, and their state gets the mutant as
        reference; other mutants are judged by :meth:`check` against their reference and keep
        their parent's state. A rejected mutant's returned state is its parent's."""
        new = _as_batch(x_new, "x_new")
        n = new.shape[0]
        states = [states] * n if isinstance(states, LineageState) else list(states)
        kinds = [kind] * n if isinstance(kind, str) else list(kind)
        if len(states) != n or len(kinds) != n:
            raise UserError(
                f"admit: got {n} mutants, {len(states)} states and {len(kinds)} kinds; give one each (or one for all)"
            )
        affine = torch.tensor([k == "affine" for k in kinds], device=new.device)
        used = torch.tensor([st.affine_used for st in states], device=new.device)
        shared = all(st is states[0] for st in states)
        ref = states[0].reference.unsqueeze(0) if shared else torch.stack([st.reference for st in states])
        valid = self.judge(ref.to(new.device), new, affine=affine, affine_used=used)
        out = [states[i].child(new[i], "affine") if kinds[i] == "affine" and bool(valid[i]) else states[i]
               for i in range(n)]
        return valid, out
