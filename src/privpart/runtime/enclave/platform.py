"""The simulated platform's secrets: an Ed25519 quote-signing key and a sealing root key.

In SGX both live in the CPU: quotes are signed by Intel's quoting enclave and sealing keys are
derived from the CPU's fused root key and the enclave's measurement (EGETKEY, MRENCLAVE policy).
The `process` backend keeps them in a folder readable only by the platform's user; it mirrors the
derivation: the sealing key of a head is HKDF(root, info=measurement), so a head sealed for one
measurement cannot be opened as another.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from privpart.errors import PrivpartError
from privpart.runtime.channel.attestation import public_bytes

SIGNING_FILE = "platform.key"
PUBLIC_FILE = "platform.pub"
ROOT_FILE = "sealing_root.key"


def default_platform_dir() -> Path:
    return Path(os.environ.get("PRIVPART_HOME", Path.home() / ".privpart")) / "platform"


def _write_secret(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


@dataclass
class PlatformKeys:
    """The platform's signing key and sealing root, loaded from (or created in) `directory`."""

    directory: Path
    signing: Ed25519PrivateKey
    sealing_root: bytes

    @property
    def public_raw(self) -> bytes:
        return public_bytes(self.signing.public_key())

    @property
    def public_file(self) -> Path:
        return self.directory / PUBLIC_FILE

    def sealing_key(self, measurement: str) -> bytes:
        """The AES-256 key that seals (and alone unseals) the head with this measurement."""
        return HKDF(
            hashes.SHA256(), 32, salt=b"privpart-seal-v1", info=measurement.encode()
        ).derive(self.sealing_root)

    @classmethod
    def load_or_create(cls, directory: Path) -> PlatformKeys:
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
        if not root_path.exists():
            _write_secret(root_path, os.urandom(32))
        try:
            key = serialization.load_pem_private_key(signing_path.read_bytes(), password=None)
            root = root_path.read_bytes()
        except (OSError, ValueError) as exc:
            raise PrivpartError(
                f"platform keys in {directory} are unreadable: {exc}",
                "fix the permissions or remove the folder to start a new "
                "platform (clients must then pin the new key)",
            ) from exc
        if not isinstance(key, Ed25519PrivateKey) or len(root) != 32:
            raise PrivpartError(
                f"platform keys in {directory} are corrupt",
                "remove the folder to start a new platform",
            )
        if not (directory / PUBLIC_FILE).exists():
            (directory / PUBLIC_FILE).write_text(public_bytes(key.public_key()).hex() + "\n")
        return cls(directory, key, root)
