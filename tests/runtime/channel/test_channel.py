"""Handshake, quotes and records: every forgery, replay, reordering or wrong identity is refused."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privpart.runtime.channel.attestation import read_pin
from privpart.runtime.channel.envelope import SIMULATED, QuoteEnvelope, report_data
from privpart.runtime.channel.handshake import ClientHello, accept_hello
from privpart.runtime.channel.policy import VerificationPolicy
from privpart.runtime.channel.session import Session
from privpart.runtime.channel.simulated import SimulatedQuoter, public_bytes
from privpart.runtime.errors import AttestationError, ChannelError

MEASUREMENT = "ab" * 32
KEY = Ed25519PrivateKey.generate()
PIN = public_bytes(KEY.public_key())
POLICY = VerificationPolicy(allow_simulated=True, platform_pins=(PIN,))
MANY = settings(
    max_examples=500, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def envelope(quoter: SimulatedQuoter, data: bytes, measurement: str) -> dict:
    return QuoteEnvelope("process", SIMULATED, quoter.quote(data), measurement, "test").to_json()


def handshake(
    measurement: str = MEASUREMENT, signer: Ed25519PrivateKey = KEY, quoted: str | None = None
) -> tuple[ClientHello, dict, Session]:
    """A handshake as the worker answers it: its own attestation key, certified by `signer`."""
    hello = ClientHello()
    enclave, enclave_pub, transcript = accept_hello(measurement, hello.to_json())
    quoter = SimulatedQuoter(signer, quoted or measurement, "test")
    quote = envelope(quoter, report_data(transcript), quoted or measurement)
    answer = {"session": enclave.session_id, "enclave_pub": enclave_pub.hex(), "quote": quote}
    return hello, answer, enclave


def pair() -> tuple[Session, Session]:
    hello, answer, enclave = handshake()
    client, att = hello.finish(answer, POLICY, MEASUREMENT)
    assert att.simulated is True and att.measurement == MEASUREMENT and att.warning
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
        hello.finish(answer, POLICY, MEASUREMENT)
    assert err.value.code == "wrong_measurement"


def test_a_quote_for_another_head_fails_even_if_signed_for_ours() -> None:
    hello, answer, _ = handshake(measurement="cd" * 32, quoted=MEASUREMENT)
    with pytest.raises(AttestationError) as err:  # transcript bound to the real measurement
        hello.finish(answer, POLICY, MEASUREMENT)
    assert err.value.code == "wrong_report_data"


def test_simulated_quotes_are_refused_unless_allowed() -> None:
    hello, answer, _ = handshake()
    with pytest.raises(AttestationError) as err:
        hello.finish(answer, VerificationPolicy(platform_pins=(PIN,)), MEASUREMENT)
    assert err.value.code == "simulated_not_allowed"
    assert "no hardware TEE" in err.value.message and "--allow-simulated" in err.value.hint


def test_unpinned_platform_keys_are_always_rejected() -> None:
    for _ in range(50):
        rogue = Ed25519PrivateKey.generate()
        hello, answer, _ = handshake(signer=rogue)
        with pytest.raises(AttestationError) as err:
            hello.finish(answer, POLICY, MEASUREMENT)
        assert err.value.code == "unpinned_key"


def _evidence(answer: dict) -> dict:
    return json.loads(base64.b64decode(answer["quote"]["evidence"]))


def _with_evidence(answer: dict, evidence: dict) -> dict:
    raw = json.dumps(evidence, sort_keys=True, separators=(",", ":")).encode()
    return {**answer, "quote": {**answer["quote"], "evidence": base64.b64encode(raw).decode()}}


def test_forged_evidence_claiming_the_pinned_key_is_rejected() -> None:
    """A host that substitutes its own keys: it can claim the pinned platform key, but cannot
    sign a certificate for its attestation key with it."""
    rogue = Ed25519PrivateKey.generate()
    hello, answer, _ = handshake(signer=rogue)
    forged = {**_evidence(answer), "platform_key": PIN.hex()}
    with pytest.raises(AttestationError) as err:
        hello.finish(_with_evidence(answer, forged), POLICY, MEASUREMENT)
    assert err.value.code == "bad_signature"


def test_an_attestation_key_swapped_into_a_genuine_certificate_is_rejected() -> None:
    """The host keeps the platform's genuine certificate and signs the quote with its own key."""
    hello, answer, _ = handshake()
    genuine = _evidence(answer)
    host_key = Ed25519PrivateKey.generate()
    body = json.loads(base64.b64decode(genuine["quote"]))
    body["attestation_key"] = public_bytes(host_key.public_key()).hex()
    raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    forged = {
        **genuine,
        "quote": base64.b64encode(raw).decode(),
        "quote_signature": base64.b64encode(host_key.sign(raw)).decode(),
    }
    with pytest.raises(AttestationError) as err:
        hello.finish(_with_evidence(answer, forged), POLICY, MEASUREMENT)
    assert err.value.code == "bad_signature"


def test_quote_replayed_into_another_handshake_is_rejected() -> None:
    _, old_answer, _ = handshake()
    hello = ClientHello()  # a new handshake, answered with the old quote
    with pytest.raises(AttestationError) as err:
        hello.finish(old_answer, POLICY, MEASUREMENT)
    assert err.value.code == "wrong_report_data"


@MANY
@given(st.dictionaries(st.text(max_size=8), st.text(max_size=8) | st.integers(), max_size=4))
def test_malformed_answers_are_rejected(answer: dict) -> None:
    with pytest.raises((AttestationError, ChannelError)):
        ClientHello().finish(answer, POLICY, MEASUREMENT)


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
