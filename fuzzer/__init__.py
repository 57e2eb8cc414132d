"""neurofuzz.fuzzer: target model wrapper, built-in model zoo, the fuzz loop and the CLI."""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("neurofuzz")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

from neurofuzz.ground.target import Target  # re-exported for convenience

__all__ = ["Target", "__version__"]
