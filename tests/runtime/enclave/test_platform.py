from __future__ import annotations

import stat
from pathlib import Path

from privpart.runtime.channel.attestation import read_pin
from privpart.runtime.enclave import PlatformKeys


def test_platform_keys_persist_and_secrets_are_private(tmp_path: Path) -> None:
    a = PlatformKeys.load_or_create(tmp_path / "p")
    b = PlatformKeys.load_or_create(tmp_path / "p")
    assert a.public_raw == b.public_raw and a.sealing_key("ab") == b.sealing_key("ab")
    assert read_pin(a.public_file) == a.public_raw
    for name in ("platform.key", "sealing_root.key"):
        assert stat.S_IMODE((tmp_path / "p" / name).stat().st_mode) == 0o600


def test_sealing_keys_differ_per_measurement_and_platform(tmp_path: Path) -> None:
    a = PlatformKeys.load_or_create(tmp_path / "a")
    b = PlatformKeys.load_or_create(tmp_path / "b")
    assert a.sealing_key("11" * 32) != a.sealing_key("22" * 32)
    assert a.sealing_key("11" * 32) != b.sealing_key("11" * 32)
    assert len(a.sealing_key("11" * 32)) == 32
