from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from omniget.engine.transports.base import Headers
from omniget.engine.verify import StreamHasher, digests_from_headers, file_digest, hashlib_name
from omniget.errors import StorageError
from omniget.model import Digest

BODY = b"hello omniget\n" * 100
SHA256 = hashlib.sha256(BODY)
SHA512 = hashlib.sha512(BODY)
MD5 = hashlib.md5(BODY)
SHA1 = hashlib.sha1(BODY)


def b64(h: hashlib._Hash) -> str:
    return base64.b64encode(h.digest()).decode()


def digests(headers: dict[str, str], status: int = 200, decoded: bool = False) -> list[Digest]:
    return digests_from_headers(headers, status=status, decoded=decoded)


def test_repr_digest_structured() -> None:
    got = digests({"Repr-Digest": f"sha-256=:{b64(SHA256)}:, sha-512=:{b64(SHA512)}:"})
    assert got == [Digest("sha512", SHA512.hexdigest()), Digest("sha256", SHA256.hexdigest())]


def test_repr_digest_valid_for_partial_responses() -> None:
    got = digests({"repr-digest": f"sha-256=:{b64(SHA256)}:"}, status=206)
    assert got == [Digest("sha256", SHA256.hexdigest())]


def test_repr_digest_with_params_and_unknown_algorithms() -> None:
    value = f"unixsum=:AAAA:, sha-256=:{b64(SHA256)}:;foo=1, crc32c=:AAAAAA==:"
    assert digests({"Repr-Digest": value}) == [Digest("sha256", SHA256.hexdigest())]


def test_repr_digest_without_padding() -> None:
    value = f"sha-256=:{b64(SHA256).rstrip('=')}:"
    assert digests({"Repr-Digest": value}) == [Digest("sha256", SHA256.hexdigest())]


def test_legacy_digest_header() -> None:
    value = f"SHA-256={b64(SHA256)}, MD5={b64(MD5)},SHA={b64(SHA1)}"
    assert digests({"Digest": value}, status=206) == [
        Digest("sha256", SHA256.hexdigest()),
        Digest("sha1", SHA1.hexdigest()),
        Digest("md5", MD5.hexdigest()),
    ]


def test_a_legacy_digest_written_as_rfc_9530_s_byte_sequence_is_read() -> None:
    """``Digest: sha-256=:B64:`` (a server mixing the two forms): the value between the
    colons is the digest. Before, it was skipped, and a file it called wrong was kept."""
    value = f"sha-256=:{b64(SHA256)}:, md5 = :{b64(MD5)}:"
    assert digests({"Digest": value}) == [
        Digest("sha256", SHA256.hexdigest()), Digest("md5", MD5.hexdigest())
    ]


def test_hex_values_are_accepted() -> None:
    assert digests({"Digest": f"sha-256={SHA256.hexdigest().upper()}"}) == [
        Digest("sha256", SHA256.hexdigest())
    ]
    assert digests({"Content-MD5": MD5.hexdigest()}) == [Digest("md5", MD5.hexdigest())]


def test_content_md5_only_for_whole_identity_bodies() -> None:
    h = {"Content-MD5": b64(MD5)}
    assert digests(h) == [Digest("md5", MD5.hexdigest())]
    assert digests(h, status=206) == []
    assert digests(h, decoded=True) == []


def test_content_digest_only_for_200() -> None:
    h = {"Content-Digest": f"sha-256=:{b64(SHA256)}:"}
    assert digests(h) == [Digest("sha256", SHA256.hexdigest())]
    assert digests(h, status=206) == []


def test_decoded_bodies_have_no_usable_digest() -> None:
    # Repr-Digest and Digest hash the content-coded bytes, not what we save.
    h = {"Repr-Digest": f"sha-256=:{b64(SHA256)}:", "Digest": f"MD5={b64(MD5)}"}
    assert digests(h, decoded=True) == []


@pytest.mark.parametrize(
    "headers",
    [
        {"Repr-Digest": "sha-256=:not base64!:"},
        {"Repr-Digest": f"sha-256={b64(SHA256)}"},  # not a byte sequence
        {"Repr-Digest": "sha-256=:AAAA:"},  # wrong length
        {"Repr-Digest": ":::,,,=="},
        {"Digest": "SHA-256"},
        {"Digest": "SHA-256=, =abc"},
        {"Digest": f"md4={b64(MD5)}"},
        {"Content-MD5": "zzz"},
        {"Content-MD5": b64(SHA256)},  # base64 of the wrong size
        {"Content-Type": "text/plain"},
        {},
    ],
)
def test_malformed_values_are_skipped(headers: dict[str, str]) -> None:
    assert digests(headers) == []


def test_duplicates_are_folded_and_conflicts_kept() -> None:
    other = hashlib.sha256(b"other").hexdigest()
    h = Headers(
        [
            ("Repr-Digest", f"sha-256=:{b64(SHA256)}:"),
            ("Digest", f"SHA-256={b64(SHA256)}"),
            ("Digest", f"SHA-256={other}"),
        ]
    )
    assert digests_from_headers(h, status=200, decoded=False) == [
        Digest("sha256", SHA256.hexdigest()),
        Digest("sha256", other),
    ]


@given(st.dictionaries(st.sampled_from(["Repr-Digest", "Digest", "Content-MD5"]), st.text()))
def test_never_raises(headers: dict[str, str]) -> None:
    for d in digests(headers):
        assert isinstance(d, Digest)


# --- hashing files and streams ---


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    p = tmp_path / "data.bin"
    p.write_bytes(bytes(range(256)) * 1000)
    return p


@pytest.mark.parametrize("algo", ["md5", "sha1", "sha256", "SHA-256", "sha512", "sha3-256"])
def test_file_digest_whole(data_file: Path, algo: str) -> None:
    data = data_file.read_bytes()
    want = hashlib.new(hashlib_name(algo), data).hexdigest()
    assert file_digest(data_file, algo) == want
    assert file_digest(data_file, algo, bufsize=7) == want


@given(st.integers(0, 256_100), st.integers(0, 256_100), st.integers(1, 5000))
def test_file_digest_ranges(start: int, length: int, bufsize: int) -> None:
    path = Path(__file__)
    data = path.read_bytes()
    end = start + length
    assert file_digest(path, "md5", start, end, bufsize) == hashlib.md5(data[start:end]).hexdigest()
    assert file_digest(path, "sha1", start, None, bufsize) == hashlib.sha1(data[start:]).hexdigest()


def test_file_digest_empty_range(data_file: Path) -> None:
    assert file_digest(data_file, "md5", 10, 10) == hashlib.md5(b"").hexdigest()
    assert file_digest(data_file, "md5", 10, 5) == hashlib.md5(b"").hexdigest()


def test_file_digest_errors(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=r"missing\.bin"):
        file_digest(tmp_path / "missing.bin", "md5")
    with pytest.raises(ValueError, match="unsupported"):
        file_digest(tmp_path / "missing.bin", "crc99")


def test_stream_hasher() -> None:
    h = StreamHasher("SHA-256")
    assert h.algo == "sha256"
    for i in range(0, len(BODY), 333):
        h.update(memoryview(BODY)[i : i + 333])
    assert h.hexdigest() == SHA256.hexdigest()
    assert h.matches(Digest("sha256", SHA256.hexdigest()))
    assert not h.matches(Digest("md5", MD5.hexdigest()))
    m = StreamHasher.for_digest(Digest("md5", MD5.hexdigest()))
    m.update(bytearray(BODY))
    assert m.matches(Digest("md5", MD5.hexdigest()))
    with pytest.raises(ValueError):
        StreamHasher("nope")
