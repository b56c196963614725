"""Where the enclave worker gets its quotes: one source per TEE, chosen by `--quote-source`.

Every source turns the 64-byte report data of a handshake (`envelope.report_data`) into evidence
produced inside the TEE; the host only relays it.

- `simulated` (process backend): `channel.simulated.SimulatedQuoter`, keys in the worker;
- `gramine` (SGX): Gramine's attestation pseudo-files: write `/dev/attestation/user_report_data`
  (64 bytes), read `/dev/attestation/quote` (a DCAP quote, `attestation_type` must be `dcap`);
- `tdx` (a TDX confidential VM): the Linux configfs-tsm interface: in a report entry under
  `/sys/kernel/config/tsm/report/`, write `inblob` (64 bytes), read `outblob` (a TDX quote);
  `provider` must be `tdx_guest`, and `generation` must not have moved by more than this one
  write between the write and the read (another writer would have changed the report).

Both pseudo-file interfaces are stateful and not thread-safe: a lock serialises quotes.
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from privpart.errors import PrivpartError
from privpart.registry import Registry
from privpart.runtime.channel.dcap import without_padding
from privpart.runtime.channel.envelope import REPORT_DATA_BYTES, SGX_DCAP, SIMULATED, TDX_DCAP
from privpart.runtime.channel.simulated import SimulatedQuoter
from privpart.runtime.enclave.platform import PlatformKeys
from privpart.runtime.errors import EnclaveError
from privpart.runtime.version import RUNTIME_VERSION

GRAMINE_DIR = Path("/dev/attestation")
TSM_DIR = Path("/sys/kernel/config/tsm")


@dataclass(frozen=True)
class QuoteContext:
    """What a source may need at start-up: the platform folder (simulated keys), the head's
    measurement, and where the TEE's pseudo-files are."""

    platform: PlatformKeys
    measurement: str
    attestation_dir: Path = GRAMINE_DIR
    tsm_dir: Path = TSM_DIR
    tsm_entry: str | None = None


class QuoteSource(ABC):
    evidence_type: ClassVar[str]

    @classmethod
    @abstractmethod
    def start(cls, ctx: QuoteContext) -> QuoteSource:
        """The source, checked to work on this machine (else a `PrivpartError`)."""

    @abstractmethod
    def quote(self, report_data: bytes) -> bytes:
        """Evidence over exactly 64 bytes of report data."""


QUOTE_SOURCES: Registry[type[QuoteSource]] = Registry("quote source")


def _failed(message: str, hint: str) -> EnclaveError:
    return EnclaveError("quote_failed", message, hint, status=500)


def _check_size(report_data: bytes) -> None:
    if len(report_data) != REPORT_DATA_BYTES:
        raise ValueError(f"report data is {REPORT_DATA_BYTES} bytes, got {len(report_data)}")


@QUOTE_SOURCES.register("simulated")
class SimulatedSource(QuoteSource):
    evidence_type = SIMULATED

    def __init__(self, platform: PlatformKeys, measurement: str) -> None:
        self.quoter = SimulatedQuoter(platform.signing_key(), measurement, RUNTIME_VERSION)

    @classmethod
    def start(cls, ctx: QuoteContext) -> QuoteSource:
        return cls(ctx.platform, ctx.measurement)

    def quote(self, report_data: bytes) -> bytes:
        _check_size(report_data)
        return self.quoter.quote(report_data)


@QUOTE_SOURCES.register("gramine")
class GramineSource(QuoteSource):
    """SGX quotes from inside a Gramine enclave (`sgx.remote_attestation = "dcap"`)."""

    evidence_type = SGX_DCAP

    def __init__(self, root: Path = GRAMINE_DIR) -> None:
        self.root = root
        self._lock = threading.Lock()
        kind_file = root / "attestation_type"
        try:
            kind = kind_file.read_text().strip()
        except OSError:
            raise PrivpartError(
                f"{kind_file} is missing: the worker is not running inside a Gramine SGX enclave",
                "start it with `privpart enclave --backend gramine` on an SGX machine",
            ) from None
        if kind != "dcap":
            raise PrivpartError(
                f"Gramine attestation type is {kind!r}, not 'dcap'",
                'the manifest must set sgx.remote_attestation = "dcap"',
            )

    @classmethod
    def start(cls, ctx: QuoteContext) -> QuoteSource:
        return cls(ctx.attestation_dir)

    def quote(self, report_data: bytes) -> bytes:
        _check_size(report_data)
        with self._lock:
            try:
                (self.root / "user_report_data").write_bytes(report_data)
                quote = (self.root / "quote").read_bytes()
            except OSError as exc:
                raise _failed(
                    f"Gramine did not produce a quote: {exc}",
                    "check the host's DCAP quoting setup (aesmd, the PCCS configuration)",
                ) from None
        if not quote:
            raise _failed("Gramine returned an empty quote", "check the DCAP quoting setup")
        return without_padding(quote)  # a padded buffer: the quote alone


@QUOTE_SOURCES.register("tdx")
class TsmSource(QuoteSource):
    """TDX quotes through configfs-tsm (Linux >= 6.7, `tdx_guest` driver)."""

    evidence_type = TDX_DCAP
    PROVIDER = "tdx_guest"

    def __init__(self, root: Path = TSM_DIR, entry: str | None = None) -> None:
        reports = root / "report"
        if not reports.is_dir():
            raise PrivpartError(
                f"{reports} does not exist: this is not a TDX guest with configfs-tsm",
                "run the tdx backend inside an Intel TDX confidential VM (Linux >= 6.7, "
                "configfs mounted at /sys/kernel/config)",
            )
        self.entry = reports / (entry or f"privpart-{os.getpid()}")
        self._lock = threading.Lock()
        self.entry.mkdir(exist_ok=True)  # configfs fills a new entry with its attributes

    @classmethod
    def start(cls, ctx: QuoteContext) -> QuoteSource:
        return cls(ctx.tsm_dir, ctx.tsm_entry)

    def _read(self, name: str) -> bytes:
        return (self.entry / name).read_bytes()

    def _generation(self) -> int:
        try:
            return int(self._read("generation").strip() or b"0")
        except ValueError:
            raise _failed(f"{self.entry}/generation is not a number", "check the TSM") from None

    def quote(self, report_data: bytes) -> bytes:
        _check_size(report_data)
        with self._lock:
            try:
                provider = self._read("provider").decode().strip()
                if provider != self.PROVIDER:
                    raise _failed(
                        f"the TSM provider is {provider!r}, not {self.PROVIDER!r}",
                        "the tdx backend runs in an Intel TDX guest only",
                    )
                before = self._generation()
                (self.entry / "inblob").write_bytes(report_data)
                quote = self._read("outblob")
                after = self._generation()
            except OSError as exc:
                raise _failed(
                    f"configfs-tsm did not produce a quote: {exc}", "check the TSM"
                ) from None
        if after - before > 1:
            raise _failed(
                f"another process wrote {self.entry} while this quote was made "
                f"(generation {before} -> {after})",
                "retry; give each process its own report entry",
            )
        if not quote:
            raise _failed("configfs-tsm returned an empty quote", "check the TSM provider")
        return without_padding(quote)  # a padded buffer: the quote alone
