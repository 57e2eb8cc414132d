"""What one iteration of the fuzz loop passes from stage to stage: the batch of mutants (with the
group of each mutator's rows and the seed slot of each row) and the verdict on the valid ones.

Example::

    >>> import torch
    >>> b = Batch(torch.zeros(3, 1, 2, 2), seed_ids=[7, 9], slot=torch.tensor([0, 1, 1]), group=torch.zeros(3))
    >>> b.per_seed([10, 20]).tolist(), b.per_seed([10, 20], torch.tensor([2])).tolist()
    ([10, 20, 20], [20])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from neurofuzz.fuzzer.queue import QueueEntry


@dataclass
class Group:
    """The mutants one mutator made: rows ``first .. first + len(res.x)`` of the batch."""

    mutator: int
    res: Any  # the MutationResult
    first: int


@dataclass
class Batch:
    """All mutants of an iteration. Per-seed data is looked up once per seed and spread over the
    rows through ``slot`` (the seed slot of each row)."""

    x: torch.Tensor  # [N, C, H, W]
    seed_ids: list[int]  # entry id of each seed slot
    slot: torch.Tensor  # seed slot of each row [N]
    group: torch.Tensor  # group index of each row [N]
    groups: list[Group] = field(default_factory=list)
    seeds: list[QueueEntry] = field(default_factory=list)  # the record of each seed slot

    def per_seed(self, values: list, rows: torch.Tensor | None = None) -> torch.Tensor:
        """A per-seed list spread to the rows (all rows, or ``rows``)."""
        slot = self.slot if rows is None else self.slot[rows]
        return torch.tensor(values, device=self.x.device)[slot]


@dataclass
class Verdict:
    """Judgement of the valid mutants: oracle flags, failing and retained masks."""

    flags: dict[str, torch.Tensor]
    failing: torch.Tensor
    keep: torch.Tensor
    gain: torch.Tensor
