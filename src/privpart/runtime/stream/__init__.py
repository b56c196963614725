"""The tail's stream transport: one persistent TCP (or TLS) connection per client, carrying
length-prefixed tensor frames with nothing else on the serial path.

Why beside HTTP: a 1.6 MB feature frame crossed one HTTP hop in ~2.7 ms on loopback where a
bare socket takes ~0.6 ms (bench/results/runtime_profile.md): HTTP framing, chunked body reads
and the wake-ups between them. The stream reads each request straight into the buffer the
model then uses, and answers through the same validation, batcher, limits, token and metrics
as `POST /v1/infer` (`wire.py` is the format, `server.py` the tail's side, `client.py` and
`blocking.py` the two callers: the device client and the enclave worker).
"""
