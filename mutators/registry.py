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
from neurofuzz.mutators.base import Mutator

_REGISTRY: dict[str, type[Mutator]] = {}


def register(cls: type[Mutator]) -> type[Mutator]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} has no name")
    old = _REGISTRY.get(cls.name)
    if old is not None and old is not cls and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
        raise TypeError(f"mutator name {cls.name!r} registered twice ({old.__module__} and {cls.__module__})")
    _REGISTRY[cls.name] = cls
    return cls


def available(kind: str | None = None) -> list[str]:
    """Registered mutator names (optionally only those of one ``kind``), sorted."""
    return sorted(n for n, c in _REGISTRY.items() if kind is None or c.kind == kind)


def get(name: str) -> type[Mutator]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UserError(f"unknown mutator {name!r}; available: {', '.join(available())}") from None


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
