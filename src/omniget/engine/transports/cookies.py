"""Netscape cookies.txt support for the HTTP transport (imported only with ``--cookies``)."""

from __future__ import annotations

import email.message
import urllib.request
from http.cookiejar import LoadError, MozillaCookieJar

from ...errors import UsageError
from .base import Headers

__all__ = ["cookie_header", "load_cookies", "store_cookies"]


class _CookieResponse:
    """Just enough of a urllib response for ``CookieJar.extract_cookies``."""

    def __init__(self, headers: Headers) -> None:
        self._msg = email.message.Message()
        for name in ("Set-Cookie", "Set-Cookie2"):
            for value in headers.get_all(name):
                self._msg[name] = value

    def info(self) -> email.message.Message:
        return self._msg


def load_cookies(path: str) -> MozillaCookieJar:
    jar = MozillaCookieJar(path)
    try:
        jar.load(ignore_discard=True, ignore_expires=True)
    except (OSError, LoadError) as exc:
        reason = " ".join(str(exc).split())
        raise UsageError(f"cannot read cookies file {path}: {reason}") from exc
    # Expiry 0 marks a session cookie in curl's and browsers' exports: keep those.
    for cookie in jar:
        if cookie.expires == 0:
            cookie.expires = None
            cookie.discard = True
    jar.clear_expired_cookies()
    return jar


def cookie_header(jar: MozillaCookieJar, url: str) -> str | None:
    """The jar's Cookie header value for ``url``."""
    req = urllib.request.Request(url)
    jar.add_cookie_header(req)
    return req.unredirected_hdrs.get("Cookie")


def store_cookies(jar: MozillaCookieJar, headers: Headers, url: str) -> None:
    """Keep the Set-Cookie values of an answer from ``url``."""
    jar.extract_cookies(
        _CookieResponse(headers),  # type: ignore[arg-type]
        urllib.request.Request(url),
    )
