"""libcurl's result codes, and the loop's own (:data:`.curlloop.CLOSED`,
:data:`.curlloop.STALLED`, :data:`.curlloop.TLS_REPLY`), as omniget errors
(:func:`curl_error`): one line, no credentials, and whether a retry may help."""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import urlsplit

import pycurl

from ...errors import (
    AuthRequired,
    IntegrityError,
    RemoteError,
    TransferError,
    TransientError,
    UsageError,
)
from ...masks import mask_proxy
from ...settings import named_setting
from .base import Headers, as_https, proxy_login, safe_url
from .curlloop import CLOSED, CONNECT_RETRIES, STALLED, TLS_REPLY, WEIRD_REPLY
from .trust import SYSTEM_CAS

__all__ = ["PROXY_CA_HINT", "ProxyPath", "curl_error", "proxy_answer"]

_TLS_TRUST = frozenset(
    {
        pycurl.E_PEER_FAILED_VERIFICATION,
        pycurl.E_SSL_ISSUER_ERROR,
        pycurl.E_SSL_INVALIDCERTSTATUS,
        pycurl.E_SSL_PINNEDPUBKEYNOTMATCH,
    }
)
_PROXY = 97  # CURLE_PROXY: a SOCKS proxy's handshake failed (why: CURLINFO_PROXY_ERROR)
# CURLINFO_PROXY_ERROR's codes (CURLPX_*) that say the login was refused, or none was
# given to a proxy that wants one, or one too long to send
_SOCKS_LOGIN = frozenset({10, 11, 12, 33})
# ... that the proxy will not make this connection (an address type or command it does
# not take, a rule of its own, a host name too long for it): the same every time
_SOCKS_NEVER = frozenset({9, 17, 18, 23})
_SOCKS_CONNECTION_REFUSED = 19
# a TLS handshake the server refuses outright: no retry helps
_TLS_REFUSED = ("wrong version number", "unsupported protocol", "no protocols available",
                "alert handshake failure", "alert protocol version")
_CONNECTION = frozenset(
    {
        pycurl.E_RECV_ERROR,
        pycurl.E_SEND_ERROR,
        pycurl.E_GOT_NOTHING,
        pycurl.E_HTTP2,
        92,  # CURLE_HTTP2_STREAM
        95,  # CURLE_HTTP3
        96,  # CURLE_QUIC_CONNECT_ERROR
        97,  # CURLE_PROXY
    }
)

#: CURLE_TOO_LARGE (libcurl 8.6): a head past libcurl's bounds (a header line over
#: 100 KiB, say); the same server sends it again (heads over 300 KiB in all come as
#: E_RECV_ERROR "Too large response headers")
_TOO_LARGE = 100


def _one_line(text: str, limit: int = 300) -> str:
    """libcurl's message on one line, without a password it quotes (a proxy URL's)."""
    text = re.sub(_QUOTED_PROXY, _mask_quoted, text)
    return re.sub(_PASSWORD, r"\1\2:***@", " ".join(text.split()))[:limit]


# ``user:password@`` in a URL libcurl quotes, with or without its scheme (compiled by re
# when first used: not at every start)
_PASSWORD = r"""(^|[\s'"(/])([^\s'"/@:]*):[^\s'"/@]+@"""
# a proxy URL libcurl quotes whole ("Unsupported proxy syntax in '...': why", "... scheme
# for '...'"): its password may hold anything (a blank, a slash, a quote, an @)
_QUOTED_PROXY = r"(proxy (?:syntax in|scheme for) ')(.*)('(?::|$))"


def _mask_quoted(m: re.Match[str]) -> str:
    return f"{m[1]}{mask_proxy(m[2])}{m[3]}"


#: What trusts an https:// proxy's CA (``--ca-cert`` is for servers, as curl's --cacert).
PROXY_CA_HINT = (
    "put its CA in the file named by CURL_CA_BUNDLE or SSL_CERT_FILE (--ca-cert is for "
    "servers), or pass --insecure to skip verification"
)


class ProxyPath(NamedTuple):
    """How a failed libcurl transfer went through a proxy."""

    tunnel: int  # the proxy's answer to the CONNECT (0: none)
    tls_failed: bool  # the proxy's own certificate failed the check
    refused: int = 0  # what a SOCKS proxy said (libcurl's CURLINFO_PROXY_ERROR; 0: none)
    connected: bool = True  # its connection to the proxy was made (CURLINFO_CONNECT_TIME)


def curl_error(
    code: int,
    message: str,
    url: str,
    *,
    fresh: bool = False,
    proxy: ProxyPath | None = None,
    ca_from: str = "--ca-cert",
    named: str = "",
    proxy_from: str = "",
    coding: str = "",
) -> Exception:
    """A libcurl result code as an omniget error: one line, no credentials. ``fresh``:
    the answer came on a connection opened for this request; ``proxy``: the transfer
    went through one; ``ca_from``: what chose the CA certificates (``--ca-cert`` or where
    the setting was set, a variable, :data:`.trust.SYSTEM_CAS`); ``named``: the proxy as
    the user gave it (its password masked), ``proxy_from`` where it was set (``--proxy``,
    ``set in config file ...``, ``http_proxy``; "": not known); ``coding``: the answer's
    Content-Encoding, named when libcurl cannot undo it."""
    where = safe_url(url)
    detail = _one_line(message)
    suffix = f": {detail}" if detail else ""
    login = proxy_login(proxy_from)
    if proxy is not None and proxy.tunnel >= 300:
        return _tunnel_refused(proxy.tunnel, where, login)
    if proxy is not None and code == _PROXY and proxy.refused:
        return _socks_refused(proxy.refused, where, suffix, login)
    if code == TLS_REPLY:  # (the first bytes of a connection: no earlier answer's)
        return RemoteError(f"{where} answered in TLS: use {as_https(where)}")
    not_http = code == pycurl.E_UNSUPPORTED_PROTOCOL and "HTTP/0.9" in message
    if code == WEIRD_REPLY or not_http:
        # A malformed head (a header line without a colon, a bad Content-Length) is the
        # server's bug, and an answer that is no HTTP at all another protocol on that
        # port: not retried, as curl --retry. On a reused or pipelined connection it may
        # be bytes an earlier answer sent past its end: a refused connection's retries.
        # (libcurl keeps the bytes to itself: a TLS server's alert, an SSH banner, alike)
        if not_http:
            hint = f" (if it speaks TLS, use {as_https(where)})" if url[:5] == "http:" else ""
            text = f"{where} did not answer in HTTP{hint}{suffix}"
        else:
            text = f"malformed answer from {where}{suffix}"
        if fresh:
            return RemoteError(text)
        err = TransientError(text)
        err.max_retries = CONNECT_RETRIES
        return err
    if code == STALLED:
        return TransientError(f"transfer stalled ({where}){suffix}")
    if code == CLOSED:
        return TransientError(f"transport closed during the transfer ({where})")
    if code == pycurl.E_COULDNT_RESOLVE_HOST:
        unknown = RemoteError(f"could not resolve host {urlsplit(url).hostname or '?'}")
        unknown.unreached = True
        return unknown
    check = f"check {named_setting('proxy', proxy_from) if proxy_from else '--proxy and *_proxy'}"
    if code == pycurl.E_COULDNT_RESOLVE_PROXY and "proxy syntax" in detail.lower():
        return UsageError(f"unusable proxy for {where}{suffix} ({check})")
    # (the proxy by its URL, and where it was set where no hint to check that follows)
    the_url = f"the proxy {named}" if named else "the proxy"
    the_proxy = f"{the_url} ({proxy_from})" if named and proxy_from else the_url
    # (an answer cut or missing may be the proxy's doing: libcurl's words blame the server)
    via = f", through {the_proxy}" if proxy is not None else ""
    if code == pycurl.E_COULDNT_RESOLVE_PROXY:
        unknown = RemoteError(f"could not resolve {the_proxy} for {where}{suffix}")
        unknown.shared = f"failed: could not resolve {the_proxy}{suffix}"  # (said once)
        return unknown
    if code in _TLS_TRUST:
        of_proxy = proxy is not None and proxy.tls_failed
        whose = "proxy's TLS certificate" if of_proxy else "TLS certificate"
        hint = _tls_hint(detail, of_proxy, ca_from)
        return RemoteError(f"{whose} not trusted for {where}{suffix}; {hint}")
    if code == pycurl.E_SSL_CACERT_BADFILE:
        return RemoteError(f"could not load CA certificates for {where}{suffix}; check "
                           f"{named_setting('ca-cert', ca_from)}")
    if code in (pycurl.E_URL_MALFORMAT, pycurl.E_UNSUPPORTED_PROTOCOL):
        return RemoteError(f"unusable URL {where}{suffix}")
    if code == pycurl.E_OPERATION_TIMEDOUT:
        late = TransientError(f"timed out ({where}{via}){suffix}")
        late.unreached = proxy is None  # (libcurl's one timeout here is the connect's)
        if proxy is not None and not proxy.connected:  # (the proxy never took it)
            late.shared = f"failed: could not connect to {the_url}: timed out ({check})"
        return late
    if code == pycurl.E_PARTIAL_FILE:
        return TransientError(f"body cut short ({where}{via}){suffix}")
    if code == pycurl.E_COULDNT_CONNECT and "proxy scheme" in detail.lower():
        return UsageError(f"unusable proxy for {where}{suffix} ({check})")
    if code == pycurl.E_COULDNT_CONNECT and proxy is not None:
        # (libcurl names the server's host and port and the proxy's host alone)
        reason = detail.rpartition(": ")[2] or "no reason given"
        err = TransientError(f"could not connect to {the_url} for {where}: {reason} ({check})")
        err.max_retries = CONNECT_RETRIES
        # (said once for the files it failed, whichever their URLs)
        err.shared = f"failed: could not connect to {the_url}: {reason} ({check})"
        return err
    if code == pycurl.E_COULDNT_CONNECT:
        # nobody listens there: a server restarting gets two quick retries, a mistyped
        # host or port fails within a second or two (wget and curl do not retry at all)
        err = TransientError(f"could not connect ({where}){suffix}")
        err.max_retries = CONNECT_RETRIES
        err.unreached = True
        return err
    if "alert certificate required" in detail.lower():
        # (TLS 1.3 says it after the handshake: at the first read, as if the connection
        # failed; every try would get the same)
        return RemoteError(
            f"{where} wants a TLS client certificate, which omniget does not send{suffix}"
        )
    if code == pycurl.E_SSL_CONNECT_ERROR:
        if any(sign in detail.lower() for sign in _TLS_REFUSED):
            hint = " (is it a plain http:// server?)" if "wrong version" in detail else ""
            return RemoteError(f"TLS handshake refused by {where}{suffix}{hint}")
        err = TransientError(f"TLS handshake failed ({where}{via}){suffix}")
        err.max_retries = CONNECT_RETRIES  # (a reset mid-handshake may pass on a retry)
        return err
    if code == _TOO_LARGE or (code == pycurl.E_RECV_ERROR and "too large" in detail.lower()):
        return RemoteError(f"the answer's head is too large ({where}){suffix}")
    if code in _CONNECTION:
        return TransientError(f"connection failed ({where}{via}){suffix}")
    if code == pycurl.E_BAD_CONTENT_ENCODING and "unrecognized" in detail.lower():
        said = f" ({coding})" if coding else ""
        return RemoteError(f"the server sent a Content-Encoding omniget cannot undo{said}, "
                           f"though it asks for none ({where})")
    if code == pycurl.E_BAD_CONTENT_ENCODING:  # the encoded stream failed its own check
        return IntegrityError(f"could not decode the body ({where}){suffix}")
    return TransientError(f"transfer failed, curl error {code} ({where}){suffix}")


def _tls_hint(detail: str, of_proxy: bool = False, ca_from: str = SYSTEM_CAS) -> str:
    """What may help with a certificate that failed the check (``of_proxy``: the proxy's;
    ``ca_from``: what chose the CAs trusted): trusting its CA helps only when the CA is
    what is unknown (OpenSSL names the issuer, or a self-signed one), and a --ca-cert
    given without it is named, not asked for. A check the certificate itself fails (too
    weak a key, not for servers) is left to OpenSSL's words."""
    low = detail.lower()
    if "expired" in low:
        why = "it has expired (is the clock right?)"
    elif "not yet valid" in low:
        why = "it is not valid yet (is the clock right?)"
    elif "subject name" in low or "does not match" in low or "mismatch" in low:
        why = "it was issued for another name"
    elif detail and not any(sign in low for sign in _UNKNOWN_CA):
        return "--insecure skips the check"
    elif of_proxy:
        return PROXY_CA_HINT
    elif ca_from in ("CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        return (f"its CA is not among those {ca_from} names; pass --ca-cert FILE to trust"
                " its CA, or --insecure to skip verification")
    elif ca_from == SYSTEM_CAS:
        return "pass --ca-cert FILE to trust its CA, or --insecure to skip verification"
    elif ca_from.startswith("set "):  # (the setting, from a config file or a variable)
        why = f"its CA is not in {named_setting('ca-cert', ca_from)}"
    else:
        why = f"its CA is not among those {ca_from} names"
    return f"{why}; --insecure skips the check"


# OpenSSL's words for a chain that ends at no trusted CA
_UNKNOWN_CA = ("issuer", "self-signed", "self signed", "first certificate", "trust")


def _socks_refused(refused: int, where: str, suffix: str, login: str) -> Exception:
    """A SOCKS proxy's handshake for ``where`` failed, ``refused`` saying why (``login``:
    what to do when it is the login)."""
    if refused in _SOCKS_LOGIN:
        why = f" ({suffix[2:].rstrip('.')})" if suffix else ""
        return AuthRequired(f"the SOCKS proxy refused the login for {where}{why}: {login}",
                            url=where)
    if refused in _SOCKS_NEVER:
        return RemoteError(f"the SOCKS proxy will not connect to {where}{suffix}")
    if refused == _SOCKS_CONNECTION_REFUSED:
        err = TransientError(f"the proxy could not connect to {where}: connection refused")
        err.max_retries = CONNECT_RETRIES  # (as a server refusing omniget itself)
        return err
    return TransientError(f"connection through the SOCKS proxy failed ({where}){suffix}")


def _tunnel_refused(status: int, where: str, login: str) -> Exception:
    """The proxy answered the CONNECT for an https URL with ``status``, not 2xx
    (``login``: what to do about a 407)."""
    text = f"the proxy refused the tunnel to {where} (HTTP {status})"
    if status == 407:
        return AuthRequired(f"{text}: {login}", url=where)
    if status in (401, 403):
        return AuthRequired(text, url=where)
    if status in (408, 429) or status >= 500:
        return TransientError(text, status=status)
    return RemoteError(text, status=status)


#: The statuses a proxy answers with itself when it cannot get the server's answer.
PROXY_STATUSES = frozenset({502, 503, 504})


def proxy_answer(error: TransferError, headers: Headers, named: str) -> None:
    """Say in ``error`` (a 502, 503 or 504 to an http:// request that went through the
    proxy ``named``: the user's words, password masked) whose answer it was: the proxy's
    own when its Proxy-Status (RFC 9209) has an ``error`` and no ``received-status``,
    or Squid's error page says so (X-Squid-Error); the server's, passed on, when that
    Proxy-Status has a ``received-status``; else either (a Via is on both, and a
    proxy's page is no sign: the body is not read)."""
    status = error.status
    prefix = f"HTTP {status} from "
    if status not in PROXY_STATUSES or not error.message.startswith(prefix):
        return
    the_proxy = f"the proxy {named}" if named else "the proxy"
    evidence = _proxy_error(headers)
    if evidence == "":  # the server's, passed on by the proxy
        return
    if evidence is None:
        error.message += f" (through {the_proxy}: its own answer or the server's)"
        return
    rest = error.message[len(prefix):]
    error.message = f"{prefix}{the_proxy}, not the server, for {rest} ({evidence})"


def _proxy_error(headers: Headers) -> str | None:
    """What says the proxy made the answer itself; "" when its Proxy-Status says it
    passed on the server's; None when nothing says."""
    squid = headers.get("x-squid-error")
    if squid:  # (its words only as Squid writes them: "ERR_CONNECT_FAIL 111")
        words = re.fullmatch(r"ERR_[A-Z0-9_]{1,60}(?: -?[0-9]{1,6})?", squid.strip())
        return f"X-Squid-Error: {words[0]}" if words else "X-Squid-Error"
    said = headers.get_all("proxy-status")
    if not said:
        return None
    # (members apart at commas outside quotes; the last is the proxy nearest to us)
    members = re.findall(r'(?:[^,"]|"(?:[^"\\]|\\.)*")+', ",".join(said))
    last = members[-1] if members else ""
    params = dict(
        (k.strip().lower(), v.strip())
        for k, _, v in (p.partition("=") for p in re.findall(
            r'(?:[^;"]|"(?:[^"\\]|\\.)*")+', last)[1:])
    )
    if "received-status" in params:
        return ""
    error = params.get("error", "")
    if re.fullmatch(r"[a-z][a-z0-9_.*-]{0,63}", error):
        return f"Proxy-Status: error={error}"
    return None
