"""The verification policy a client states before it trusts an enclave, and where the Intel
collateral that DCAP verification needs comes from.

- simulated quotes (`process` backend) are refused unless `allow_simulated`, and then must be
  signed by a pinned platform key (`platform_pins`);
- SGX: a pinned MRENCLAVE, or MRSIGNER + ISV product id (+ minimum ISV SVN);
- TDX: a pinned MRTD, optionally RTMR0..3;
- debug enclaves and debug TDs are always refused;
- the TCB status must be in `accept_statuses` (default `UpToDate` only) and every advisory the
  platform carries must be listed in `accept_advisories`: accepting `SWHardeningNeeded` means
  naming the Intel-SA advisories you accept, one by one;
- `collateral`: a dcap-qvl collateral JSON file (offline, air-gapped, tests) or a PCCS/PCS URL
  (production; fetched per attestation);
- `at`: the time the collateral must be valid at (default: now);
- `require_pin`: a hardware quote without any measurement pin is refused (`no_pin`); only an
  inspection tool (`privpart verify-quote`) turns this off, to print what a quote holds.

A policy can be written as JSON (`load_policy`, `privpart infer --policy FILE`) with the field
names of `VerificationPolicy`.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import dcap_qvl

from privpart.errors import PrivpartError, PrivpartValueError
from privpart.runtime.errors import AttestationError


class TcbStatus(StrEnum):
    """Intel's TCB statuses (TCB info v3), as dcap-qvl reports them."""

    UP_TO_DATE = "UpToDate"
    SW_HARDENING_NEEDED = "SWHardeningNeeded"
    CONFIGURATION_NEEDED = "ConfigurationNeeded"
    CONFIGURATION_AND_SW_HARDENING_NEEDED = "ConfigurationAndSWHardeningNeeded"
    OUT_OF_DATE = "OutOfDate"
    OUT_OF_DATE_CONFIGURATION_NEEDED = "OutOfDateConfigurationNeeded"
    REVOKED = "Revoked"


class CollateralSource(ABC):
    """Where the PCK CRLs, TCB info and QE identity for a quote come from."""

    @abstractmethod
    async def get(self, quote: bytes) -> dcap_qvl.QuoteCollateralV3: ...

    @abstractmethod
    def describe(self) -> str: ...


@dataclass(frozen=True)
class CollateralFile(CollateralSource):
    """A collateral JSON file as dcap-qvl writes it (`QuoteCollateralV3.to_json`)."""

    path: Path

    def load(self) -> dcap_qvl.QuoteCollateralV3:
        try:
            return dcap_qvl.QuoteCollateralV3.from_json(self.path.read_text())
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise PrivpartError(
                f"collateral {self.path} is not readable dcap-qvl collateral JSON: {exc}",
                "pass the JSON written by dcap-qvl (pck_crl, tcb_info, qe_identity, ...), or a "
                "PCCS URL such as https://pccs.example:8081",
            ) from None

    async def get(self, quote: bytes) -> dcap_qvl.QuoteCollateralV3:
        return self.load()

    def describe(self) -> str:
        return f"file {self.path}"


@dataclass(frozen=True)
class CollateralService(CollateralSource):
    """A PCCS or Intel PCS base URL; dcap-qvl fetches the collateral for the quote's FMSPC."""

    url: str

    async def get(self, quote: bytes) -> dcap_qvl.QuoteCollateralV3:
        try:
            return await dcap_qvl.get_collateral(self.url, quote)
        except (ValueError, RuntimeError, OSError) as exc:
            raise AttestationError(
                "collateral_unavailable",
                f"cannot fetch collateral from {self.url}: {exc}",
                "check the PCCS URL and that this machine reaches it, or pass a collateral file",
            ) from None

    def describe(self) -> str:
        return f"service {self.url}"


def collateral_source(value: str | Path | None) -> CollateralSource | None:
    """A PCCS/PCS URL (http:// or https://) or a collateral JSON file."""
    if value is None or value == "":
        return None
    text = str(value)
    if text.startswith(("https://", "http://")):
        return CollateralService(text.rstrip("/"))
    path = Path(text)
    if not path.is_file():
        raise PrivpartError(
            f"collateral {text!r} is neither a file nor an http(s) URL",
            "pass a dcap-qvl collateral JSON file or a PCCS URL",
        )
    return CollateralFile(path)


def parse_time(value: str | None) -> datetime | None:
    """An ISO-8601 time (`2025-06-20T12:00:00Z`); naive times are UTC."""
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise PrivpartValueError(
            f"`at` {value!r} is not an ISO-8601 time", "e.g. `at=2025-06-20T12:00:00Z`",
            param="at",
        ) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _hex(value: str | None, size: int, name: str) -> str | None:
    if value is None:
        return None
    text = value.strip().lower().removeprefix("0x")
    try:
        ok = len(bytes.fromhex(text)) == size
    except ValueError:
        ok = False
    if not ok:
        raise PrivpartError(
            f"{name} must be {size} bytes in hex ({2 * size} digits), got {value[:100]!r}",
            f"copy {name} from `privpart enclave --print-mrenclave` or `privpart verify-quote`",
        )
    return text


@dataclass(frozen=True)
class VerificationPolicy:
    """What a client accepts (module docstring). Invalid pins fail at construction."""

    allow_simulated: bool = False
    platform_pins: tuple[bytes, ...] = ()
    mrenclave: str | None = None
    mrsigner: str | None = None
    isv_prod_id: int | None = None
    min_isv_svn: int = 0
    mrtd: str | None = None
    rtmrs: tuple[str | None, ...] = ()
    accept_statuses: frozenset[TcbStatus] = frozenset({TcbStatus.UP_TO_DATE})
    accept_advisories: frozenset[str] = frozenset()
    collateral: CollateralSource | None = None
    at: datetime | None = None
    require_pin: bool = True  # False only to inspect a quote (privpart verify-quote)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "mrenclave", _hex(self.mrenclave, 32, "MRENCLAVE"))
        set_(self, "mrsigner", _hex(self.mrsigner, 32, "MRSIGNER"))
        set_(self, "mrtd", _hex(self.mrtd, 48, "MRTD"))
        if len(self.rtmrs) > 4:
            raise PrivpartError("a TD has four RTMRs (0..3)", "pin at most RTMR0..RTMR3")
        set_(
            self,
            "rtmrs",
            tuple(_hex(r, 48, f"RTMR{i}") for i, r in enumerate(self.rtmrs)),
        )
        try:
            statuses = frozenset(TcbStatus(s) for s in self.accept_statuses)
        except ValueError as exc:
            raise PrivpartError(
                f"unknown TCB status: {exc}",
                f"choose among {', '.join(s.value for s in TcbStatus if s != TcbStatus.REVOKED)}",
            ) from None
        if TcbStatus.REVOKED in statuses:
            raise PrivpartError(
                "a revoked platform cannot be accepted", "remove Revoked from the statuses"
            )
        set_(self, "accept_statuses", statuses)
        set_(self, "accept_advisories", frozenset(a.strip() for a in self.accept_advisories))
        if self.mrsigner is not None and self.isv_prod_id is None:
            raise PrivpartValueError(
                "an MRSIGNER pin needs the ISV product id too: MRSIGNER alone accepts every "
                "enclave its key ever signed",
                "add `isv_prod_id=N` (and `min_isv_svn=N` to refuse older versions)",
                param="isv_prod_id",
            )
        for key in self.platform_pins:
            if len(key) != 32:
                raise PrivpartError("a platform pin is a 32-byte Ed25519 key", "use read_pin()")

    @property
    def now(self) -> datetime:
        return self.at or datetime.now(UTC)

    def with_(self, **changes: Any) -> VerificationPolicy:
        """A copy with the given fields replaced (None values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_json(cls, obj: dict[str, Any], base: Path = Path()) -> VerificationPolicy:
        """A policy from its JSON form; relative collateral paths are relative to `base`."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(obj) - known)
        if unknown:
            raise PrivpartError(
                f"unknown policy fields: {', '.join(unknown)}",
                f"a policy has the fields {', '.join(sorted(known))}",
            )
        kw = dict(obj)
        if "platform_pins" in kw:
            try:
                kw["platform_pins"] = tuple(bytes.fromhex(k) for k in kw["platform_pins"])
            except (TypeError, ValueError):
                raise PrivpartError(
                    "platform_pins must be a list of 64-digit hex keys", "see platform.pub"
                ) from None
        if "rtmrs" in kw:
            kw["rtmrs"] = tuple(kw["rtmrs"])
        for key in ("accept_statuses", "accept_advisories"):
            if key in kw:
                kw[key] = frozenset(kw[key])
        if kw.get("collateral"):
            text = str(kw["collateral"])
            is_url = text.startswith(("http://", "https://"))
            kw["collateral"] = collateral_source(text if is_url else base / text)
        if kw.get("at"):
            kw["at"] = parse_time(str(kw["at"]))
        return cls(**kw)


def load_policy(path: Path) -> VerificationPolicy:
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PrivpartError(
            f"policy {path} is not readable JSON: {exc}",
            'write a JSON object, e.g. {"mrenclave": "...", "collateral": "pccs.json"}',
        ) from None
    if not isinstance(obj, dict):
        raise PrivpartError(f"policy {path} is not a JSON object", "see docs/runtime.md")
    return VerificationPolicy.from_json(obj, path.parent)
