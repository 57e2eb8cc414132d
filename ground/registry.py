"""One registry style for every pluggable component: ``build(name, **params)``.

Mutators, oracles, schedulers and coverage metrics are looked up by name in a :class:`Registry`.
A registered class has a ``name`` attribute; ``build`` turns a wrong name or wrong parameters
into a one-line :class:`~neurofuzz.ground.errors.UserError` that lists what is available.

Example::

    >>> reg = Registry("widget")
    >>> @reg.register
    ... class Knob:
    ...     name = "knob"
    ...     def __init__(self, turns: int = 1) -> None:
    ...         self.turns = turns
    >>> reg.build("knob", turns=3).turns
    3
    >>> reg.build("dial")
    Traceback (most recent call last):
    ...
    neurofuzz.ground.errors.UserError: unknown widget 'dial'; choose from: knob
"""

from __future__ import annotations

import inspect
from typing import Any, Generic, TypeVar

from neurofuzz.ground.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> class table of one component kind (``kind`` is used in messages)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._classes: dict[str, type[T]] = {}

    def register(self, cls: type[T]) -> type[T]:
        """Class decorator: make ``cls`` available under ``cls.name``."""
        name = getattr(cls, "name", "")
        if not name:
            raise TypeError(f"{cls.__name__} has no name")
        old = self._classes.get(name)
        if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
            raise TypeError(f"{self.kind} name {name!r} registered twice ({old.__module__} and {cls.__module__})")
        self._classes[name] = cls
        return cls

    def names(self) -> list[str]:
        return list(self._classes)

    def __contains__(self, name: object) -> bool:
        return name in self._classes

    def __iter__(self):
        return iter(list(self._classes))

    def __len__(self) -> int:
        return len(self._classes)

    def __getitem__(self, name: str) -> type[T]:
        return self._classes[name]

    def pop(self, name: str, default: Any = None) -> Any:
        """Unregister ``name`` (tests and plug-ins that clean up after themselves)."""
        return self._classes.pop(name, default)

    def get(self, name: str) -> type[T]:
        if name not in self._classes:
            raise UserError(f"unknown {self.kind} {name!r}; choose from: {', '.join(self._classes)}")
        return self._classes[name]

    def build(self, name: str, /, **params: Any) -> T:
        """An instance of ``name`` built with ``params``; unknown parameters are a UserError."""
        cls = self.get(name)
        sig = inspect.signature(cls)
        takes_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
        accepted = [n for n, p in sig.parameters.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
        unknown = sorted(set(params) - set(accepted)) if not takes_any else []
        if unknown:
            raise UserError(f"{self.kind} {name!r} does not take parameters {', '.join(unknown)}; "
                            f"it takes: {', '.join(accepted) or 'none'}")
        try:
            return cls(**params)
        except TypeError as e:
            raise UserError(f"{self.kind} {name!r}: bad parameters ({e})") from None
