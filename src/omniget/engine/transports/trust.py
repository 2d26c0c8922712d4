"""The TLS trust store: which CA certificates libcurl is given (``--ca-cert``, else the
``CURL_CA_BUNDLE`` / ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` variables, as curl takes them,
else the system's bundle), and the error when a variable names a file that is not there
(:func:`missing_ca`, :func:`check_ca`: said once, before a run that needs TLS, and a run
of http:// URLs only is not touched, as curl does not read them there)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from ...errors import UsageError
from ...model import Item
from ...settings import NetworkSettings

__all__ = ["SYSTEM_CAS", "ca_locations", "ca_trust", "check_ca", "missing_ca"]

#: What chose the CAs trusted when neither the setting nor a variable did.
SYSTEM_CAS = "the system's CA certificates"

_KNOWN_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine, Arch
    "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora, RHEL
    "/etc/ssl/ca-bundle.pem",  # openSUSE
    "/etc/ssl/cert.pem",  # macOS, BSDs
)


def ca_locations(settings: NetworkSettings) -> tuple[str | None, str | None]:
    """``(cainfo, capath)`` to give libcurl; ``(None, None)`` leaves libcurl's default.

    ``settings.ca_cert`` (a file or a hashed directory), else ``CURL_CA_BUNDLE``, else
    ``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` (a hashed directory beside the file, or beside
    the system's bundle), as curl takes them, else the system's bundle. The system store is
    named explicitly: a pycurl wheel carries its own OpenSSL whose compiled-in CA path is
    often another distribution's and missing here.
    """
    cainfo, capath, _ = ca_trust(settings)
    return cainfo, capath


def ca_trust(settings: NetworkSettings) -> tuple[str | None, str | None, str]:
    """:func:`ca_locations` and what chose them (for a message when they cannot be read):
    where the setting was set (``settings.ca_cert_from``), a variable's name, or
    :data:`SYSTEM_CAS`."""
    if settings.ca_cert:
        if os.path.isdir(settings.ca_cert):
            return None, settings.ca_cert, settings.ca_cert_from
        if not os.path.isfile(settings.ca_cert):
            there = os.path.exists(settings.ca_cert)  # (a device, a FIFO)
            why = "not a file or folder" if there else "no such file or folder"
            raise UsageError(_ca_cert_said(settings, why))
        return settings.ca_cert, None, settings.ca_cert_from
    bundle = os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        return bundle, None, "CURL_CA_BUNDLE"
    cert_dir = os.environ.get("SSL_CERT_DIR") or None  # (curl: its --capath)
    cert_file = os.environ.get("SSL_CERT_FILE")
    if cert_file:
        return cert_file, cert_dir, "SSL_CERT_FILE"
    system = SYSTEM_CAS
    default_file, default_dir = _openssl_defaults()
    for candidate in (default_file, *_KNOWN_BUNDLES):
        if candidate and os.path.isfile(candidate):
            return candidate, cert_dir, system
    capath = cert_dir or default_dir
    if capath and os.path.isdir(capath):
        return None, capath, system
    return None, None, system


def _openssl_defaults() -> tuple[str, str]:
    """The CA file and folder Python's OpenSSL was built with, as
    ``ssl.get_default_verify_paths()`` gives them (its variables win), read from ``_ssl``:
    the command loads asyncio without :mod:`ssl` (``omniget.__main__``)."""
    import _ssl

    file_var, file, dir_var, folder = _ssl.get_default_verify_paths()
    return os.environ.get(file_var, file), os.environ.get(dir_var, folder)


#: What begins a PEM block libcurl takes from a CA file (OpenSSL's names).
_PEM_BLOCKS = (b"-----BEGIN CERTIFICATE-----", b"-----BEGIN TRUSTED CERTIFICATE-----",
               b"-----BEGIN X509 CERTIFICATE-----", b"-----BEGIN X509 CRL-----")


#: How far a CA file is looked through for a certificate, and in what pieces.
_PEM_LOOK = 16 << 20
_PIECE = 1 << 20


def _no_certificate(path: str) -> str | None:
    """Why a CA file has no certificate libcurl could take (a private key given by
    mistake, an empty file: every https:// transfer would fail on it), or why a folder
    has none OpenSSL can find (it looks a folder's CAs up by hashed names only). None for
    one that has, and for what is neither a file nor a folder (:func:`ca_trust` says
    that). Never opens a FIFO: it would wait for a writer. A file is read a piece at a
    time, its first 16 MiB at most."""
    if os.path.isdir(path):
        try:
            with os.scandir(path) as entries:
                if any(re.match(_HASHED, e.name) for e in entries):
                    return None
        except OSError as e:
            return e.strerror or str(e)
        return ("no hashed certificate names in this folder, where OpenSSL looks its CAs"
                " up (run openssl rehash on it, or give a PEM file)")
    if not os.path.isfile(path):
        return None
    seen = b""  # (the end of the piece before: a block's first line may cross pieces)
    try:
        with open(path, "rb") as f:
            while piece := f.read(_PIECE):
                seen = seen[-64:] + piece
                if any(block in seen for block in _PEM_BLOCKS):
                    return None
                if f.tell() >= _PEM_LOOK:  # (no bundle has pages of anything else first)
                    return f"no certificate in its first {_PEM_LOOK >> 20} MiB"
    except OSError as e:
        return e.strerror or str(e)
    return "no certificate in it"


#: A name OpenSSL looks up in a CA folder: the subject's hash, then ``.N`` (``.rN``: a CRL).
#: (compiled by re when first used: not at every start)
_HASHED = r"[0-9a-f]{8}\.r?[0-9]+$"


def missing_ca(settings: NetworkSettings) -> str | None:
    """What is wrong when a CA file variable :func:`ca_trust` takes names a file that is
    not there, a folder or a file with no certificate, or ``--ca-cert`` a file with no
    certificate or a folder without hashed names (None: nothing; with ``--ca-cert`` or
    ``--insecure`` no variable is read). A missing ``SSL_CERT_DIR`` is not: as in curl it
    adds nothing (OpenSSL also takes a ``:``-separated list of folders there), and the
    file or the system's bundle still counts."""
    if settings.insecure:
        return None
    if settings.ca_cert:
        wrong = _no_certificate(settings.ca_cert)
        if wrong == "no certificate in it":
            wrong += " (a PEM file of CA certificates is wanted)"
        return None if wrong is None else _ca_cert_said(settings, wrong)
    bundle = os.environ.get("CURL_CA_BUNDLE")
    name = "CURL_CA_BUNDLE" if bundle else "SSL_CERT_FILE"
    path = bundle or os.environ.get("SSL_CERT_FILE")
    if not path:
        return None
    if os.path.isdir(path):
        why: str | None = "a folder, not a file"
    elif not os.path.isfile(path):
        why = "no such file"
    else:
        why = _no_certificate(path)
    if why is None:
        return None
    return (f"{name}={path}: {why} (it names the CA certificates to trust for https://;"
            " fix or unset it)")


def _ca_cert_said(settings: NetworkSettings, why: str) -> str:
    """``--ca-cert FILE: why``, or ``ca-cert FILE: why (set in config file ...)`` for one
    set there or by a variable."""
    where = settings.ca_cert_from
    if where.startswith("set "):
        return f"ca-cert {settings.ca_cert}: {why} ({where})"
    return f"{where} {settings.ca_cert}: {why}"


def check_ca(settings: NetworkSettings, entries: Iterable[Item | str]) -> None:
    """UsageError, :func:`missing_ca`'s, when any of ``entries`` is an https:// URL."""
    problem = missing_ca(settings)
    if problem is None:
        return
    for entry in entries:
        url = entry.download_url if isinstance(entry, Item) else entry
        if isinstance(url, str) and url.lstrip()[:8].lower() == "https://":  # (as taken)
            raise UsageError(problem)  # (where the setting was set is in it)
