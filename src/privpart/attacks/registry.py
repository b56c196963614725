"""Attack registry: name -> Attack subclass, filled by `@ATTACKS.register(name)` in each module."""

from __future__ import annotations

from privpart.attacks.base import Attack
from privpart.registry import Registry

ATTACKS: Registry[type[Attack]] = Registry("attack")
