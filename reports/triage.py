"""Failure triage: group a campaign's failures and merge near-duplicates (after AFL's crash
triage: many crashing inputs, few distinct bugs).

Every found failure (a failure entry with a mutation chain, one per distinct image; see
:mod:`neurofuzz.evaluators.faults_found`) is put in three groupings: by root seed, by confusion
(true class -> predicted class) and by mutator (the last step of its chain). Near-duplicates are
merged into *clusters*: within one (root seed, predicted class) pair, failures closer than
``merge_linf`` (Linf, raw image units) to a cluster's first member join it (greedy leader
clustering, most natural first). Each cluster is represented by its most natural member (the
highest SSIM to the root seed).

Ranking ("most interesting first"): cluster representatives before the other members; among
representatives, rarer confusions first (fewer clusters with the same true -> predicted pair),
then higher SSIM to the seed (a smaller change that still fools the model), then earlier finds.

Example::

    >>> import torch
    >>> from neurofuzz.corpus import MemoryStore
    >>> s = MemoryStore()
    >>> seed = s.add(torch.zeros(1, 4, 4), kind="queue", label=1, pred=1)
    >>> step = [{"mutator": "gaussian_noise", "params": {"std": 0.1}, "config": {}}]
    >>> for v in (0.30, 0.31, 0.9):
    ...     _ = s.add(torch.full((1, 4, 4), v), kind="failure", oracle="misclassified", label=1, pred=7,
    ...               parent=seed.id, chain=step)
    >>> t = triage(s, merge_linf=0.05)
    >>> [c.members for c in t.clusters], t.by_confusion
    ([[2, 3], [4]], {(1, 7): [2, 3, 4]})
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from neurofuzz.corpus import BaseStore, Entry
from neurofuzz.evaluators.faults_found import Distance, distances_to_root, found_failures


@dataclass(frozen=True)
class Failure:
    """One found failure as triage sees it."""

    id: int
    root: int
    label: int
    pred: int
    oracles: tuple[str, ...]
    mutator: str
    chain_length: int
    ssim: float
    linf: float
    time_found: float
    iteration: int


@dataclass(frozen=True)
class Cluster:
    """Near-duplicate failures of one (root seed, predicted class); ``members[0]`` represents it."""

    root: int
    label: int
    pred: int
    members: list[int]


@dataclass
class Triage:
    """The groups of a campaign's failures; ``failures`` ranked most interesting first."""

    failures: list[Failure]
    clusters: list[Cluster]
    by_root: dict[int, list[int]]
    by_confusion: dict[tuple[int, int], list[int]]
    by_mutator: dict[str, list[int]]
    merge_linf: float
    distances: dict[int, Distance] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "merge_linf": self.merge_linf,
            "failures": [asdict(f) for f in self.failures],
            "clusters": [asdict(c) for c in self.clusters],
            "by_root": {str(k): v for k, v in self.by_root.items()},
            "by_confusion": {f"{a}->{b}": v for (a, b), v in self.by_confusion.items()},
            "by_mutator": self.by_mutator,
        }

    def format(self, *, top: int = 10) -> str:
        """Plain text: counts, then the largest groups of each kind (``top`` rows each)."""
        n = len(self.failures)
        out = [f"{n} distinct failures in {len(self.clusters)} clusters (near-duplicates merged at "
               f"Linf <= {self.merge_linf:g}), {len(self.by_root)} root seeds, {len(self.by_confusion)} confusions, "
               f"{len(self.by_mutator)} mutators"]
        if not n:
            return out[0]

        def block(title: str, groups: dict, name) -> None:
            out.extend(["", title])
            for k, ids in sorted(groups.items(), key=lambda kv: (-len(kv[1]), str(kv[0])))[:top]:
                out.append(f"  {name(k):<16} {len(ids):>6}  e.g. id {ids[0]}")
            if len(groups) > top:
                out.append(f"  ... and {len(groups) - top} more")

        block("by confusion (true -> predicted)", self.by_confusion, lambda k: f"{k[0]} -> {k[1]}")
        block("by mutator (last step)", self.by_mutator, str)
        block("by root seed", self.by_root, lambda k: f"seed {k}")
        out.extend(["", "most interesting (cluster representatives: rare confusion, natural, early)"])
        for f in self.failures[:top]:
            out.append(f"  id {f.id:<7} seed {f.root:<6} {f.label} -> {f.pred}  {f.mutator:<20} "
                       f"SSIM {f.ssim:.3f}  Linf {f.linf:.3f}  chain {f.chain_length}")
        return "\n".join(out)


def _last_mutator(e: Entry) -> str:
    step = e.chain[-1] if e.chain else {}
    return str(step.get("mutator") or step.get("op") or "?")


def _data_range(store: BaseStore) -> float:
    b = (store.setup or {}).get("bounds") or (0.0, 1.0)
    return float(b[1]) - float(b[0])


def triage(store: BaseStore, *, merge_linf: float = 0.05,
           distances: dict[int, Distance] | None = None) -> Triage:
    """Group and cluster the found failures of ``store`` (see the module docstring).

    Args:
        store: any corpus store (a campaign opened read-only works while it runs).
        merge_linf: failures of the same (root, predicted class) within this Linf of a
            cluster's representative are merged (0 merges only identical images).
        distances: precomputed distances to the root seeds (computed when missing).
    """
    if not merge_linf >= 0:
        raise ValueError(f"merge_linf must be >= 0, got {merge_linf!r}")
    entries = found_failures(store)
    oracles: dict[str, list[str]] = {}
    for e in store.entries(kind="failure"):
        oracles.setdefault(e.sha, []).append(str(e.oracle))
    dist = dict(distances or {})
    dist.update(distances_to_root(store, [e for e in entries if e.id not in dist], data_range=_data_range(store)))
    fails = {e.id: Failure(e.id, e.root, e.label, e.pred, tuple(sorted(set(oracles[e.sha]))), _last_mutator(e),
                           len(e.chain), dist[e.id].ssim, dist[e.id].linf, float(e.time_found), int(e.iteration))
             for e in entries}
    by_root: dict[int, list[int]] = {}
    by_conf: dict[tuple[int, int], list[int]] = {}
    by_mut: dict[str, list[int]] = {}
    pairs: dict[tuple[int, int], list[Entry]] = {}
    for e in entries:
        by_root.setdefault(e.root, []).append(e.id)
        by_conf.setdefault((e.label, e.pred), []).append(e.id)
        by_mut.setdefault(fails[e.id].mutator, []).append(e.id)
        pairs.setdefault((e.root, e.pred), []).append(e)

    def natural(i: int) -> tuple:
        f = fails[i]
        return (-f.ssim, f.linf, f.time_found, f.id)

    clusters: list[Cluster] = []
    for (root, pred), group in pairs.items():
        group = sorted(group, key=lambda e: natural(e.id))
        images = torch.stack([e.load() for e in group]).flatten(1).double()
        leaders: list[int] = []  # indices into group
        members: list[list[int]] = []
        for j in range(len(group)):
            near = [k for k, lead in enumerate(leaders)
                    if float((images[j] - images[lead]).abs().max()) <= merge_linf]
            if near:
                members[near[0]].append(group[j].id)
            else:
                leaders.append(j)
                members.append([group[j].id])
        clusters += [Cluster(root, group[0].label, pred, m) for m in members]
    per_conf = Counter((c.label, c.pred) for c in clusters)
    clusters.sort(key=lambda c: (per_conf[(c.label, c.pred)], *natural(c.members[0])))
    reps = [c.members[0] for c in clusters]
    rest = sorted((i for c in clusters for i in c.members[1:]), key=natural)
    return Triage(
        failures=[fails[i] for i in reps + rest],
        clusters=clusters,
        by_root=dict(sorted(by_root.items())),
        by_confusion=dict(sorted(by_conf.items())),
        by_mutator=dict(sorted(by_mut.items())),
        merge_linf=float(merge_linf),
        distances={i: dist[i] for i in fails},
    )
