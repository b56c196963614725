"""The sealed head file: the head's weights encrypted at rest, readable without pickle.

Layout::

    b"PPSEAL1\\n"                 8 bytes magic
    uint32 little-endian         H = header length
    H bytes UTF-8 JSON header    {"format", "head": HeadInfo (spec, cut, input shape,
                                  measurement, runtime version), "key_policy", "nonce"}
    AES-256-GCM ciphertext+tag   of the safetensors serialisation of the head's state dict

The header is plaintext (the platform must read the measurement to pick the key) but it is the
GCM associated data, so changing any byte of it makes decryption fail.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import torch
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from privpart.errors import PrivpartError
from privpart.runtime.head import HeadInfo

MAGIC = b"PPSEAL1\n"
LENGTH = struct.Struct("<I")
FORMAT = "privpart-sealed-head/1"
MAX_HEADER = 1 << 16


def seal_bytes(info: HeadInfo, state: dict[str, torch.Tensor], key: bytes) -> bytes:
    nonce = os.urandom(12)
    header = json.dumps(
        {
            "format": FORMAT,
            "head": info.to_json(),
            "key_policy": "measurement",
            "nonce": nonce.hex(),
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    prefix = MAGIC + LENGTH.pack(len(header)) + header
    return prefix + AESGCM(key).encrypt(nonce, st_save(state), prefix)


def write_sealed(path: Path, info: HeadInfo, state: dict[str, torch.Tensor], key: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(seal_bytes(info, state, key))
    tmp.replace(path)
    return path


def _corrupt(why: str) -> PrivpartError:
    return PrivpartError(f"sealed head is corrupt: {why}", "re-seal it from the checkpoint")


def read_header(blob: bytes) -> tuple[HeadInfo, bytes, int]:
    """(head description, the header JSON's nonce, offset of the ciphertext); no key needed."""
    if len(blob) < len(MAGIC) + LENGTH.size or not blob.startswith(MAGIC):
        raise _corrupt("not a privpart sealed head (bad magic)")
    (hlen,) = LENGTH.unpack_from(blob, len(MAGIC))
    start = len(MAGIC) + LENGTH.size
    if not 0 < hlen <= MAX_HEADER or len(blob) < start + hlen:
        raise _corrupt(f"header length {hlen} does not fit the file")
    try:
        header = json.loads(blob[start : start + hlen])
        if header.get("format") != FORMAT:
            raise ValueError(f"format {header.get('format')!r}")
        nonce = bytes.fromhex(header["nonce"])
        info = HeadInfo.from_json(header["head"])
    except PrivpartError as exc:
        raise _corrupt(exc.message) from None
    except (
        json.JSONDecodeError,
        UnicodeDecodeError,
        KeyError,
        TypeError,
        ValueError,
        AttributeError,
    ) as exc:
        raise _corrupt(f"bad header ({exc})") from None
    return info, nonce, start + hlen


def unseal_bytes(blob: bytes, key: bytes) -> tuple[HeadInfo, dict[str, torch.Tensor]]:
    """Decrypt and parse a sealed head; only the right key for its measurement opens it."""
    info, nonce, offset = read_header(blob)
    try:
        plain = AESGCM(key).decrypt(nonce, blob[offset:], blob[:offset])
    except (InvalidTag, ValueError):
        raise PrivpartError(
            "sealed head does not decrypt: wrong platform, wrong measurement, or altered file",
            "seal the head again on this platform (privpart enclave does it from the checkpoint)",
        ) from None
    try:
        state = st_load(plain)
    except SafetensorError as exc:
        raise _corrupt(f"weights do not parse ({exc})") from None
    return info, state
