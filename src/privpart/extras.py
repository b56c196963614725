"""Optional parts of privpart and the packages each needs, so a command that needs a part the
installation lacks says how to get it instead of failing on an import.

`pip install privpart` trains, attacks, audits and reports; serving the split (tail server,
enclave, client, attestation) needs the `serve` extra: `pip install 'privpart[serve]'`.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from privpart.errors import PrivpartError


@dataclass(frozen=True)
class Extra:
    """An optional dependency group of pyproject.toml: its name and the modules it brings."""

    name: str
    modules: tuple[str, ...]
    purpose: str

    def missing(self) -> list[str]:
        """The modules of this extra that cannot be imported here (the commands that call this
        import them next anyway)."""
        out = []
        for module in self.modules:
            try:
                importlib.import_module(module)
            except ImportError:
                out.append(module)
        return out

    def require(self, what: str) -> None:
        """Raise, saying how to install the extra, when any of its modules is missing."""
        missing = self.missing()
        if missing:
            raise PrivpartError(
                f"{what} needs {', '.join(missing)} ({self.purpose}), which this installation "
                "does not have",
                f"pip install 'privpart[{self.name}]'  (scripts/setup.sh installs it)",
            )


SERVE = Extra(
    "serve",
    ("aiohttp", "cryptography", "dcap_qvl"),
    "the serving stack: HTTP server and client, encrypted channel, quote verification",
)


def needs(extra: Extra, what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a command that needs `extra`: it fails first with the install hint."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            extra.require(what)
            return fn(*args, **kwargs)

        return wrapper

    return decorate
