"""The simulated platform's secrets: an Ed25519 platform key and a sealing root key.

In SGX both live in the CPU: the quoting enclave's key is certified up to Intel's root, and
sealing keys are derived from the CPU's fused root key and the enclave's measurement (EGETKEY,
MRENCLAVE policy). The simulated platform keeps them in a folder readable only by the
platform's user. Only the worker reads the platform key: it certifies the worker's own
attestation key (`channel/simulated.py`). The sealing key of a head is HKDF(root,
info=measurement), so a head sealed for one measurement cannot be opened as another; the worker
derives it itself, and `privpart enclave` uses the root once, to seal the head it deploys.
`PlatformKeys` reads each file when asked, so a process that only seals or prints the public key
never holds the platform key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from privpart.errors import PrivpartError
from privpart.runtime.channel.simulated import public_bytes

SIGNING_FILE = "platform.key"
PUBLIC_FILE = "platform.pub"
ROOT_FILE = "sealing_root.key"


def default_platform_dir() -> Path:
    return Path(os.environ.get("PRIVPART_HOME", Path.home() / ".privpart")) / "platform"


def _write_secret(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _unreadable(directory: Path, why: object) -> PrivpartError:
    return PrivpartError(
        f"platform keys in {directory} are unreadable or corrupt: {why}",
        "fix the permissions, or remove the folder to start a new platform (clients must then "
        "pin the new platform.pub)",
    )


@dataclass(frozen=True)
class PlatformKeys:
    """The platform folder: `platform.key`, `platform.pub`, `sealing_root.key`."""

    directory: Path

    @property
    def public_file(self) -> Path:
        return self.directory / PUBLIC_FILE

    @property
    def public_raw(self) -> bytes:
        try:
            raw = bytes.fromhex(self.public_file.read_text().strip())
        except (OSError, ValueError) as exc:
            raise _unreadable(self.directory, exc) from None
        if len(raw) != 32:
            raise _unreadable(self.directory, "platform.pub is not a 32-byte key")
        return raw

    def signing_key(self) -> Ed25519PrivateKey:
        """The platform key (the worker's, to certify its attestation key)."""
        try:
            key = serialization.load_pem_private_key(
                (self.directory / SIGNING_FILE).read_bytes(), password=None
            )
        except (OSError, ValueError) as exc:
            raise _unreadable(self.directory, exc) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise _unreadable(self.directory, "platform.key is not an Ed25519 key")
        if public_bytes(key.public_key()) != self.public_raw:
            raise _unreadable(self.directory, "platform.key and platform.pub do not match")
        return key

    def sealing_key(self, measurement: str) -> bytes:
        """The AES-256 key that seals (and alone unseals) the head with this measurement."""
        try:
            root = (self.directory / ROOT_FILE).read_bytes()
        except OSError as exc:
            raise _unreadable(self.directory, exc) from None
        if len(root) != 32:
            raise _unreadable(self.directory, "sealing_root.key is not 32 bytes")
        return HKDF(
            hashes.SHA256(), 32, salt=b"privpart-seal-v1", info=measurement.encode()
        ).derive(root)

    @classmethod
    def load_or_create(cls, directory: Path) -> PlatformKeys:
        """The platform in `directory`, created on first use (the key is written, not kept)."""
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        signing_path, root_path = directory / SIGNING_FILE, directory / ROOT_FILE
        if not signing_path.exists():
            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            _write_secret(signing_path, pem)
            (directory / PUBLIC_FILE).write_text(public_bytes(key.public_key()).hex() + "\n")
            del key
        elif not (directory / PUBLIC_FILE).exists():  # written by an older privpart
            try:
                old = serialization.load_pem_private_key(signing_path.read_bytes(), None)
                (directory / PUBLIC_FILE).write_text(public_bytes(old.public_key()).hex() + "\n")  # type: ignore[arg-type]
            except (OSError, ValueError, TypeError) as exc:
                raise _unreadable(directory, exc) from None
        if not root_path.exists():
            _write_secret(root_path, os.urandom(32))
        platform = cls(directory)
        platform.public_raw  # noqa: B018  (fails now, not at the first client, if corrupt)
        return platform
