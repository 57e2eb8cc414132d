"""Natural (semantics-preserving) transforms. Importing this package registers them all.

Families, one module each: :mod:`.affine` (translate, scale, shear, rotate, perspective, curve),
:mod:`.elastic`, :mod:`.blur` (gaussian_blur, motion_blur, gradient_blur), :mod:`.luminance`
(contrast, gradient_luminance), :mod:`.noise` (gaussian_noise, uniform_noise,
salt_and_pepper_noise, natural_noise), :mod:`.compression` (jpeg, pixelate), :mod:`.occlusion`
and :mod:`.weather` (fog, rain, snow). Geometric mutators have ``kind = "affine"``.
"""

from neurofuzz.mutators.natural import (  # noqa: F401  (registration side effect)
    affine,
    blur,
    compression,
    elastic,
    luminance,
    noise,
    occlusion,
    weather,
)
