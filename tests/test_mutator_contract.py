"""The mutator contract, checked for every registered mutator (DESIGN.md: contract tests
parametrised over every registered mutator).

Cases come from ``neurofuzz.mutators.available()`` at collection time, so a mutator is covered
as soon as it registers. Mutators with ``needs_model = True`` (attacks) run on the built-in LeNet-5
digits target with real labels, on 1x32x32 only; the others on 1- and 3-channel batches of
several sizes, square and not, from 8x8 to 224x224. The global-RNG guard is the autouse fixture
in ``conftest.py``.
"""

from __future__ import annotations

import json
import re

import pytest
import torch

from neurofuzz.ground.errors import UserError
from neurofuzz.mutators import Choice, MutationResult, Range, available, create, describe, get

NATURAL_SHAPES = [(1, 8, 8), (3, 8, 8), (1, 32, 32), (3, 17, 29), (1, 31, 12), (3, 224, 224)]
MODEL_SHAPES = [(1, 32, 32)]
KINDS = {"natural", "affine", "attack"}


def _shapes(name: str) -> list[tuple[int, int, int]]:
    return MODEL_SHAPES if get(name).needs_model else NATURAL_SHAPES


def _batch(name: str, shape: tuple[int, int, int]) -> int:
    """Small batches keep the module fast: attacks run tens of forward/backward passes."""
    return 2 if get(name).needs_model or shape[1] * shape[2] > 10_000 else 5


CASES = [
    pytest.param(name, shape, id=f"{name}-{shape[0]}x{shape[1]}x{shape[2]}")
    for name in available()
    for shape in _shapes(name)
]
NATURAL = [n for n in available() if not get(n).needs_model]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def inputs(request, name: str, shape, *, dtype=torch.float32, bounds=(0.0, 1.0), seed: int = 123):
    """A batch in ``bounds`` and the keyword context ``mutate``/``replay`` need."""
    b = _batch(name, shape)
    if get(name).needs_model:
        target = request.getfixturevalue("digits_target")
        x, y = request.getfixturevalue("digits_test")
        return x[:b].clone(), {"bounds": target.bounds, "target": target, "y": y[:b].clone()}
    lo, hi = bounds
    x = lo + (hi - lo) * torch.rand(b, *shape, generator=gen(seed), dtype=dtype)
    return x, {"bounds": bounds}


def one(kw: dict, i: int) -> dict:
    """The context for input ``i`` alone."""
    return {k: (v[i : i + 1] if k == "y" else v) for k, v in kw.items()}


# ---------------------------------------------------------------------------- the batch contract
@pytest.mark.parametrize("name, shape", CASES)
def test_output_keeps_shape_dtype_device_bounds_and_input(request, name, shape):
    m = create(name)
    x, kw = inputs(request, name, shape)
    before = x.clone()
    out = m.mutate(x, gen(0), **kw)
    assert isinstance(out, MutationResult) and out.mutator == name and out.config == m.config
    assert out.x.shape == x.shape and out.x.dtype == x.dtype and out.x.device == x.device
    assert torch.isfinite(out.x).all()
    lo, hi = kw["bounds"]
    assert out.x.min() >= lo and out.x.max() <= hi
    assert torch.equal(x, before), "the input was modified in place"
    assert out.x.data_ptr() != x.data_ptr()
    for key, v in out.params.items():
        assert isinstance(v, torch.Tensor) and v.shape == (x.shape[0],) and v.device.type == "cpu", key
    json.dumps([out.params_of(i) for i in range(x.shape[0])])  # lineage stores them as JSON


@pytest.mark.parametrize("name, shape", CASES)
def test_same_generator_seed_gives_same_mutants(request, name, shape):
    x, kw = inputs(request, name, shape)
    a = create(name).mutate(x, gen(7), **kw)
    b = create(name).mutate(x, gen(7), **kw)
    assert torch.equal(a.x, b.x)
    assert a.params.keys() == b.params.keys()
    assert all(torch.equal(a.params[k], b.params[k]) for k in a.params)


@pytest.mark.parametrize("name, shape", CASES)
def test_different_seeds_give_different_mutants_when_random(request, name, shape):
    m = create(name)
    x, kw = inputs(request, name, shape)
    a, b = m.mutate(x, gen(0), **kw), m.mutate(x, gen(1), **kw)
    random = any(not torch.equal(a.params[k], b.params[k]) for k in a.params)
    if not get(name).needs_model:
        assert random, "natural mutators draw their parameters per input with the default configuration"
    if random:
        assert any(not torch.equal(a.x[i], b.x[i]) for i in range(x.shape[0])), "drawn parameters had no effect"
    else:  # a deterministic mutator (e.g. FGSM with a fixed eps) must not depend on the seed at all
        assert torch.equal(a.x, b.x)


@pytest.mark.parametrize("name, shape", CASES)
def test_replay_reproduces_the_batch_exactly(request, name, shape):
    x, kw = inputs(request, name, shape)
    out = create(name).mutate(x, gen(3), **kw)
    fresh = create(name, **out.config)  # what a corpus replay has: name, config, params
    assert torch.equal(fresh.replay(x, out.params, **kw), out.x)


# A model's own float results depend on the batch it runs in (LeNet-5 on CPU: logits of one input
# differ by ~3e-6 between batch sizes 1 and 2), so a mutator that follows the raw gradient cannot
# replay one input bit for bit outside its batch. Model-free mutators must; attacks must come
# within this tolerance (times the bounds' range). The whole-batch replay above is exact for all.
SINGLE_INPUT_ATOL_WITH_MODEL = 1e-5


@pytest.mark.parametrize("name, shape", CASES)
def test_replay_of_one_input_from_its_json_params_is_exact(request, name, shape):
    x, kw = inputs(request, name, shape)
    m = create(name)
    out = m.mutate(x, gen(4), **kw)
    lo, hi = kw["bounds"]
    for i in range(x.shape[0]):
        params = json.loads(json.dumps(out.params_of(i)))
        alone = m.replay(x[i : i + 1], params, **one(kw, i))
        if get(name).needs_model:
            atol = SINGLE_INPUT_ATOL_WITH_MODEL * (hi - lo)
            assert torch.allclose(alone, out.x[i : i + 1], rtol=0, atol=atol), f"input {i}"
        else:
            assert torch.equal(alone, out.x[i : i + 1]), f"input {i}"


# ---------------------------------------------------------------------------- natural mutators only
@pytest.mark.parametrize("name", NATURAL)
def test_float64_batches_stay_float64(request, name):
    m = create(name)
    x, kw = inputs(request, name, (3, 12, 10), dtype=torch.float64)
    out = m.mutate(x, gen(0), **kw)
    assert out.x.dtype == torch.float64 and out.x.shape == x.shape
    assert out.x.min() >= 0 and out.x.max() <= 1
    assert torch.equal(m.replay(x, out.params, **kw), out.x)


@pytest.mark.parametrize("name", NATURAL)
def test_mutants_follow_the_bounds(request, name):
    """Natural mutators express their parameters in units of the bounds' range, so mutating
    ``lo + r * x`` under bounds ``(lo, lo + r)`` gives ``lo + r * mutate(x)`` under ``(0, 1)``."""
    lo, hi = -1.0, 2.0
    m = create(name)
    x, kw = inputs(request, name, (3, 16, 20))
    unit = m.mutate(x, gen(5), **kw).x
    wide = m.mutate(lo + (hi - lo) * x, gen(5), bounds=(lo, hi)).x
    assert wide.min() >= lo and wide.max() <= hi
    diff = (wide - (lo + (hi - lo) * unit)).abs()
    assert diff.max() <= 0.01 * (hi - lo) and diff.mean() <= 1e-4 * (hi - lo)


@pytest.mark.parametrize("name", NATURAL)
@pytest.mark.parametrize("level", [0.0, 1.0])
def test_constant_images_at_the_bounds_stay_valid(request, name, level):
    m = create(name)
    x = torch.full((3, 3, 16, 16), level)
    out = m.mutate(x, gen(0))
    assert torch.isfinite(out.x).all() and out.x.min() >= 0 and out.x.max() <= 1


@pytest.mark.parametrize("name", NATURAL)
def test_an_empty_batch_gives_an_empty_batch(name):
    x = torch.zeros(0, 3, 8, 8)
    out = create(name).mutate(x, gen(0))
    assert out.x.shape == x.shape and all(v.shape == (0,) for v in out.params.values())


def _extreme_configs():
    for name in NATURAL:
        for key, spec in get(name).schema.items():
            if isinstance(spec, Range):
                for v in (spec.limit_lo, spec.limit_hi):
                    yield pytest.param(name, key, v, id=f"{name}-{key}={v:g}")
            else:
                for v in spec.options:
                    yield pytest.param(name, key, v, id=f"{name}-{key}={v}")


@pytest.mark.parametrize("name, key, value", list(_extreme_configs()))
def test_every_allowed_extreme_value_works(name, key, value):
    m = create(name, **{key: value})
    x = torch.rand(3, 3, 9, 13, generator=gen(1))
    out = m.mutate(x, gen(2))
    assert out.x.shape == x.shape and torch.isfinite(out.x).all()
    assert out.x.min() >= 0 and out.x.max() <= 1
    assert torch.equal(m.replay(x, out.params), out.x)


# ---------------------------------------------------------------------------- registry and schemas
@pytest.mark.parametrize("name", available())
def test_registration_and_schema_are_well_formed(name):
    cls = get(name)
    assert re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", name) and cls.name == name
    assert cls.kind in KINDS and (cls.kind == "attack") == cls.needs_model
    assert cls.__doc__ and cls.__doc__.strip(), "describe() shows the docstring's first line"
    for key, spec in cls.schema.items():
        assert isinstance(spec, (Range, Choice)), key
        if isinstance(spec, Range):
            lo, hi = spec.default
            assert spec.limit_lo <= lo <= hi <= spec.limit_hi, key
            if spec.integer:
                assert float(lo).is_integer() and float(hi).is_integer(), key
        else:
            assert spec.default in spec.options, key
    m = create(name)
    assert set(m.config) == set(cls.schema)
    json.dumps(describe(name))
    assert name in repr(m) or type(m).__name__ in repr(m)


def test_unknown_mutator_name_is_a_user_error_listing_the_valid_names():
    with pytest.raises(UserError, match=r"unknown mutator 'gausian_noise'.*gaussian_noise"):
        create("gausian_noise")


@pytest.mark.parametrize("name", available())
def test_unknown_parameter_is_a_user_error_listing_the_valid_ones(name):
    with pytest.raises(UserError) as err:
        create(name, no_such_param=1)
    msg = str(err.value)
    assert "no_such_param" in msg and name in msg
    assert all(key in msg for key in get(name).schema)


def _ranges():
    for name in available():
        for key, spec in get(name).schema.items():
            if isinstance(spec, Range):
                yield pytest.param(name, key, spec, id=f"{name}-{key}")


@pytest.mark.parametrize("name, key, spec", list(_ranges()))
def test_out_of_range_values_are_user_errors_that_state_the_limits(name, key, spec):
    span = spec.limit_hi - spec.limit_lo
    for bad in (spec.limit_hi + span + 1, spec.limit_lo - span - 1, (spec.limit_hi, spec.limit_lo)):
        if bad == (spec.limit_hi, spec.limit_lo) and spec.limit_hi == spec.limit_lo:
            continue
        with pytest.raises(UserError, match=rf"{name}\.{key}.*out of range.*\[{spec.limit_lo:g}, {spec.limit_hi:g}\]"):
            create(name, **{key: bad})
    for bad in ("0.5", (1, 2, 3), True, None):
        with pytest.raises(UserError, match=rf"{name}\.{key}: expected a number or a \[lo, hi\] pair"):
            create(name, **{key: bad})
    assert create(name, **{key: spec.limit_lo}).config[key] == (spec.limit_lo, spec.limit_lo)


def _choices():
    for name in available():
        for key, spec in get(name).schema.items():
            if isinstance(spec, Choice):
                yield pytest.param(name, key, spec, id=f"{name}-{key}")


@pytest.mark.parametrize("name, key, spec", list(_choices()))
def test_invalid_choice_is_a_user_error_listing_the_options(name, key, spec):
    with pytest.raises(UserError) as err:
        create(name, **{key: "no-such-option"})
    assert f"{name}.{key}" in str(err.value) and all(str(o) in str(err.value) for o in spec.options)
