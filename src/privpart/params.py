"""Declared, validated parameters: one `Param` per tunable of an attack or a defence.

Attacks and defences declare their parameters the same way; constructors validate every value
before any work (`resolve`), and the command line generates its options from the same
declarations (`privpart.cli.params`), so a parameter's default, type, range and help are
written once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from privpart.errors import PrivpartTypeError, PrivpartValueError


@dataclass(frozen=True)
class Param:
    """One declared parameter: its default, type, allowed values and what it means."""

    default: Any
    help: str
    kind: type = float
    minimum: float | None = None
    exclusive: bool = False  # minimum itself is not allowed (sigma > 0)
    optional: bool = False  # None is a valid value
    choices: tuple[Any, ...] | None = None
    maximum: float | None = None  # inclusive

    def validate(self, owner: str, name: str, value: Any) -> Any:
        """`value` converted to `kind`, or an error naming `owner`, the parameter and the rule
        (a `TypeError` for a wrong type, a `ValueError` for a value out of range)."""
        if value is None and (self.optional or self.default is None):
            return None
        where = f"{owner}: `{name}`"
        try:
            ok_type = not isinstance(value, bool) or self.kind is bool
            ok_type = ok_type and (
                isinstance(value, self.kind) or (self.kind is float and isinstance(value, int))
            )
            if self.kind is int and isinstance(value, float) and value.is_integer():
                value, ok_type = int(value), True
            if not ok_type:
                raise TypeError
            value = self.kind(value)
        except (TypeError, ValueError):
            raise PrivpartTypeError(
                f"{where} must be a {self.kind.__name__}, got {value!r}",
                f"give `{name}` as a {self.kind.__name__} ({self.help})",
                param=name,
            ) from None
        if isinstance(value, float) and not math.isfinite(value):
            raise PrivpartValueError(
                f"{where} must be finite, got {value}",
                f"give `{name}` a finite number ({self.help})",
                param=name,
            )
        if self.minimum is not None and (
            value < self.minimum or (self.exclusive and value == self.minimum)
        ):
            op = ">" if self.exclusive else ">="
            raise PrivpartValueError(
                f"{where} must be {op} {self.minimum:g}, got {value}",
                f"give `{name}` {op} {self.minimum:g} ({self.help})",
                param=name,
            )
        if self.maximum is not None and value > self.maximum:
            raise PrivpartValueError(
                f"{where} must be <= {self.maximum:g}, got {value}",
                f"give `{name}` <= {self.maximum:g} ({self.help})",
                param=name,
            )
        if self.choices is not None and value not in self.choices:
            raise PrivpartValueError(
                f"{where} must be one of {', '.join(map(str, self.choices))}, got {value!r}",
                f"give `{name}` one of {', '.join(map(str, self.choices))} ({self.help})",
                param=name,
            )
        return value


def resolve(owner: str, declared: Mapping[str, Param], given: Mapping[str, Any]) -> dict[str, Any]:
    """Every declared parameter's validated value (given, else its default); unknown names fail."""
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise PrivpartValueError(
            f"{owner} has no parameter(s) {', '.join(unknown)}",
            f"its parameters: {', '.join(sorted(declared)) or 'none'}",
        )
    return {k: p.validate(owner, k, given.get(k, p.default)) for k, p in declared.items()}
