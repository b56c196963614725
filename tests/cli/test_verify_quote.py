"""`privpart verify-quote` on the real SGX and TDX quotes: exit 0 with what was checked inside
their collateral's window, exit 2 with the reason outside it, when tampered or off-policy."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from privpart.cli import main

DATA = Path(__file__).parent.parent / "runtime" / "data" / "attestation"
INSIDE = "2025-07-01T00:00:00Z"
MRENCLAVE = "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
MRTD_PREFIX = "91eb2b44d141d4ec"
SGX_ACCEPT = [
    "--accept-status",
    "ConfigurationAndSWHardeningNeeded",
    "--accept-advisory",
    "INTEL-SA-00289,INTEL-SA-00615",
]


def run(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple:
    """`privpart verify-quote ...` as the console script runs it: (exit code, output)."""
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr(sys, "argv", ["privpart", "verify-quote", *args])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out + out.err


def quote(kind: str) -> list[str]:
    return [
        str(DATA / f"{kind}_quote.bin"),
        "--collateral",
        str(DATA / f"{kind}_quote_collateral.json"),
    ]


def test_the_sgx_quote_verifies_and_the_table_says_what_was_checked(capsys, monkeypatch) -> None:  # noqa: ANN001
    code, out = run(
        capsys, monkeypatch, *quote("sgx"), "--at", INSIDE, "--mrenclave", MRENCLAVE, *SGX_ACCEPT
    )
    assert code == 0, out
    for text in (MRENCLAVE, "pinned", "ConfigurationAndSWHardeningNeeded", "INTEL-SA-00615",
                 "signature chain", "quote verifies: SGX"):  # fmt: skip
        assert text in out, text


def test_the_tdx_quote_verifies_inside_its_window(capsys, monkeypatch) -> None:  # noqa: ANN001
    code, out = run(capsys, monkeypatch, *quote("tdx"), "--at", INSIDE)
    assert code == 0, out
    assert MRTD_PREFIX in out and "UpToDate" in out and "inspection only" in out


@pytest.mark.parametrize(
    ("kind", "extra", "reason"),
    [
        ("tdx", ["--at", "2025-08-01T00:00:00Z"], "TCBInfo expired"),
        ("sgx", ["--at", "2025-06-01T00:00:00Z", *SGX_ACCEPT], "issue date is in the future"),
        ("sgx", ["--at", INSIDE, "--mrenclave", "00" * 32, *SGX_ACCEPT], "policy pins 00000000"),
        ("tdx", ["--at", INSIDE, "--mrtd", "11" * 48], "MRTD is 91eb2b44"),
        ("sgx", ["--at", INSIDE], "TCB status ConfigurationAndSWHardeningNeeded is not accepted"),
    ],
)
def test_failures_exit_2_with_the_reason(capsys, monkeypatch, kind, extra, reason) -> None:  # noqa: ANN001
    code, out = run(capsys, monkeypatch, *quote(kind), *extra)
    assert code == 2 and reason in out and "what to do:" in out, out


def test_a_tampered_quote_exits_2(capsys, monkeypatch, tmp_path: Path) -> None:  # noqa: ANN001
    raw = bytearray((DATA / "sgx_quote.bin").read_bytes())
    raw[112] ^= 0x01  # one bit of MRENCLAVE
    (tmp_path / "q.bin").write_bytes(raw)
    coll = str(DATA / "sgx_quote_collateral.json")
    code, out = run(
        capsys, monkeypatch, str(tmp_path / "q.bin"), "--collateral", coll, "--at", INSIDE
    )
    assert code == 2 and "signature is invalid" in out
    code, out = run(capsys, monkeypatch, str(tmp_path / "missing.bin"), "--collateral", coll)
    assert code == 2 and "cannot read" in out
