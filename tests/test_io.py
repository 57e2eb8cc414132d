"""Loading user files at the boundary: models (builtin, TorchScript, module:factory + weights) and
seed sets (.npz, .npy + labels, image folders), with a UserError for every bad file."""

from __future__ import annotations

import argparse
import sys
import textwrap

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from neurofuzz.fuzzer.errors import UserError
from neurofuzz.fuzzer.io import load_model, load_seeds, load_state_dict, seeds_to_tensor
from neurofuzz.fuzzer.zoo import LeNet5

LENET = "neurofuzz.fuzzer.zoo:LeNet5"

# torch >= 2.9 deprecates the TorchScript API that the loader supports on purpose
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*deprecated:DeprecationWarning")


def small_net(seed: int = 0) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 6 * 6, 3)).eval()


def lenet(seed: int = 0, **kw) -> LeNet5:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LeNet5(**kw).eval()


def randn(*shape, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def factories(tmp_path, monkeypatch):
    """An importable module of model factories written into tmp_path."""
    name = "nf_test_io_factories"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        NOT_CALLABLE = 3

        def number():
            return 42

        def broken():
            raise RuntimeError("checkpoint server unreachable")

        def draws_from_global_rng():
            torch.rand(1)  # a careless factory; load_model must shield the caller
            return nn.Linear(2, 2)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    yield name
    sys.modules.pop(name, None)


# ---------------------------------------------------------------------------- models
def test_builtin_model(digits_test):
    model = load_model("builtin")
    assert isinstance(model, LeNet5) and not model.training
    x, y = digits_test
    with torch.no_grad():
        acc = (model(x[:64]).argmax(1) == y[:64]).float().mean()
    assert acc > 0.9


def test_builtin_model_refuses_weights(tmp_path):
    with pytest.raises(UserError, match="builtin"):
        load_model("builtin", str(tmp_path / "w.pt"))


@pytest.mark.parametrize("suffix", [".pt", ".ts", ".bin"])
def test_torchscript_file(tmp_path, suffix):
    net = small_net()
    path = tmp_path / f"model{suffix}"
    torch.jit.save(torch.jit.script(net), str(path))
    loaded = load_model(str(path))
    assert isinstance(loaded, torch.jit.ScriptModule)
    x = randn(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(loaded(x), net(x))


def test_torchscript_with_weights_is_not_silently_ignored(tmp_path):
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(small_net(0)), str(path))
    other = {k: torch.zeros_like(v) for k, v in small_net(1).state_dict().items()}
    torch.save(other, tmp_path / "w.pt")
    try:
        model = load_model(str(path), str(tmp_path / "w.pt"))
    except UserError:
        return  # refusing is fine
    assert all(float(p.abs().sum()) == 0 for p in model.state_dict().values())


def test_factory_without_weights_keeps_global_rng():
    model = load_model(LENET)  # the conftest fixture checks the global RNG was not touched
    assert isinstance(model, LeNet5)


def test_factory_that_draws_from_global_rng_is_shielded(factories):
    model = load_model(f"{factories}:draws_from_global_rng")
    assert isinstance(model, nn.Linear)


def test_factory_with_state_dict(tmp_path):
    ref = lenet(seed=3)
    torch.save(ref.state_dict(), tmp_path / "lenet.pt")
    model = load_model(LENET, str(tmp_path / "lenet.pt"))
    assert isinstance(model, LeNet5)
    for (k, a), (k2, b) in zip(model.state_dict().items(), ref.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    x = randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), ref(x))


def test_factory_with_wrapped_state_dict(tmp_path):
    ref = lenet(seed=4)
    torch.save({"state_dict": ref.state_dict()}, tmp_path / "ckpt.pt")
    model = load_model(LENET, str(tmp_path / "ckpt.pt"))
    assert torch.equal(model.fc3.weight, ref.fc3.weight)


def test_pickled_checkpoint_needs_allow_pickle(tmp_path):
    ref = lenet(seed=5)
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": ref.state_dict(), "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(UserError, match="--allow-pickle"):
        load_model(LENET, str(path))
    model = load_model(LENET, str(path), allow_pickle=True)
    assert torch.equal(model.conv1.weight, ref.conv1.weight)


def test_pickled_module_is_refused_without_allow_pickle(tmp_path):
    path = tmp_path / "whole_model.pt"
    torch.save(lenet(), path)  # a whole pickled module, not a state_dict
    with pytest.raises(UserError, match="--allow-pickle"):
        load_state_dict(path)
    with pytest.raises(UserError, match="not a state_dict"):  # unpickled on request, still not a state_dict
        load_state_dict(path, allow_pickle=True)


def test_missing_model_file(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_model(str(tmp_path / "missing.pt"))


def test_model_path_is_a_directory(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_model(str(tmp_path))


@pytest.mark.parametrize("suffix", [".pt", ".pth"])
def test_non_torchscript_file(tmp_path, suffix):
    path = tmp_path / f"weights{suffix}"
    torch.save(lenet().state_dict(), path)
    with pytest.raises(UserError, match="not a TorchScript model.*module:factory"):
        load_model(str(path))


def test_garbage_model_file(tmp_path):
    path = tmp_path / "model.jit"
    path.write_bytes(b"not a zip archive")
    with pytest.raises(UserError, match="not a TorchScript model"):
        load_model(str(path))


def test_spec_that_is_neither_file_nor_factory():
    with pytest.raises(UserError, match="builtin.*TorchScript.*module.path:factory"):
        load_model("lenet5")


def test_factory_module_does_not_exist():
    with pytest.raises(UserError, match="cannot import module 'nf_no_such_module_xyz'"):
        load_model("nf_no_such_module_xyz:build")


@pytest.mark.parametrize("attr", ["NoSuchFactory", "NOT_CALLABLE"])
def test_factory_attribute_missing_or_not_callable(factories, attr):
    with pytest.raises(UserError, match=f"no callable '{attr}'"):
        load_model(f"{factories}:{attr}")


def test_factory_returning_non_module(factories):
    with pytest.raises(UserError, match="returned int, not a torch.nn.Module"):
        load_model(f"{factories}:number")


def test_factory_that_raises(factories):
    with pytest.raises(UserError, match="RuntimeError: checkpoint server unreachable"):
        load_model(f"{factories}:broken")


def test_weights_of_another_shape_do_not_fit(tmp_path):
    torch.save(lenet(n_classes=3).state_dict(), tmp_path / "w3.pt")
    with pytest.raises(UserError, match=r"do not fit the model.*fc3"):
        load_model(LENET, str(tmp_path / "w3.pt"))


def test_weights_of_another_model_do_not_fit(tmp_path):
    torch.save(small_net().state_dict(), tmp_path / "small.pt")
    with pytest.raises(UserError, match=r"w?eights .*small\.pt do not fit the model: (Missing|Unexpected) key"):
        load_model(LENET, str(tmp_path / "small.pt"))


@pytest.mark.parametrize("obj", [[1, 2, 3], {"epoch": 3}, {}, torch.zeros(3), {"w": torch.zeros(1), "epoch": 1}])
def test_weights_file_that_is_not_a_state_dict(tmp_path, obj):
    torch.save(obj, tmp_path / "w.pt")
    with pytest.raises(UserError, match="not a state_dict"):
        load_model(LENET, str(tmp_path / "w.pt"))


def test_missing_weights_file(tmp_path):
    with pytest.raises(UserError, match="weights file .* not found"):
        load_model(LENET, str(tmp_path / "nope.pt"))


def test_corrupt_weights_file(tmp_path):
    (tmp_path / "w.pt").write_bytes(b"\x00garbage")
    with pytest.raises(UserError, match="cannot load weights"):
        load_model(LENET, str(tmp_path / "w.pt"))


# ---------------------------------------------------------------------------- seed arrays
def images(n=5, c=1, h=6, w=7, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, c, h, w), dtype=np.uint8)


def test_npz_with_x_and_y(tmp_path):
    x, y = images(), np.array([3, 1, 4, 1, 5])
    np.savez(tmp_path / "s.npz", x=x, y=y)
    lx, ly = load_seeds(tmp_path / "s.npz")
    assert np.array_equal(lx, x) and lx.dtype == np.uint8
    assert np.array_equal(ly, y)


def test_npz_without_y(tmp_path):
    np.savez(tmp_path / "s.npz", x=images())
    lx, ly = load_seeds(tmp_path / "s.npz")
    assert lx.shape == (5, 1, 6, 7) and ly is None


def test_npz_labels_file_overrides(tmp_path):
    np.savez(tmp_path / "s.npz", x=images(), y=np.zeros(5, dtype=np.int64))
    np.save(tmp_path / "labels.npy", np.arange(5))
    _, ly = load_seeds(tmp_path / "s.npz", tmp_path / "labels.npy")
    assert ly.tolist() == [0, 1, 2, 3, 4]


def test_npz_without_x(tmp_path):
    np.savez(tmp_path / "s.npz", images=images(), labels=np.arange(5))
    with pytest.raises(UserError, match=r"no array 'x' \(found \['images', 'labels'\]\).*np.savez"):
        load_seeds(tmp_path / "s.npz")


def test_npy_with_labels(tmp_path):
    x = np.random.default_rng(1).random((4, 3, 5, 5)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.array([0, 2, 1, 2]))
    lx, ly = load_seeds(tmp_path / "x.npy", tmp_path / "y.npy")
    assert np.array_equal(lx, x) and ly.tolist() == [0, 2, 1, 2]
    lx, ly = load_seeds(str(tmp_path / "x.npy"))
    assert ly is None


@pytest.mark.parametrize("fmt", ["npz", "npy"])
def test_three_dim_array_gets_a_channel_axis(tmp_path, fmt):
    x = images()[:, 0]  # [N,H,W]
    if fmt == "npz":
        np.savez(tmp_path / "s.npz", x=x)
    else:
        np.save(tmp_path / "s.npy", x)
    lx, _ = load_seeds(tmp_path / f"s.{fmt}")
    assert lx.shape == (5, 1, 6, 7) and np.array_equal(lx[:, 0], x)


def test_missing_seed_path(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_seeds(tmp_path / "nope.npz")


def test_missing_labels_file(tmp_path):
    np.save(tmp_path / "x.npy", images())
    with pytest.raises(UserError, match="y.npy"):
        load_seeds(tmp_path / "x.npy", tmp_path / "y.npy")


def test_unsupported_seed_file(tmp_path):
    (tmp_path / "seeds.csv").write_text("1,2,3\n")
    with pytest.raises(UserError, match=r"use \.npz"):
        load_seeds(tmp_path / "seeds.csv")


def test_corrupt_npz(tmp_path):
    (tmp_path / "s.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(UserError, match="cannot read seeds"):
        load_seeds(tmp_path / "s.npz")


def test_pickled_npy_is_refused(tmp_path):
    np.save(tmp_path / "x.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(UserError, match="cannot read seeds"):
        load_seeds(tmp_path / "x.npy")


# ---------------------------------------------------------------------------- image folders
def write_png(path, img):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)


def test_image_folder_grayscale(tmp_path):
    rng = np.random.default_rng(0)
    imgs = {(1, "b.png"): None, (0, "a.png"): None, (0, "c.png"): None, (10, "a.png"): None}
    for (label, name) in imgs:
        imgs[(label, name)] = rng.integers(0, 256, size=(6, 5), dtype=np.uint8)
        write_png(tmp_path / str(label) / name, imgs[(label, name)])
    (tmp_path / "0" / "notes.txt").write_text("not an image")
    x, y = load_seeds(tmp_path)
    assert x.shape == (4, 1, 6, 5) and x.dtype == np.uint8
    # class folders in sorted (name) order, files sorted within a folder
    order = [(0, "a.png"), (0, "c.png"), (1, "b.png"), (10, "a.png")]
    assert y.dtype == np.int64 and y.tolist() == [lab for lab, _ in order]
    for i, key in enumerate(order):
        assert np.array_equal(x[i, 0], imgs[key])


def test_image_folder_colour_restores_rgb_order(tmp_path):
    red_bgr = np.zeros((4, 4, 3), dtype=np.uint8)
    red_bgr[:, :, 2] = 255  # pure red in OpenCV's BGR order
    write_png(tmp_path / "3" / "red.png", red_bgr)
    noise = np.random.default_rng(1).integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    write_png(tmp_path / "3" / "zz.png", noise)
    x, y = load_seeds(tmp_path)
    assert x.shape == (2, 3, 4, 4) and y.tolist() == [3, 3]
    assert (x[0, 0] == 255).all() and (x[0, 1:] == 0).all()
    assert np.array_equal(x[1], noise[:, :, ::-1].transpose(2, 0, 1))


def test_image_folder_drops_alpha(tmp_path):
    bgra = np.zeros((3, 3, 4), dtype=np.uint8)
    bgra[..., 0] = 200  # blue
    bgra[..., 3] = 17  # alpha
    write_png(tmp_path / "0" / "a.png", bgra)
    x, _ = load_seeds(tmp_path)
    assert x.shape == (1, 3, 3, 3)
    assert (x[0, 2] == 200).all() and (x[0, :2] == 0).all()


def test_image_folder_to_tensor(tmp_path):
    img = np.array([[0, 51], [255, 102]], dtype=np.uint8)
    write_png(tmp_path / "0" / "a.png", img)
    x, _ = load_seeds(tmp_path)
    t = seeds_to_tensor(x, (0.0, 1.0))
    assert torch.allclose(t, torch.tensor([[[[0.0, 0.2], [1.0, 0.4]]]]))


def test_image_folder_without_class_subfolders(tmp_path):
    write_png(tmp_path / "a.png", np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(UserError, match="no class subfolders.*<label>"):
        load_seeds(tmp_path)


def test_image_folder_non_integer_class(tmp_path):
    write_png(tmp_path / "0" / "a.png", np.zeros((4, 4), dtype=np.uint8))
    write_png(tmp_path / "cat" / "a.png", np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(UserError, match="cat.*not an integer label"):
        load_seeds(tmp_path)


def test_image_folder_different_sizes(tmp_path):
    write_png(tmp_path / "0" / "a.png", np.zeros((4, 4), dtype=np.uint8))
    write_png(tmp_path / "1" / "b.png", np.zeros((5, 4), dtype=np.uint8))
    with pytest.raises(UserError, match="differ in size"):
        load_seeds(tmp_path)


def test_image_folder_mixed_channels(tmp_path):
    write_png(tmp_path / "0" / "a.png", np.zeros((4, 4), dtype=np.uint8))
    write_png(tmp_path / "0" / "b.png", np.zeros((4, 4, 3), dtype=np.uint8))
    with pytest.raises(UserError, match="differ"):
        load_seeds(tmp_path)


def test_image_folder_16_bit_png(tmp_path):
    write_png(tmp_path / "0" / "deep.png", np.full((4, 4), 40000, dtype=np.uint16))
    with pytest.raises(UserError, match="deep.png is not 8-bit"):
        load_seeds(tmp_path)


def test_image_folder_without_images(tmp_path):
    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "readme.txt").write_text("x")
    with pytest.raises(UserError, match="contains no images"):
        load_seeds(tmp_path)


def test_image_folder_unreadable_image(tmp_path):
    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(UserError, match="cannot read image .*broken.png"):
        load_seeds(tmp_path)


# ---------------------------------------------------------------------------- seeds_to_tensor
def test_seeds_to_tensor_uint8_scales_to_bounds():
    x = np.array([0, 51, 255], dtype=np.uint8).reshape(1, 1, 1, 3)
    t = seeds_to_tensor(x, (0.0, 1.0))
    assert t.dtype == torch.float32 and t.shape == (1, 1, 1, 3)
    assert torch.allclose(t.flatten(), torch.tensor([0.0, 0.2, 1.0]))
    t = seeds_to_tensor(x, (-1.0, 1.0))
    assert torch.allclose(t.flatten(), torch.tensor([-1.0, -0.6, 1.0]))
    assert torch.allclose(seeds_to_tensor(x, (0.0, 255.0)).flatten(), torch.tensor([0.0, 51.0, 255.0]))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_seeds_to_tensor_float_kept_as_values(dtype):
    x = np.random.default_rng(2).random((2, 3, 4, 5)).astype(dtype)
    view = x.transpose(0, 1, 3, 2)  # non-contiguous input
    t = seeds_to_tensor(view, (0.0, 1.0))
    assert t.dtype == torch.float32 and t.shape == (2, 3, 5, 4) and t.is_contiguous()
    assert np.allclose(t.numpy(), view.astype(np.float32))


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint16, np.bool_])
def test_seeds_to_tensor_rejects_other_dtypes(dtype):
    x = np.ones((1, 1, 2, 2), dtype=dtype)
    with pytest.raises(UserError, match=f"dtype {np.dtype(dtype)}.*float32.*uint8"):
        seeds_to_tensor(x, (0.0, 1.0))
