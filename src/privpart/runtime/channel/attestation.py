"""One client verification path for every backend: the envelope's evidence type picks a verifier
from `EVIDENCE_VERIFIERS`, the verifier checks the evidence against the policy, and then, for
every kind alike, the quote must be for the expected head and bound to this handshake.

Order of checks (each failure has its own `AttestationError` code, docs/runtime.md):
envelope well-formed (`bad_quote`) -> evidence type known (`unknown_evidence`) -> simulated
allowed (`simulated_not_allowed`) -> evidence verified: simulated signatures up to a pinned
platform key (`unpinned_key`, `bad_signature`), or DCAP via dcap-qvl (`bad_signature`,
`collateral_expired`, `collateral_not_yet_valid`, `debug_enclave`, ...) and the policy's pins and
TCB rules (`wrong_mrenclave`, `wrong_mrsigner`, `wrong_mrtd`, `tcb_status_not_accepted`,
`advisory_not_accepted`, ...) -> head measurement (`wrong_measurement`) -> report data equals
`report_data(T)` of this handshake (`wrong_report_data`: a replayed or relayed quote).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import dcap_qvl

from privpart.errors import PrivpartError
from privpart.registry import Registry
from privpart.runtime.channel.dcap import Check, check_dcap, verify_dcap
from privpart.runtime.channel.envelope import (
    SGX_DCAP,
    SIMULATED,
    TDX_DCAP,
    QuoteEnvelope,
    report_data,
)
from privpart.runtime.channel.policy import VerificationPolicy
from privpart.runtime.channel.simulated import verify_simulated
from privpart.runtime.errors import AttestationError

SIMULATED_WARNING = (
    "simulated attestation (backend {backend}): no hardware TEE backs this quote, so there is NO "
    "confidentiality against the enclave host: whoever runs it can read every input you send"
)


@dataclass(frozen=True)
class Attestation:
    """What a client verified: which TEE, its identity, TCB status, and the head it runs."""

    backend: str
    evidence_type: str
    simulated: bool
    tee: str  # "simulated" | "SGX" | "TDX"
    measurement: str  # the privpart head measurement the quote is bound to
    runtime_version: str
    report_data: bytes
    identity: dict[str, str] = field(default_factory=dict)
    tcb_status: str | None = None
    advisories: tuple[str, ...] = ()
    platform_key: str | None = None
    checks: tuple[Check, ...] = ()

    @property
    def warning(self) -> str | None:
        return SIMULATED_WARNING.format(backend=self.backend) if self.simulated else None


class EvidenceVerifier(ABC):
    """Verifies one kind of evidence against a policy (not yet bound to a handshake)."""

    needs_collateral: bool = False

    @abstractmethod
    def verify(
        self,
        envelope: QuoteEnvelope,
        policy: VerificationPolicy,
        collateral: dcap_qvl.QuoteCollateralV3 | None,
    ) -> Attestation: ...


EVIDENCE_VERIFIERS: Registry[EvidenceVerifier] = Registry("evidence type")


def _register(name: str, verifier: EvidenceVerifier) -> None:
    EVIDENCE_VERIFIERS.register(name)(verifier)


class SimulatedVerifier(EvidenceVerifier):
    def verify(
        self,
        envelope: QuoteEnvelope,
        policy: VerificationPolicy,
        collateral: dcap_qvl.QuoteCollateralV3 | None,
    ) -> Attestation:
        if not policy.allow_simulated:
            raise AttestationError(
                "simulated_not_allowed",
                f"the enclave's quote is simulated (backend {envelope.backend}): no hardware TEE "
                "backs it, so the enclave host could read every input; refused",
                "for tests only, pass --allow-simulated (API: allow_simulated=True) with --pin "
                "platform.pub; for confidentiality, run the enclave with --backend gramine or tdx",
            )
        report = verify_simulated(envelope.evidence, policy)
        return Attestation(
            backend=envelope.backend,
            evidence_type=envelope.evidence_type,
            simulated=True,
            tee="simulated",
            measurement=report.measurement,
            runtime_version=report.runtime_version,
            report_data=report.report_data,
            identity={"attestation key": report.attestation_key},
            platform_key=report.platform_key,
            checks=(
                Check("platform key", report.platform_key, "pinned"),
                Check("signatures", "certificate, quote", "verified"),
            ),
        )


@dataclass
class DcapVerifier(EvidenceVerifier):
    tee: str
    needs_collateral: bool = True

    def verify(
        self,
        envelope: QuoteEnvelope,
        policy: VerificationPolicy,
        collateral: dcap_qvl.QuoteCollateralV3 | None,
    ) -> Attestation:
        if collateral is None:
            raise AttestationError(
                "collateral_missing",
                f"a {self.tee} quote needs Intel collateral to verify, and none was given",
                "pass --collateral FILE (dcap-qvl JSON) or --collateral https://PCCS-HOST",
            )
        report = verify_dcap(envelope.evidence, collateral, policy.now)
        if report.tee != self.tee:
            raise AttestationError(
                "bad_quote",
                f"a {report.tee} quote arrived as {envelope.evidence_type} evidence",
                "the enclave host altered the envelope",
            )
        checks = check_dcap(report, policy)
        return Attestation(
            backend=envelope.backend,
            evidence_type=envelope.evidence_type,
            simulated=False,
            tee=report.tee,
            measurement=envelope.measurement,
            runtime_version=envelope.runtime_version,
            report_data=report.report_data,
            identity=report.identity.fields(),
            tcb_status=report.status,
            advisories=report.advisories,
            checks=(Check("signature chain", "Intel SGX Root CA", "verified (dcap-qvl)"), *checks),
        )


_register(SIMULATED, SimulatedVerifier())
_register(SGX_DCAP, DcapVerifier("SGX"))
_register(TDX_DCAP, DcapVerifier("TDX"))


def verifier_for(envelope: QuoteEnvelope) -> EvidenceVerifier:
    if envelope.evidence_type not in EVIDENCE_VERIFIERS:
        raise AttestationError(
            "unknown_evidence",
            f"unknown evidence type {envelope.evidence_type!r}",
            f"this client verifies {', '.join(EVIDENCE_VERIFIERS.names())}; upgrade privpart",
        )
    return EVIDENCE_VERIFIERS.get(envelope.evidence_type)


async def collateral_for(
    envelope: QuoteEnvelope, policy: VerificationPolicy
) -> dcap_qvl.QuoteCollateralV3 | None:
    """The collateral this envelope's evidence needs (fetched from a PCCS if so configured)."""
    if not verifier_for(envelope).needs_collateral or policy.collateral is None:
        return None
    return await policy.collateral.get(envelope.evidence)


def verify_evidence(
    envelope: QuoteEnvelope,
    policy: VerificationPolicy,
    collateral: dcap_qvl.QuoteCollateralV3 | None = None,
) -> Attestation:
    """The evidence checked against the policy, not yet bound to a handshake."""
    return verifier_for(envelope).verify(envelope, policy, collateral)


def verify_envelope(
    envelope: QuoteEnvelope,
    policy: VerificationPolicy,
    expected_measurement: str,
    transcript: bytes,
    collateral: dcap_qvl.QuoteCollateralV3 | None = None,
) -> Attestation:
    """Trust for this handshake: the evidence passes the policy, it is for the expected head,
    and its report data is this handshake's transcript hash."""
    att = verify_evidence(envelope, policy, collateral)
    if att.measurement != expected_measurement:
        raise AttestationError(
            "wrong_measurement",
            f"enclave runs head {att.measurement}, you expect {expected_measurement}",
            "the enclave holds another head, cut, or privpart runtime version than your checkpoint",
        )
    if att.report_data != report_data(transcript):
        raise AttestationError(
            "wrong_report_data",
            "quote is not bound to this handshake (report data mismatch): replayed or relayed",
            "do not send data to this enclave host",
        )
    return att


def evidence_type_of(quote: bytes) -> str:
    """`sgx-dcap` or `tdx-dcap` for a raw DCAP quote (its header says which)."""
    try:
        parsed = dcap_qvl.parse_quote(quote)
    except ValueError as exc:
        raise AttestationError(
            "bad_quote",
            f"not a DCAP quote: {str(exc).splitlines()[0]}",
            "pass the raw quote bytes",
        ) from None
    return TDX_DCAP if parsed.is_tdx() else SGX_DCAP


def read_pin(value: str | Path) -> bytes:
    """A pinned platform public key: a file holding 64 hex digits, or the 64 digits themselves."""
    text = str(value).strip()
    path = Path(text)
    if path.is_file():
        text = path.read_text().strip()
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise PrivpartError(
            f"pin {str(value)[:80]!r} is not a platform key",
            "pass the platform.pub file written by `privpart enclave`, or its 64 hex digits",
        )
    return raw
