"""A tiny name -> object registry filled by decorators, so dispatch never needs if/elif."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from privpart.errors import PrivpartError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories or classes; unknown names fail with the list of known ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = obj
            return obj

        return decorate

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise PrivpartError(
                f"unknown {self.kind} {name!r}",
                f"choose one of: {', '.join(sorted(self._items))}",
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
