"""Real DCAP quotes (SGX v3, TDX v4) with their Intel collateral, verified by dcap-qvl and held to
the client's policy: each way a quote can fail has its own error code."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from privpart.errors import PrivpartError
from privpart.runtime.channel.attestation import (
    EVIDENCE_VERIFIERS,
    collateral_for,
    evidence_type_of,
    verify_envelope,
    verify_evidence,
)
from privpart.runtime.channel.dcap import (
    SgxIdentity,
    check_dcap,
    quote_layout,
    verify_dcap,
    without_padding,
)
from privpart.runtime.channel.envelope import (
    SGX_DCAP,
    TDX_DCAP,
    QuoteEnvelope,
    report_data,
)
from privpart.runtime.channel.policy import (
    CollateralFile,
    TcbStatus,
    VerificationPolicy,
    collateral_source,
    load_policy,
)
from privpart.runtime.errors import AttestationError

DATA = Path(__file__).parent.parent / "data" / "attestation"
INSIDE = datetime(2025, 7, 1, tzinfo=UTC)
BEFORE = datetime(2025, 6, 18, tzinfo=UTC)
AFTER = datetime(2025, 7, 20, tzinfo=UTC)
MRENCLAVE = "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
MRSIGNER = "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"
MRTD = (
    "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407"
    "de03ae6dc5f87f27428b2538873118b7"
)
SGX_ADVISORIES = frozenset({"INTEL-SA-00289", "INTEL-SA-00615"})
SGX_POLICY = VerificationPolicy(
    mrenclave=MRENCLAVE,
    accept_statuses=frozenset({TcbStatus.UP_TO_DATE, "ConfigurationAndSWHardeningNeeded"}),
    accept_advisories=SGX_ADVISORIES,
    at=INSIDE,
)
TDX_POLICY = VerificationPolicy(mrtd=MRTD, at=INSIDE)
POLICIES = {"sgx": SGX_POLICY, "tdx": TDX_POLICY}


def quote(kind: str) -> bytes:
    """The fixture's quote alone: the TDX file carries 70 zero bytes of buffer padding after
    the quote, which verification refuses (`test_bytes_after_the_quote_are_refused`)."""
    return without_padding((DATA / f"{kind}_quote.bin").read_bytes())


def collateral(kind: str):  # noqa: ANN201
    return CollateralFile(DATA / f"{kind}_quote_collateral.json").load()


def envelope(kind: str, raw: bytes | None = None) -> QuoteEnvelope:
    raw = quote(kind) if raw is None else raw
    return QuoteEnvelope(
        "gramine" if kind == "sgx" else "tdx", evidence_type_of(raw), raw, "m", "v"
    )


def check(kind: str, policy: VerificationPolicy, raw: bytes | None = None) -> str:
    """The error code verification ends with ('ok' when it passes)."""
    try:
        verify_evidence(envelope(kind, raw), policy, collateral(kind))
    except AttestationError as exc:
        return exc.code
    return "ok"


def test_both_fixtures_verify_inside_their_window() -> None:
    sgx = verify_evidence(envelope("sgx"), SGX_POLICY, collateral("sgx"))
    assert sgx.tee == "SGX" and sgx.simulated is False
    assert sgx.identity["MRENCLAVE"] == MRENCLAVE and sgx.identity["MRSIGNER"] == MRSIGNER
    assert sgx.tcb_status == "ConfigurationAndSWHardeningNeeded"
    assert set(sgx.advisories) == SGX_ADVISORIES
    assert sgx.report_data == b"Hello, world!".ljust(64, b"\0")
    assert {c.name for c in sgx.checks} >= {"MRENCLAVE", "debug", "TCB status", "advisories"}
    tdx = verify_evidence(envelope("tdx"), TDX_POLICY, collateral("tdx"))
    assert tdx.tee == "TDX" and tdx.tcb_status == "UpToDate" and tdx.identity["MRTD"] == MRTD
    assert envelope("sgx").evidence_type == SGX_DCAP and envelope("tdx").evidence_type == TDX_DCAP


@pytest.mark.parametrize("kind", ["sgx", "tdx"])
def test_outside_the_window_the_collateral_fails(kind: str) -> None:
    policy = SGX_POLICY if kind == "sgx" else TDX_POLICY
    assert check(kind, policy.with_(at=BEFORE)) == "collateral_not_yet_valid"
    assert check(kind, policy.with_(at=AFTER)) == "collateral_expired"


@pytest.mark.parametrize("kind", ["sgx", "tdx"])
@pytest.mark.parametrize(
    "offset",
    [8, 96, 112, 368, 400],  # header, attributes/debug, MRENCLAVE (or TD fields), report data
)
def test_one_flipped_byte_in_the_signed_part_is_a_bad_signature(kind: str, offset: int) -> None:
    raw = bytearray(quote(kind))
    raw[offset] ^= 0x02
    policy = SGX_POLICY if kind == "sgx" else TDX_POLICY
    assert check(kind, policy, bytes(raw)) == "bad_signature"


def test_wrong_pins_fail_with_their_own_codes() -> None:
    assert check("sgx", SGX_POLICY.with_(mrenclave="00" * 32)) == "wrong_mrenclave"
    by_signer = dataclasses.replace(SGX_POLICY, mrenclave=None, mrsigner="11" * 32, isv_prod_id=0)
    assert check("sgx", by_signer) == "wrong_mrsigner"
    by_signer = by_signer.with_(mrsigner=MRSIGNER)
    assert check("sgx", by_signer) == "ok"
    assert check("sgx", by_signer.with_(isv_prod_id=7)) == "wrong_isv_prod_id"
    assert check("sgx", by_signer.with_(min_isv_svn=1)) == "isv_svn_too_low"
    assert check("tdx", TDX_POLICY.with_(mrtd="00" * 48)) == "wrong_mrtd"
    assert check("tdx", TDX_POLICY.with_(rtmrs=(None, "00" * 48))) == "wrong_rtmr"


def test_a_debug_enclave_is_refused() -> None:
    """The debug bit is signed (flipping it in the quote is a bad signature, above); a quote that
    really comes from a debug enclave verifies in dcap-qvl's signature checks and is refused by
    the policy (and by dcap-qvl itself): shown on the fixture's verified report."""
    report = verify_dcap(quote("sgx"), collateral("sgx"), INSIDE)
    assert isinstance(report.identity, SgxIdentity) and not report.identity.debug
    attrs = bytearray(bytes.fromhex(report.identity.attributes))
    attrs[0] |= 0x02
    debug = dataclasses.replace(
        report, identity=dataclasses.replace(report.identity, attributes=attrs.hex())
    )
    with pytest.raises(AttestationError) as err:
        check_dcap(debug, SGX_POLICY)
    assert err.value.code == "debug_enclave" and "debug enclave" in err.value.message


def test_tcb_status_and_advisories_outside_the_policy_are_refused() -> None:
    strict = VerificationPolicy(mrenclave=MRENCLAVE, at=INSIDE)  # default: UpToDate only
    with pytest.raises(AttestationError) as err:
        verify_evidence(envelope("sgx"), strict, collateral("sgx"))
    assert err.value.code == "tcb_status_not_accepted"
    assert "ConfigurationAndSWHardeningNeeded" in err.value.message
    status_only = strict.with_(accept_statuses=SGX_POLICY.accept_statuses)
    with pytest.raises(AttestationError) as err:
        verify_evidence(envelope("sgx"), status_only, collateral("sgx"))
    assert err.value.code == "advisory_not_accepted" and "INTEL-SA-00615" in err.value.message
    one = status_only.with_(accept_advisories=frozenset({"INTEL-SA-00289"}))
    assert check("sgx", one) == "advisory_not_accepted"


def test_the_report_data_must_be_this_handshakes_transcript() -> None:
    """The same binding code the process backend's quotes pass (tests/runtime/enclave):
    a real quote whose report data is not our transcript hash is refused."""
    transcript = bytes(range(32))
    assert report_data(transcript) == transcript + bytes(32)
    for kind, policy in (("sgx", SGX_POLICY), ("tdx", TDX_POLICY)):
        with pytest.raises(AttestationError) as err:
            verify_envelope(envelope(kind), policy, "m", transcript, collateral(kind))
        assert err.value.code == "wrong_report_data"
        with pytest.raises(AttestationError) as err:  # and the claimed head is checked first
            verify_envelope(envelope(kind), policy, "other", transcript, collateral(kind))
        assert err.value.code == "wrong_measurement"


def test_a_quote_needs_a_pin_collateral_and_the_right_envelope() -> None:
    assert check("sgx", VerificationPolicy(at=INSIDE)) == "no_pin"
    assert check("tdx", VerificationPolicy(at=INSIDE)) == "no_pin"
    with pytest.raises(AttestationError) as err:
        verify_evidence(envelope("sgx"), SGX_POLICY, None)
    assert err.value.code == "collateral_missing"
    mislabelled = dataclasses.replace(envelope("tdx"), evidence_type=SGX_DCAP)
    with pytest.raises(AttestationError) as err:
        verify_evidence(mislabelled, TDX_POLICY, collateral("tdx"))
    assert err.value.code == "bad_quote"
    with pytest.raises(AttestationError) as err:  # SGX quote, TDX collateral
        verify_evidence(envelope("sgx"), SGX_POLICY, collateral("tdx"))
    assert err.value.code == "collateral_mismatch"
    unknown = dataclasses.replace(envelope("sgx"), evidence_type="sev-snp")
    with pytest.raises(AttestationError) as err:
        verify_evidence(unknown, SGX_POLICY, collateral("sgx"))
    assert err.value.code == "unknown_evidence" and "sgx-dcap" in err.value.hint
    assert set(EVIDENCE_VERIFIERS.names()) == {"simulated-ed25519", "sgx-dcap", "tdx-dcap"}
    with pytest.raises(AttestationError) as err:
        evidence_type_of(b"not a quote")
    assert err.value.code == "bad_quote"


def test_collateral_comes_from_the_policy_only_for_hardware_evidence() -> None:
    import asyncio

    policy = SGX_POLICY.with_(collateral=collateral_source(DATA / "sgx_quote_collateral.json"))
    got = asyncio.run(collateral_for(envelope("sgx"), policy))
    assert (
        json.loads(got.to_json())["tcb_info"] == json.loads(collateral("sgx").to_json())["tcb_info"]
    )
    assert collateral_source("https://pccs.example:8081/").describe() == (
        "service https://pccs.example:8081"
    )


def test_policies_refuse_what_cannot_be_meant(tmp_path: Path) -> None:
    with pytest.raises(PrivpartError, match="ISV product id"):
        VerificationPolicy(mrsigner=MRSIGNER)
    with pytest.raises(PrivpartError, match="revoked"):
        VerificationPolicy(accept_statuses=frozenset({"Revoked"}))
    with pytest.raises(PrivpartError, match="unknown TCB status"):
        VerificationPolicy(accept_statuses=frozenset({"Fine"}))
    with pytest.raises(PrivpartError, match="MRENCLAVE must be 32 bytes"):
        VerificationPolicy(mrenclave="abc")
    with pytest.raises(PrivpartError, match="neither a file nor"):
        collateral_source(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(PrivpartError, match="not readable dcap-qvl collateral"):
        CollateralFile(bad).load()


def test_a_policy_error_names_the_parameter_and_the_command_line_its_flag() -> None:
    from privpart.cli.flags import spoken
    from privpart.runtime.channel.policy import parse_time

    with pytest.raises(ValueError) as err:
        VerificationPolicy(mrsigner=MRSIGNER)
    assert isinstance(err.value, PrivpartError) and err.value.param == "isv_prod_id"
    assert "`isv_prod_id=N`" in err.value.hint and "--" not in err.value.hint
    assert spoken(err.value)[1].startswith("add --isv-prod-id N (and --min-isv-svn N")
    with pytest.raises(ValueError) as err:
        parse_time("yesterday")
    assert isinstance(err.value, PrivpartError) and err.value.message.startswith("`at` ")
    assert spoken(err.value) == ("--at 'yesterday' is not an ISO-8601 time",
                                 "e.g. --at 2025-06-20T12:00:00Z")  # fmt: skip


def test_a_policy_file_states_the_same_policy(tmp_path: Path) -> None:
    (tmp_path / "sgx_collateral.json").write_text((DATA / "sgx_quote_collateral.json").read_text())
    path = tmp_path / "policy.json"
    path.write_text(
        json.dumps(
            {
                "mrenclave": MRENCLAVE.upper(),
                "accept_statuses": ["UpToDate", "ConfigurationAndSWHardeningNeeded"],
                "accept_advisories": sorted(SGX_ADVISORIES),
                "collateral": "sgx_collateral.json",
                "at": "2025-07-01T00:00:00Z",
            }
        )
    )
    policy = load_policy(path)
    assert policy.mrenclave == MRENCLAVE and policy.now == INSIDE
    assert isinstance(policy.collateral, CollateralFile)
    assert check("sgx", policy) == "ok"
    path.write_text(json.dumps({"mrenclave": MRENCLAVE, "mrenclaev": "typo"}))
    with pytest.raises(PrivpartError, match="unknown policy fields: mrenclaev"):
        load_policy(path)


@pytest.mark.parametrize("kind", ["sgx", "tdx"])
def test_bytes_after_the_quote_are_refused(kind: str) -> None:
    """The quote ends where its length fields say (header + body + signature data); 70 junk
    bytes after it, or the TDX sample's zero padding, change nothing signed and are refused."""
    raw = quote(kind)
    layout = quote_layout(raw)
    assert layout is not None and layout.signed_length == len(raw)
    assert layout.body == {"sgx": 384, "tdx": 584}[kind]
    padded = (DATA / f"{kind}_quote.bin").read_bytes()
    for tail in (bytes(range(1, 71)), b"\0" * 70):
        with pytest.raises(AttestationError) as err:
            verify_evidence(envelope(kind, raw + tail), POLICIES[kind], collateral(kind))
        assert err.value.code == "quote_trailing_bytes" and "70 bytes follow" in err.value.message
    assert without_padding(raw + bytes(range(1, 71))) == raw + bytes(range(1, 71))  # kept
    assert without_padding(padded) == raw
