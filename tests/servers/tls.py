"""A throw-away certificate authority and server certificate for HTTPS tests (``trustme``).

The server certificate covers ``127.0.0.1``, ``::1``, ``localhost`` and the test names
in :data:`NAMES`; any other name (``wrong.test``, say) fails hostname checking, and a client
without ``ca_path`` fails chain checking. Both are what the "TLS is verified" tests need.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["JSSE_ALERT", "NAMES", "TLSFiles", "answer_plain", "make_tls"]

#: What Java's TLS server (JSSE, OpenJDK 17) sent a plain ``GET`` on its TLS port before it
#: closed: a fatal alert record (TLS 1.2, unexpected_message). An OpenSSL server (Python's
#: ssl, nginx's TLS layer) sends no byte: it closes, with a reset.
JSSE_ALERT = b"\x15\x03\x03\x00\x02\x02\x0a"

NAMES = ("127.0.0.1", "::1", "localhost", "files.test", "cdn.test", "api.test", "other.test")


@dataclass(frozen=True)
class TLSFiles:
    """PEM files: the CA to trust, the server chain and its key."""

    ca_path: Path
    cert_path: Path
    key_path: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert_path, self.key_path)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_path))


def make_tls(directory: Path, names: Sequence[str] = NAMES) -> TLSFiles:
    """Write ``ca.pem``, ``server.pem`` (leaf + chain) and ``server.key`` into ``directory``."""
    import trustme

    ca = trustme.CA(organization_name="omniget test CA")
    leaf = ca.issue_cert(*names)
    files = TLSFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    ca.cert_pem.write_to_path(str(files.ca_path))
    files.cert_path.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(files.key_path))
    files.key_path.chmod(0o600)
    return files


def answer_plain(sock: socket.socket, answer: bytes | None) -> bool:
    """For a connection to a TLS port whose server answers a client that begins no TLS
    handshake (its first byte is no handshake record's) with ``answer``, as JSSE does
    (:data:`JSSE_ALERT`): True if it was such a client, and it got ``answer``, the
    close, and its request read (so no reset cuts the answer). ``answer`` None: False,
    nothing read (the TLS stack has its say: OpenSSL's closes)."""
    if answer is None or sock.recv(1, socket.MSG_PEEK)[:1] == b"\x16":
        return False
    sock.sendall(answer)
    sock.shutdown(socket.SHUT_WR)
    sock.settimeout(2.0)
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass
    return True
