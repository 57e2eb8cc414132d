"""Behaviour of the natural mutators: each transform does what its docstring says.

The generic contract (shapes, bounds, determinism, replay) is in ``test_mutator_contract.py``;
here, known parameters are replayed on small, seeded images and the result is checked against
what the transform must produce.
"""

from __future__ import annotations

import doctest
import importlib
import math

import cv2
import numpy as np
import pytest
import torch

from neurofuzz.mutators import available, create, get

NATURAL = {
    "translate", "scale", "shear", "rotate", "perspective", "curve", "elastic",
    "gaussian_blur", "motion_blur", "gradient_blur", "contrast", "gradient_luminance",
    "uniform_noise", "gaussian_noise", "salt_and_pepper_noise", "natural_noise",
    "jpeg", "pixelate", "occlusion", "fog", "rain", "snow",
}  # fmt: skip
GEOMETRIC = {"translate", "scale", "shear", "rotate", "perspective", "curve", "elastic"}
MODULES = ["_common", "affine", "blur", "compression", "elastic", "luminance", "noise", "occlusion", "weather"]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=gen(seed))


def rep(name: str, x: torch.Tensor, *, bounds=(0.0, 1.0), config: dict | None = None, **params) -> torch.Tensor:
    """Replay ``name`` with explicit per-batch parameters."""
    return create(name, **(config or {})).replay(x, params, bounds=bounds)


def close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5) -> bool:
    return bool(torch.allclose(a, b, atol=atol, rtol=0))


def _smooth_image(channels: int, h: int = 32, w: int = 32) -> torch.Tensor:
    r = torch.linspace(0, 1, h).view(h, 1)
    c = torch.linspace(0, 1, w).view(1, w)
    planes = [(r + c) / 2, r * c, 1 - r + 0 * c][:channels]
    return torch.stack(planes).unsqueeze(0)


# ---------------------------------------------------------------------------- registration and docs
def test_every_natural_mutator_is_registered_with_its_kind():
    natural = {n for n in available() if not get(n).needs_model}
    assert natural == NATURAL
    assert set(available("affine")) == GEOMETRIC
    assert all(get(n).kind == "natural" for n in NATURAL - GEOMETRIC)


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples_run(module):
    mod = importlib.import_module(f"neurofuzz.mutators.natural.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("name", sorted(NATURAL))
def test_docstrings_follow_the_house_style(name):
    cls = get(name)
    assert "Args:" in cls.__doc__ and "Example:" in cls.__doc__
    module_doc = importlib.import_module(cls.__module__).__doc__
    assert "Shapes" in module_doc and "measured" in module_doc  # the torch/cv2 choice, with numbers


# ---------------------------------------------------------------------------- geometric
@pytest.mark.parametrize("channels", [1, 3])
def test_translate_by_whole_pixels_moves_pixels_and_fills_with_the_lower_bound(channels):
    x = rand(2, channels, 8, 8)
    y = rep("translate", x, dx=0.25, dy=-0.125)  # 2 pixels right, 1 pixel up
    assert close(y[:, :, :7, 2:], x[:, :, 1:, :6])
    assert torch.all(y[:, :, :, :2] == 0) and torch.all(y[:, :, 7, :] == 0)
    lo_fill = rep("translate", x * 2 - 1, bounds=(-1.0, 1.0), dx=0.25, dy=0.0)
    assert close(lo_fill[:, :, :, :2], torch.full_like(lo_fill[:, :, :, :2], -1.0))


def test_translate_border_and_reflection_padding():
    x = rand(1, 1, 6, 6)
    border = rep("translate", x, config={"padding": "border"}, dx=2 / 6, dy=0.0)
    assert close(border[..., :2], x[..., :1].expand(-1, -1, -1, 2))
    mirror = rep("translate", x, config={"padding": "reflection"}, dx=2 / 6, dy=0.0)
    assert close(mirror[..., :2], x[..., :2].flip(-1))


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 7, 7), (1, 10, 16)])
def test_rotate_by_zero_is_identity_and_by_180_flips_both_axes(shape):
    x = rand(2, *shape)
    assert close(rep("rotate", x, angle=0.0), x)
    assert close(rep("rotate", x, angle=180.0), x.flip(-1).flip(-2))
    assert close(rep("rotate", x, angle=-180.0), x.flip(-1).flip(-2))


def test_rotate_by_90_turns_counter_clockwise():
    x = rand(1, 3, 9, 9)
    assert close(rep("rotate", x, angle=90.0), torch.rot90(x, 1, dims=(2, 3)))
    assert close(rep("rotate", x, angle=-90.0), torch.rot90(x, -1, dims=(2, 3)))


def test_scale_zooms_about_the_centre():
    x = rand(1, 1, 12, 12)
    assert close(rep("scale", x, factor=1.0, aspect=1.0), x)
    shrunk = rep("scale", torch.ones(1, 1, 16, 16), factor=0.5, aspect=1.0)
    assert close(shrunk[..., 5:11, 5:11], torch.ones(1, 1, 6, 6))  # the image, at half size, in the middle
    assert torch.all(shrunk[..., :3, :] == 0) and torch.all(shrunk[..., :, -3:] == 0)
    grown = rep("scale", x, factor=2.0, aspect=1.0)
    # output pixel (r, c) samples source (5.5 + (r - 5.5) / 2): pixels 3 and 8 land on source centres 4.25/6.75
    assert close(grown[..., 5:7, 5:7].mean(), x[..., 5:7, 5:7].mean(), atol=0.2)
    wide = rep("scale", torch.ones(1, 1, 16, 16), factor=1.0, aspect=0.25)  # width halved, height doubled
    assert torch.all(wide[..., 8, :3] == 0) and close(wide[..., :, 6:10], torch.ones(1, 1, 16, 4))


def test_shear_slants_vertical_and_horizontal_lines():
    line = torch.zeros(1, 1, 15, 15)
    line[..., :, 7] = 1.0  # vertical line through the centre
    y = rep("shear", line, shear_x=0.5, shear_y=0.0)[0, 0]
    for r in range(1, 15, 2):
        assert abs(y[r, 7 + (r - 7) // 2].item() - 1.0) < 1e-5
    y = rep("shear", line.transpose(-1, -2), shear_x=0.0, shear_y=0.5)[0, 0]
    for c in range(1, 15, 2):
        assert abs(y[7 + (c - 7) // 2, c].item() - 1.0) < 1e-5


def test_perspective_with_equal_corner_offsets_is_a_translation():
    x = rand(2, 3, 12, 16)
    corners = {k: 0.0 for k in ("tl_x", "tl_y", "tr_x", "tr_y", "br_x", "br_y", "bl_x", "bl_y")}
    assert close(rep("perspective", x, **corners), x)
    shifted = {**corners, **{k: -0.25 for k in ("tl_x", "tr_x", "br_x", "bl_x")}}
    assert close(rep("perspective", x, **shifted), rep("translate", x, dx=0.25, dy=0.0))


def test_perspective_matches_opencv_warp_perspective():
    h, w = 24, 32
    x = _smooth_image(3, h, w)
    off = {"tl_x": 0.2, "tl_y": 0.1, "tr_x": -0.05, "tr_y": 0.0, "br_x": 0.1, "br_y": -0.15, "bl_x": 0.0, "bl_y": 0.05}
    y = rep("perspective", x, config={"padding": "border"}, **off)
    # OpenCV's pixel centres are integers: the image's outer corners are at -0.5 and size - 0.5
    out = np.float32([[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5]])
    src = out + np.float32([[off[f"{c}_x"] * w, off[f"{c}_y"] * h] for c in ("tl", "tr", "br", "bl")])
    m = cv2.getPerspectiveTransform(out, src)
    img = x[0].permute(1, 2, 0).numpy()
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    ref = cv2.warpPerspective(img, m, (w, h), flags=flags, borderMode=cv2.BORDER_REPLICATE)
    assert close(y[0].permute(1, 2, 0), torch.from_numpy(ref), atol=0.01)
    assert (y - x).abs().max() > 0.1


def test_curve_with_flat_sine_is_a_translation_along_the_wave_axis():
    x = rand(1, 3, 12, 10)
    flat = dict(curves=0.0, phase=0.25, depth=0.25)  # sin(pi / 2) = 1 everywhere
    assert close(rep("curve", x, vertical=0, **flat), rep("translate", x, dx=0.0, dy=0.25))
    assert close(rep("curve", x, vertical=1, **flat), rep("translate", x, dx=0.25, dy=0.0))
    assert close(rep("curve", x, vertical=0, curves=3.0, phase=0.3, depth=0.0), x)


def test_curve_displacement_follows_the_sine():
    line = torch.zeros(1, 1, 40, 40)
    line[..., 20, :] = 1.0  # horizontal line; horizontal mode moves columns vertically
    y = rep("curve", line, vertical=0, curves=1.0, phase=0.0, depth=0.1)[0, 0]
    rows = (y * torch.arange(40.0).view(-1, 1)).sum(0) / y.sum(0)  # centre of mass per column
    expected = 20 + 4 * torch.sin(2 * math.pi * (torch.arange(40.0) + 0.5) / 40)
    assert close(rows, expected, atol=0.05)


def test_elastic_displacement_is_bounded_by_alpha_and_zero_alpha_is_identity():
    ramp = torch.linspace(0, 1, 32).view(1, 1, 1, 32).expand(4, 1, 32, 32)  # value = column / 31
    assert close(rep("elastic", ramp, alpha=0.0, cells=4, seed=1), ramp)
    out = create("elastic", alpha=0.05, padding="border").mutate(ramp, gen(0))
    move = (out.x - ramp).abs().amax(dim=(1, 2, 3)) * 31  # horizontal displacement in pixels
    assert torch.all(move <= out.params["alpha"] * 32 + 1e-3)
    assert torch.all(move >= 0.3 * out.params["alpha"] * 32)  # the peak is reached somewhere
    assert (out.x[..., :, 1:] - out.x[..., :, :-1]).abs().max() < 0.1  # smooth: no tearing


# ---------------------------------------------------------------------------- blur
@pytest.mark.parametrize("name, params", [
    ("gaussian_blur", {"sigma": 2.0}),
    ("motion_blur", {"length": 7.0, "angle": 30.0}),
    ("gradient_blur", {"sigma": 3.0, "cx": 0.2, "cy": 0.7}),
])  # fmt: skip
def test_blurs_keep_constant_images_constant(name, params):
    x = torch.full((2, 3, 11, 9), 0.3)
    assert close(rep(name, x, **params), x)


def test_gaussian_blur_of_an_impulse_is_a_normalised_gaussian():
    x = torch.zeros(1, 1, 41, 41)
    x[..., 20, 20] = 1.0
    y = rep("gaussian_blur", x, sigma=2.5)[0, 0]
    assert abs(y.sum().item() - 1.0) < 1e-4 and close(y, y.flip(0)) and close(y, y.t())
    r2 = (torch.arange(41.0) - 20) ** 2
    assert abs((y.sum(0) * r2).sum().item() - 2.5**2) < 0.1  # variance along x
    assert torch.equal(rep("gaussian_blur", x, sigma=0.0), x)


def test_motion_blur_spreads_along_its_angle_only():
    x = torch.zeros(1, 1, 21, 21)
    x[..., 10, 10] = 1.0
    horizontal = rep("motion_blur", x, length=8.0, angle=0.0)[0, 0]
    assert abs(horizontal.sum().item() - 1) < 1e-5 and abs(horizontal[10].sum().item() - 1) < 1e-5
    assert (horizontal[10] > 0).sum() >= 8
    vertical = rep("motion_blur", x, length=8.0, angle=90.0)[0, 0]
    assert close(vertical, horizontal.t())
    diagonal = rep("motion_blur", x, length=8.0, angle=45.0)[0, 0]
    assert diagonal[7, 13] > 0.05 and diagonal[13, 13] < 1e-6  # up-right, not down-right
    assert close(rep("motion_blur", x, length=0.0, angle=0.0), x)


def test_gradient_blur_is_sharp_at_the_point_and_blurred_far_away():
    x = rand(1, 1, 24, 24)
    near = rep("gradient_blur", x, sigma=3.0, cx=0.0, cy=0.0)
    d = (near - x).abs()[0, 0]
    assert d[:3, :3].mean() < 0.3 * d[-4:, -4:].mean()
    far = rep("gradient_blur", x, config={"sharp": "edge"}, sigma=3.0, cx=0.0, cy=0.0)
    d = (far - x).abs()[0, 0]
    assert d[-2:, -2:].mean() < 0.3 * d[:4, :4].mean()
    assert close(rep("gradient_blur", x, sigma=0.0, cx=0.5, cy=0.5), x)


# ---------------------------------------------------------------------------- luminance
def test_contrast_is_alpha_x_plus_beta():
    x = rand(2, 3, 5, 5)
    assert torch.equal(rep("contrast", x, alpha=1.0, beta=0.0), x)
    x = torch.tensor([0.0, 0.2, 0.4, 0.6]).view(1, 1, 2, 2)
    assert close(rep("contrast", x, alpha=2.0, beta=0.1).flatten(), torch.tensor([0.1, 0.5, 0.9, 1.0]))
    wide = rep("contrast", torch.zeros(1, 1, 2, 2), bounds=(-1.0, 1.0), alpha=0.5, beta=0.25)
    assert close(wide, torch.full_like(wide, 0.5 * 1 - 1 + 0.25 * 2))  # (0 - lo) * alpha + lo + beta * r


def test_gradient_luminance_linear_ramp_follows_the_angle():
    zeros = torch.zeros(1, 1, 6, 8)
    right = rep("gradient_luminance", zeros, strength=0.5, angle=0.0, cx=0.0, cy=0.0)[0, 0]
    assert close(right[0], torch.linspace(0, 0.5, 8)) and close(right, right[:1].expand(6, 8))
    up = rep("gradient_luminance", zeros, strength=0.5, angle=90.0, cx=0.0, cy=0.0)[0, 0]
    assert close(up[:, 0], torch.linspace(0.5, 0, 6)) and close(up, up[:, :1].expand(6, 8))
    dark = rep("gradient_luminance", torch.ones(1, 1, 6, 8), strength=-0.5, angle=180.0, cx=0.0, cy=0.0)[0, 0]
    assert close(dark[0], torch.linspace(0.5, 1.0, 8))


def test_gradient_luminance_radial_peaks_at_the_light():
    light = dict(strength=0.6, angle=0.0, cx=0.25, cy=0.75)
    y = rep("gradient_luminance", torch.zeros(1, 3, 20, 20), config={"pattern": "radial"}, **light)
    lit = y[0, 0]
    r, c = divmod(int(lit.argmax()), 20)
    assert (r, c) in {(14, 4), (14, 5), (15, 4), (15, 5)}
    assert lit.max() > 0.55 and lit[0, 19] < 0.05 and torch.equal(y[0, 0], y[0, 2])


# ---------------------------------------------------------------------------- noise
def test_uniform_noise_stays_within_its_amplitude():
    x = torch.full((2, 3, 32, 32), 0.5)
    y = rep("uniform_noise", x, amplitude=0.1, seed=5)
    d = y - x
    assert d.abs().max() <= 0.1 + 1e-6 and d.abs().max() > 0.09 and abs(d.mean().item()) < 0.01
    assert abs(d.std().item() - 0.1 / math.sqrt(3)) < 0.005
    assert torch.equal(d[0], d[1])  # one recorded seed, one field
    out = create("uniform_noise").mutate(x, gen(0))
    assert not torch.equal(out.x[0] - x[0], out.x[1] - x[1])  # per-input seeds, per-input fields


def test_gaussian_noise_has_the_drawn_standard_deviation():
    x = torch.full((1, 1, 64, 64), 0.5)
    d = rep("gaussian_noise", x, std=0.05, seed=11) - x
    assert abs(d.std().item() - 0.05) < 0.004 and abs(d.mean().item()) < 0.005


@pytest.mark.parametrize("bounds", [(0.0, 1.0), (-1.0, 2.0)])
def test_salt_and_pepper_only_sets_whole_pixels_to_the_bounds(bounds):
    lo, hi = bounds
    x = lo + (hi - lo) * rand(4, 3, 32, 32)
    out = create("salt_and_pepper_noise", density=(0.1, 0.2)).mutate(x, gen(0), bounds=bounds)
    changed = out.x != x
    assert torch.all((out.x[changed] == lo) | (out.x[changed] == hi))
    spots = changed.any(1)
    assert torch.equal(changed.all(1), spots)  # all channels of a spot change together
    assert torch.equal(out.x[:, :1].expand_as(out.x)[changed], out.x[changed])  # to the same value
    share = spots.float().mean(dim=(1, 2))
    assert torch.allclose(share, out.params["density"].float(), atol=0.04)
    salt_only = rep("salt_and_pepper_noise", x, bounds=bounds, density=0.3, salt=1.0, seed=1)
    assert torch.all((salt_only == x) | (salt_only == hi))
    pepper_only = rep("salt_and_pepper_noise", x, bounds=bounds, density=0.3, salt=0.0, seed=1)
    assert torch.all((pepper_only == x) | (pepper_only == lo))
    assert torch.equal(salt_only != x, pepper_only != x)  # same spots, from the same seed


def test_natural_noise_is_low_frequency_peaked_and_sparse_on_demand():
    x = torch.full((2, 3, 48, 48), 0.5)
    smooth = rep("natural_noise", x, amplitude=0.2, cells=4, sparsity=0.0, seed=3) - x
    assert close(smooth.abs().amax(dim=(1, 2, 3)), torch.full((2,), 0.2))
    assert torch.equal(smooth[:, 0], smooth[:, 2])  # one field for all channels
    white = rep("gaussian_noise", x, std=0.1, seed=3) - x
    step = lambda d: (d[..., 1:] - d[..., :-1]).abs().mean() / d.abs().mean()  # noqa: E731
    assert step(smooth) < 0.1 * step(white)
    sparse = rep("natural_noise", x, amplitude=0.2, cells=4, sparsity=0.7, seed=3) - x
    assert (sparse == 0).float().mean() > 0.5 > (smooth == 0).float().mean()
    assert close(sparse.abs().amax(dim=(1, 2, 3)), torch.full((2,), 0.2))


# ---------------------------------------------------------------------------- compression
@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_quality_100_is_close_and_low_quality_is_lossier(channels):
    x = _smooth_image(channels)
    best = rep("jpeg", x, quality=100)
    # OpenCV subsamples chroma at every quality, so colour edges keep a small error
    assert (best - x).abs().mean() < 0.01 and (best - x).abs().max() < 0.05
    assert torch.equal(best * 255, (best * 255).round())  # 8-bit output
    noisy = rand(1, channels, 32, 32)
    err = [(rep("jpeg", noisy, quality=q) - noisy).abs().mean().item() for q in (5, 50, 95)]
    assert err[0] > err[1] > err[2]


def test_jpeg_keeps_colour_order():
    x = torch.zeros(1, 3, 16, 16)
    x[:, 0] = 0.9  # pure red stays red, not blue
    y = rep("jpeg", x, quality=90)
    assert y[0, 0].mean() > 0.8 and y[0, 2].mean() < 0.1


def test_pixelate_makes_blocks_of_block_means():
    x = rand(1, 3, 8, 8)
    y = rep("pixelate", x, scale=0.5)
    means = torch.nn.functional.avg_pool2d(x, 2)
    assert close(y, means.repeat_interleave(2, -1).repeat_interleave(2, -2))
    assert close(rep("pixelate", x, scale=1.0), x)
    assert close(rep("pixelate", x, scale=0.01), x.mean(dim=(2, 3), keepdim=True).expand_as(x))


# ---------------------------------------------------------------------------- occlusion
def test_occlusion_fills_exactly_one_rectangle():
    x = torch.ones(1, 3, 10, 20)
    y = rep("occlusion", x, height=0.3, width=0.25, top=0.5, left=0.0, value=0.0)
    expected = torch.ones_like(x)
    expected[..., 4:7, 0:5] = 0.0  # 3 x 5 pixels; top = floor(0.5 * (10 - 3 + 1)) = 4
    assert torch.equal(y, expected)
    grey = rep("occlusion", x * -1, bounds=(-1.0, 1.0), height=1.0, width=1.0, top=0.3, left=0.9, value=0.25)
    assert close(grey, torch.full_like(x, -0.5))
    assert torch.equal(rep("occlusion", x, height=0.0, width=0.5, top=0.5, left=0.5, value=0.0), x)


def test_occlusion_draws_rectangles_of_the_drawn_size_inside_the_image():
    x = torch.ones(64, 1, 16, 12)
    out = create("occlusion", height=(0.1, 0.5), width=(0.2, 0.6)).mutate(x, gen(0))
    hidden = out.x == 0
    for i in range(64):
        p = out.params_of(i)
        rows, cols = hidden[i, 0].any(1).nonzero(), hidden[i, 0].any(0).nonzero()
        rh, rw = round(p["height"] * 16), round(p["width"] * 12)
        assert hidden[i].sum() == rh * rw == len(rows) * len(cols)
        assert rows.max() - rows.min() + 1 == rh and cols.max() - cols.min() + 1 == rw


# ---------------------------------------------------------------------------- weather
def test_fog_whitens_smoothly_up_to_its_density():
    x = torch.zeros(2, 3, 32, 32)
    y = rep("fog", x, density=0.6, cells=2, seed=4)
    assert y.min() >= 0.3 * 0.85 - 1e-6 and y.max() <= 0.6 * 0.85 + 1e-6 and y.std() > 0.01
    assert torch.equal(y[:, 0], y[:, 1])  # grey: the same on every channel
    assert (y[..., 1:] - y[..., :-1]).abs().max() < 0.05
    assert torch.equal(rep("fog", rand(1, 3, 8, 8), density=0.0, cells=3, seed=1), rand(1, 3, 8, 8))


def test_rain_draws_streaks_along_the_angle():
    x = torch.zeros(1, 1, 64, 64)
    y = rep("rain", x, density=0.005, length=0.2, angle=0.0, intensity=1.0, seed=2)[0, 0]
    assert y.max() > 0.5 and (y > 0).float().mean() < 0.3
    vertical = (y[1:] * y[:-1]).sum() / (y * y).sum()
    horizontal = (y[:, 1:] * y[:, :-1]).sum() / (y * y).sum()
    assert vertical > 0.8 > 0.5 > horizontal
    img = rand(1, 3, 16, 16)
    assert torch.equal(rep("rain", img, density=0.0, length=0.2, angle=10.0, intensity=1.0, seed=2), img)


def test_snow_only_brightens_and_veil_whitens():
    x = rand(2, 3, 32, 32)
    y = rep("snow", x, density=0.05, size=1.0, intensity=1.0, veil=0.0, seed=9)
    assert torch.all(y >= x - 1e-6) and (y > x + 0.1).float().mean() > 0.02
    assert close(rep("snow", x, density=0.0, size=1.0, intensity=1.0, veil=1.0, seed=9), torch.ones_like(x))
    assert close(rep("snow", x, density=0.0, size=1.0, intensity=1.0, veil=0.0, seed=9), x)
