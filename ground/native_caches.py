"""Bounds on the CPU kernel caches that grow with every new input shape.

PyTorch's CPU convolutions go through oneDNN, which builds one primitive per (layer, input shape)
and keeps it in two caches: oneDNN's primitive cache and ideep's computation cache, 1024 entries
each by default. A fuzz loop feeds the model batches whose size varies from step to step (the
mutants that pass the validity rule), so each new size adds entries until 1024 are reached: on
the built-in LeNet-5 about 120 KB per batch size, 30 MB for the sizes 1 to 256, added as
rarer sizes turn up, which a memory soak reads as a steady growth.

:func:`bound_native_caches` caps both caches (64 entries by default) through the environment
variables the two libraries read when they create their cache: oneDNN at the first convolution
of the process, ideep at the first convolution or the first ``torch.set_num_threads`` call.
``neurofuzz.ground`` calls it on import, so it holds when neurofuzz is imported before either
(importing torch first is fine); the ``neurofuzz`` command always does so. A value the user has
set is left alone: ``ONEDNN_PRIMITIVE_CACHE_CAPACITY=1024 LRU_CACHE_CAPACITY=1024`` restores
the libraries' defaults. Results do not change: a primitive dropped from a cache is rebuilt the
same way when its shape comes back (``tests/test_native_caches.py`` checks the outputs bit for
bit).

Example::

    >>> import os
    >>> bound_native_caches()["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"]
    True
"""

from __future__ import annotations

import os

CACHE_VARIABLES = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")  # oneDNN, ideep
DEFAULT_CAPACITY = 64


def bound_native_caches(capacity: int = DEFAULT_CAPACITY) -> dict[str, str]:
    """Set each cache variable the user has not set to ``capacity``; return the values in force."""
    for name in CACHE_VARIABLES:
        os.environ.setdefault(name, str(int(capacity)))
    return {name: os.environ[name] for name in CACHE_VARIABLES}
