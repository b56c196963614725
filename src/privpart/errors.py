"""One exception type for every user-facing failure, carrying what to do about it."""

from __future__ import annotations


class PrivpartError(Exception):
    """A failure the user can act on: `message` says what was wrong, `hint` what to do."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  -> {self.hint}" if self.hint else self.message
