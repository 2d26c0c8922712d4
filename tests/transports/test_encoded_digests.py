"""A digest the server sent of a content-encoded body (Content-MD5 of the gzip bytes, a
Repr-Digest of the gzip representation) is checked against the encoded bytes as they
arrive, on libcurl's transfers and on the pipelined connections alike."""

from __future__ import annotations

import base64
import gzip
import hashlib
import socket

import pytest

from omniget.engine.transports.decode import Checked, decoder_for, end_of
from omniget.engine.verify import encoded_digests
from omniget.errors import IntegrityError
from omniget.model import Digest

from ._http_kit import get
from ._pool_kit import BAD_ENCODING, fetch_one_conn, ok, send, want
from ._server import Req, Server, reply

TEXT = b"".join(f"line {i} of an encoded body\n".encode() for i in range(3000))
PACKED = gzip.compress(TEXT, mtime=0)


def b64(algo: str, data: bytes) -> str:
    return base64.b64encode(hashlib.new(algo, data).digest()).decode()


GOOD_MD5 = ("Content-MD5", b64("md5", PACKED))
BAD_MD5 = ("Content-MD5", b64("md5", PACKED + b"x"))
GOOD_REPR = ("Repr-Digest", f"sha-256=:{b64('sha256', PACKED)}:")
BAD_REPR = ("Repr-Digest", f"sha-256=:{b64('sha256', TEXT)}:")  # of the decoded bytes


# ----- which headers speak of the encoded bytes ----------------------------------------


def test_encoded_digests_take_the_body_digests_and_on_a_200_the_representation_s() -> None:
    headers = dict([GOOD_REPR, GOOD_MD5])
    sha = Digest("sha256", hashlib.sha256(PACKED).hexdigest())
    md5 = Digest("md5", hashlib.md5(PACKED).hexdigest())
    assert encoded_digests(headers, status=200) == [sha, md5]
    # a part: the representation's digest is of the whole, not of this body
    assert encoded_digests({GOOD_REPR[0]: GOOD_REPR[1]}, status=206) == []
    assert encoded_digests({GOOD_MD5[0]: GOOD_MD5[1]}, status=206) == [md5]


def test_a_checked_decoder_decodes_and_names_the_failing_digest() -> None:
    good = Digest("md5", hashlib.md5(PACKED).hexdigest())
    dec = decoder_for("gzip", [good])
    assert isinstance(dec, Checked)
    out = b"".join(dec.decompress(PACKED[i : i + 1000]) for i in range(0, len(PACKED), 1000))
    rest, why = end_of(dec)
    assert (out + rest, why) == (TEXT, None)

    bad = Digest("md5", "0" * 32)
    dec = decoder_for("gzip", [bad])
    assert dec is not None
    dec.decompress(PACKED)
    rest, why = end_of(dec)
    assert rest == b"" and why is not None and "md5" in why and "0" * 32 in why
    assert not isinstance(decoder_for("gzip"), Checked)  # no digest: nothing to hash


# ----- libcurl's transfers ---------------------------------------------------------------


def _route(srv: Server, *headers: tuple[str, str]) -> str:
    def handle(req: Req, sock: socket.socket) -> None:
        reply(sock, 200, PACKED, [("Content-Encoding", "gzip"), *headers])

    srv.route("/z", handle)
    return srv.url("/z")


@pytest.mark.parametrize("header", [GOOD_MD5, GOOD_REPR], ids=["content-md5", "repr-digest"])
def test_libcurl_a_matching_digest_of_the_encoded_bytes_passes(
    srv: Server, header: tuple[str, str]
) -> None:
    head, sink = get(_route(srv, header))
    assert head.decoded and bytes(sink.data) == TEXT


@pytest.mark.parametrize("header", [BAD_MD5, BAD_REPR], ids=["content-md5", "repr-digest"])
def test_libcurl_a_digest_the_encoded_bytes_fail_is_an_integrity_error(
    srv: Server, header: tuple[str, str]
) -> None:
    algo = "md5" if header[0] == "Content-MD5" else "sha256"
    with pytest.raises(IntegrityError, match=f"fails its {algo}"):
        get(_route(srv, header))


# ----- pipelined connections -------------------------------------------------------------


def _packed_answer(*headers: tuple[str, str]) -> bytes:
    lines = [f"{k}: {v}" for k, v in headers]
    return ok(PACKED, "Content-Encoding: gzip", *lines)


def test_pipelined_a_matching_digest_of_the_encoded_bytes_passes(srv: Server) -> None:
    srv.route("/z", send(_packed_answer(GOOD_MD5, GOOD_REPR)))
    z, after = fetch_one_conn(srv, "/z", "/after")
    assert bytes(z.body) == TEXT
    assert bytes(after.body) == want("/after")


def test_pipelined_a_failing_digest_fails_that_answer_and_the_connection_goes_on(
    srv: Server,
) -> None:
    srv.route("/z", send(_packed_answer(BAD_MD5)))
    _, after = fetch_one_conn(srv, "/z", "/after", codes=[BAD_ENCODING, 0])
    assert bytes(after.body) == want("/after")
    assert srv.connections == 1
