"""Encrypted checkpoints: round trip, every tamper case, keys, and the CLI's one-line errors."""

from __future__ import annotations

import doctest
import json
import stat
import sys

import numpy as np
import pytest
import torch

import neurofuzz.security.encryption as enc
from neurofuzz.fuzzer.cli import main
from neurofuzz.fuzzer.io import load_model, load_state_dict
from neurofuzz.fuzzer.zoo import load_digits32, load_lenet5_digits
from neurofuzz.ground.errors import UserError

KEY = bytes(range(32))


def small_state() -> dict[str, torch.Tensor]:
    return {"w": torch.arange(6, dtype=torch.float32).view(2, 3), "b": torch.tensor([1.5, -2.0])}


@pytest.fixture()
def sealed(tmp_path):
    path = tmp_path / "w.enc"
    enc.save_encrypted(small_state(), path, key=KEY)
    return path


def one_line_error(capsys, argv) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("neurofuzz: error: "), err
    return lines[0]


def test_docstring_example():
    assert doctest.testmod(enc, optionflags=doctest.ELLIPSIS).failed == 0


def test_round_trip_and_format(sealed):
    out = enc.load_encrypted(sealed, key=KEY)
    assert set(out) == {"w", "b"} and all(torch.equal(out[k], v) for k, v in small_state().items())
    blob = sealed.read_bytes()
    assert blob.startswith(enc.MAGIC) and enc.is_encrypted(sealed)
    plain_marker = torch.arange(6, dtype=torch.float32).numpy().tobytes()
    assert plain_marker not in blob  # the tensor bytes are not in the file in clear


def test_nonces_are_fresh(tmp_path):
    a, b = tmp_path / "a.enc", tmp_path / "b.enc"
    enc.save_encrypted(small_state(), a, key=KEY)
    enc.save_encrypted(small_state(), b, key=KEY)
    assert a.read_bytes() != b.read_bytes()


def test_every_flipped_byte_is_detected_and_nothing_loads(sealed):
    blob = sealed.read_bytes()
    seen = set()
    for i in range(len(blob)):
        bad = bytearray(blob)
        bad[i] ^= 0x01
        with pytest.raises(UserError) as e:
            enc.decrypt_bytes(bytes(bad), key=KEY)
        msg = str(e.value)
        assert "\n" not in msg
        seen.add("not an encrypted" if "not an encrypted" in msg else "version" if "version" in msg
                 else "header" if "damaged header" in msg else "auth" if "failed authentication" in msg else msg)
    assert seen == {"not an encrypted", "version", "header", "auth"}


@pytest.mark.parametrize("keep", [3, 20, enc.HEADER_BYTES, enc.HEADER_BYTES + 10, -1])
def test_truncation_is_detected(sealed, keep):
    blob = sealed.read_bytes()
    with pytest.raises(UserError, match="truncated"):
        enc.decrypt_bytes(blob[:keep], key=KEY)


def test_appended_bytes_wrong_key_and_plain_files(sealed, tmp_path):
    with pytest.raises(UserError, match="bytes after its ciphertext"):
        enc.decrypt_bytes(sealed.read_bytes() + b"\0", key=KEY)
    with pytest.raises(UserError, match="another key"):
        enc.load_encrypted(sealed, key=bytes(32))
    plain = tmp_path / "plain.pt"
    torch.save(small_state(), plain)
    with pytest.raises(UserError, match="not an encrypted neurofuzz checkpoint"):
        enc.load_encrypted(plain, key=KEY)


def test_authentic_but_not_a_state_dict(tmp_path):
    path = tmp_path / "x.enc"
    path.write_bytes(enc.encrypt_bytes(b"not a torch file", key=KEY))
    with pytest.raises(UserError, match="decrypts, but not to a weights-only checkpoint"):
        enc.load_encrypted(path, key=KEY)


def test_key_files_and_environment(tmp_path):
    kf = tmp_path / "k.key"
    key = enc.new_key_file(kf)
    assert stat.S_IMODE(kf.stat().st_mode) == 0o600 and len(key) == 32 and enc.read_key(kf) == key
    with pytest.raises(UserError, match="already exists"):
        enc.new_key_file(kf)
    raw = tmp_path / "raw.key"
    raw.write_bytes(KEY)
    raw.chmod(0o644)
    with pytest.warns(UserWarning, match="can be read by other users"):
        assert enc.read_key(raw) == KEY
    raw.chmod(0o600)
    assert enc.read_key(raw) == KEY
    assert enc.key_from(None, environ={"NEUROFUZZ_KEY_FILE": str(raw)}) == KEY
    assert enc.key_from(None, environ={"NEUROFUZZ_KEY": KEY.hex()}) == KEY
    assert enc.key_from(kf, environ={"NEUROFUZZ_KEY": KEY.hex()}) == key  # the flag wins
    with pytest.raises(UserError, match="no key given"):
        enc.key_from(None, environ={})
    bad = tmp_path / "bad.key"
    bad.write_text("abc")
    bad.chmod(0o600)
    with pytest.raises(UserError, match="is not a key"):
        enc.read_key(bad)
    with pytest.raises(UserError, match="NEUROFUZZ_KEY is not a key"):
        enc.key_from(None, environ={"NEUROFUZZ_KEY": "zz"})


def test_missing_cryptography_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.ciphers.aead", None)
    with pytest.raises(UserError, match=r"pip install 'neurofuzz\[security\]'"):
        enc.encrypt_bytes(b"x", key=KEY)


def test_io_loads_encrypted_weights(tmp_path, monkeypatch):
    path, kf = tmp_path / "lenet.enc", tmp_path / "k.key"
    key = enc.new_key_file(kf)
    ref = load_lenet5_digits()
    enc.save_encrypted(ref.state_dict(), path, key=key)
    model = load_model("neurofuzz.fuzzer.zoo:LeNet5", str(path), key_file=str(kf))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ref.state_dict().values()))
    monkeypatch.setenv("NEUROFUZZ_KEY", key.hex())
    assert set(load_state_dict(path)) == set(ref.state_dict())
    monkeypatch.delenv("NEUROFUZZ_KEY")
    with pytest.raises(UserError, match="no key given"):
        load_state_dict(path)


# ---------------------------------------------------------------------------- CLI
def test_cli_encrypt_decrypt_and_encrypted_weights(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save(load_lenet5_digits().state_dict(), "w.pt")
    assert main(["encrypt", "w.pt", "--new-key", "k.key"]) == 0
    assert stat.S_IMODE((tmp_path / "k.key").stat().st_mode) == 0o600 and enc.is_encrypted("w.pt.enc")
    assert main(["decrypt", "w.pt.enc", "--out", "back.pt", "--key-file", "k.key"]) == 0
    a, b = torch.load("w.pt", weights_only=True), torch.load("back.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    capsys.readouterr()
    x, y = load_digits32("test")
    np.savez("d.npz", x=x[:100].numpy(), y=y[:100].numpy())
    argv = ["faults", "--model", "neurofuzz.fuzzer.zoo:LeNet5", "--weights", "w.pt.enc", "--data", "d.npz", "--kinds", "zero",
            "--layers", "fc3", "--where", "weights", "--rate", "0", "--json"]
    assert main(argv + ["--key-file", "k.key"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] > 0.95
    assert "no key given" in one_line_error(capsys, argv)
    enc.new_key_file(tmp_path / "other.key")
    assert "another key" in one_line_error(capsys, argv + ["--key-file", "other.key"])


def test_cli_bad_input_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save(small_state(), "w.pt")
    assert main(["encrypt", "w.pt", "--new-key", "k.key", "--out", "w.enc"]) == 0
    capsys.readouterr()
    blob = bytearray((tmp_path / "w.enc").read_bytes())
    blob[-5] ^= 0xFF
    (tmp_path / "t.enc").write_bytes(bytes(blob))
    assert "failed authentication" in one_line_error(capsys, ["decrypt", "t.enc", "--out", "t.pt", "--key-file", "k.key"])
    assert not (tmp_path / "t.pt").exists()  # no partial output
    (tmp_path / "short.enc").write_bytes(bytes(blob[:60]))
    assert "truncated" in one_line_error(capsys, ["decrypt", "short.enc", "--out", "s.pt", "--key-file", "k.key"])
    assert "not an encrypted" in one_line_error(capsys, ["decrypt", "w.pt", "--out", "p.pt", "--key-file", "k.key"])
    assert "already encrypted" in one_line_error(capsys, ["encrypt", "w.enc", "--key-file", "k.key"])
    assert "already exists" in one_line_error(capsys, ["encrypt", "w.pt", "--key-file", "k.key", "--out", "w.enc"])
    assert "already exists" in one_line_error(capsys, ["encrypt", "w.pt", "--new-key", "k.key", "--out", "n.enc"])
    assert "file nope.enc not found" in one_line_error(capsys, ["decrypt", "nope.enc", "--out", "x.pt"])
    assert "key file nope.key not found" in one_line_error(capsys, ["decrypt", "w.enc", "--out", "x.pt", "--key-file", "nope.key"])
    line = one_line_error(capsys, ["decrypt", "w.enc", "--out", "x.pt", "--key", KEY.hex()])
    assert "never taken from the command line" in line and KEY.hex() not in line
    line = one_line_error(capsys, ["decrypt", "w.enc", "--out", "x.pt", "--key-file", KEY.hex()])
    assert "looks like a key" in line and KEY.hex() not in line


@pytest.mark.allow_global_rng  # the user's factory builds nn.Linear, whose init draws from the global RNG
def test_a_campaign_on_encrypted_weights_resumes_with_the_recorded_key_file(tmp_path, monkeypatch, capsys):
    import numpy as np

    from neurofuzz.fuzzer.cli import main
    from neurofuzz.fuzzer.zoo import load_digits32

    monkeypatch.chdir(tmp_path)
    (tmp_path / "tinynet.py").write_text(
        "import torch.nn as nn\n"
        "def make():\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 10))\n")
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(32 * 32, 10))
    with torch.no_grad():
        g = torch.Generator().manual_seed(0)
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    key = enc.new_key_file(tmp_path / "k.key")
    enc.save_encrypted(net.state_dict(), tmp_path / "w.enc", key=key)
    x, y = load_digits32("test")
    with torch.no_grad():
        y = net(x[:16]).argmax(1)  # labels the model gets right: every seed is usable
    np.savez(tmp_path / "seeds.npz", x=x[:16].numpy(), y=y.numpy())
    base = ["--iterations", "1", "--quiet"]
    assert main(["fuzz", "--out", "camp", "--model", "tinynet.py:make", "--weights", "w.enc",
                 "--key-file", "k.key", "--seeds", "seeds.npz", *base]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(["fuzz", "--out", "camp", "--resume", *base]) == 0, capsys.readouterr().err  # key file from the record
    (tmp_path / "k.key").rename(tmp_path / "moved.key")
    rc = main(["fuzz", "--out", "camp", "--resume", *base])
    err = capsys.readouterr().err
    assert rc == 2 and "k.key" in err and err.count("\n") == 1, err
