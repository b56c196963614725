"""Intel DCAP quotes (SGX v3, TDX v4), verified by dcap-qvl, then held to a client's policy.

`verify_dcap` hands the quote and its collateral to `dcap_qvl.verify`, which checks the PCK
certificate chain up to Intel's root CA (with the CRLs), the QE report and its signature, the
quote's signature by the attestation key, the TCB info and QE identity signatures and their
validity at the given time, and refuses debug enclaves. Nothing here re-implements any of that;
its failure messages are mapped to one error code each. `check_dcap` then applies the policy:
measurement pins, the debug bit (again: defence in depth), the TCB status and advisories.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import dcap_qvl

from privpart.runtime.channel.policy import VerificationPolicy
from privpart.runtime.errors import AttestationError

REFUSE = "do not send data to this enclave"
# dcap-qvl's failure messages -> (code, hint); first match wins, lower-case substrings
FAILURES: tuple[tuple[str, str, str], ...] = (
    ("signature is invalid", "bad_signature", f"the quote was forged or altered: {REFUSE}"),
    ("hash mismatch", "bad_signature", f"the quote was forged or altered: {REFUSE}"),
    ("invalidsignature", "bad_signature", f"the quote's certificates were altered: {REFUSE}"),
    ("unknown qe vendor", "bad_signature", f"the quote was altered: {REFUSE}"),
    ("extract pck", "bad_signature", f"the quote's certificate chain was altered: {REFUSE}"),
    ("debug mode", "debug_enclave", f"a debug enclave's memory is readable by the host: {REFUSE}"),
    (
        "issue date is in the future",
        "collateral_not_yet_valid",
        "the collateral is newer than the verification time: check the clock or --at",
    ),
    (
        "expired",
        "collateral_expired",
        "fetch fresh collateral (PCCS) or verify at a time inside its window (--at)",
    ),
    ("fmspc mismatch", "collateral_mismatch", "the collateral is for another platform (FMSPC)"),
    ("tcb info in the collateral", "collateral_mismatch", "the collateral is for another TEE"),
    ("unsupported qe identity", "collateral_mismatch", "the collateral is for another TEE"),
    ("failed to decode quote", "bad_quote", "the quote is truncated or not a DCAP quote"),
    ("unsupported", "bad_quote", "the quote is not an SGX v3 / TDX v4 DCAP quote"),
    ("revoked", "tcb_revoked", f"the platform's keys are revoked: {REFUSE}"),
)


@dataclass(frozen=True)
class SgxIdentity:
    mrenclave: str
    mrsigner: str
    isv_prod_id: int
    isv_svn: int
    attributes: str  # hex; byte 0 bit 1 is DEBUG

    @property
    def debug(self) -> bool:
        return bool(bytes.fromhex(self.attributes)[0] & 0x02)

    def fields(self) -> dict[str, str]:
        return {
            "MRENCLAVE": self.mrenclave,
            "MRSIGNER": self.mrsigner,
            "ISV product id": str(self.isv_prod_id),
            "ISV SVN": str(self.isv_svn),
            "attributes": self.attributes,
        }


@dataclass(frozen=True)
class TdxIdentity:
    mrtd: str
    rtmrs: tuple[str, str, str, str]
    mr_seam: str
    td_attributes: str  # hex; byte 0 bit 0 is TUD.DEBUG

    @property
    def debug(self) -> bool:
        return bool(bytes.fromhex(self.td_attributes)[0] & 0x01)

    def fields(self) -> dict[str, str]:
        return {
            "MRTD": self.mrtd,
            **{f"RTMR{i}": r for i, r in enumerate(self.rtmrs)},
            "MRSEAM": self.mr_seam,
            "TD attributes": self.td_attributes,
        }


@dataclass(frozen=True)
class DcapReport:
    """What a verified quote says: the TEE, its identity, report data and TCB status."""

    tee: str  # "SGX" | "TDX"
    identity: SgxIdentity | TdxIdentity
    report_data: bytes
    status: str
    advisories: tuple[str, ...]
    qe_status: str
    platform_status: str


@dataclass(frozen=True)
class Check:
    """One line of what verification checked: the field, its value, and against what."""

    name: str
    value: str
    against: str


def _td_body(report: dict[str, Any]) -> dict[str, Any]:
    for kind in ("TD10", "TD15"):
        if kind in report:
            body = report[kind]
            return body.get("base", body)  # TD 1.5 wraps the 1.0 fields in "base"
    raise AttestationError("bad_quote", f"unknown report type {list(report)}", "update privpart")


def _report(verified: dcap_qvl.VerifiedReport) -> DcapReport:
    raw = json.loads(verified.to_json())
    report = raw["report"]
    if "SgxEnclave" in report:
        r = report["SgxEnclave"]
        tee, data = "SGX", r["report_data"]
        identity: SgxIdentity | TdxIdentity = SgxIdentity(
            r["mr_enclave"],
            r["mr_signer"],
            int(r["isv_prod_id"]),
            int(r["isv_svn"]),
            r["attributes"],
        )
    else:
        r = _td_body(report)
        tee, data = "TDX", r["report_data"]
        rtmrs = (r["rt_mr0"], r["rt_mr1"], r["rt_mr2"], r["rt_mr3"])
        identity = TdxIdentity(r["mr_td"], rtmrs, r["mr_seam"], r["td_attributes"])
    return DcapReport(
        tee=tee,
        identity=identity,
        report_data=bytes.fromhex(data),
        status=raw["status"],
        advisories=tuple(raw.get("advisory_ids", [])),
        qe_status=raw.get("qe_status", {}).get("status", ""),
        platform_status=raw.get("platform_status", {}).get("status", ""),
    )


HEADER_BYTES = 48
SGX_TEE, TDX_TEE = 0x00000000, 0x00000081
BODY_BYTES = {SGX_TEE: 384, TDX_TEE: 584}  # SGX report body; TDX 1.0 TD report body (v3/v4)


@dataclass(frozen=True)
class QuoteLayout:
    """Where a DCAP quote's parts lie: header, report body, a 4-byte little-endian length and
    the signature data of that length (ECDSA signature, attestation key, QE report and its
    certification data). The quote ends there; nothing after it is signed or read."""

    body: int  # report body bytes (v5: with its 6-byte type and size prefix)
    signature: int  # signature data bytes

    @property
    def signed_length(self) -> int:
        return HEADER_BYTES + self.body + 4 + self.signature

    def describe(self) -> str:
        return (
            f"header {HEADER_BYTES} + report body {self.body} + signature length 4 + signature "
            f"data {self.signature} = {self.signed_length} bytes"
        )


def quote_layout(quote: bytes) -> QuoteLayout | None:
    """The layout the quote's own header and length fields declare (as dcap-qvl decodes it),
    or None when they do not fit `quote` (dcap-qvl then reports the malformed quote)."""
    try:
        version, _, tee = struct.unpack_from("<HHI", quote, 0)
        if version == 5:  # body type (2) and size (4) precede a v5 body
            body = 6 + struct.unpack_from("<I", quote, HEADER_BYTES + 2)[0]
        else:
            body = BODY_BYTES[tee]
        (signature,) = struct.unpack_from("<I", quote, HEADER_BYTES + body)
    except (struct.error, KeyError):
        return None
    layout = QuoteLayout(body, signature)
    return layout if layout.signed_length <= len(quote) else None


def without_padding(quote: bytes) -> bytes:
    """`quote` without zero bytes after its end: some quote buffers (e.g. a TDX quote read from
    a fixed-size buffer) come padded. For the worker's own quote sources, which run inside the
    TEE; a verifier refuses whatever follows the quote (`verify_dcap`)."""
    layout = quote_layout(quote)
    if layout is None or quote[layout.signed_length :].strip(b"\0"):
        return quote
    return quote[: layout.signed_length]


def verify_dcap(quote: bytes, collateral: dcap_qvl.QuoteCollateralV3, at: datetime) -> DcapReport:
    """The quote's verified content, or the `AttestationError` of the first failed check.

    Bytes after the end of the quote (`QuoteLayout`) are refused: no signature covers them,
    so accepting them would let anyone append to an attested quote unnoticed."""
    layout = quote_layout(quote)
    if layout is not None and len(quote) > layout.signed_length:
        extra = len(quote) - layout.signed_length
        raise AttestationError(
            "quote_trailing_bytes",
            f"{extra} bytes follow the signed quote, which ends at byte {layout.signed_length} "
            f"({layout.describe()}); no signature covers them",
            "pass the quote exactly as the quoting enclave produced it; to inspect a padded "
            "file, `privpart verify-quote --ignore-trailing-bytes` verifies the quote and "
            "ignores what follows it",
        )
    try:
        verified = dcap_qvl.verify(quote, collateral, int(at.timestamp()))
    except ValueError as exc:
        text = str(exc).removeprefix("Verification failed: ")
        summary = " / ".join(line.strip() for line in text.splitlines() if line.strip())
        low = summary.lower()
        for needle, code, hint in FAILURES:
            if needle in low:
                raise AttestationError(code, f"DCAP verification failed: {summary}", hint) from None
        raise AttestationError(
            "quote_invalid", f"DCAP verification failed: {summary}", REFUSE
        ) from None
    return _report(verified)


def _pin(name: str, got: str, want: str | None, code: str, checks: list[Check]) -> None:
    if want is None:
        return
    if got != want:
        raise AttestationError(
            code,
            f"{name} is {got}, the policy pins {want}",
            f"the enclave runs other code than you pinned: {REFUSE} (or update the pin)",
        )
    checks.append(Check(name, got, "pinned"))


def _sgx(identity: SgxIdentity, policy: VerificationPolicy, checks: list[Check]) -> None:
    if policy.mrenclave is None and policy.mrsigner is None and policy.require_pin:
        raise AttestationError(
            "no_pin",
            "the policy pins neither MRENCLAVE nor MRSIGNER: any SGX enclave would pass",
            "pass --mrenclave HEX (from `privpart enclave --print-mrenclave`) or --mrsigner HEX "
            "--isv-prod-id N",
        )
    _pin("MRENCLAVE", identity.mrenclave, policy.mrenclave, "wrong_mrenclave", checks)
    _pin("MRSIGNER", identity.mrsigner, policy.mrsigner, "wrong_mrsigner", checks)
    if policy.mrsigner is not None:
        if identity.isv_prod_id != policy.isv_prod_id:
            raise AttestationError(
                "wrong_isv_prod_id",
                f"ISV product id is {identity.isv_prod_id}, the policy pins {policy.isv_prod_id}",
                f"the signer's other product: {REFUSE}",
            )
        if identity.isv_svn < policy.min_isv_svn:
            raise AttestationError(
                "isv_svn_too_low",
                f"ISV SVN {identity.isv_svn} is below the policy's minimum {policy.min_isv_svn}",
                f"an older, superseded enclave version: {REFUSE}",
            )
        checks.append(Check("ISV product id", str(identity.isv_prod_id), "pinned"))
        checks.append(Check("ISV SVN", str(identity.isv_svn), f">= {policy.min_isv_svn}"))


def _tdx(identity: TdxIdentity, policy: VerificationPolicy, checks: list[Check]) -> None:
    if policy.mrtd is None and policy.require_pin:
        raise AttestationError(
            "no_pin",
            "the policy pins no MRTD: any TD would pass",
            "pass --mrtd HEX (the TD image's measurement, e.g. from `privpart verify-quote`)",
        )
    _pin("MRTD", identity.mrtd, policy.mrtd, "wrong_mrtd", checks)
    for i, want in enumerate(policy.rtmrs):
        _pin(f"RTMR{i}", identity.rtmrs[i], want, "wrong_rtmr", checks)


def check_dcap(report: DcapReport, policy: VerificationPolicy) -> list[Check]:
    """Hold a verified quote to the policy; the checks that passed, or the first failure."""
    checks: list[Check] = []
    if isinstance(report.identity, SgxIdentity):
        _sgx(report.identity, policy, checks)
    else:
        _tdx(report.identity, policy, checks)
    if report.identity.debug:
        raise AttestationError(
            "debug_enclave",
            f"the {report.tee} quote comes from a debug enclave",
            f"a debug enclave's memory is readable by the host: {REFUSE}",
        )
    checks.append(Check("debug", "false", "refused when true"))
    accepted = ", ".join(sorted(policy.accept_statuses))
    if report.status not in policy.accept_statuses:
        hint = (
            f"the platform needs Intel's updates ({report.status}); to accept it anyway name it "
            "with --accept-status and each advisory with --accept-advisory"
        )
        raise AttestationError(
            "tcb_status_not_accepted",
            f"TCB status {report.status} is not accepted (accepted: {accepted})",
            hint,
        )
    checks.append(Check("TCB status", report.status, f"in {{{accepted}}}"))
    refused = [a for a in report.advisories if a not in policy.accept_advisories]
    if refused:
        raise AttestationError(
            "advisory_not_accepted",
            f"TCB status {report.status} comes with advisories you did not accept: "
            f"{', '.join(refused)}",
            "read them (intel.com/sa), then accept each with --accept-advisory ID, or refuse "
            "this platform",
        )
    if report.advisories:
        checks.append(Check("advisories", ", ".join(report.advisories), "each accepted"))
    return checks
