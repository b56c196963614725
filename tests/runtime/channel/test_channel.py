"""Handshake, quotes and records: every forgery, replay, reordering or wrong identity is refused."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privpart.runtime.channel.attestation import public_bytes, read_pin, sign_quote
from privpart.runtime.channel.handshake import ClientHello, accept_hello
from privpart.runtime.channel.session import Session
from privpart.runtime.errors import AttestationError, ChannelError

MEASUREMENT = "ab" * 32
KEY = Ed25519PrivateKey.generate()
PIN = public_bytes(KEY.public_key())
MANY = settings(
    max_examples=500, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def handshake(
    measurement: str = MEASUREMENT, signer: Ed25519PrivateKey = KEY, quoted: str | None = None
) -> tuple[ClientHello, dict, Session]:
    hello = ClientHello()
    enclave, enclave_pub, report_data = accept_hello(measurement, hello.to_json())
    quote = sign_quote(
        signer,
        backend="process",
        simulated=True,
        measurement=quoted or measurement,
        report_data=report_data,
        runtime_version="test",
    )
    answer = {"session": enclave.session_id, "enclave_pub": enclave_pub.hex(), "quote": quote}
    return hello, answer, enclave


def pair() -> tuple[Session, Session]:
    hello, answer, enclave = handshake()
    client, body = hello.finish(answer, [PIN], MEASUREMENT)
    assert body.simulated is True and body.measurement == MEASUREMENT
    return client, enclave


def test_records_flow_both_ways_in_order() -> None:
    client, enclave = pair()
    for i in range(5):
        assert enclave.open(client.seal(b"request %d" % i)) == b"request %d" % i
        assert client.open(enclave.seal(b"answer %d" % i)) == b"answer %d" % i


def test_directions_use_different_keys() -> None:
    client, enclave = pair()
    record = client.seal(b"x")
    with pytest.raises(ChannelError) as err:
        client.open(record)  # reflecting a client record back at the client
    assert err.value.code == "tampered"


@MANY
@given(st.binary(max_size=64), st.integers(min_value=0), st.integers(1, 255))
def test_every_tampered_record_is_rejected_and_closes_the_session(
    payload: bytes, pos: int, flip: int
) -> None:
    client, enclave = pair()
    record = bytearray(client.seal(payload))
    record[8 + pos % (len(record) - 8)] ^= flip  # ciphertext or tag, not the sequence number
    with pytest.raises(ChannelError) as err:
        enclave.open(bytes(record))
    assert err.value.code == "tampered"
    with pytest.raises(ChannelError) as err:
        enclave.open(client.seal(payload))  # even a good record: the session is closed
    assert err.value.code == "session_closed"


@MANY
@given(st.binary(max_size=300))
def test_garbage_records_are_rejected(garbage: bytes) -> None:
    _, enclave = pair()
    with pytest.raises(ChannelError) as err:
        enclave.open(garbage)
    assert err.value.code in {"record_truncated", "tampered", "out_of_order"}
    assert enclave.closed


@MANY
@given(st.integers(1, 6), st.integers(0, 5))
def test_every_replay_is_rejected(n: int, which: int) -> None:
    client, enclave = pair()
    records = [client.seal(b"m%d" % i) for i in range(n)]
    for r in records:
        enclave.open(r)
    with pytest.raises(ChannelError) as err:
        enclave.open(records[which % n])
    assert err.value.code == "replayed" and enclave.closed


@MANY
@given(st.integers(2, 6), st.data())
def test_every_reordering_is_rejected(n: int, data: st.DataObject) -> None:
    client, enclave = pair()
    records = [client.seal(b"m%d" % i) for i in range(n)]
    skip = data.draw(st.integers(1, n - 1))
    with pytest.raises(ChannelError) as err:
        enclave.open(records[skip])  # record 0 (and maybe more) skipped or delayed
    assert err.value.code == "out_of_order" and enclave.closed


@MANY
@given(st.binary(min_size=1, max_size=32))
def test_wrong_measurement_is_always_rejected(other: bytes) -> None:
    wrong = other.hex().ljust(64, "0")[:64]
    if wrong == MEASUREMENT:
        return
    hello, answer, _ = handshake(measurement=wrong)
    with pytest.raises(AttestationError) as err:
        hello.finish(answer, [PIN], MEASUREMENT)
    assert err.value.code == "wrong_measurement"


def test_a_quote_for_another_head_fails_even_if_signed_for_ours() -> None:
    hello, answer, _ = handshake(measurement="cd" * 32, quoted=MEASUREMENT)
    with pytest.raises(AttestationError) as err:  # transcript bound to the real measurement
        hello.finish(answer, [PIN], MEASUREMENT)
    assert err.value.code == "wrong_report_data"


def test_unpinned_platform_keys_are_always_rejected() -> None:
    for _ in range(50):
        rogue = Ed25519PrivateKey.generate()
        hello, answer, _ = handshake(signer=rogue)
        with pytest.raises(AttestationError) as err:
            hello.finish(answer, [PIN], MEASUREMENT)
        assert err.value.code == "unpinned_key"


def test_forged_quote_claiming_the_pinned_key_is_rejected() -> None:
    rogue = Ed25519PrivateKey.generate()
    hello, answer, _ = handshake(signer=rogue)
    body = json.loads(base64.b64decode(answer["quote"]["payload"]))
    body["platform_key"] = PIN.hex()  # claims to be the pinned platform
    payload = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    answer["quote"] = {
        "payload": base64.b64encode(payload).decode(),
        "signature": base64.b64encode(rogue.sign(payload)).decode(),
    }
    with pytest.raises(AttestationError) as err:
        hello.finish(answer, [PIN], MEASUREMENT)
    assert err.value.code == "bad_signature"


def test_quote_replayed_into_another_handshake_is_rejected() -> None:
    _, old_answer, _ = handshake()
    hello = ClientHello()  # a new handshake, answered with the old quote
    with pytest.raises(AttestationError) as err:
        hello.finish(old_answer, [PIN], MEASUREMENT)
    assert err.value.code == "wrong_report_data"


@MANY
@given(st.dictionaries(st.text(max_size=8), st.text(max_size=8) | st.integers(), max_size=4))
def test_malformed_answers_are_rejected(answer: dict) -> None:
    with pytest.raises((AttestationError, ChannelError)):
        ClientHello().finish(answer, [PIN], MEASUREMENT)


def test_bad_key_shares_are_refused() -> None:
    with pytest.raises(ChannelError) as err:
        accept_hello(MEASUREMENT, {"nonce": "00" * 32, "client_pub": "00" * 32})  # low order
    assert err.value.code == "bad_key_share"
    with pytest.raises(ChannelError):
        accept_hello(MEASUREMENT, {"nonce": "00" * 31, "client_pub": "11" * 32})


def test_read_pin_accepts_file_or_hex(tmp_path) -> None:  # noqa: ANN001
    (tmp_path / "platform.pub").write_text(PIN.hex() + "\n")
    assert read_pin(tmp_path / "platform.pub") == PIN == read_pin(PIN.hex())
    with pytest.raises(Exception, match="not a platform key"):
        read_pin("nothex")
