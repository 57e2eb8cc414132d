"""neurofuzz.fuzzer: target model wrapper, built-in model zoo, the fuzz loop and the CLI."""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("neurofuzz")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

from neurofuzz.fuzzer.target import Target

__all__ = ["Target", "__version__"]
