"""An item's other URLs (mirrors): which to try next, which errors end one for good, and
which of the item's headers each gets. Shared by a download into a file (:mod:`.plain`)
and one to a stream (:mod:`.stream`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ..errors import AuthRequired, NotFound, RemoteError
from .transports.base import SECRET_HEADERS, origin

if TYPE_CHECKING:
    from ..model import Item

__all__ = ["PERMANENT_ON_ONE_MIRROR", "headers_for", "next_mirror", "not_a_copy"]

#: Errors that say nothing of the item's other URLs: that one is left for good.
PERMANENT_ON_ONE_MIRROR = (RemoteError, NotFound, AuthRequired)


def next_mirror(urls: Sequence[str], url: str, failed: set[str]) -> str | None:
    """The next of ``urls`` after ``url`` that has not failed for good."""
    if len(urls) < 2:
        return None
    start = urls.index(url) if url in urls else -1
    for i in range(1, len(urls) + 1):
        other = urls[(start + i) % len(urls)]
        if other != url and other not in failed:
            return other
    return None


def not_a_copy(url: str, size: int, expected: int) -> RemoteError:
    """A mirror whose file has another size than the one known: another file, not this
    one changing (an error of that URL alone: the others go on)."""
    return RemoteError(f"{url} has {size} bytes, not {expected}: not a copy of this file")


def headers_for(item: Item, url: str) -> Mapping[str, str]:
    """The item's headers for one of its URLs: all of them for its own origin (that of
    its ``download_url``); for a mirror elsewhere, none of its secrets (Authorization,
    Cookie, ... and its ``secret_headers``), as for a redirect there."""
    headers = item.headers
    if not headers or url == item.download_url or origin(url) == origin(item.download_url):
        return headers
    secret = SECRET_HEADERS.union(h.lower() for h in item.secret_headers)
    return {k: v for k, v in headers.items() if k.lower() not in secret}
