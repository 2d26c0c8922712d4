"""Where a redirect leads: the URL of a ``Location`` header, checked before the HTTP
transport (:mod:`.http`) follows it."""

from __future__ import annotations

import re
from urllib.parse import quote, urljoin, urlsplit

from ...errors import RemoteError
from .base import safe_url
from .outgoing import URL_SAFE, clean_url, split_userinfo

__all__ = ["DOWNGRADED", "downgraded", "next_url"]

#: Said once for a file whose https:// URL was redirected to a plain http:// one.
DOWNGRADED = ("redirected from https:// to plain http:// ({}): the file comes unencrypted,"
              " its server unverified")

_USERINFO = r"//[^/?#@]*@"  # (to show a URL urllib cannot parse)


def next_url(current: str, location: str, schemes: tuple[str, ...]) -> str:
    """The URL a redirect to ``location`` (a Location header's value) from ``current``
    leads to, without its fragment and without credentials; RemoteError when it is
    unusable or its scheme is not in ``schemes``."""
    raw = location.encode("latin-1", "replace")  # header bytes, as sent
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = quote(raw, safe=URL_SAFE)
    try:
        target = clean_url(urljoin(current, text))
        parts = urlsplit(target)
        parts.port  # noqa: B018 (raises for a port out of range)
    except ValueError as exc:  # (a port out of range, a bad IPv6 address)
        shown = re.sub(_USERINFO, "//", text)
        raise RemoteError(
            f"unusable redirect to {shown} (from {safe_url(current)}): {exc}"
        ) from None
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        raise RemoteError(
            f"refused redirect to {scheme or 'an unknown'} URL {safe_url(target)} "
            f"(from {safe_url(current)})"
        )
    if parts.username is not None or parts.password is not None:
        # as curl: a server's ``user:password@`` is not sent (nor kept in the URL)
        target = split_userinfo(target, parts)[0]
    return target.partition("#")[0]


def downgraded(asked: str, answered: str) -> bool:
    """Whether an https:// URL ``asked`` was answered from a plain http:// one (a
    redirect's): followed, as curl and wget follow it, but not unsaid."""
    return asked[:8].lower() == "https://" and answered[:7].lower() == "http://"
