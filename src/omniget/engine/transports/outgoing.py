"""What an HTTP request sends, worked out before it leaves: the URL as libcurl takes it,
credentials (from the URL, ``--user``, netrc), header lines, cookies, and the bytes of a
pipelined request."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, quote, unquote, urlsplit

from ...errors import UsageError
from ...model import BODY_HEADERS, body_header
from ..scheduler import host_of
from .base import ENGINE_HEADERS, Request

if TYPE_CHECKING:
    import ipaddress
    from http.cookiejar import MozillaCookieJar

    from ...model import Item
    from .creds import Creds

__all__ = [
    "URL_SAFE", "Ask", "check_headers", "check_proxy", "clean_url", "cookie_jar", "idna_host",
    "light", "netrc_exists", "netrc_hosts", "no_http_proxy", "no_proxy_list", "no_proxy_match",
    "parse_user", "pipe_request",
    "pipeable", "proxy_env", "proxy_for", "proxy_source", "range_lines", "split_userinfo",
    "tls_key",
]

URL_SAFE = ":/?#[]@!$&'()*+,;=%~"  # kept as-is when a Location is percent-encoded


@dataclass(slots=True, eq=False)
class Ask:
    """One hop's request as it leaves: the URL reached so far and what goes to its origin
    (headers without another origin's secrets, its cookie, its credentials). Read-only
    once made (not frozen: a frozen class sets each field through object.__setattr__, at
    ~4x the cost, once per request)."""

    request: Request
    url: str
    method: str
    body: bytes | None
    headers: dict[str, tuple[str, str]]
    cookie: str | None
    creds: Creds | None
    #: libcurl undoes a Content-Encoding (one not decoded here: see decode.py)
    curl_decodes: bool = False
    #: a Proxy-Authorization header (name, value): libcurl gives it to a proxy only
    proxy_auth: tuple[str, str] | None = None
    #: over a connection opened for it, after a 421 (never a kept or shared one)
    fresh: bool = False


def clean_url(url: str) -> str:
    """Percent-encode what libcurl refuses in a path or query (spaces, non-ASCII); a host
    name beyond ASCII becomes its punycode (``xn--...``), as curl and wget ask for it.
    UsageError for lone surrogates (undecodable bytes, from ``os.fsdecode``): no bytes
    stand for them."""
    if url.isascii() and url.isprintable() and " " not in url:
        return url
    try:
        url.encode("utf-8")
    except UnicodeEncodeError:
        shown = split_userinfo(url, urlsplit(url))[0]  # (without its user:password)
        raise UsageError(f"not a valid URL: {shown!r} holds undecodable bytes (lone "
                         "surrogates); percent-encode them") from None
    p = urlsplit(url)
    netloc = p.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    if not hostport.isascii():
        host, colon, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "")
        netloc = f"{userinfo}{at}{idna_host(host)}{colon}{port}"
    return p._replace(
        netloc=netloc, path=quote(p.path, safe=URL_SAFE), query=quote(p.query, safe=URL_SAFE)
    ).geturl()


def idna_host(host: str) -> str:
    """A host name as DNS asks for it: punycode for labels beyond ASCII; UsageError if it
    cannot be one."""
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        raise UsageError(f"not a valid URL: {host!r} is no host name") from None


def split_userinfo(url: str, parts: SplitResult) -> tuple[str, Creds | None]:
    """The URL without ``user:password@`` and the credentials it carried."""
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.netloc.rpartition("@")[2]
    password = None if parts.password is None else unquote(parts.password)
    from .creds import Creds

    creds = Creds(unquote(parts.username or ""), password)
    return parts._replace(netloc=host).geturl(), creds


#: The variables libcurl takes an http:// or https:// URL's proxy from.
_PROXY_ENV = ("http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")
#: The variables that choose whether libcurl takes an http:// URL through a proxy.
_HTTP_PROXY_ENV = ("http_proxy", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY")
_HTTP_PROXY_KEYS = tuple(getattr(os.environ, "encodekey", str)(n) for n in _HTTP_PROXY_ENV)


def proxy_env() -> tuple[object, ...]:
    """The values of the variables that route http:// URLs, to see when they change
    (looked at once per request: read from os.environ's own table where it has one, in
    a tenth of the time its get takes)."""
    table = getattr(os.environ, "_data", None)
    if isinstance(table, dict):
        return tuple(map(table.get, _HTTP_PROXY_KEYS))
    return tuple(os.environ.get(name) for name in _HTTP_PROXY_ENV)


def no_http_proxy(proxy: str | None) -> bool:
    """No proxy applies to http:// URLs (``--proxy ""``, or none given and none in the
    environment variables libcurl reads for them)."""
    if proxy is not None:
        return proxy == ""
    return not any(os.environ.get(v) for v in ("http_proxy", "all_proxy", "ALL_PROXY"))


def proxy_for(url: str, proxy: str | None) -> str | None:
    """The proxy libcurl takes ``url`` through (None: none, it goes direct), as libcurl
    picks it: see :func:`proxy_source`."""
    found = proxy_source(url, proxy)
    return None if found is None else found[1]


def proxy_source(url: str, proxy: str | None) -> tuple[str, str] | None:
    """Where the proxy libcurl takes ``url`` through comes from, and its URL (None: none,
    it goes direct), as libcurl picks it: ``proxy`` (the setting, ``--proxy``), else the
    scheme's variable (``http_proxy`` in lower case only, ``https_proxy`` or
    ``HTTPS_PROXY``), else ``all_proxy`` or ``ALL_PROXY``; none for a host ``no_proxy``
    (or ``NO_PROXY``) names."""
    parts = urlsplit(url)
    env = os.environ
    where = "--proxy"
    if proxy is None:
        scheme = parts.scheme.lower()
        names = (f"{scheme}_proxy",) if scheme == "http" else (f"{scheme}_proxy",
                                                               f"{scheme.upper()}_PROXY")
        where = next((n for n in (*names, "all_proxy", "ALL_PROXY") if env.get(n)), "")
        proxy = env.get(where) if where else None
    if not proxy:
        return None
    no_proxy = env.get("no_proxy") or env.get("NO_PROXY")
    if no_proxy and no_proxy_match(parts.hostname or "", no_proxy):
        return None
    return where, proxy


def check_proxy(proxy: str | None, entries: Iterable[Item | str]) -> None:
    """UsageError when the proxy one of ``entries`` (URLs, or items: their mirrors and
    pieces too) would go through is one libcurl cannot use: said once, before any
    transfer, as it fails every request (a variable that applies to none is not read).
    Proxies that can be used cost no look at the entries."""
    if proxy == "":
        return
    from ...settings import proxy_problem

    given = [proxy] if proxy is not None else [os.environ.get(n) for n in _PROXY_ENV]
    if not any(proxy_problem(p) for p in given if p):
        return
    from ...masks import mask_proxy
    from ...model import Item

    seen: set[str] = set()  # (scheme://host of the URLs looked at)
    for entry in entries:
        urls: list[object] = [entry]
        if isinstance(entry, Item):  # (fields of the wrong type: refused where checked)
            mirrors = entry.mirrors if isinstance(entry.mirrors, tuple) else ()
            pieces = entry.pieces if isinstance(entry.pieces, tuple) else ()
            urls = [entry.download_url, *mirrors, *(getattr(p, "url", None) for p in pieces)]
        for url in urls:
            if not isinstance(url, str) or url.lstrip()[:4].lower() != "http":
                continue
            url = url.strip()
            end = url.find("/", url.find("//") + 2)
            origin = url if end < 0 else url[:end]
            if origin in seen:
                continue
            seen.add(origin)
            try:
                found = proxy_source(url, proxy)
            except ValueError:  # (a URL that is none: said where it is fetched)
                continue
            problem = None if found is None else proxy_problem(found[1])
            if found is None or problem is None:
                continue
            where, value = found
            if where == "--proxy":
                raise UsageError(f"--proxy {mask_proxy(value)}: {problem}", setting="proxy")
            raise UsageError(f"{where}={mask_proxy(value)}: {problem} (fix or unset it)")


def no_proxy_list() -> str | None:
    """``no_proxy`` (or ``NO_PROXY``) as libcurl reads it, when this libcurl's reading is
    the one :func:`no_proxy_match` follows (7.86 and later); else None."""
    import pycurl

    value = os.environ.get("no_proxy") or os.environ.get("NO_PROXY")
    return value if value and pycurl.version_info()[2] >= 0x075600 else None


def no_proxy_match(host: str, no_proxy: str) -> bool:
    """Whether libcurl connects to ``host`` directly for this ``no_proxy`` value (its
    ``Curl_check_noproxy``): ``*``; host names, each also for the names under it (a
    leading or trailing dot left out); IPv4 addresses and CIDR ranges; the entries split
    by commas. An IPv6 host (``[::1]`` or ``::1``) only by an entry that is its very
    address (see :func:`_ipv6_listed`); else it stays with libcurl."""
    import ipaddress  # (only with a proxy and no_proxy: not at every start)

    if no_proxy == "*":
        return True
    name = host
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        ip = None
        name = host[:-1] if host.endswith(".") else host
    if ip is not None and ip.version != 4:
        return _ipv6_listed(host.strip("[]"), no_proxy)
    name = name.lower()
    for token in _no_proxy_tokens(no_proxy):
        if ip is not None:
            if _cidr4_match(ip, token):
                return True
            continue
        token = token[:-1] if token.endswith(".") else token
        token = token[1:] if token.startswith(".") else token
        token = token.lower()
        if token and (name == token or name.endswith("." + token)):
            return True
    return False


def _ipv6_listed(address: str, no_proxy: str) -> bool:
    """An entry is ``address`` itself, written as libcurl writes it (its short form, no
    zone id): every libcurl from 7.86 goes direct then, whether it compares the text
    (older ones) or the address (newer ones, with /BITS ranges). Anything else (a range,
    another spelling) may go either way: False, libcurl decides."""
    if f"[{address}]" != _ipv6_authority(f"[{address}]")[0]:
        return False
    address = address.lower()
    return any(token.lower() == address for token in _no_proxy_tokens(no_proxy))


def _no_proxy_tokens(text: str) -> list[str]:
    """libcurl's reading of the list: blanks around entries, commas between them (an
    entry followed by anything else ends the list)."""
    tokens = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t":
            i += 1
        start = i
        while i < n and text[i] not in " \t,":
            i += 1
        if i > start:
            tokens.append(text[start:i])
        while i < n and text[i] in " \t":
            i += 1
        if i >= n or text[i] != ",":
            break
        while i < n and text[i] == ",":
            i += 1
    return tokens


def _cidr4_match(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, token: str) -> bool:
    network, slash, rest = token.partition("/")
    digits = len(rest) - len(rest.lstrip("0123456789"))
    bits = int(rest[:digits]) if slash and digits else 0  # (atoi: 0 means the address)
    if bits > 32:
        return False
    import ipaddress

    try:
        check = ipaddress.IPv4Address(network)
    except ValueError:
        return False
    if bits in (0, 32):
        return ip == check
    mask = (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF
    return int(ip) & mask == int(check) & mask


def netrc_hosts(path: str | None) -> frozenset[str] | None:
    """Machine names with a netrc login; None when any host has one (a ``default``
    entry) or the file cannot be read the way libcurl would."""
    import netrc

    try:
        # (named, so that Python does not refuse a ~/.netrc others can read: libcurl
        # reads it, as curl does)
        parsed = netrc.netrc(path or os.path.join(_home(), ".netrc"))
    except FileNotFoundError:
        return frozenset()  # (libcurl finds no login either)
    except (OSError, netrc.NetrcParseError):
        return None
    if "default" in parsed.hosts:
        return None
    return frozenset(h.lower() for h in parsed.hosts)


def netrc_exists(path: str | None) -> bool:
    """Whether there is a netrc file to read (``path``: the one named, which must be
    there; libcurl would skip it without a word)."""
    if path:
        if os.path.isdir(path) or not os.path.exists(path):
            why = "a folder, not a file" if os.path.isdir(path) else "no such file"
            raise UsageError(f"netrc-file {path}: {why}", setting="netrc-file")
        return True
    return any(os.path.exists(os.path.join(_home(), name)) for name in (".netrc", "_netrc"))


def _home() -> str:
    return os.environ.get("HOME") or os.path.expanduser("~")


def tls_key(url: str) -> str:
    return "tls " + host_of(url)


def range_lines(request: Request, headers: Mapping[str, object]) -> list[str]:
    """The request's Range and If-Range header lines (unless given as headers)."""
    lines = []
    if request.range is not None and "range" not in headers:
        lines.append(f"Range: {request.range.header()}")
    if request.if_range and "if-range" not in headers:
        lines.append(f"If-Range: {request.if_range}")
    return lines


def pipeable(request: Request, method: str, body: bytes | None) -> bool:
    """A GET without a body or a speed cap: our own connections can carry it (ranged
    ones one at a time, see ``PipelinePool.takes``)."""
    return (
        method == "GET" and body is None and not request.max_speed and request.rate is None
    )


def light(request: Request, method: str, body: bytes | None) -> bool:
    """A plain GET of a whole resource (no Range, body or speed cap): it may share a
    connection with others (pipelined, or an HTTP/2 stream)."""
    return request.range is None and request.if_range is None and pipeable(request, method, body)


def parse_user(user: str | None) -> Creds | None:
    if not user:
        return None
    name, colon, password = user.partition(":")
    from .creds import Creds

    return Creds(name, password if colon else None)


def cookie_jar(path: str | None) -> MozillaCookieJar | None:
    """The cookies of a Netscape cookies.txt (``--cookies``), or None without one."""
    if not path:
        return None
    from .cookies import load_cookies  # http.cookiejar and urllib: only with --cookies

    return load_cookies(path)


def check_headers(
    pairs: tuple[tuple[str, str], ...], *, every_request: bool = False
) -> dict[str, tuple[str, str]]:
    """``{lower name: (name, value)}``, refusing anything that could split a header, and
    with ``every_request`` (the settings' headers) those the engine sets itself."""
    out: dict[str, tuple[str, str]] = {}
    for name, value in pairs:
        if (not name or any(c in name for c in "\r\n\0: ")
                or any(c in value for c in "\r\n\0")):  # (libcurl: "embedded null byte")
            raise UsageError(f"invalid header {name!r}: no line breaks or NUL bytes, and no "
                             "':' in names")
        if name.lower() in BODY_HEADERS and value:
            raise UsageError(body_header(name))
        if every_request and name.lower() in ENGINE_HEADERS:
            raise UsageError(
                f"header {name!r} cannot be set: omniget sends it itself, "
                "to resume and split downloads"
            )
        out[name.lower()] = (name, value)
    return out


def pipe_request(
    request: Request,
    url: str,
    headers: dict[str, tuple[str, str]],
    cookie: str | None,
    user_agent: str | None,
    fixed: dict[str, str] | None = None,
) -> bytes | None:
    """The request as bytes on the wire (what libcurl would send), or None when it
    is not plain ASCII or its path has ``.`` or ``..`` segments (libcurl takes those:
    it removes such segments first). ``fixed``: the caller's store of what
    follows the request line for ``headers`` and ``user_agent`` (always the same ones
    for one store), by host: a request without a cookie or a range sends just that,
    written once per host."""
    rest = url[7:].partition("#")[0]
    cut = len(rest)  # (where the target starts: the first "/" or "?")
    for i in (rest.find("/"), rest.find("?")):
        if 0 <= i < cut:
            cut = i
    hostport, target = rest[:cut], rest[cut:]
    if not target.startswith("/"):
        target = "/" + target
    if ("/." in target or "%2" in target) and _dot_segments(target.partition("?")[0]):
        return None
    if fixed is None:
        head = "\r\n".join([f"GET {target} HTTP/1.1", *_header_lines(hostport, headers,
                                                                      user_agent), ""])
    else:
        tail = fixed.get(hostport)  # (the host's lines and the blank one, worked out once)
        if tail is None:
            lines = [*_header_lines(hostport, headers, user_agent), "\r\n"]
            tail = fixed[hostport] = "\r\n".join(lines)
        if not cookie and request.range is None and not request.if_range:
            try:
                return f"GET {target} HTTP/1.1\r\n{tail}".encode("ascii")
            except UnicodeEncodeError:
                return None
        head = f"GET {target} HTTP/1.1\r\n{tail[:-2]}"  # (without the blank line)
    lines = []
    if cookie:
        lines.append(f"Cookie: {cookie}")
    if request.range is not None or request.if_range:
        lines += range_lines(request, headers)
    lines.append("\r\n")
    try:
        return (head + "\r\n".join(lines)).encode("ascii")
    except UnicodeEncodeError:
        return None


def _dot_segments(path: str) -> bool:
    """``path`` has a ``.`` or ``..`` segment (``%2e`` for a dot too, as libcurl reads it)."""
    dots = (".", "..")
    return any(part.lower().replace("%2e", ".") in dots for part in path.split("/"))


def _header_lines(
    hostport: str, headers: dict[str, tuple[str, str]], user_agent: str | None
) -> list[str]:
    """The header lines every request to ``hostport`` with ``headers`` sends first."""
    lines = []
    if "host" not in headers:
        host, colon, port = hostport.rpartition(":")
        if hostport[:1] == "[":  # an IPv6 literal (once per host: see pipe_request)
            host, colon, port = _ipv6_authority(hostport)
            hostport = f"{host}{colon}{port}"
        default = not port or (port.isdigit() and int(port) == 80)
        if colon and default and not host.endswith(":"):
            hostport = host  # (libcurl leaves the default port out, given or not)
        lines.append(f"Host: {hostport}")
    if "user-agent" not in headers and user_agent:
        lines.append(f"User-Agent: {user_agent}")
    if "accept" not in headers:
        lines.append("Accept: */*")
    if "accept-encoding" not in headers:
        lines.append("Accept-Encoding: identity")
    if headers:
        lines.extend(f"{n}: {v}" for k, (n, v) in headers.items() if v and k != "cookie")
    return lines


def _ipv6_authority(hostport: str) -> tuple[str, str, str]:
    """``[ADDRESS]``, ``:`` and the port of ``[ADDRESS%ZONE]:PORT``, the address as libcurl
    writes it in a Host line (RFC 9112: the URL's host, in brackets): no zone id, and in
    its short form (RFC 5952, an IPv4-mapped or -compatible tail as a dotted quad) when
    that is no longer than the address as written, else as written."""
    inside, close, rest = hostport[1:].partition("]")
    colon, port = rest[:1], rest[1:]
    address = inside.partition("%")[0]  # (the zone id: %25NAME, or %NAME as libcurl takes)
    if not close:
        return hostport, "", ""
    import ipaddress

    try:
        ip = ipaddress.IPv6Address(address)
    except ValueError:
        return f"[{address}]", colon, port
    short = ip.compressed
    words = ip.packed
    if words[:10] == bytes(10) and words[10:12] in (b"\0\0", b"\xff\xff"):
        v4 = ipaddress.IPv4Address(words[12:])
        if words[10:12] == b"\xff\xff":  # ::ffff:a.b.c.d
            short = f"::ffff:{v4}"
        elif words[12:14] != b"\0\0":  # ::a.b.c.d (not ::, ::1 and the like)
            short = f"::{v4}"
    return f"[{short if len(short) <= len(address) else address}]", colon, port

