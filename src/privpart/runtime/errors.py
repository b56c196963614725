"""Runtime failures: every one is a `PrivpartError` with a machine-readable `code` and the HTTP
status a server answers it with, so the same exception travels from validator to wire to CLI.
The status comes from the protocol's table (`protocol.STATUS`) unless a raise site names one."""

from __future__ import annotations

from privpart.errors import PrivpartError
from privpart.runtime import protocol


class RuntimeFailure(PrivpartError):
    """Base of runtime errors: `code` names the failure, `status` is its HTTP status."""

    default_status = 400

    def __init__(self, code: str, message: str, hint: str = "", status: int | None = None) -> None:
        super().__init__(message, hint)
        self.code = code
        if status is None:
            status = protocol.status_of(code, self.default_status)
        self.status = status

    def to_json(self) -> dict[str, str]:
        return protocol.error_body(self.code, self.message, self.hint)

    def reply(self) -> protocol.Reply:
        return protocol.Reply.error(self.code, self.message, self.hint, self.status)


class FrameError(RuntimeFailure):
    """A tensor frame that does not decode or does not fit what the receiver expects."""


class ChannelError(RuntimeFailure):
    """A record that fails authentication, replays, arrives out of order, or a closed session."""

    default_status = 401


class AttestationError(RuntimeFailure):
    """A quote the client must not trust: each reason has its own code (docs/runtime.md)."""

    default_status = 401


class EnclaveError(RuntimeFailure):
    """The enclave worker could not do what was asked (not ready, restarted, over budget)."""

    default_status = 503


class RemoteError(RuntimeFailure):
    """An error answered by a remote server (tail or enclave host), re-raised on the client."""

    @classmethod
    def from_answer(cls, status: int, body: bytes | bytearray, where: str) -> RemoteError:
        """The server's JSON error answer (`protocol.parse_error`), whatever carried it."""
        err = protocol.parse_error(status, bytes(body), where)
        return cls(err.code, err.message, err.hint, err.status)

    default_status = 502


class TransportError(RuntimeFailure):
    """The peer is unreachable, closed the connection, or did not answer within the timeout."""

    default_status = 504
