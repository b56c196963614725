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
    """The fixture's arguments; the TDX sample's 70 bytes of zero padding are ignored knowingly
    (`test_the_tdx_quote_verifies_inside_its_window` shows they are refused otherwise)."""
    padded = ["--ignore-trailing-bytes"] if kind == "tdx" else []
    return [
        str(DATA / f"{kind}_quote.bin"),
        "--collateral",
        str(DATA / f"{kind}_quote_collateral.json"),
        *padded,
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
    """The TDX sample carries 70 zero bytes of buffer padding after its quote: refused, then
    verified with --ignore-trailing-bytes, which says what it ignored."""
    strict = quote("tdx")[:-1]
    assert strict[0].endswith("tdx_quote.bin") and "--ignore-trailing-bytes" not in strict
    code, out = run(capsys, monkeypatch, *strict, "--at", INSIDE)
    assert code == 2 and "70 bytes follow" in out, out
    code, out = run(capsys, monkeypatch, *quote("tdx"), "--at", INSIDE)
    assert code == 0, out
    assert MRTD_PREFIX in out and "UpToDate" in out and "inspection only" in out
    assert "ignored: 70 bytes after the quote (all zero), bytes 4936-5005" in out


def test_bytes_appended_to_a_signed_quote_are_refused(capsys, monkeypatch, tmp_path: Path) -> None:  # noqa: ANN001
    raw = (DATA / "sgx_quote.bin").read_bytes() + bytes(range(1, 71))  # 70 junk bytes
    (tmp_path / "q.bin").write_bytes(raw)
    args = [str(tmp_path / "q.bin"), "--collateral", str(DATA / "sgx_quote_collateral.json"),
            "--at", INSIDE, "--mrenclave", MRENCLAVE, *SGX_ACCEPT]  # fmt: skip
    code, out = run(capsys, monkeypatch, *args)
    assert code == 2 and "70 bytes follow the signed quote, which ends at byte 4600" in out, out
    assert "header 48 + report body 384 + signature length 4 + signature data 4164" in out
    assert "--ignore-trailing-bytes" in out
    code, out = run(capsys, monkeypatch, *args, "--ignore-trailing-bytes")
    assert code == 0 and "ignored: 70 bytes after the quote, bytes 4600-4669" in out, out


def test_a_wrong_pin_prints_both_full_values(capsys, monkeypatch) -> None:  # noqa: ANN001
    wrong = MRENCLAVE[:16] + "0" * 48  # same first 16 digits: a prefix would hide the difference
    code, out = run(capsys, monkeypatch, *quote("sgx"), "--at", INSIDE, "--mrenclave", wrong,
                    *SGX_ACCEPT)  # fmt: skip
    assert code == 2 and f"MRENCLAVE is {MRENCLAVE}, the policy pins {wrong}" in out, out


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
