"""Where the worker gets its quotes, on temporary directories laid out like the real interfaces:
Gramine's /dev/attestation and Linux configfs-tsm, answering with the real fixture quotes, which
the client then verifies with the same code as any other quote."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from privpart.errors import PrivpartError
from privpart.runtime.channel.attestation import verify_envelope, verify_evidence
from privpart.runtime.channel.envelope import TDX_DCAP, QuoteEnvelope, report_data
from privpart.runtime.channel.policy import CollateralFile, VerificationPolicy
from privpart.runtime.client import EnclaveClient
from privpart.runtime.enclave import EnclaveConfig, PlatformKeys
from privpart.runtime.enclave.host import EnclaveHost, build_enclave_app
from privpart.runtime.enclave.quoting import (
    QUOTE_SOURCES,
    GramineSource,
    QuoteContext,
    SimulatedSource,
    TsmSource,
)
from privpart.runtime.enclave.supervisor import launch
from privpart.runtime.enclave.tdx import TdxBackend
from privpart.runtime.errors import AttestationError, EnclaveError
from privpart.runtime.head import SplitHead
from privpart.runtime.server.runner import start_site

DATA = Path(__file__).parent.parent / "data" / "attestation"
TRANSCRIPT = bytes(range(100, 132))
MRTD = (
    "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407"
    "de03ae6dc5f87f27428b2538873118b7"
)


def tsm_dir(tmp_path: Path, provider: str = "tdx_guest", quote: bytes | None = None) -> Path:
    """configfs-tsm as the kernel lays out a report entry (pre-created: a plain directory cannot
    populate itself on mkdir the way configfs does)."""
    entry = tmp_path / "tsm" / "report" / f"privpart-{os.getpid()}"
    entry.mkdir(parents=True)
    (entry / "provider").write_text(provider + "\n")
    (entry / "generation").write_text("4\n")
    (entry / "outblob").write_bytes(
        (DATA / "tdx_quote.bin").read_bytes() if quote is None else quote
    )
    return tmp_path / "tsm"


def test_tdx_quotes_come_from_configfs_tsm_and_verify_like_any_quote(tmp_path: Path) -> None:
    root = tsm_dir(tmp_path)
    source = QUOTE_SOURCES.get("tdx").start(QuoteContext(PlatformKeys(tmp_path), "m", tsm_dir=root))
    data = report_data(TRANSCRIPT)
    quote = source.quote(data)
    entry = root / "report" / f"privpart-{os.getpid()}"
    assert (entry / "inblob").read_bytes() == data  # the 64 bytes the TD quote must carry
    assert source.evidence_type == TDX_DCAP
    envelope = QuoteEnvelope("tdx", source.evidence_type, quote, "m", "v")
    policy = VerificationPolicy(mrtd=MRTD, at=datetime(2025, 7, 1, tzinfo=UTC))
    coll = CollateralFile(DATA / "tdx_quote_collateral.json").load()
    att = verify_evidence(envelope, policy, coll)
    assert att.tee == "TDX" and att.identity["MRTD"] == MRTD and att.tcb_status == "UpToDate"
    # the fixture was not made for this handshake: the binding refuses it
    with pytest.raises(AttestationError) as err:
        verify_envelope(envelope, policy, "m", TRANSCRIPT, coll)
    assert err.value.code == "wrong_report_data"


def test_configfs_tsm_failures_are_explained(tmp_path: Path) -> None:
    with pytest.raises(PrivpartError, match="not a TDX guest"):
        TsmSource(tmp_path / "no-tsm")
    with pytest.raises(EnclaveError, match="not 'tdx_guest'"):
        TsmSource(tsm_dir(tmp_path / "a", provider="sev_guest")).quote(bytes(64))
    with pytest.raises(EnclaveError, match="empty quote"):
        TsmSource(tsm_dir(tmp_path / "b", quote=b"")).quote(bytes(64))
    with pytest.raises(ValueError, match="64 bytes"):
        TsmSource(tsm_dir(tmp_path / "c")).quote(bytes(32))
    backend = TdxBackend(PlatformKeys.load_or_create(tmp_path / "p"), tsm_dir=tmp_path / "none")
    with pytest.raises(PrivpartError) as err:
        backend.check_available()
    assert "not available on this machine" in err.value.message
    ok = TdxBackend(PlatformKeys(tmp_path / "p"), EnclaveConfig(), tsm_dir(tmp_path / "d"))
    ok.check_available()
    argv, _, _ = ok.worker_command(tmp_path / "h.sealed", "ab" * 32)
    assert argv[argv.index("--quote-source") + 1] == "tdx"
    assert argv[argv.index("--tsm-dir") + 1] == str(tmp_path / "d" / "tsm")


def gramine_dir(tmp_path: Path, kind: str = "dcap") -> Path:
    root = tmp_path / "attestation"
    root.mkdir(parents=True)
    (root / "attestation_type").write_text(kind)
    (root / "quote").write_bytes((DATA / "sgx_quote.bin").read_bytes())
    return root


def test_sgx_quotes_come_from_gramines_attestation_files(tmp_path: Path) -> None:
    root = gramine_dir(tmp_path)
    source = GramineSource.start(QuoteContext(PlatformKeys(tmp_path), "m", attestation_dir=root))
    data = report_data(TRANSCRIPT)
    quote = source.quote(data)
    assert (root / "user_report_data").read_bytes() == data
    assert quote == (DATA / "sgx_quote.bin").read_bytes() and source.evidence_type == "sgx-dcap"
    with pytest.raises(PrivpartError, match="not running inside a Gramine SGX enclave"):
        GramineSource(tmp_path / "nothing")
    with pytest.raises(PrivpartError, match="not 'dcap'"):
        GramineSource(gramine_dir(tmp_path / "epid", "epid"))


def test_simulated_quotes_are_made_with_a_key_of_the_workers_own(tmp_path: Path) -> None:
    platform = PlatformKeys.load_or_create(tmp_path / "p")
    a = SimulatedSource.start(QuoteContext(platform, "ab" * 32))
    b = SimulatedSource.start(QuoteContext(platform, "ab" * 32))
    assert a.quoter.attestation_key != b.quoter.attestation_key  # fresh per worker
    assert a.quoter.platform_key == platform.public_raw.hex()
    policy = VerificationPolicy(allow_simulated=True, platform_pins=(platform.public_raw,))
    envelope = QuoteEnvelope("process", a.evidence_type, a.quote(bytes(64)), "ab" * 32, "v")
    att = verify_evidence(envelope, policy)
    assert att.simulated and att.report_data == bytes(64) and att.platform_key is not None


def test_a_tdx_worker_answers_with_configfs_tsm_quotes_over_the_real_stack(
    tmp_path: Path, tiny_split: SplitHead
) -> None:
    """The tdx backend end to end (worker process, host, client over loopback), its TSM a
    temporary configfs layout holding the real TDX quote: the client verifies the quote with the
    fixture's collateral, and refuses it because it is not bound to this handshake."""
    root = tsm_dir(tmp_path)
    entry = f"privpart-{os.getpid()}"  # the layout's entry, named for the worker
    platform = PlatformKeys.load_or_create(tmp_path / "p")
    backend = TdxBackend(platform, EnclaveConfig(threads=1), root, entry)
    sealed = backend.seal(tiny_split, tmp_path / "heads")
    policy = VerificationPolicy(
        mrtd=MRTD,
        at=datetime(2025, 7, 1, tzinfo=UTC),
        collateral=CollateralFile(DATA / "tdx_quote_collateral.json"),
    )

    async def scenario() -> AttestationError:
        supervisor = launch(backend, sealed, tiny_split.info.measurement)
        await supervisor.start()
        host = EnclaveHost(backend, supervisor, tiny_split.info, "http://127.0.0.1:9")
        runner, url = await start_site(build_enclave_app(host), "127.0.0.1", 0)
        client = EnclaveClient(url, policy, tiny_split.info.measurement)
        try:
            await client.attest()
        except AttestationError as exc:
            return exc
        finally:
            await client.close()
            await runner.cleanup()
        raise AssertionError("a quote for another handshake was accepted")

    err = asyncio.run(scenario())
    assert err.code == "wrong_report_data"  # signature, collateral, MRTD and TCB passed first
    inblob = (root / "report" / entry / "inblob").read_bytes()
    assert len(inblob) == 64 and inblob[32:] == bytes(32)  # T || zeros, written by the worker
