"""Defence registry: name -> Defence subclass, filled by `@DEFENCES.register(name)` per module."""

from __future__ import annotations

from privpart.defences.base import Defence
from privpart.registry import Registry

DEFENCES: Registry[type[Defence]] = Registry("defence")
