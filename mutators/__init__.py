"""neurofuzz.mutators: natural transforms, adversarial attacks, validity constraints.

Importing the package registers every built-in mutator; see :mod:`neurofuzz.mutators.registry`.
"""

from neurofuzz.mutators.base import Choice, Mutator, MutationResult, Range
from neurofuzz.mutators.registry import available, create, describe, get, register
from neurofuzz.mutators import natural, attacks  # noqa: F401  (registration side effect)

__all__ = ["Choice", "Mutator", "MutationResult", "Range", "available", "create", "describe", "get", "register"]
