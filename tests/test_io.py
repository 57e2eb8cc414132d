"""Loading user files at the boundary: models (builtin, TorchScript, module:factory + weights) and
seed sets (.npz, .npy + labels, image folders), with a UserError for every bad file."""

from __future__ import annotations

import argparse
import re
import sys
import textwrap

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from neurofuzz.fuzzer import io as nf_io
from neurofuzz.ground.errors import UserError
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
    with pytest.raises(UserError, match="'cat'.*not a class number.*plain decimal digits"):
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


# ---------------------------------------------------------------------------- model specs: files, working directory
FACTORY_FILE = """
from torch import nn
from helper_sibling import WIDTH  # a sibling module of the model file

def make_net():
    return nn.Linear(WIDTH, 2)
"""


def _clean_modules(*names):
    for n in list(sys.modules):
        if n in names or n.split(".")[0] in names or n.startswith("_neurofuzz_model_"):
            sys.modules.pop(n, None)


@pytest.mark.parametrize("form", ["./mynet.py", "mynet.py", "absolute", "sub/dir"])
def test_model_from_a_file_path(tmp_path, monkeypatch, form):
    folder = tmp_path / "sub" / "dir" if form == "sub/dir" else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mynet.py").write_text(FACTORY_FILE)
    (folder / "helper_sibling.py").write_text("WIDTH = 5\n")
    monkeypatch.chdir(tmp_path)
    spec = {"./mynet.py": "./mynet.py", "mynet.py": "mynet.py", "absolute": str(folder / "mynet.py"),
            "sub/dir": "sub/dir/mynet.py"}[form]
    path_before = list(sys.path)
    try:
        model = load_model(f"{spec}:make_net")
        assert isinstance(model, nn.Linear) and model.in_features == 5
        assert sys.path == path_before  # the import path is restored
    finally:
        _clean_modules("helper_sibling")


def test_model_from_a_package_in_the_working_directory(tmp_path, monkeypatch):
    """``mypkg.models:make_net`` works from the folder holding mypkg, without PYTHONPATH=."""
    (tmp_path / "mypkg_nf").mkdir()
    (tmp_path / "mypkg_nf" / "__init__.py").write_text("")
    (tmp_path / "mypkg_nf" / "models.py").write_text("from torch import nn\ndef make_net():\n    return nn.Linear(3, 2)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    path_before = list(sys.path)
    try:
        assert isinstance(load_model("mypkg_nf.models:make_net"), nn.Linear)
        assert sys.path == path_before
    finally:
        _clean_modules("mypkg_nf")


@pytest.mark.parametrize("spec, match", [
    ("./absent.py:make", r"model file absent.py not found.*file.py:factory"),
    ("./notes.txt:make", r"notes.txt is not a Python file"),
    ("./syntax.py:make", r"cannot import model file syntax.py: SyntaxError"),
    ("./mynet.py:missing", r"has no callable 'missing'"),
    ("./mynet.py:", r"module.path:factory"),
    (":make", r"module.path:factory"),
    ("", r"model spec is empty"),
])
def test_bad_file_model_specs(tmp_path, monkeypatch, spec, match):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "syntax.py").write_text("def make(:\n")
    (tmp_path / "mynet.py").write_text("from torch import nn\ndef make():\n    return nn.Linear(2, 2)\n")
    monkeypatch.chdir(tmp_path)
    try:
        with pytest.raises(UserError, match=match) as e:
            load_model(spec)
        assert "\n" not in str(e.value)
    finally:
        _clean_modules()


# ---------------------------------------------------------------------------- image folders: names, links, sizes
def _digit_png(path, size=(6, 5)):
    write_png(path, np.full(size, 7, dtype=np.uint8))


@pytest.mark.parametrize("name", ["-1", "+3", " 3", "3 ", "seven", "\u0663", "1e3", "0x1", "3.0"])
def test_class_folder_names_must_be_plain_digits(tmp_path, name):
    _digit_png(tmp_path / "0" / "a.png")
    _digit_png(tmp_path / name / "a.png")
    with pytest.raises(UserError, match=f"class folder {re.escape(repr(name))}.*not a class number"):
        load_seeds(tmp_path)


def test_class_folder_names_meaning_the_same_class(tmp_path):
    _digit_png(tmp_path / "7" / "a.png")
    _digit_png(tmp_path / "07" / "a.png")
    with pytest.raises(UserError, match="class folders '07' and '7' in .* both mean class 7; merge them"):
        load_seeds(tmp_path)


def test_hidden_entries_are_skipped(tmp_path):
    _digit_png(tmp_path / "2" / "a.png")
    _digit_png(tmp_path / ".ipynb_checkpoints" / "a.png")
    _digit_png(tmp_path / "2" / ".a-checkpoint.png")
    x, y = load_seeds(tmp_path)
    assert y.tolist() == [2] and x.shape == (1, 1, 6, 5)


def test_symlink_to_a_file_outside_is_refused(tmp_path):
    root = tmp_path / "seeds"
    _digit_png(root / "0" / "a.png")
    _digit_png(tmp_path / "elsewhere" / "b.png")
    (root / "0" / "b.png").symlink_to(tmp_path / "elsewhere" / "b.png")
    with pytest.raises(UserError, match=r"b.png is a symlink to .*elsewhere.*outside the seed folder"):
        load_seeds(root)


def test_symlink_to_a_folder_outside_is_refused(tmp_path):
    root = tmp_path / "seeds"
    _digit_png(root / "0" / "a.png")
    _digit_png(tmp_path / "elsewhere" / "b.png")
    (root / "1").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(UserError, match=r"1 is a symlink to .*elsewhere.*outside the seed folder"):
        load_seeds(root)


def test_symlink_inside_the_folder_is_fine(tmp_path):
    _digit_png(tmp_path / "0" / "a.png")
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "link.png").symlink_to(tmp_path / "0" / "a.png")
    x, y = load_seeds(tmp_path)
    assert y.tolist() == [0, 1] and np.array_equal(x[0], x[1])


def _png_header_only(width: int, height: int) -> bytes:
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + body + struct.pack(">I", zlib.crc32(body))


def test_huge_image_is_refused_before_decoding(tmp_path, monkeypatch):
    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "big.png").write_bytes(_png_header_only(10000, 10000))
    monkeypatch.setattr(cv2, "imread", lambda *a, **k: pytest.fail("decoded before the size check"))
    with pytest.raises(UserError, match=r"big.png is 10000x10000 = 100000000 pixels, more than the 16777216"):
        load_seeds(tmp_path)


def test_sizes_are_compared_before_decoding(tmp_path, monkeypatch):
    _digit_png(tmp_path / "0" / "a.png", (4, 4))
    _digit_png(tmp_path / "0" / "b.png", (4, 5))
    monkeypatch.setattr(cv2, "imread", lambda *a, **k: pytest.fail("decoded before the size check"))
    with pytest.raises(UserError, match=r"differ in size \(a.png is 4x4, b.png is 5x4\)"):
        load_seeds(tmp_path)


def test_total_size_cap(tmp_path, monkeypatch):
    for i in range(3):
        _digit_png(tmp_path / "0" / f"{i}.png", (10, 10))
    monkeypatch.setattr(nf_io, "MAX_SEED_BYTES", 250)
    with pytest.raises(UserError, match="would decode to more than 250 bytes"):
        load_seeds(tmp_path)


@pytest.mark.parametrize("fmt", ["npy", "npz"])
def test_array_size_cap_is_checked_before_reading(tmp_path, monkeypatch, fmt):
    x = images(n=4)  # 4*1*6*7 = 168 bytes
    if fmt == "npy":
        np.save(tmp_path / "s.npy", x)
    else:
        np.savez(tmp_path / "s.npz", x=x)
    monkeypatch.setattr(nf_io, "MAX_SEED_BYTES", 100)
    with pytest.raises(UserError, match=r"holds 168 bytes, more than the 100"):
        load_seeds(tmp_path / f"s.{fmt}")


@pytest.mark.parametrize("suffix, shape", [
    (".png", (7, 9)), (".png", (7, 9, 3)), (".png", (7, 9, 4)), (".jpg", (7, 9)), (".jpg", (7, 9, 3)),
    (".bmp", (7, 9)), (".bmp", (7, 9, 3)), (".pgm", (7, 9)), (".ppm", (7, 9, 3)), (".tif", (7, 9)),
    (".tiff", (7, 9, 3)),
])
def test_image_header_sizes(tmp_path, suffix, shape):
    img = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    write_png(tmp_path / f"a{suffix}", img)
    w, h, channels = nf_io._image_size(tmp_path / f"a{suffix}")
    assert (w, h) == (9, 7)
    assert channels >= (shape[2] if len(shape) == 3 else 1)


def test_image_that_is_not_an_image_format(tmp_path):
    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "a.png").write_bytes(b"GIF89a" + b"\x00" * 40)
    with pytest.raises(UserError, match=r"cannot read image .*a.png: not a readable PNG, JPEG"):
        load_seeds(tmp_path)


def test_labels_file_with_an_image_folder_is_refused(tmp_path):
    _digit_png(tmp_path / "seeds" / "0" / "a.png")
    np.save(tmp_path / "y.npy", np.zeros(1, dtype=np.int64))
    with pytest.raises(UserError, match="class folder names"):
        load_seeds(tmp_path / "seeds", tmp_path / "y.npy")


def test_libpng_warnings_become_python_warnings(tmp_path, capfd):
    """libpng writes "libpng warning: tEXt: CRC error" straight to fd 2; it is turned into a Python
    warning, which the CLI can hold back when an error follows."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 4, 4, 8, 0, 0, 0, 0)
    text = b"Comment\x00hello"
    bad_crc = struct.pack(">I", len(text)) + b"tEXt" + text + b"\x00\x00\x00\x00"
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + bad_crc
           + chunk(b"IDAT", zlib.compress(b"".join(b"\x00" + bytes(4) for _ in range(4)))) + chunk(b"IEND", b""))
    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "a.png").write_bytes(png)
    capfd.readouterr()
    with pytest.warns(UserWarning, match="while reading the seed images: libpng warning: tEXt: CRC error"):
        x, _ = load_seeds(tmp_path)
    assert x.shape == (1, 1, 4, 4)
    assert "libpng" not in capfd.readouterr().err
