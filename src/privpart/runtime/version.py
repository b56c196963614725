"""The runtime version: part of every measurement, so client and enclave must run the same one."""

from __future__ import annotations

from privpart.version import __version__

PROTOCOL = 1
RUNTIME_VERSION = f"privpart-runtime/{__version__}/protocol-{PROTOCOL}"
