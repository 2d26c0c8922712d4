"""Netscape cookies.txt support for the HTTP transport (imported only with ``--cookies``).

Which cookies go to a URL is decided here, the way curl does it, not by http.cookiejar's
policy (which renames a host without a dot, ``localhost``, to ``localhost.local``): a
host-only cookie goes to its host alone, a domain cookie (subdomains TRUE in the file, or a
``Domain=`` attribute) also to the names under it, never by suffix to an IP address.
Which cookies an answer sets are kept follows curl too: a secure one only from https (or
this machine), see :func:`_acceptable`."""

from __future__ import annotations

import email.message
import functools
import ipaddress
import os
import re
import stat
import time
import urllib.request
from collections.abc import Callable
from http.cookiejar import Cookie, CookieJar, MozillaCookieJar
from urllib.parse import urlsplit

from ...errors import UsageError
from ...userfiles import NotText, read_text
from .base import Headers

__all__ = ["cookie_header", "load_cookies", "read_ahead", "store_cookies"]

# How curl and browsers mark an HttpOnly cookie, and the attribute MozillaCookieJar sets then.
_HTTPONLY_PREFIX, _HTTPONLY_ATTR = "#HttpOnly_", "HTTPOnly"
# CookieJar's own layout: domain -> path -> name -> cookie (domains in lower case)
_Store = dict[str, dict[str, dict[str, Cookie]]]
_PORT = re.compile(r":\d+$")
# hosts whose plain http:// answers may set secure cookies, as in curl
_SECURE_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class _CookieResponse:
    """Just enough of a urllib response for ``CookieJar.extract_cookies``."""

    def __init__(self, headers: Headers, keep: Callable[[str], bool]) -> None:
        self._msg = email.message.Message()
        for name in ("Set-Cookie", "Set-Cookie2"):
            for value in headers.get_all(name):
                if keep(value):
                    self._msg[name] = value

    def info(self) -> email.message.Message:
        return self._msg


#: The text of cookies files that are no regular file (a FIFO, a shell's ``<(...)``), read
#: ahead by :func:`read_ahead`: each can be read once, and each load of the run takes it.
_READ_AHEAD: dict[str, str] = {}


def read_ahead(path: str) -> None:
    """Read the cookies file ``path`` now, if it is no regular file, for every later
    :func:`load_cookies` of it in this process (the CLI does, before its run's own
    Ctrl+C handling: an open waiting for a FIFO's writer ends at the first one). Its
    format is checked when it is loaded; UsageError if it cannot be read."""
    _READ_AHEAD.pop(path, None)  # (an earlier run's, in this process)
    try:
        if stat.S_ISREG(os.stat(path).st_mode):
            return
    except OSError:
        return  # (said when it is loaded)
    try:
        with open(path, "rb") as f:
            _READ_AHEAD[path] = read_text(f)
    except (OSError, NotText) as exc:
        raise _unreadable(path, exc) from exc


def load_cookies(path: str) -> MozillaCookieJar:
    """Read a Netscape cookies.txt, with or without its ``# Netscape HTTP Cookie File``
    line (curl and many browser exporters leave it out); ``#HttpOnly_`` lines count."""
    try:
        text = _READ_AHEAD.get(path)
        if text is None:
            with open(path, "rb") as f:  # (never read whole when it shows it is no such file)
                text = read_text(f)
        lines = text.removeprefix("\ufeff").split("\n")
    except (OSError, NotText) as exc:
        raise _unreadable(path, exc) from exc
    jar = MozillaCookieJar(path)
    for number, line in enumerate(lines, 1):
        try:
            cookie = _cookie(line.removesuffix("\r"))
        except (ValueError, OverflowError):  # not 7 fields, or a bad expiry
            raise UsageError(
                f"cookies file {path}, line {number}: not in Netscape cookies.txt format "
                "(7 TAB-separated fields: domain, subdomains, path, secure, expiry, name, value)"
                + _format_hint(line), setting="cookies"
            ) from None
        if cookie is not None:
            jar.set_cookie(cookie)
    jar.clear_expired_cookies()
    return jar


def _unreadable(path: str, exc: OSError | NotText) -> UsageError:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    reason = " ".join(reason.split())
    if isinstance(exc, FileNotFoundError) and "=" in path:  # (curl -b NAME=VALUE)
        reason += (" (--cookies reads a cookies.txt file; a cookie as it is goes in a "
                   "Cookie header, with -H)")
    return UsageError(f"cannot read cookies file {path}: {reason}", setting="cookies")


def _format_hint(line: str) -> str:
    """What a line that is no cookies.txt line looks like, when that is plain: a JSON
    export (browser extensions' default), or the TABs turned into spaces; else ''."""
    if line.lstrip()[:1] in ("[", "{"):
        return ("; it is JSON (an extension's JSON export): export the cookies as cookies.txt "
                "(Netscape format) instead")
    if "\t" not in line and len(line.split()) == 7:
        return "; its fields are separated by spaces, not TABs (an editor may have changed them)"
    return ""


def _cookie(line: str) -> Cookie | None:
    """One cookies.txt line as a Cookie; None for comments and blank lines, ValueError if
    it is not a cookie line. Mirrors ``MozillaCookieJar``'s reading, minus its header check.
    ``domain_specified`` holds the subdomains field: True for a domain cookie."""
    rest: dict[str, str] = {}
    if line.startswith(_HTTPONLY_PREFIX):
        line, rest = line[len(_HTTPONLY_PREFIX) :], {_HTTPONLY_ATTR: ""}
    if not line.strip() or line.lstrip().startswith(("#", "$")):
        return None
    fields = line.split("\t")
    if len(fields) == 6:  # (an empty value whose TAB was stripped: curl reads it so)
        fields.append("")
    if len(fields) != 7:
        raise ValueError("not 7 fields")
    domain, subdomains, cpath, secure, expires, name, text = fields
    domain = domain.lower()  # (looked up in lower case)
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
    """The jar's Cookie header value for ``url`` (None: no cookie for it). As curl: domain,
    path (a prefix ending at a slash), secure (https only) and expiry decide; the longest
    paths come first."""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    if not host:
        return None
    path = parts.path or "/"
    https = parts.scheme.lower() == "https"
    now = int(time.time())
    store = _store(jar)
    found: list[Cookie] = []
    for domain, own in _domains(host):
        for key in (domain, "." + domain):
            for cpath, names in store.get(key, {}).items():
                if not _path_matches(cpath, path):
                    continue
                for cookie in names.values():
                    if (
                        (own or cookie.domain_specified)
                        and (https or not cookie.secure)
                        and not cookie.is_expired(now)
                    ):
                        found.append(cookie)
    if not found:
        return None
    found.sort(key=lambda c: (len(c.path), len(c.domain.lstrip(".")), len(c.name)), reverse=True)
    return "; ".join(c.name if c.value is None else f"{c.name}={c.value}" for c in found)


def store_cookies(jar: MozillaCookieJar, headers: Headers, url: str) -> None:
    """Keep the Set-Cookie values of an answer from ``url`` (those curl keeps)."""
    request = urllib.request.Request(url)
    host = (urlsplit(url).hostname or "").rstrip(".")
    secure = url[:8].lower() == "https://" or host.lower() in _SECURE_HOSTS
    response = _CookieResponse(headers, functools.partial(_acceptable, jar, host, secure))
    # http.cookiejar files a host-only cookie of a host without a dot under "<host>.local",
    # and deletes one (Max-Age=0) there too: let it, then move them under the host name.
    name = _PORT.sub("", urlsplit(url).netloc.rpartition("@")[2], 1).lower()
    if "." in name or not host:
        jar.extract_cookies(response, request)  # type: ignore[arg-type]
        return
    local = f"{name}.local"
    store = _store(jar)
    aside = store.pop(local, None)  # those of a host really named so
    _move_host_only(store, host, local)
    try:
        jar.extract_cookies(response, request)  # type: ignore[arg-type]
    finally:
        _move_host_only(store, local, host)
        if aside is not None:
            store[local] = aside


def _acceptable(jar: CookieJar, host: str, secure: bool, value: str) -> bool:
    """curl's rules for a Set-Cookie ``value`` from ``host`` (``secure``: over https, or
    from this machine): a ``Secure`` cookie, a ``__Secure-`` or ``__Host-`` one, or one
    in place of a secure cookie come from a secure origin only; ``__Secure-`` needs
    Secure, ``__Host-`` also Path=/ and no Domain."""
    pair, _, rest = value.partition(";")
    name = pair.partition("=")[0].strip()
    attrs = {}
    for attr in rest.split(";"):
        key, _, val = attr.partition("=")
        attrs[key.strip().lower()] = val.strip()
    marked = "secure" in attrs
    prefix = name[:9].lower()
    if prefix == "__secure-" and not marked:
        return False
    if name[:7].lower() == "__host-" and (
        not marked or attrs.get("path") != "/" or "domain" in attrs
    ):
        return False
    if secure:
        return True
    if marked or prefix == "__secure-" or name[:7].lower() == "__host-":
        return False
    low = host.lower()
    for cookie in jar:
        domain = cookie.domain.lstrip(".").lower()
        if cookie.secure and cookie.name == name and (
            low == domain or low.endswith("." + domain)
        ):
            return False  # (an http:// answer does not replace a secure cookie)
    return True


def _store(jar: CookieJar) -> _Store:
    store: _Store = jar._cookies  # type: ignore[attr-defined]
    return store


def _domains(host: str) -> list[tuple[str, bool]]:
    """The domains whose cookies may go to ``host``: itself (own: its host-only cookies
    too), then each parent name (its domain cookies only); an IP address has no parents."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return [(host, True)]
    labels = host.split(".")
    return [(host, True)] + [(".".join(labels[i:]), False) for i in range(1, len(labels))]


def _path_matches(cpath: str, path: str) -> bool:
    """curl's rule: the cookie's path (without a trailing slash; "/" if it is not one) is
    the request's path or a prefix of it that ends before a slash."""
    if not cpath.startswith("/"):
        return True
    cpath = cpath.rstrip("/")
    if not cpath:
        return True
    return path == cpath or (path.startswith(cpath) and path[len(cpath)] == "/")


def _move_host_only(store: _Store, old: str, new: str) -> None:
    """File the host-only cookies kept under domain ``old`` under ``new``."""
    paths = store.get(old)
    if not paths:
        return
    for cpath, names in list(paths.items()):
        for cname, cookie in list(names.items()):
            if cookie.domain_specified:
                continue
            del names[cname]
            cookie.domain = new
            store.setdefault(new, {}).setdefault(cpath, {})[cname] = cookie
        if not names:
            del paths[cpath]
    if not paths:
        del store[old]
