"""Failure minimisation: the DNN counterpart of afl-tmin (Zalewski, american fuzzy lop, 2014).

For a failing input, search the shortest mutation chain and the smallest mutation parameters
that still fail, by replaying the recorded chain from the root seed with the mutator registry
(:func:`neurofuzz.mutators.create(...).replay <neurofuzz.mutators.base.Mutator.replay>`):

1. **shorter chain**: drop one step at a time (first to last); keep the drop if the replay still
   fails (afl-tmin's block deletion);
2. **smaller parameters**: per remaining step, scale its magnitude parameters jointly toward
   their neutral value (``p' = n + t (p - n)``, the smallest failing ``t`` of a grid in [0, 1],
   then a finer grid below it), then each parameter alone; ``rounds`` passes.

"Still fails" means the failure's oracle still flags the replay (``misclassified``:
prediction != label; ``prediction_changed``: prediction != the root seed's; ``nonfinite``) and,
with ``same_pred`` (default), the predicted class is the one found, so the minimised input shows
the same fault. Failures of other oracles (``disagreement`` needs the second model) are left
alone (``status = "unsupported oracle"``).

Only the parameters in :data:`NEUTRAL` (a magnitude with a neutral value: noise std 0, blur
sigma 0, rotation 0, scale 1, JPEG quality 100, attack eps 0, ...) are shrunk; integer ones move
toward the neutral value by whole steps; others (random seeds, positions, step counts) are kept.
So in every recorded parameter ``|p' - n| <= |p - n|``: the result is never larger than the
original. Candidates of one grid are replayed and judged as one batch (attack steps replayed in a
batch agree with a lone replay to float rounding, see :mod:`neurofuzz.mutators.base`).

Results are stored beside the campaign's store, not in it (the index, its ids and its
invariants stay untouched): ``<campaign>/minimised/id_<original id>_<sha[:16]>.npy`` plus
``minimised/manifest.json`` with the lineage (original id, root, parent, oracle, label,
predictions, original and minimised chains, distances), each written atomically
(:func:`save_minimised`, :func:`load_minimised`).

Example::

    >>> import torch
    >>> from torch import nn
    >>> from neurofuzz.corpus import MemoryStore
    >>> from neurofuzz.ground import Target
    >>> lin = nn.Linear(16, 2)
    >>> with torch.no_grad():   # class 1 once the pixels sum to more than 0.5
    ...     _ = lin.weight.copy_(torch.stack([torch.zeros(16), torch.ones(16)]))
    ...     _ = lin.bias.copy_(torch.tensor([0.5, 0.0]))
    >>> net = Target(nn.Sequential(nn.Flatten(), lin))
    >>> s = MemoryStore()
    >>> seed = s.add(torch.zeros(1, 4, 4), kind="queue", label=0, pred=0)
    >>> step = {"mutator": "contrast", "params": {"alpha": 1.0, "beta": 0.5}, "config": {}}
    >>> bad = s.add(torch.full((1, 4, 4), 0.5), kind="failure", oracle="misclassified", label=0, pred=1,
    ...             parent=seed.id, chain=[step])
    >>> m = minimise(s, bad, net)
    >>> m.status, round(m.chain[0]["params"]["beta"], 3), m.pred   # 16 * beta > 0.5 still fails
    ('minimised', 0.032, 1)
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurofuzz.corpus import BaseStore, Entry, content_hash
from neurofuzz.corpus.fs import atomic_write, atomic_write_bytes, make_dir
from neurofuzz.ground.errors import UserError
from neurofuzz.mutators import create
from neurofuzz.mutators.constraints import ssim

_EPS = {"eps": 0.0}
#: mutator -> {parameter: neutral value}: the parameters the minimiser shrinks.
NEUTRAL: dict[str, dict[str, float]] = {
    "gaussian_noise": {"std": 0.0}, "uniform_noise": {"amplitude": 0.0}, "natural_noise": {"amplitude": 0.0},
    "salt_and_pepper_noise": {"density": 0.0}, "gaussian_blur": {"sigma": 0.0}, "gradient_blur": {"sigma": 0.0},
    "motion_blur": {"length": 1.0}, "contrast": {"alpha": 1.0, "beta": 0.0}, "gradient_luminance": {"strength": 0.0},
    "jpeg": {"quality": 100}, "pixelate": {"scale": 1.0}, "occlusion": {"height": 0.0, "width": 0.0},
    "fog": {"density": 0.0}, "rain": {"density": 0.0, "intensity": 0.0},
    "snow": {"density": 0.0, "intensity": 0.0, "veil": 0.0},
    "translate": {"dx": 0.0, "dy": 0.0}, "scale": {"factor": 1.0, "aspect": 1.0},
    "shear": {"shear_x": 0.0, "shear_y": 0.0}, "rotate": {"angle": 0.0}, "curve": {"depth": 0.0},
    "elastic": {"alpha": 0.0},
    "perspective": {f"{c}_{a}": 0.0 for c in ("tl", "tr", "br", "bl") for a in ("x", "y")},
    **{name: _EPS for name in ("fgsm", "rfgsm", "bim", "pgd", "pgd_l2", "mifgsm", "mdiim", "square", "nes",
                               "genattack")},
    "deepfool": {"overshoot": 0.0},
}
SUPPORTED = ("misclassified", "prediction_changed", "nonfinite")
MANIFEST = "manifest.json"
FORMAT = "neurofuzz-minimised"


@dataclass
class Minimised:
    """The result for one failure: ``chain`` replays ``x`` (``[C, H, W]``) from seed ``root``."""

    id: int
    root: int
    parent: int | None
    oracle: str
    label: int
    pred_found: int
    pred: int
    status: str  # "minimised", "unchanged", "not reproducible", "unsupported oracle"
    original_chain: list[dict[str, Any]]
    chain: list[dict[str, Any]]
    x: torch.Tensor | None = field(default=None, repr=False)
    ssim: float = float("nan")
    linf: float = float("nan")
    original_ssim: float = float("nan")
    original_linf: float = float("nan")
    kept: list[int] = field(default_factory=list)  # indices into original_chain of the steps kept
    steps_removed: int = 0
    evaluations: int = 0

    def record(self) -> dict[str, Any]:
        """The manifest record (everything but the image)."""
        return {k: v for k, v in self.__dict__.items() if k != "x"}


class _Judge:
    """Replays chains from the root seed and says which replays still fail."""

    def __init__(self, store: BaseStore, e: Entry, target: Any, same_pred: bool) -> None:
        self.e, self.target, self.same_pred = e, target, same_pred
        self.bounds = tuple(float(b) for b in getattr(target, "bounds", (0.0, 1.0)))
        self.device = getattr(target, "device", torch.device("cpu"))
        self.x0 = store.get(e.root).load()[None].to(self.device)
        self.root_pred = store.get(e.root).pred
        self.evaluations = 0

    def run(self, x: torch.Tensor, chain: list[dict[str, Any]]) -> torch.Tensor:
        for step in chain:
            m = create(step["mutator"], **step.get("config", {}))
            kw = ({"target": self.target, "y": torch.full((len(x),), self.e.label, device=x.device)}
                  if m.needs_model else {})
            x = m.replay(x, step["params"], bounds=self.bounds, **kw)
        return x

    @torch.no_grad()
    def fails(self, x: torch.Tensor) -> torch.Tensor:
        self.evaluations += len(x)
        logits = self.target(x)
        finite = torch.isfinite(logits).all(1)
        pred = torch.nan_to_num(logits, nan=float("-inf")).argmax(1)
        if self.e.oracle == "nonfinite":
            return ~finite
        want = self.e.label if self.e.oracle == "misclassified" else self.root_pred
        bad = pred != want
        return bad & (pred == self.e.pred) if self.same_pred else bad

    def chain_fails(self, chain: list[dict[str, Any]]) -> bool:
        try:
            return bool(self.fails(self.run(self.x0, chain))[0])
        except (UserError, ValueError, RuntimeError, ZeroDivisionError):
            return False

    def smallest_t(self, chain: list[dict[str, Any]], i: int, keys: list[str], grid: int) -> float:
        """The smallest scale ``t`` of ``keys`` of step ``i`` that still fails (1 if none smaller)."""
        lo, hi, best = 0.0, 1.0, 1.0
        prefix = self.run(self.x0, chain[:i])
        for _ in range(2):  # a coarse grid, then a finer one below the first failing point
            ts = torch.linspace(lo, hi, grid, dtype=torch.float64).tolist()
            cands = [scaled(chain[i], keys, t) for t in ts]
            params = {k: _column([c["params"][k] for c in cands]) for k in chain[i]["params"]}
            try:
                x = self.run(self.run(prefix.expand(len(ts), *prefix.shape[1:]), [{**chain[i], "params": params}]),
                             chain[i + 1 :])
                ok = self.fails(x).tolist()
            except (UserError, ValueError, RuntimeError, ZeroDivisionError):
                return best
            k = next((j for j, f in enumerate(ok) if f), None)
            if k is None:
                return best
            best = ts[k]
            if k == 0:
                return best
            lo, hi = ts[k - 1], ts[k]
        return best


def _column(values: list) -> torch.Tensor:
    """Per-candidate values of one parameter: int64 for whole numbers, else float64 (as drawn)."""
    ints = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
    return torch.tensor(values, dtype=torch.int64 if ints else torch.float64)


def scaled(step: dict[str, Any], keys: list[str], t: float) -> dict[str, Any]:
    """``step`` with each parameter in ``keys`` moved to ``n + t (p - n)`` (integers truncated
    toward the neutral value ``n``)."""
    neutral = NEUTRAL.get(step["mutator"], {})
    params = dict(step["params"])
    for k in keys:
        p, n = params[k], neutral[k]
        v = n + t * (p - n)
        params[k] = n + int(v - n) if isinstance(p, int) else float(v)
    return {**step, "params": params}


def shrinkable(step: dict[str, Any]) -> list[str]:
    """The parameters of ``step`` that :func:`minimise` may shrink (not already neutral)."""
    neutral = NEUTRAL.get(step.get("mutator"), {})
    return [k for k, v in step.get("params", {}).items()
            if k in neutral and isinstance(v, (int, float)) and not isinstance(v, bool) and v != neutral[k]]


def minimise(store: BaseStore, entry: Entry | int, target: Any, *, rounds: int = 2, grid: int = 9,
             same_pred: bool = True) -> Minimised:
    """Minimise one failure of ``store`` (see the module docstring).

    Args:
        store: the campaign's store (read-only is enough).
        entry: the failure entry (or its id); it must have a mutation chain.
        target: the campaign's model (a :class:`~neurofuzz.ground.Target`: bounds and device).
        rounds: passes of parameter shrinking; grid: points per search grid (>= 2).
        same_pred: also require the predicted class found (default True).
    """
    e = store.get(entry) if isinstance(entry, int) else entry
    if e.kind != "failure" or not e.chain:
        raise UserError(f"entry {e.id} is not a found failure (a failure with a mutation chain); pick one from "
                        "`neurofuzz triage`")
    if grid < 2 or rounds < 0:
        raise ValueError(f"grid must be >= 2 and rounds >= 0, got grid={grid}, rounds={rounds}")
    res = Minimised(e.id, e.root, e.parent, str(e.oracle), e.label, e.pred, e.pred, "unsupported oracle",
                    list(e.chain), list(e.chain))
    if e.oracle not in SUPPORTED:
        return res
    j = _Judge(store, e, target, same_pred)
    chain, kept = list(e.chain), list(range(len(e.chain)))
    res.kept = list(kept)
    if not j.chain_fails(chain):
        res.status, res.evaluations = "not reproducible", j.evaluations
        return res
    i = 0
    while i < len(chain) and len(chain) > 1:  # 1. drop steps
        shorter = chain[:i] + chain[i + 1 :]
        if j.chain_fails(shorter):
            chain, kept = shorter, kept[:i] + kept[i + 1 :]
        else:
            i += 1
    for _ in range(rounds):  # 2. shrink parameters: jointly per step, then one at a time
        before = json.dumps(chain)
        for i in range(len(chain)):
            for keys in [shrinkable(chain[i])] + [[k] for k in shrinkable(chain[i])]:
                if keys and set(keys) <= set(shrinkable(chain[i])):
                    t = j.smallest_t(chain, i, keys, grid)
                    if t < 1.0 and j.chain_fails(chain[:i] + [scaled(chain[i], keys, t)] + chain[i + 1 :]):
                        chain[i] = scaled(chain[i], keys, t)
        if json.dumps(chain) == before:
            break
    x = j.run(j.x0, chain)
    if not bool(j.fails(x)[0]):  # cannot happen for a deterministic model; keep the original then
        chain, kept, x = list(e.chain), list(range(len(e.chain))), j.run(j.x0, e.chain)
    with torch.no_grad():
        logits = target(x)
    res.pred = int(torch.nan_to_num(logits, nan=float("-inf")).argmax(1)[0])
    res.chain, res.kept, res.x = chain, kept, x[0].detach().cpu().float()
    res.steps_removed = len(e.chain) - len(chain)
    res.status = "unchanged" if chain == list(e.chain) else "minimised"
    span = j.bounds[1] - j.bounds[0]
    ref = j.x0.cpu().double()
    orig = e.load()[None].double()
    res.ssim, res.original_ssim = (float(ssim(ref, v, data_range=span)[0]) for v in (x.cpu().double(), orig))
    res.linf = float((x.cpu().double() - ref).abs().max())
    res.original_linf = float((orig - ref).abs().max())
    res.evaluations = j.evaluations
    return res


# ---------------------------------------------------------------------------- storage
def minimised_dir(campaign: str | Path) -> Path:
    return Path(campaign) / "minimised"


def save_minimised(campaign: str | Path, results: list[Minimised]) -> Path:
    """Store the results that hold an image in ``<campaign>/minimised/`` (image files first, then
    the manifest, each atomically; records of the same original id are replaced). Returns the
    manifest's path."""
    d = minimised_dir(campaign)
    make_dir(d)
    records = {r["id"]: r for r in load_minimised(campaign)}
    for m in results:
        if m.x is None:
            continue
        arr = np.ascontiguousarray(m.x.numpy(), dtype="<f4")
        sha = content_hash(m.x)
        name = f"id_{m.id:06d}_{sha[:16]}.npy"
        atomic_write(d / name, lambda f, a=arr: np.save(f, a, allow_pickle=False))
        records[m.id] = {**m.record(), "file": name, "sha": sha, "created": time.time()}
    doc = {"format": FORMAT, "format_version": 1, "entries": [records[k] for k in sorted(records)]}
    atomic_write_bytes(d / MANIFEST, (json.dumps(doc, indent=1) + "\n").encode())
    return d / MANIFEST


def load_minimised(campaign: str | Path, *, images: bool = False) -> list[dict[str, Any]]:
    """The manifest records of ``<campaign>/minimised/`` (``[]`` if there are none); with
    ``images`` each record also gets ``"x"``, its image as a float32 tensor ``[C, H, W]``."""
    f = minimised_dir(campaign) / MANIFEST
    if not f.is_file():
        return []
    try:
        doc = json.loads(f.read_text(encoding="utf-8"))
        if doc.get("format") != FORMAT or not isinstance(doc.get("entries"), list):
            raise ValueError("not a neurofuzz minimised manifest")
        out = [dict(r) for r in doc["entries"] if isinstance(r, dict) and isinstance(r.get("file"), str)]
    except (ValueError, UnicodeDecodeError, AttributeError) as err:
        raise UserError(f"{f} is damaged ({err}); delete the folder {f.parent} and run "
                        "`neurofuzz triage CAMP --minimise N` again") from None
    if images:
        for r in out:
            p = f.parent / Path(r["file"]).name
            try:
                r["x"] = torch.from_numpy(np.array(np.load(p, allow_pickle=False), dtype=np.float32))
            except (OSError, ValueError) as err:
                raise UserError(f"minimised image {p} is missing or unreadable ({err}); run "
                                "`neurofuzz triage CAMP --minimise N` again") from None
    return out
