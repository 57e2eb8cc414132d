"""Natural (semantics-preserving) transforms. Importing this package registers them all."""

from neurofuzz.mutators.natural import noise  # noqa: F401
