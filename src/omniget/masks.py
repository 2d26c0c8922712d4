"""What never leaves omniget in a message: URL passwords (or a user name given alone),
query parameters whose names say secret (``?token=``, ``X-Amz-Signature=``) and secret
header values, each shown as ``***``. The library's errors and warnings pass through
:func:`mask_secrets`; the CLI masks every line with it too (and with the secrets it was
given, see ``cli.output.Masker``)."""

from __future__ import annotations

import functools
import re

__all__ = ["MASK", "SECRET_HEADERS", "mask_proxy", "mask_secrets", "proxy_password"]

MASK = "***"
#: Words that make a query parameter secret when its name has one (``auth_token``,
#: ``X-Amz-Signature``, ``accessToken``; not ``skey`` or ``monkey``).
_SECRET_WORDS = frozenset({
    "token", "auth", "key", "apikey", "password", "passwd", "pass", "secret", "sessid",
    "session", "sessionid", "jsessionid", "phpsessid", "signature", "sig", "credential",
    "credentials",
})
#: Headers whose values are secrets wherever a text names them (``Cookie: ...``).
_HEADERS = ("authorization", "proxy-authorization", "cookie", "x-api-key")
#: The same, as a set of names (lower case) a header's name is looked up in.
SECRET_HEADERS = frozenset(_HEADERS)


def _secret_name(name: str) -> bool:
    """Whether a query parameter of this name holds a secret: one of its words (split at
    ``_ - .`` and where a lower-case letter meets an upper-case one) says so."""
    words = re.split(r"[_.-]|(?<=[a-z])(?=[A-Z])", name)
    return any(w.lower() in _SECRET_WORDS for w in words)


@functools.cache
def _secret_patterns() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """URL user names and passwords, query parameters, secret headers: compiled when
    first used (most runs mask nothing; compiling them costs every start ~1 ms)."""
    # (a user name without a password is masked whole: ``https://TOKEN@host/``; a scheme
    # of 32 characters at most: unbounded, it was tried at each letter of a long path and
    # read to its end each time, 19 s for one 60 KB URL)
    userinfo = re.compile(
        r"(?P<pre>[a-z][a-z0-9+.-]{0,31}://)(?P<user>[^/\s:@]*:)?[^/\s:@][^/\s@]*@", re.IGNORECASE
    )
    # (a ")" ends the value: messages put URLs in parentheses; so does a comma that
    # ends a URL, ", " or at the end: one inside a value is the value's)
    query = re.compile(
        r"(?P<pre>[?&;](?P<name>[\w.~%-]+)=)(?P<value>(?:[^&;#\s\"'),]|,(?!\s|$))+)"
    )
    names = "|".join(_HEADERS)
    header = re.compile(rf"(?P<pre>\b(?:{names})\s*:\s*)[^\r\n\"']+", re.IGNORECASE)
    return userinfo, query, header


def _mask_query(m: re.Match[str]) -> str:
    return m["pre"] + MASK if _secret_name(m["name"]) else m[0]


def _mask_userinfo(m: re.Match[str]) -> str:
    return f"{m['pre']}{m['user'] or ''}{MASK}@"


def mask_secrets(text: str) -> str:
    """``text`` with URL passwords (or a user name alone), secret query parameters and
    secret header values as ``***`` (masking it again changes nothing)."""
    if "@" not in text and "=" not in text:  # (no URL secret: a header's, maybe)
        low = text.lower()
        if not any(h in low for h in _HEADERS):
            return text
    userinfo, query, header = _secret_patterns()
    text = userinfo.sub(_mask_userinfo, text)
    text = query.sub(_mask_query, text)
    return header.sub(rf"\g<pre>{MASK}", text)


def _proxy_login(proxy: str) -> tuple[int, int, int]:
    """Where a proxy URL's login is: (its start, past the scheme if any; where its password
    starts, or -1; its ``@``, or -1). libcurl splits at the first ``@``; a password the
    user meant may hold more of them, or a slash, a blank: all before the last counts."""
    scheme = re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", proxy)
    start = scheme.end() if scheme else 0
    at = proxy.rfind("@", start)
    colon = proxy.find(":", start, at) if at >= 0 else -1
    return start, colon + 1 if colon >= 0 else -1, at


def mask_proxy(proxy: str) -> str:
    """A proxy URL (its scheme optional) with its password as ``***`` (a user name given
    alone too: it may be a token)."""
    start, password, at = _proxy_login(proxy)
    if at < 0:
        return proxy
    if password < 0:
        return f"{proxy[:start]}{MASK}{proxy[at:]}"
    return f"{proxy[:password]}{MASK}{proxy[at:]}"


def proxy_password(proxy: str) -> str | None:
    """The password of a proxy URL (its scheme optional) as written, if it has one."""
    _, password, at = _proxy_login(proxy)
    return proxy[password:at] if password >= 0 and at > password else None
