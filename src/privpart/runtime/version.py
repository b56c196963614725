"""The runtime version: part of every measurement, so client and enclave must run the same one."""

from __future__ import annotations

import privpart

PROTOCOL = 1
RUNTIME_VERSION = f"privpart-runtime/{privpart.__version__}/protocol-{PROTOCOL}"
