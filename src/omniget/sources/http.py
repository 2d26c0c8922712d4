"""Plain links: the fallback source. It makes no request: the engine learns the size and
the server's file name (Content-Disposition) from the download's own first answer."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from ..errors import UnsupportedURL, UsageError
from ..hosts import split_zone
from ..model import Item, name_from_url
from .base import Source

__all__ = ["HttpSource"]


_SCHEMES = ("http:", "https:")
#: No URL holds these raw (RFC 3986 2: %00 is the way to send a NUL); libcurl refuses
#: them, and shown raw in a message they would garble it or the terminal (a pattern
#: compiled by re when first used, not at every start)
_CONTROLS = "[\x00-\x1f\x7f-\x9f]"


class HttpSource(Source):
    name = "http"
    patterns = (r"^https?://[^/?#\s]+",)
    examples = ("https://example.com/files/archive.zip", "http://127.0.0.1:8080/a%20b.bin")

    @classmethod
    def matches(cls, url: str) -> bool:
        """As :meth:`Source.matches` (``patterns``), told first without the regular
        expression for the usual URL (once per URL of a list)."""
        if cls is HttpSource:  # (patterns as below: ^https?://[^/?#\s]+ without case)
            start = 7 if url[:7].lower() == "http://" else 8 if url[:8].lower() == "https://" else 0
            first = url[start : start + 1]
            if start and first and first not in "/?#" and not first.isspace():
                return True
        return super().matches(url)  # (the pattern's own answer for anything else)

    @classmethod
    def check_url(cls, url: str) -> None:
        _check_authority(url)

    async def items(self) -> AsyncIterator[Item]:
        for item in self.items_at_once():
            yield item

    def items_at_once(self) -> tuple[Item]:
        _check_authority(self.url)
        url = self.url  # (its name given: the item does not look for it once made)
        return (Item(url, name_from_url(url), source=self.name, name_from_server=True),)


def _check_authority(url: str) -> None:
    """UnsupportedURL for no http(s)://HOST (the source named by ``source=`` gets any
    URL); UsageError for a bad port or IPv6 bracket (urlsplit only for those that may
    be: this runs once per URL of a list)."""
    parts = url.split("/", 3)
    if len(parts) < 3 or parts[1] or not parts[2] or parts[0].lower() not in _SCHEMES:
        raise UnsupportedURL(f"the http source takes http(s)://HOST/... URLs, not {url!r}",
                             source="http", url=url)
    netloc = parts[2].rpartition("@")[2]
    if " " in netloc or not netloc.isprintable():  # (a space or control character)
        raise UsageError(f"not a valid URL: {netloc!r} is no host name")
    if not url.isprintable() and re.search(_CONTROLS, url):  # (shown escaped, as repr)
        raise UsageError(f"not a valid URL: a control character in {_shown(parts, netloc)!r}")
    host, colon, port = netloc.rpartition(":")
    plain = "[" not in netloc and "]" not in netloc
    if plain and not (host if colon else netloc):  # (http://:80/x, http://user@/x)
        raise UsageError(f"not a valid URL: no host name in {_shown(parts, netloc)!r}")
    if plain and (not colon or (port.isascii() and port.isdigit() and int(port) <= 65535)):
        return
    shown = _shown(parts, netloc)
    try:
        split = urlsplit(url)  # (raises for a bad IPv6 bracket)
        given = split.netloc.rpartition("@")[2].rpartition(":")[2]
        digits = given.isascii() and given.isdigit()  # (int() takes other scripts' digits)
        if given and not digits and "]" not in given:  # (urlsplit: "could not be cast")
            why = f"the port {given!r} is not a number (in {shown!r})"
        else:
            _ = split.port  # (raises with the reason)
            why = ""
    except ValueError as e:
        why = str(e)
    if why:
        raise UsageError(f"not a valid URL: {why}")
    if "%" in netloc:
        _check_zone(netloc)


def _shown(parts: list[str], netloc: str) -> str:
    """The URL split at its first three slashes (``parts``) without its user:password:
    made for a message only, not for every URL of a list that has none to say."""
    return "/".join([*parts[:2], netloc, *parts[3:]])


def _check_zone(netloc: str) -> None:
    """UsageError for an IPv6 zone id that cannot work: an empty one (libcurl refuses
    it), or one naming no interface of this machine on a link-local address, which needs
    it (libcurl would pick an interface itself and wait for a connect timeout)."""
    import ipaddress
    import socket

    address, zone = split_zone(netloc[netloc.find("[") + 1 : netloc.find("]")])
    if not zone:
        raise UsageError(f"not a valid URL: an empty zone id after {address}")
    try:
        local = ipaddress.IPv6Address(address).is_link_local
    except ValueError:
        return
    if not local:
        return  # (libcurl ignores it there)
    try:
        if zone.isdigit():
            socket.if_indextoname(int(zone))
        else:
            socket.if_nametoindex(zone)
    except (OSError, OverflowError, ValueError):
        shown = zone if zone.isdigit() else repr(zone)
        raise UsageError(f"not a valid URL: no network interface {shown} here for the "
                         f"zone id of {address}") from None


SOURCE = HttpSource
