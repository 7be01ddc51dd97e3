"""Network facts every layer shares: which hosts are this machine."""

from __future__ import annotations

import ipaddress
import urllib.parse


def is_loopback_host(host: str) -> bool:
    """True for a host name or address that is this machine: ``localhost`` and ``*.localhost``
    (reserved for loopback, RFC 6761), ``127.0.0.0/8``, ``::1`` and ``::ffff:127.x``;
    brackets around an IPv6 address are allowed. Any other name is not (it may resolve
    anywhere)."""
    host = host.strip().lower().removeprefix("[").removesuffix("]")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def is_loopback(url: str) -> bool:
    """True for a URL whose host is this machine (see :func:`is_loopback_host`)."""
    return is_loopback_host(urllib.parse.urlsplit(url).hostname or "")
