"""The exceptions privpart raises for failures a caller can act on, carrying what to do.

`PrivpartError` is the base. A bad argument raises a subclass that is also the built-in
exception a Python caller expects (`except ValueError` catches a bad value), and names the
Python parameter in backticks (`` `attack_steps` ``, `` `train=False` ``): the library speaks
its caller's language. The command line rewrites those names into its own flags
(`privpart.cli.flags`), so the same error reads `--attack-steps` there.
"""

from __future__ import annotations


class PrivpartError(Exception):
    """A failure the user can act on: `message` says what was wrong, `hint` what to do, and
    `param` which parameter was wrong (its Python name; None when no single one was)."""

    def __init__(self, message: str, hint: str = "", *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.param = param

    def __str__(self) -> str:
        return f"{self.message}\n  -> {self.hint}" if self.hint else self.message


class PrivpartValueError(PrivpartError, ValueError):
    """An argument of the right type with a value privpart cannot use (out of range, unknown
    name, contradicting another argument)."""


class PrivpartTypeError(PrivpartError, TypeError):
    """An argument of a type privpart cannot use (a string where a number belongs)."""


class PrivpartFileNotFoundError(PrivpartError, FileNotFoundError):
    """A file or folder an argument names does not exist (or is not what it should be)."""
