"""The TLS trust store: which CA certificates libcurl is given (``--ca-cert``, else the
``CURL_CA_BUNDLE`` / ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` variables, as curl takes them,
else the system's bundle), and the error when a variable names a file that is not there
(:func:`missing_ca`, :func:`check_ca`: said once, before a run that needs TLS, and a run
of http:// URLs only is not touched, as curl does not read them there)."""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterable

from ...errors import UsageError
from ...model import Item
from ...settings import NetworkSettings

__all__ = ["ca_locations", "ca_trust", "check_ca", "missing_ca"]

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
    """:func:`ca_locations` and what chose them (for a message when they cannot be read)."""
    if settings.ca_cert:
        if os.path.isdir(settings.ca_cert):
            return None, settings.ca_cert, "--ca-cert"
        if not os.path.isfile(settings.ca_cert):
            raise UsageError(f"--ca-cert {settings.ca_cert}: no such file or folder")
        return settings.ca_cert, None, "--ca-cert"
    bundle = os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        return bundle, None, "CURL_CA_BUNDLE"
    cert_dir = os.environ.get("SSL_CERT_DIR") or None  # (curl: its --capath)
    cert_file = os.environ.get("SSL_CERT_FILE")
    if cert_file:
        return cert_file, cert_dir, "SSL_CERT_FILE"
    system = "the system's CA certificates"
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, *_KNOWN_BUNDLES):
        if candidate and os.path.isfile(candidate):
            return candidate, cert_dir, system
    capath = cert_dir or paths.capath
    if capath and os.path.isdir(capath):
        return None, capath, system
    return None, None, system


def missing_ca(settings: NetworkSettings) -> str | None:
    """What is wrong when a CA file variable :func:`ca_trust` takes names a file that is
    not there (None: nothing; ``--ca-cert`` and ``--insecure`` mean none is read). A
    missing ``SSL_CERT_DIR`` is not: as in curl it adds nothing (OpenSSL also takes a
    ``:``-separated list of folders there), and the file or the system's bundle still
    counts."""
    if settings.insecure or settings.ca_cert:
        return None
    bundle = os.environ.get("CURL_CA_BUNDLE")
    name = "CURL_CA_BUNDLE" if bundle else "SSL_CERT_FILE"
    path = bundle or os.environ.get("SSL_CERT_FILE")
    if path and not os.path.isfile(path):
        return (f"{name}={path}: no such file (it names the CA certificates to trust"
                " for https://; fix or unset it)")
    return None


def check_ca(settings: NetworkSettings, entries: Iterable[Item | str]) -> None:
    """UsageError, :func:`missing_ca`'s, when any of ``entries`` is an https:// URL."""
    problem = missing_ca(settings)
    if problem is None:
        return
    for entry in entries:
        url = entry.download_url if isinstance(entry, Item) else entry
        if isinstance(url, str) and url[:8].lower() == "https://":
            raise UsageError(problem)
