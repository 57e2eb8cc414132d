"""Replay a stored corpus through a model: regression testing of a (new) model on old findings.

Each selected input is run through ``target`` (any callable returning logits, e.g. a
:class:`~neurofuzz.fuzzer.Target`, which applies the model's normalisation and eval mode; a bare
``nn.Module`` is called as it is, so put it in eval mode first). Images are loaded
``batch_size`` at a time, never all at once; inputs of different shapes go in separate batches.

An input *fails now* if the new prediction differs from its stored label, or if its logits are not
all finite (its new prediction is then reported as ``-1``). It has *changed* if the new prediction
differs from the stored ``pred`` (the prediction of the model that was fuzzed).

Example::

    >>> import torch
    >>> from neurofuzz.corpus import MemoryStore, replay
    >>> s = MemoryStore()
    >>> _ = s.add(torch.zeros(1, 2, 2), kind="queue", label=0, pred=0)
    >>> _ = s.add(torch.ones(1, 2, 2), kind="failure", oracle="misclassified", label=0, pred=1)
    >>> model = lambda x: torch.stack([1 - x.mean((1, 2, 3)), x.mean((1, 2, 3))], 1)  # class = brightness
    >>> r = replay(s, model)
    >>> r.accuracy, r.changed_share, r.failing_ids, r.by_oracle["misclassified"].n
    (0.5, 0.0, [2], 1)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

from neurofuzz.corpus.base import BaseStore, select_entries
from neurofuzz.corpus.entry import Entry
from neurofuzz.ground.errors import UserError
from neurofuzz.ground.target import extract_logits


@dataclass
class GroupStats:
    """Counts for one kind or oracle: inputs, correct now (new pred == label), changed
    (new pred != stored pred)."""

    n: int = 0
    correct: int = 0
    changed: int = 0

    @property
    def accuracy(self) -> float:
        """correct / n (NaN for an empty group)."""
        return self.correct / self.n if self.n else float("nan")

    @property
    def changed_share(self) -> float:
        """changed / n (NaN for an empty group)."""
        return self.changed / self.n if self.n else float("nan")


@dataclass
class ReplayReport:
    """The outcome of :func:`replay`.

    Attributes:
        ids, preds: replayed ids in id order and their new predictions (``-1``: non-finite logits).
        total: counts over all replayed inputs; ``by_kind`` (``"queue"``, ``"failure"``) and
            ``by_oracle`` (failures only) the same per group.
        failing_ids: ids whose new prediction differs from the stored label (or non-finite).
        changed_ids: ids whose new prediction differs from the stored prediction.
        nonfinite_ids: ids whose logits contained NaN or Inf.
    """

    ids: list[int] = field(default_factory=list)
    preds: list[int] = field(default_factory=list)
    total: GroupStats = field(default_factory=GroupStats)
    by_kind: dict[str, GroupStats] = field(default_factory=dict)
    by_oracle: dict[str, GroupStats] = field(default_factory=dict)
    failing_ids: list[int] = field(default_factory=list)
    changed_ids: list[int] = field(default_factory=list)
    nonfinite_ids: list[int] = field(default_factory=list)

    @property
    def n(self) -> int:
        return self.total.n

    @property
    def accuracy(self) -> float:
        """Share of replayed inputs classified as their stored label (NaN if none)."""
        return self.total.accuracy

    @property
    def changed_share(self) -> float:
        """Share of replayed inputs whose prediction changed vs the stored one (NaN if none)."""
        return self.total.changed_share

    def to_dict(self) -> dict[str, object]:
        """JSON-able summary (ids lists included)."""
        d = asdict(self)
        d.update(accuracy=self.accuracy, changed_share=self.changed_share)
        return d

    def summary(self) -> str:
        """A few human-readable lines."""
        lines = [f"replayed {self.n} inputs: accuracy {self.accuracy:.4f}, prediction changed {self.changed_share:.4f}, "
                 f"failing now {len(self.failing_ids)}, non-finite {len(self.nonfinite_ids)}"]
        for name, g in [*self.by_kind.items(), *((f"failure/{k}", v) for k, v in self.by_oracle.items())]:
            lines.append(f"  {name:<24} n={g.n:<6} accuracy={g.accuracy:.4f} changed={g.changed_share:.4f}")
        return "\n".join(lines)


def _device(target: Callable[[torch.Tensor], object]) -> torch.device:
    dev = getattr(target, "device", None)
    if isinstance(dev, (str, torch.device)):
        return torch.device(dev)
    if isinstance(target, torch.nn.Module):
        p = next(target.parameters(), None)
        if p is not None:
            return p.device
    return torch.device("cpu")


@torch.no_grad()
def predict_entries(entries: list[Entry], model: Callable[[torch.Tensor], object], *,
                    batch_size: int = 256) -> dict[int, tuple[int, float]]:
    """``{id: (predicted class or -1 if non-finite, probability of the stored label)}``, images
    loaded ``batch_size`` at a time, one shape per batch."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"batch_size must be a positive integer, got {batch_size!r}")
    device = _device(model)
    by_shape: dict[tuple[int, ...], list[Entry]] = {}
    for e in entries:
        by_shape.setdefault(e.shape, []).append(e)
    out: dict[int, tuple[int, float]] = {}
    for group in by_shape.values():
        for i in range(0, len(group), batch_size):
            chunk = group[i : i + batch_size]
            logits = extract_logits(model(torch.stack([e.load() for e in chunk]).to(device))).float().cpu()
            if logits.ndim != 2 or logits.shape[0] != len(chunk):
                raise UserError(f"the model returned logits of shape {list(logits.shape)} for {len(chunk)} inputs; "
                                "it must return [batch, n_classes]")
            finite = torch.isfinite(logits).all(dim=1)
            probs = torch.softmax(torch.nan_to_num(logits), dim=1)
            labels = torch.tensor([min(max(e.label, 0), logits.shape[1] - 1) for e in chunk])
            conf = torch.where(finite, probs.gather(1, labels[:, None])[:, 0], torch.zeros(len(chunk)))
            pred = torch.where(finite, logits.argmax(dim=1), torch.full((len(chunk),), -1))
            for e, p, c in zip(chunk, pred.tolist(), conf.tolist()):
                out[e.id] = (int(p), float(c))
    return out


def replay(
    store: BaseStore,
    target: Callable[[torch.Tensor], object],
    which: str = "all",
    batch_size: int = 256,
    *,
    oracle: str | None = None,
) -> ReplayReport:
    """Run the stored inputs (``which`` = ``"queue"``, ``"failures"``, ``"all"``; optionally one
    ``oracle``) through ``target`` and compare with the stored labels and predictions.

    Args:
        store: any corpus store.
        target: callable ``x [B, C, H, W] -> logits [B, n_classes]`` (tuple / dict outputs are
            accepted as by :func:`~neurofuzz.ground.target.extract_logits`).
        batch_size: inputs per forward pass (and the most images held in memory at once).

    Example: ``print(replay(CampaignStore.open("out", readonly=True), Target(new_model)).summary())``.
    """
    entries = select_entries(store, which, oracle)
    new_pred = {i: (p, p != -1) for i, (p, _) in predict_entries(entries, target, batch_size=batch_size).items()}
    report = ReplayReport()
    for e in entries:  # id order
        p, ok = new_pred[e.id]
        correct, changed = ok and p == e.label, p != e.pred
        groups = [report.total, report.by_kind.setdefault(e.kind, GroupStats())]
        if e.oracle is not None:
            groups.append(report.by_oracle.setdefault(e.oracle, GroupStats()))
        for g in groups:
            g.n += 1
            g.correct += correct
            g.changed += changed
        report.ids.append(e.id)
        report.preds.append(p)
        if not correct:
            report.failing_ids.append(e.id)
        if changed:
            report.changed_ids.append(e.id)
        if not ok:
            report.nonfinite_ids.append(e.id)
    return report
