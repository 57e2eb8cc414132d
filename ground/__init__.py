"""neurofuzz.ground: the floor every other package stands on.

``UserError`` (the one-line error contract), ``Target`` (the model under test with its bounds,
normalisation and device) and the device / bounds helpers. This package imports nothing else of
neurofuzz; every other package may import it. Importing it bounds the CPU kernel caches that grow
with each new batch size (:mod:`neurofuzz.ground.native_caches`).
"""

from neurofuzz.ground.devices import available_devices, check_bounds, resolve_device
from neurofuzz.ground.errors import UserError
from neurofuzz.ground.native_caches import bound_native_caches
from neurofuzz.ground.target import Target, check_labels, extract_logits, model_hash

bound_native_caches()  # before any convolution of the process creates the caches

__all__ = ["Target", "UserError", "available_devices", "bound_native_caches", "check_bounds", "check_labels",
           "extract_logits", "model_hash", "resolve_device"]
