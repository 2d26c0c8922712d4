"""Netscape cookies.txt support for the HTTP transport (imported only with ``--cookies``)."""

from __future__ import annotations

import email.message
import urllib.request
from http.cookiejar import Cookie, MozillaCookieJar

from ...errors import UsageError
from .base import Headers

__all__ = ["cookie_header", "load_cookies", "store_cookies"]

# How curl and browsers mark an HttpOnly cookie, and the attribute MozillaCookieJar sets then.
_HTTPONLY_PREFIX, _HTTPONLY_ATTR = "#HttpOnly_", "HTTPOnly"


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
    """Read a Netscape cookies.txt, with or without its ``# Netscape HTTP Cookie File``
    line (curl and many browser exporters leave it out); ``#HttpOnly_`` lines count."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            lines = f.read().split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        reason = " ".join(reason.split())
        raise UsageError(f"cannot read cookies file {path}: {reason}") from exc
    jar = MozillaCookieJar(path)
    for number, line in enumerate(lines, 1):
        try:
            cookie = _cookie(line.removesuffix("\r"))
        except (ValueError, OverflowError):  # not 7 fields, or a bad expiry
            raise UsageError(
                f"cookies file {path}, line {number}: not in Netscape cookies.txt format "
                "(7 TAB-separated fields: domain, subdomains, path, secure, expiry, name, value)"
            ) from None
        if cookie is not None:
            jar.set_cookie(cookie)
    jar.clear_expired_cookies()
    return jar


def _cookie(line: str) -> Cookie | None:
    """One cookies.txt line as a Cookie; None for comments and blank lines, ValueError if
    it is not a cookie line. Mirrors ``MozillaCookieJar``'s reading, minus its header check."""
    rest: dict[str, str] = {}
    if line.startswith(_HTTPONLY_PREFIX):
        line, rest = line[len(_HTTPONLY_PREFIX) :], {_HTTPONLY_ATTR: ""}
    if not line.strip() or line.lstrip().startswith(("#", "$")):
        return None
    fields = line.split("\t")
    if len(fields) != 7:
        raise ValueError("not 7 fields")
    domain, subdomains, cpath, secure, expires, name, text = fields
    expiry = int(float(expires)) if expires.strip() else 0
    value: str | None = text
    if not name:  # "Set-Cookie: foo" is a nameless cookie to cookies.txt
        name, value = text, None
    # Expiry 0 (or none) marks a session cookie in curl's and browsers' exports: keep those.
    return Cookie(
        version=0, name=name, value=value, port=None, port_specified=False,
        domain=domain, domain_specified=subdomains.upper() == "TRUE",
        domain_initial_dot=domain.startswith("."), path=cpath, path_specified=False,
        secure=secure.upper() == "TRUE", expires=expiry or None, discard=not expiry,
        comment=None, comment_url=None, rest=rest,
    )


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
