"""Registry of mutators by name, with their parameter schemas.

Example::

    >>> from neurofuzz.mutators import create, available, describe
    >>> "gaussian_noise" in available()
    True
    >>> create("gaussian_noise", std=(0.01, 0.1)).config["std"]
    (0.01, 0.1)
"""

from __future__ import annotations

from typing import Any

from neurofuzz.ground.errors import UserError
from neurofuzz.ground.registry import Registry
from neurofuzz.mutators.base import Mutator

MUTATORS: Registry[Mutator] = Registry("mutator")
register = MUTATORS.register  # class decorator: make ``cls`` available under ``cls.name``


def available(kind: str | None = None) -> list[str]:
    """Registered mutator names (optionally only those of one ``kind``), sorted."""
    return sorted(n for n in MUTATORS if kind is None or MUTATORS[n].kind == kind)


def get(name: str) -> type[Mutator]:
    if name not in MUTATORS:  # the names sorted, not in registration order as Registry.get lists them
        raise UserError(f"unknown mutator {name!r}; available: {', '.join(available())}")
    return MUTATORS[name]


def create(name: str, **config: Any) -> Mutator:
    """Instantiate a registered mutator with validated configuration."""
    return get(name)(**config)


def describe(name: str) -> dict[str, Any]:
    """The parameter schema of a mutator, JSON-ready."""
    cls = get(name)
    out: dict[str, Any] = {"name": name, "kind": cls.kind, "doc": (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""}
    params = {}
    for k, spec in cls.schema.items():
        params[k] = {kk: getattr(spec, kk) for kk in spec.__dataclass_fields__}
    out["params"] = params
    return out
