"""Encrypted checkpoints: a state_dict sealed with AES-256-GCM (authenticated encryption).

The ``torch.save`` bytes of a state_dict are the ciphertext's plaintext; the file header is the
associated data, so a changed header fails authentication as surely as a changed ciphertext.
Decryption happens in memory and the plaintext is read with ``torch.load(..., weights_only=True)``;
nothing is loaded unless the whole file authenticates (no partial load). AES-GCM is NIST SP 800-38D;
the ``cryptography`` package does the cryptography (``pip install 'neurofuzz[security]'``).

File format, version 1 (all integers big-endian; 45 header bytes, then the ciphertext)::

    magic     8 bytes  b"NFZCRYPT"
    version   1 byte   1
    key id    8 bytes  HMAC-SHA256(key, "neurofuzz key id")[:8]  (names the key, reveals nothing of it)
    nonce    12 bytes  random, fresh for every file
    length    8 bytes  ciphertext length (plaintext + 16-byte GCM tag)
    check     8 bytes  SHA-256 of the 37 bytes above, first 8
    ciphertext

Each failure is reported in one line, in this order of checks: not an encrypted checkpoint (magic),
unsupported version, truncated file (shorter than its header says), damaged header (check),
trailing bytes, wrong key (key id), tampered ciphertext (GCM tag).

Keys: 32 random bytes, in a key file (raw, or 64 hex digits) or the environment
(``NEUROFUZZ_KEY_FILE`` names a key file, ``NEUROFUZZ_KEY`` holds 64 hex digits), never on a
command line. :func:`new_key_file` writes one with permissions 0600.

Example::

    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> d = Path(tempfile.mkdtemp())
    >>> key = new_key_file(d / "model.key")
    >>> save_encrypted({"w": torch.ones(2)}, d / "w.enc", key=key)
    >>> load_encrypted(d / "w.enc", key=read_key(d / "model.key"))["w"]
    tensor([1., 1.])
    >>> load_encrypted(d / "w.enc", key=bytes(32))
    Traceback (most recent call last):
    ...
    neurofuzz.ground.errors.UserError: ... was encrypted with another key ...
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import secrets
import struct
import tempfile
import warnings
from pathlib import Path

import torch

from neurofuzz.ground.errors import UserError

MAGIC = b"NFZCRYPT"
VERSION = 1
KEY_BYTES = 32
_HEAD = struct.Struct(">8sB8s12sQ")  # magic, version, key id, nonce, ciphertext length
HEADER_BYTES = _HEAD.size + 8
TAG_BYTES = 16
ENV_KEY_FILE, ENV_KEY = "NEUROFUZZ_KEY_FILE", "NEUROFUZZ_KEY"
__all__ = ["ENV_KEY", "ENV_KEY_FILE", "is_encrypted", "key_from", "key_id", "load_encrypted", "new_key_file",
           "read_key", "save_encrypted"]


def _aesgcm(key: bytes):
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:
        raise UserError("encrypted checkpoints need the cryptography package: pip install 'neurofuzz[security]'") from None
    return AESGCM(key)


def key_id(key: bytes) -> bytes:
    """8 bytes that name ``key`` (an HMAC of a constant: the key cannot be recovered from it)."""
    return hmac.new(key, b"neurofuzz key id", hashlib.sha256).digest()[:8]


def _parse_key(raw: bytes, where: str) -> bytes:
    if len(raw) == KEY_BYTES:
        return raw
    text = raw.strip()
    if len(text) == 2 * KEY_BYTES:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    raise UserError(f"{where} is not a key: it must hold {KEY_BYTES} raw bytes or {2 * KEY_BYTES} hex digits "
                    "(create one with `neurofuzz encrypt --new-key KEYFILE ...`)")


def read_key(path: str | Path) -> bytes:
    """The 32-byte key stored in ``path`` (raw bytes or 64 hex digits)."""
    path = Path(path)
    if not path.is_file() and len(str(path)) == 2 * KEY_BYTES and all(c in "0123456789abcdefABCDEF" for c in str(path)):
        raise UserError("the key file name looks like a key: never pass a key on the command line; put it in a "
                        "file (0600) and pass --key-file FILE, or set NEUROFUZZ_KEY")
    if not path.is_file():
        raise UserError(f"key file {path} not found (create one with `neurofuzz encrypt --new-key {path} ...`)")
    if path.stat().st_mode & 0o077:
        warnings.warn(f"key file {path} can be read by other users; restrict it with chmod 600 {path}", stacklevel=2)
    if path.stat().st_size > 4096:
        raise UserError(f"key file {path} is {path.stat().st_size} bytes; a key file holds 32 bytes or 64 hex digits")
    return _parse_key(path.read_bytes(), f"key file {path}")


def key_from(key_file: str | Path | None = None, *, environ: dict[str, str] | None = None) -> bytes:
    """The key from ``key_file``, else ``$NEUROFUZZ_KEY_FILE``, else ``$NEUROFUZZ_KEY`` (hex)."""
    env = os.environ if environ is None else environ
    if key_file:
        return read_key(key_file)
    if env.get(ENV_KEY_FILE):
        return read_key(env[ENV_KEY_FILE])
    if env.get(ENV_KEY):
        return _parse_key(env[ENV_KEY].encode(), f"${ENV_KEY}")
    raise UserError(f"no key given: pass --key-file KEYFILE or set {ENV_KEY_FILE} (a key file) or {ENV_KEY} "
                    "(64 hex digits); a key is never taken from the command line")


def new_key_file(path: str | Path) -> bytes:
    """Create ``path`` holding 32 random bytes (hex), permissions 0600; refuse to overwrite."""
    path = Path(path)
    if path.exists():
        raise UserError(f"key file {path} already exists; remove it or choose another path (a key is never overwritten)")
    key = secrets.token_bytes(KEY_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
    os.chmod(path, 0o600)
    return key


def is_encrypted(path: str | Path) -> bool:
    """Whether ``path`` starts with this format's magic bytes (nothing else is read)."""
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def encrypt_bytes(plain: bytes, *, key: bytes) -> bytes:
    if len(key) != KEY_BYTES:
        raise UserError(f"a key has {KEY_BYTES} bytes, got {len(key)}")
    nonce = secrets.token_bytes(12)
    head = _HEAD.pack(MAGIC, VERSION, key_id(key), nonce, len(plain) + TAG_BYTES)
    header = head + hashlib.sha256(head).digest()[:8]
    return header + _aesgcm(key).encrypt(nonce, plain, header)


def decrypt_bytes(blob: bytes, *, key: bytes, name: str = "the file") -> bytes:
    """The plaintext of ``blob``, or a one-line :class:`UserError` saying what is wrong with it."""
    if len(blob) < len(MAGIC) and MAGIC.startswith(blob) and blob:
        raise UserError(f"{name} is truncated: {len(blob)} bytes, shorter than the {HEADER_BYTES}-byte header")
    if blob[: len(MAGIC)] != MAGIC:
        raise UserError(f"{name} is not an encrypted neurofuzz checkpoint (no {MAGIC.decode()} header)")
    if len(blob) < HEADER_BYTES:
        raise UserError(f"{name} is truncated: {len(blob)} bytes, shorter than the {HEADER_BYTES}-byte header")
    _, version, kid, nonce, length = _HEAD.unpack(blob[: _HEAD.size])
    header = blob[:HEADER_BYTES]
    if version != VERSION:
        raise UserError(f"{name} has encryption format version {version}; this neurofuzz reads version {VERSION}")
    if hashlib.sha256(blob[: _HEAD.size]).digest()[:8] != blob[_HEAD.size : HEADER_BYTES]:
        raise UserError(f"{name} has a damaged header (tampered or corrupted); nothing was loaded")
    body = blob[HEADER_BYTES:]
    if len(body) < length:
        raise UserError(f"{name} is truncated: {len(body)} of {length} ciphertext bytes; nothing was loaded")
    if len(body) > length:
        raise UserError(f"{name} has {len(body) - length} bytes after its ciphertext (tampered or appended); "
                        "nothing was loaded")
    if not hmac.compare_digest(kid, key_id(key)):
        raise UserError(f"{name} was encrypted with another key (key id {kid.hex()}, yours {key_id(key).hex()}); "
                        "give the key file it was encrypted with")
    aes = _aesgcm(key)
    from cryptography.exceptions import InvalidTag

    try:
        return aes.decrypt(nonce, body, header)
    except InvalidTag:
        raise UserError(f"{name} failed authentication: its ciphertext was tampered with or corrupted; "
                        "nothing was loaded") from None


def save_encrypted(state_dict: dict[str, torch.Tensor], path: str | Path, *, key: bytes) -> None:
    """Write ``state_dict`` encrypted to ``path``, atomically (temp file + ``os.replace``)."""
    buf = io.BytesIO()
    torch.save(state_dict, buf)
    blob = encrypt_bytes(buf.getvalue(), key=key)
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.absolute().parent, prefix=".tmp-", suffix=".enc")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_encrypted(path: str | Path, *, key: bytes) -> dict[str, torch.Tensor]:
    """Decrypt ``path`` in memory and load it with ``weights_only=True``; it must be a state_dict."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"encrypted weights file {path} not found")
    plain = decrypt_bytes(path.read_bytes(), key=key, name=str(path))
    try:
        obj = torch.load(io.BytesIO(plain), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - authentic but not loadable as weights only
        raise UserError(f"{path} decrypts, but not to a weights-only checkpoint ({type(e).__name__})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{path} decrypts, but not to a state_dict (a dict of tensors)")
    return obj
