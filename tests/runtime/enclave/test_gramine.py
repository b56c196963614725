from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from privpart.errors import PrivpartError
from privpart.runtime.enclave import TEE_BACKENDS, EnclaveConfig, PlatformKeys
from privpart.runtime.enclave.gramine import SEALED_IN_ENCLAVE, GramineBackend, render_manifest


def manifest(tmp_path: Path, epc_mib: int = 93, threads: int = 4) -> tuple[str, dict, Path]:
    sealed = tmp_path / "head-block2-abcdef.sealed"
    sealed.write_bytes(b"x")
    backend = GramineBackend(
        PlatformKeys.load_or_create(tmp_path / "p"), EnclaveConfig(epc_mib=epc_mib, threads=threads)
    )
    text = render_manifest(sealed, backend.worker_args(sealed), epc_mib, threads)
    return text, tomllib.loads(text), sealed


def test_manifest_trusts_the_runtime_and_the_sealed_head(tmp_path: Path) -> None:
    text, m, sealed = manifest(tmp_path)
    trusted = m["sgx"]["trusted_files"]
    import privpart

    assert f"file:{sealed.resolve()}" in trusted
    assert f"file:{Path(privpart.__file__).resolve().parent}/" in trusted
    assert any(t.endswith("site-packages/") for t in trusted)  # torch and friends
    assert "file:{{ gramine.libos }}" in trusted
    assert m["sgx"]["remote_attestation"] == "dcap" and m["sgx"]["debug"] is False
    argv = m["loader"]["argv"]
    assert argv[1:3] == ["-m", "privpart.runtime.enclave.worker"]
    assert argv[argv.index("--sealed") + 1] == SEALED_IN_ENCLAVE
    assert argv[argv.index("--quote-source") + 1] == "gramine"
    mounts = {mount["path"]: mount for mount in m["fs"]["mounts"]}
    assert mounts[SEALED_IN_ENCLAVE]["uri"] == f"file:{sealed.resolve()}"
    assert m["loader"]["env"]["MALLOC_ARENA_MAX"] == "1"
    assert m["loader"]["env"]["MALLOC_MMAP_THRESHOLD_"] == str(32 << 20)
    assert str(Path(privpart.__file__).resolve().parent.parent) in m["loader"]["env"]["PYTHONPATH"]


@pytest.mark.parametrize(
    ("epc", "threads", "size"), [(93, 4, "8192M"), (4096, 1, "8192M"), (5000, 2, "16384M")]
)
def test_enclave_size_is_a_power_of_two_covering_runtime_and_budget(
    tmp_path: Path, epc: int, threads: int, size: str
) -> None:
    _, m, _ = manifest(tmp_path, epc, threads)
    assert m["sgx"]["enclave_size"] == size
    assert m["sgx"]["max_threads"] == threads + 16
    assert m["loader"]["env"]["OMP_NUM_THREADS"] == str(threads)


def test_launch_without_gramine_says_not_available(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("PATH", str(tmp_path))  # no gramine-* here
    backend = TEE_BACKENDS.get("gramine")(PlatformKeys.load_or_create(tmp_path / "p"))
    with pytest.raises(PrivpartError) as err:
        backend.launch(tmp_path / "x.sealed", "00" * 32)
    assert "not available on this machine" in err.value.message
    assert "--backend process" in err.value.hint and backend.simulated is False


def test_unknown_backend_lists_the_known_ones() -> None:
    with pytest.raises(PrivpartError) as err:
        TEE_BACKENDS.get("sev")
    assert "gramine" in err.value.hint and "process" in err.value.hint


def test_prepare_renders_expands_and_signs_with_the_gramine_tools(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stub gramine-* tools record their arguments: the pipeline a real SGX host would run."""
    import privpart.runtime.enclave.gramine as gramine

    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for tool in (*gramine.TOOLS, "gramine-sgx-gen-private-key"):
        script = bin_dir / tool
        script.write_text(f'#!/bin/sh\necho "{tool} $*" >> {log}\n')
        script.chmod(0o755)
    device = tmp_path / "sgx_enclave"
    device.touch()
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(gramine, "SGX_DEVICES", (device,))
    monkeypatch.setattr(gramine, "SIGNING_KEY", tmp_path / "no-key.pem")
    sealed = tmp_path / "heads" / "head-block2-abc.sealed"
    sealed.parent.mkdir()
    sealed.write_bytes(b"x")
    backend = GramineBackend(PlatformKeys.load_or_create(tmp_path / "p"))
    backend.check_available()
    argv, env, cwd = backend.worker_command(sealed)
    assert argv == ["gramine-sgx", "privpart-worker"] and cwd is not None
    calls = log.read_text().splitlines()
    assert [c.split()[0] for c in calls] == [
        "gramine-sgx-gen-private-key",
        "gramine-manifest",
        "gramine-sgx-sign",
    ]
    assert "-Darch_libdir=/lib/" in calls[1] and calls[1].endswith("privpart-worker.manifest")
    tomllib.loads((cwd / "privpart-worker.manifest.template").read_text())
