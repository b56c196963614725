"""`privpart verify-quote`: check an Intel DCAP quote offline, as a client would, and say what
was checked. Also the attestation-policy options `privpart infer` shares (`policy_from`).

Exit 0 with a table (TEE, identity, report data, TCB status, advisories, each check); exit 2
with the reason and what to do when any check fails.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from privpart.cli.application import app
from privpart.errors import PrivpartError
from privpart.extras import SERVE, needs
from privpart.ui import console

if TYPE_CHECKING:  # the runtime is imported inside the commands
    from privpart.runtime.channel.attestation import Attestation
    from privpart.runtime.channel.policy import VerificationPolicy

CollateralOpt = Annotated[
    str | None,
    typer.Option(
        help="Intel collateral: a dcap-qvl JSON file, or a PCCS/PCS URL (https://...)",
    ),
]
AtOpt = Annotated[
    str | None, typer.Option("--at", help="verify as of this ISO time (default: now)")
]
MrenclaveOpt = Annotated[str | None, typer.Option(help="SGX: pinned MRENCLAVE (hex)")]
MrsignerOpt = Annotated[
    str | None, typer.Option(help="SGX: pinned MRSIGNER (hex; needs --isv-prod-id)")
]
IsvProdOpt = Annotated[int | None, typer.Option(help="SGX: pinned ISV product id")]
MinSvnOpt = Annotated[int | None, typer.Option(help="SGX: minimum ISV SVN")]
MrtdOpt = Annotated[str | None, typer.Option(help="TDX: pinned MRTD (hex)")]
RtmrOpt = Annotated[
    list[str] | None, typer.Option(help="TDX: pinned RTMR as I=HEX (repeatable, I in 0..3)")
]
StatusOpt = Annotated[
    list[str] | None,
    typer.Option(help="accepted TCB statuses, comma-separated (default: UpToDate)"),
]
AdvisoryOpt = Annotated[
    list[str] | None,
    typer.Option(help="accepted Intel advisories (INTEL-SA-...), comma-separated"),
]


def _split(values: list[str] | None) -> frozenset[str] | None:
    if not values:
        return None
    return frozenset(v.strip() for item in values for v in item.split(",") if v.strip())


def _rtmrs(values: list[str] | None) -> tuple[str | None, ...] | None:
    if not values:
        return None
    pins: list[str | None] = [None] * 4
    for value in values:
        index, sep, digits = value.partition("=")
        if not sep or index.strip() not in {"0", "1", "2", "3"}:
            raise PrivpartError(f"--rtmr {value!r} is not I=HEX", "e.g. --rtmr 1=0084452c...")
        pins[int(index)] = digits.strip()
    return tuple(pins)


def policy_from(
    policy_file: Path | None = None,
    *,
    allow_simulated: bool = False,
    pins: tuple[bytes, ...] = (),
    collateral: str | None = None,
    at: str | None = None,
    mrenclave: str | None = None,
    mrsigner: str | None = None,
    isv_prod_id: int | None = None,
    min_isv_svn: int | None = None,
    mrtd: str | None = None,
    rtmr: list[str] | None = None,
    accept_status: list[str] | None = None,
    accept_advisory: list[str] | None = None,
    require_pin: bool = True,
) -> VerificationPolicy:
    """The client's policy: a `--policy` file (if any), overridden by the options given."""
    from privpart.runtime.channel.policy import (
        VerificationPolicy,
        collateral_source,
        load_policy,
        parse_time,
    )

    base = load_policy(policy_file) if policy_file is not None else VerificationPolicy()
    return base.with_(
        allow_simulated=allow_simulated or None,
        platform_pins=pins or None,
        collateral=collateral_source(collateral),
        at=parse_time(at),
        mrenclave=mrenclave,
        mrsigner=mrsigner,
        isv_prod_id=isv_prod_id,
        min_isv_svn=min_isv_svn,
        mrtd=mrtd,
        rtmrs=_rtmrs(rtmr),
        accept_statuses=_split(accept_status),
        accept_advisories=_split(accept_advisory),
        require_pin=require_pin,
    )


def attestation_table(att: Attestation, title: str) -> Table:
    table = Table(title=title, show_lines=False)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    table.add_column("checked against")
    table.add_row("TEE", att.tee, att.evidence_type)
    for name, value in att.identity.items():
        checked = next((c.against for c in att.checks if c.name == name), "")
        table.add_row(name, value, checked)
    table.add_row("report data", att.report_data.hex(), "")
    against = {c.name: c.against for c in att.checks}
    if att.tcb_status is not None:
        table.add_row("TCB status", att.tcb_status, against.get("TCB status", ""))
        advisories = ", ".join(att.advisories) or "none"
        table.add_row("advisories", advisories, against.get("advisories", ""))
    for check in att.checks:
        if check.name not in att.identity and check.name not in ("TCB status", "advisories"):
            table.add_row(check.name, check.value, check.against)
    return table


@app.command("verify-quote")
@needs(SERVE, "privpart verify-quote")
def verify_quote(
    quote: Annotated[Path, typer.Argument(help="raw DCAP quote file (SGX v3 or TDX v4)")],
    collateral: CollateralOpt = None,
    at: AtOpt = None,
    mrenclave: MrenclaveOpt = None,
    mrsigner: MrsignerOpt = None,
    isv_prod_id: IsvProdOpt = None,
    min_isv_svn: MinSvnOpt = None,
    mrtd: MrtdOpt = None,
    rtmr: RtmrOpt = None,
    accept_status: StatusOpt = None,
    accept_advisory: AdvisoryOpt = None,
    policy: Annotated[
        Path | None, typer.Option("--policy", help="a JSON verification policy (docs/runtime.md)")
    ] = None,
    ignore_trailing_bytes: Annotated[
        bool,
        typer.Option(
            "--ignore-trailing-bytes",
            help="verify the quote at the start of the file and ignore bytes after its end "
            "(header + report body + signature data, as its length fields declare); the "
            "ignored bytes are counted and shown. Default: refused (quote_trailing_bytes)",
        ),
    ] = False,
) -> None:
    """Verify an Intel DCAP quote offline (dcap-qvl) and print what was checked."""
    from privpart.runtime.channel.attestation import evidence_type_of, verify_evidence
    from privpart.runtime.channel.dcap import quote_layout
    from privpart.runtime.channel.envelope import QuoteEnvelope

    try:
        raw = quote.read_bytes()
    except OSError as exc:
        raise PrivpartError(f"cannot read {quote}: {exc}", "pass the raw quote file") from None
    pol = policy_from(
        policy,
        collateral=collateral,
        at=at,
        mrenclave=mrenclave,
        mrsigner=mrsigner,
        isv_prod_id=isv_prod_id,
        min_isv_svn=min_isv_svn,
        mrtd=mrtd,
        rtmr=rtmr,
        accept_status=accept_status,
        accept_advisory=accept_advisory,
        require_pin=False,
    )
    layout = quote_layout(raw)
    if ignore_trailing_bytes and layout is not None and len(raw) > layout.signed_length:
        extra = raw[layout.signed_length :]
        zeros = " (all zero)" if not extra.strip(b"\0") else ""
        console.print(
            f"[yellow]ignored:[/] {len(extra)} bytes after the quote{zeros}, bytes "
            f"{layout.signed_length}-{len(raw) - 1} of {quote.name}; verified the quote: "
            f"{layout.describe()}"
        )
        raw = raw[: layout.signed_length]
    envelope = QuoteEnvelope("quote-file", evidence_type_of(raw), raw, "", "")
    if pol.collateral is None:
        raise PrivpartError("the policy names no collateral", "pass --collateral FILE or URL")
    coll = asyncio.run(pol.collateral.get(raw))
    att = verify_evidence(envelope, pol, coll)
    when = pol.now.isoformat(timespec="seconds")
    console.print(attestation_table(att, f"{quote.name}: verified at {when}"))
    pinned = [c.name for c in att.checks if c.against == "pinned"]
    console.print(
        f"[green]quote verifies[/]: {att.tee}, TCB {att.tcb_status}, collateral "
        f"{pol.collateral.describe()}; pinned: {', '.join(pinned) or 'nothing (inspection only)'}"
    )
