"""Clients: enclave mode (attested, encrypted), device mode (head here), the tail, load."""

from privpart.runtime.client.device import DeviceClient
from privpart.runtime.client.enclave import EnclaveClient, InferResult
from privpart.runtime.client.tail import TailClient, tail_client
from privpart.runtime.stream.client import StreamClient

__all__ = [
    "DeviceClient",
    "EnclaveClient",
    "InferResult",
    "StreamClient",
    "TailClient",
    "tail_client",
]
