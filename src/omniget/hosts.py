"""Hosts as URLs write them, and the one name the engine keeps for each.

The per-host cap and every per-host state (kept connections, pipelining, HTTP/2, the
TLS count) go by :func:`host_key`: one key however the URL spells the host. A name in any
case; an IP literal in any form (``[::1]``, ``[0:0::1]`` and ``[0000::1]`` are one host,
and ``[::ffff:127.0.0.1]`` is 127.0.0.1, the host it reaches); the scheme's default port
given or not.

The zone id of an IPv6 literal (``[fe80::1%25eth0]``) is read by :func:`split_zone`,
the one reading of it here (the http source's check, the pipelined reader's connect).
"""

from __future__ import annotations

from functools import lru_cache

__all__ = ["host_key", "split_zone"]

_DEFAULT_PORTS = {"http": "80", "https": "443"}


def split_zone(inside: str) -> tuple[str, str | None]:
    """``(ADDRESS, ZONE)`` of what an IPv6 literal's brackets hold: the zone id after
    ``%25`` (RFC 6874) or a bare ``%``, as libcurl takes both (``%2525`` is zone 25);
    ``""`` for an empty one (``%25`` or ``%`` alone, which libcurl refuses); None when
    there is no ``%``."""
    address, percent, zone = inside.partition("%")
    if not percent:
        return address, None
    return address, zone[2:] if zone.startswith("25") else zone


@lru_cache(maxsize=1024)  # (a run's URLs name few hosts; one look-up each, no frame)
def host_key(authority: str, scheme: str = "") -> str:
    """``HOST[:PORT]`` of a URL's authority (without user:password) as the engine keys
    hosts: a name lower-cased; an IPv6 literal in brackets in its short form (RFC 5952),
    its zone id kept (``%25ZONE``, as written) only on a link-local address, where it
    picks the interface (elsewhere the kernel ignores it); an IPv4-mapped one as its
    IPv4 address; the port as a number, left out when it is ``scheme``'s default. What
    is not a valid address stays as written, lower-cased."""
    if authority[:1] == "[":
        close = authority.find("]")
        if close < 0:
            return authority.lower()
        host, rest = _ipv6_key(authority[1:close]), authority[close + 1 :]
        if rest and rest[0] != ":":
            return authority.lower()
        port = rest[1:]
    else:
        host, _, port = authority.lower().partition(":")
    if port.isdigit() and port.isascii():
        port = str(int(port))  # (":080" is port 80, as libcurl reads it)
    if not port or port == _DEFAULT_PORTS.get(scheme):
        return host
    return f"{host}:{port}"


def _ipv6_key(inside: str) -> str:
    import ipaddress  # (only for an IPv6 literal: not at every start)

    address, zone = split_zone(inside)
    try:
        ip = ipaddress.IPv6Address(address)
    except ValueError:
        return f"[{inside.lower()}]"
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    if zone and ip.is_link_local:
        return f"[{ip.compressed}%25{zone}]"
    return f"[{ip.compressed}]"
