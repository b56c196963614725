"""The unit a server counts a client's connections and sessions by: its network address.

An IPv4 address counts as itself; an IPv6 address counts as its /64 network, because one
host (or one subscriber) usually holds a whole /64 and could otherwise pick a fresh address
for every connection. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, from dual-stack sockets)
count as the IPv4 address. Imports nothing from the runtime: the enclave worker uses it too.
"""

from __future__ import annotations

import ipaddress

IPV6_PREFIX = 64


def address_key(remote: str | None) -> str:
    """The key per-address limits count `remote` (a peer address as sockets report it) under;
    anything that does not parse (a Unix socket, an empty string) is its own key."""
    if not remote:
        return ""
    try:
        ip = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return remote
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/{IPV6_PREFIX}", strict=False))
    return str(ip)
