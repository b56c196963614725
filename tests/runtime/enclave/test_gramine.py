"""The gramine backend without SGX: the manifest against Gramine's documented keys, a
measurement that does not change between launches, and the sign / print-MRENCLAVE pipeline with
stand-in Gramine tools that record what they are asked."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

import privpart
from privpart.errors import PrivpartError
from privpart.runtime.enclave import TEE_BACKENDS, EnclaveConfig, PlatformKeys
from privpart.runtime.enclave import gramine as G
from privpart.runtime.enclave.base import tail_weights_path
from privpart.runtime.enclave.gramine import (
    PLATFORM_IN_ENCLAVE,
    SEALED_IN_ENCLAVE,
    GramineBackend,
)
from privpart.runtime.enclave.supervisor import launch
from privpart.runtime.head import SplitHead

KEYS_DOC = Path(__file__).parent.parent / "data" / "gramine_manifest_keys.txt"
MEASUREMENT = "ab" * 32


def documented() -> dict[str, str]:
    """Gramine 1.9's documented keys -> their value syntax (see the data file's header)."""
    keys: dict[str, str] = {}
    for line in KEYS_DOC.read_text().splitlines():
        if line.startswith("#") or "=" not in line:
            continue
        key, _, syntax = line.partition("=")
        keys.setdefault(key.strip(), syntax.strip())
    return keys


def _pattern(key: str) -> re.Pattern:
    parts = [
        r"[^.]+" if p.startswith("[") and p.endswith("]") else re.escape(p) for p in key.split(".")
    ]
    return re.compile(r"\.".join(parts) + "$")


def flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in table.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, name + "."))
        else:
            out[name] = v
    return out


def backend(tmp_path: Path, **config: Any) -> GramineBackend:
    return GramineBackend(PlatformKeys.load_or_create(tmp_path / "p"), EnclaveConfig(**config))


def manifest(tmp_path: Path, **config: Any) -> tuple[str, dict, Path, GramineBackend]:
    sealed = tmp_path / "heads" / "head-block2-abcdef.sealed"
    sealed.parent.mkdir(exist_ok=True)
    sealed.write_bytes(b"x")
    b = backend(tmp_path, **config)
    text = b.template(sealed, MEASUREMENT).read_text()
    return text, tomllib.loads(text), sealed, b


def test_every_manifest_key_is_one_gramine_documents_with_a_valid_value(tmp_path: Path) -> None:
    text, m, _, _ = manifest(tmp_path)
    docs = documented()
    patterns = {key: _pattern(key) for key in docs}
    flat = flatten(m)
    for key, value in flat.items():
        matches = [k for k, pat in patterns.items() if pat.match(key)]
        assert matches, f"{key} is not a documented Gramine manifest key"
        syntax = docs[matches[0]]
        choices = re.fullmatch(r'"?\[([a-z_|]+)\]"?', syntax)
        if choices and "|" in choices.group(1):
            allowed = choices.group(1).split("|")
            shown = str(value).lower() if isinstance(value, bool) else value
            assert shown in allowed, f"{key} = {value!r}, documented: {syntax}"
        if syntax == "[NUM]":
            assert isinstance(value, int) and value >= 0, key
        if syntax == '"[SIZE]"':
            assert re.fullmatch(r"\d+[KMG]", value), key
    mount_keys = {k.split(".")[-1] for k in docs if k.startswith("fs.mounts[].")}
    mount_types = docs["fs.mounts[].type"].strip('"[]').split("|")
    for mount in m["fs"]["mounts"]:
        assert set(mount) <= mount_keys and mount["path"].startswith(("/", "{{"))
        assert mount.get("type", "chroot") in mount_types
    assert not [k for k in flat if "insecure__" in k or "debug__" in k]
    assert m["sgx"]["debug"] is False and m["sgx"]["remote_attestation"] == "dcap"
    assert m["sgx"]["max_threads"] >= 4  # Gramine's own helper threads need four


def test_manifest_trusts_the_runtime_and_binds_the_head_by_measurement(tmp_path: Path) -> None:
    _, m, sealed, b = manifest(tmp_path, isv_prod_id=7, isv_svn=3)
    trusted, allowed = m["sgx"]["trusted_files"], m["sgx"]["allowed_files"]
    work = sealed.parent / f"gramine-{sealed.stem}"  # where Gramine runs: URIs are relative
    assert "file:runtime/privpart/" in trusted and "file:runtime/purelib/" in trusted
    assert (work / "runtime" / "privpart").resolve() == Path(privpart.__file__).resolve().parent
    purelib = (work / "runtime" / "purelib").resolve()
    assert (purelib / "torch").is_dir()  # torch, dcap-qvl and friends
    assert "file:{{ gramine.libos }}" in trusted
    # the sealed head (re-sealed with a fresh nonce at every start) is not hashed into
    # MRENCLAVE; its measurement is, through the worker's fixed arguments
    assert "file:head.sealed" not in trusted and "file:head.sealed" in allowed
    assert (work / "head.sealed").resolve() == sealed.resolve()
    assert "file:platform/sealing_root.key" in allowed
    assert (work / "platform").resolve() == (tmp_path / "p").resolve()
    assert not any("platform.key" in f for f in trusted + allowed)  # SGX quotes need no key
    argv = m["loader"]["argv"]
    assert argv[0] == G.STAGED["python"][0] == m["libos"]["entrypoint"]
    assert argv[1:3] == ["-m", "privpart.runtime.enclave.worker"]
    assert argv[argv.index("--expect-measurement") + 1] == MEASUREMENT
    assert argv[argv.index("--sealed") + 1] == SEALED_IN_ENCLAVE
    assert argv[argv.index("--platform-dir") + 1] == PLATFORM_IN_ENCLAVE
    assert argv[argv.index("--quote-source") + 1] == "gramine"
    mounts = {mount["path"]: mount for mount in m["fs"]["mounts"]}
    assert mounts[SEALED_IN_ENCLAVE]["uri"] == "file:head.sealed"
    assert mounts[PLATFORM_IN_ENCLAVE]["uri"] == "file:platform"
    assert m["loader"]["env"]["MALLOC_ARENA_MAX"] == "1"
    assert m["loader"]["env"]["MALLOC_MMAP_THRESHOLD_"] == str(32 << 20)
    assert "/privpart/src" in m["loader"]["env"]["PYTHONPATH"].split(":")
    assert (m["sgx"]["isvprodid"], m["sgx"]["isvsvn"]) == (7, 3)


def test_the_manifest_is_the_same_from_any_checkout_and_home(
    tmp_path: Path, tiny_split: SplitHead, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two machines with the same runtime files but the checkout, the virtual environment and
    the home folder (platform keys, sealed heads) elsewhere render the same manifest: the same
    MRENCLAVE inputs. Host paths appear only in the staged links, never in the manifest."""
    real = G.runtime_paths()
    texts = []
    for where in ("alice/src/checkout", "opt/deploy/privpart"):
        root = tmp_path / where
        layout = {}
        for key, path in real.items():  # this runtime, linked from another place
            layout[key] = root / "env" / key
            layout[key].parent.mkdir(parents=True, exist_ok=True)
            layout[key].symlink_to(path)
        monkeypatch.setattr(G, "runtime_paths", lambda layout=layout: layout)
        home = root / "home" / ".privpart"
        config = EnclaveConfig(threads=2, verify_tail=1.0)
        b = GramineBackend(PlatformKeys.load_or_create(home / "platform"), config)
        sealed = b.seal(tiny_split, home / "heads")
        text = b.template(sealed, tiny_split.info.measurement).read_text()
        assert str(tmp_path) not in text and str(Path.home()) not in text
        assert sys.executable not in text and str(real["python"]) not in text
        work = sealed.parent / f"gramine-{sealed.stem}"
        assert (work / "runtime" / "python").resolve() == real["python"]
        assert (work / "head.tail.safetensors").resolve() == tail_weights_path(sealed).resolve()
        texts.append(text)
    assert texts[0] == texts[1]
    m = tomllib.loads(texts[0])
    assert "file:head.tail.safetensors" in m["sgx"]["trusted_files"]  # tail: in MRENCLAVE
    argv = m["loader"]["argv"]
    assert argv[argv.index("--tail-weights") + 1] == G.TAIL_IN_ENCLAVE
    assert argv[argv.index("--verify-tail") + 1] == "1"


def test_the_manifest_is_the_same_at_every_launch(tmp_path: Path, tiny_split: SplitHead) -> None:
    """Re-sealing draws a fresh nonce (the sealed bytes differ) but the manifest, and so
    MRENCLAVE, does not change; another head changes it."""
    b = backend(tmp_path, threads=2)
    heads = tmp_path / "heads"
    first = b.seal(tiny_split, heads)
    blob, text = first.read_bytes(), b.template(first, tiny_split.info.measurement).read_text()
    second = b.seal(tiny_split, heads)
    assert second == first and second.read_bytes() != blob
    assert b.template(second, tiny_split.info.measurement).read_text() == text
    assert b.template(second, "cd" * 32).read_text() != text


@pytest.mark.parametrize(
    ("epc", "threads", "size"), [(93, 4, "8192M"), (4096, 1, "8192M"), (5000, 2, "16384M")]
)
def test_enclave_size_is_a_power_of_two_covering_runtime_and_budget(
    tmp_path: Path, epc: int, threads: int, size: str
) -> None:
    _, m, _, _ = manifest(tmp_path, epc_mib=epc, threads=threads)
    assert m["sgx"]["enclave_size"] == size
    assert m["sgx"]["max_threads"] == threads + 16
    assert m["loader"]["env"]["OMP_NUM_THREADS"] == str(threads)


def test_launch_without_gramine_says_not_available(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("PATH", str(tmp_path))  # no gramine-* here
    b = TEE_BACKENDS.get("gramine")(PlatformKeys.load_or_create(tmp_path / "p"))
    with pytest.raises(PrivpartError) as err:
        launch(b, tmp_path / "x.sealed", "00" * 32)
    assert "not available on this machine" in err.value.message
    assert "--backend process" in err.value.hint and b.simulated is False


def test_unknown_backend_lists_the_known_ones() -> None:
    with pytest.raises(PrivpartError) as err:
        TEE_BACKENDS.get("sev")
    assert {"gramine", "process", "tdx"} <= set(err.value.hint.replace(",", "").split())


def stub_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Gramine's tools as scripts that log their arguments; sigstruct-view prints a SIGSTRUCT."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    view = (  # the format of gramine-sgx-sigstruct-view's manual page
        f'mr_signer = "{"5" * 64}"\nmr_enclave = "{"e" * 64}"\nisv_prod_id = 7\nisv_svn = 3\n'
        'date = "2025-06-20"\ndebug_enclave = false\n'
    )
    for tool in (*G.TOOLS, *G.SIGN_TOOLS, "gramine-sgx-gen-private-key"):
        script = bin_dir / tool
        extra = f"cat <<'EOF'\n{view}EOF\n" if tool == "gramine-sgx-sigstruct-view" else ""
        script.write_text(f'#!/bin/sh\necho "{tool} $*" >> {log}\n{extra}')
        script.chmod(0o755)
    device = tmp_path / "sgx_enclave"
    device.touch()
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setattr(G, "SGX_DEVICES", (device,))
    monkeypatch.setattr(G, "SIGNING_KEY", tmp_path / "no-key.pem")
    return log


def test_prepare_renders_expands_and_signs_with_the_gramine_tools(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = stub_tools(tmp_path, monkeypatch)
    sealed = tmp_path / "heads" / "head-block2-abc.sealed"
    sealed.parent.mkdir()
    sealed.write_bytes(b"x")
    b = backend(tmp_path)
    b.check_available()
    argv, env, cwd = b.worker_command(sealed, MEASUREMENT)
    assert argv == ["gramine-sgx", "privpart-worker"] and cwd is not None
    calls = log.read_text().splitlines()
    assert [c.split()[0] for c in calls] == [
        "gramine-sgx-gen-private-key",
        "gramine-manifest",
        "gramine-sgx-sign",
    ]
    assert "-Darch_libdir=/lib/" in calls[1] and calls[1].endswith("privpart-worker.manifest")
    tomllib.loads((cwd / "privpart-worker.manifest.template").read_text())


def test_print_mrenclave_signs_and_reports_what_clients_pin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runtime_checkpoint: Path
) -> None:
    from typer.testing import CliRunner

    from privpart.cli import app

    log = stub_tools(tmp_path, monkeypatch)
    args = ["enclave", "--checkpoint", str(runtime_checkpoint), "--cut", "block2"]
    args += ["--backend", "gramine", "--print-mrenclave", "--platform-dir", str(tmp_path / "p")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"mrenclave = {'e' * 64}" in result.stdout and f"mrsigner = {'5' * 64}" in result.stdout
    assert "isv_prod_id = 7" in result.stdout
    assert "gramine-sgx-sigstruct-view" in log.read_text()
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))  # no Gramine: say exactly what to run
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, PrivpartError)
    assert "cannot compute MRENCLAVE here" in result.exception.message
    assert "gramine-sgx-sigstruct-view" in result.exception.hint
    assert Path(result.exception.message.rsplit(": ", 1)[1]).is_file()  # the template is there
