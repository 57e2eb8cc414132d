"""neurofuzz.corpus: the on-disk campaign store, lineage, export and replay.

* :class:`CampaignStore` — a campaign directory (``queue/``, ``failures/<oracle>/``,
  ``index.sqlite``, ``fuzzer_setup``, ``fuzzer_stats``, ``plot_data``, ``state/``); atomic,
  content-addressed writes; resume after a crash.
* :class:`MemoryStore` — the same interface in memory; :class:`ReadOnlyStore` — any store with
  writes refused (what ``CampaignStore.open(path, readonly=True)`` returns).
* :class:`Entry` — one stored input with its lineage (root, parent, depth, mutation chain);
  :class:`DamagedEntry` — the error for an image file that no longer matches its record.
* :func:`campaign_status`, :func:`live_writer`, :func:`check_replaceable` — questions about a
  campaign directory (``status``: running / crashed / finished; ``--force``).
* :func:`export_npz`, :func:`export_png` — export a corpus for other tools.
* :func:`replay` — run a stored corpus through a model (regression testing): :class:`ReplayReport`.

Example::

    >>> import torch
    >>> from neurofuzz.corpus import MemoryStore, replay
    >>> s = MemoryStore()
    >>> _ = s.add(torch.zeros(1, 2, 2), kind="queue", label=0, pred=0)
    >>> replay(s, lambda x: torch.tensor([[1.0, 0.0]]).expand(len(x), 2)).accuracy
    1.0
"""

from neurofuzz.corpus.base import BaseStore, select_entries
from neurofuzz.corpus.entry import DamagedEntry, Entry, content_hash
from neurofuzz.corpus.export import export_npz, export_png
from neurofuzz.corpus.layout import campaign_status, check_replaceable
from neurofuzz.corpus.lock import live_writer
from neurofuzz.corpus.memory import MemoryStore
from neurofuzz.corpus.readonly import ReadOnlyStore
from neurofuzz.corpus.replay import GroupStats, ReplayReport, replay
from neurofuzz.corpus.store import CampaignStore

__all__ = [
    "BaseStore",
    "CampaignStore",
    "DamagedEntry",
    "Entry",
    "GroupStats",
    "MemoryStore",
    "ReadOnlyStore",
    "ReplayReport",
    "campaign_status",
    "check_replaceable",
    "content_hash",
    "export_npz",
    "export_png",
    "live_writer",
    "replay",
    "select_entries",
]
