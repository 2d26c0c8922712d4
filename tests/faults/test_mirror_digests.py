"""Mirrors that serve other bytes of the same size: the item's digest catches them, the
mirror is left, and the file is finished from the others."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest
from tests.faults.test_http_faults import fetch, files
from tests.servers.httpd import HTTPServer

from omniget import IntegrityError
from omniget.engine.events import Warned
from omniget.model import Digest, Item

MiB = 1 << 20


def sha256(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


@pytest.mark.parametrize("split", [1, 4])
@pytest.mark.parametrize("order", ["bad-first", "bad-last"])
def test_a_mirror_with_other_bytes_of_the_same_size_is_left(
    httpd: HTTPServer, tmp_path: Path, split: int, order: str
) -> None:
    """Before, every try mixed the bad mirror's bytes in again (or took them all from it):
    the file failed, "the server sends the same bytes each time: is the checksum right?"."""
    data = random.Random(1).randbytes(3 * MiB)
    good = httpd.add(httpd.new_path("g.bin"), data)
    other = httpd.new_path("b.bin")
    bad = httpd.add(other, random.Random(2).randbytes(3 * MiB))
    missing = httpd.url(httpd.new_path("gone.bin"))
    urls = (bad, missing, good) if order == "bad-first" else (good, missing, bad)
    item = Item(urls[0], mirrors=urls[1:], filename="m.bin", digest=sha256(data))
    report, events, out = fetch("", tmp_path, item=item, split=split)
    assert report.exit_code == 0, report.failures
    assert (out / "m.bin").read_bytes() == data
    assert files(out) == ["m.bin"]
    said = " ".join(e.message for e in events if isinstance(e, Warned))
    assert "sha256 mismatch" in said or order == "bad-last"


def test_mirrors_that_all_send_other_bytes_fail_saying_so(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    data = random.Random(1).randbytes(1 * MiB)
    urls = [httpd.add(httpd.new_path("b.bin"), random.Random(n).randbytes(MiB)) for n in (2, 3)]
    item = Item(urls[0], mirrors=(urls[1],), filename="m.bin", digest=sha256(data))
    report, events, out = fetch("", tmp_path, item=item, split=4)
    [result] = report.results
    assert isinstance(result.error, IntegrityError)
    assert "each of its 2 URLs" in str(result.error)
    assert "m.bin" not in files(out)
    # from both at once (or from the first alone, if it sent every byte), then from each
    # alone: three downloads at most
    again = [e.message for e in events if isinstance(e, Warned) and "alone" in e.message]
    assert 1 <= len(again) <= 2, again


def test_mirrors_that_agree_on_bytes_that_miss_the_checksum_are_not_each_asked(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """The same bytes from all of them at once, then from one alone: the checksum is what
    is wrong (as with one URL, the file fails after its second download)."""
    data = random.Random(1).randbytes(1 * MiB)
    urls = [httpd.add(httpd.new_path("b.bin"), data) for _ in range(3)]
    item = Item(urls[0], mirrors=tuple(urls[1:]), filename="m.bin",
                digest=Digest("sha256", "0" * 64))
    report, events, _ = fetch("", tmp_path, item=item, split=4)
    [result] = report.results
    assert isinstance(result.error, IntegrityError)
    assert "twice" in str(result.error) and "checksum" in str(result.error)
    assert len([e for e in events if isinstance(e, Warned) and "mismatch" in e.message]) == 1


@pytest.mark.parametrize("stream", [False, True])
def test_an_item_s_secret_headers_go_to_its_own_origin_only(
    httpd: HTTPServer, tmp_path: Path, stream: bool
) -> None:
    """A mirror on another origin (here another host name for the same server) gets the
    item's headers without its secrets (Authorization, Cookie, its secret_headers), as a
    redirect there would; a mirror of the same origin gets them all (before: all, always)."""
    import io

    import omniget

    data = random.Random(3).randbytes(64 * 1024)
    gone, same, path = (httpd.new_path(n) for n in ("gone.bin", "same.bin", "m.bin"))
    httpd.add(path, data)
    headers = {"Authorization": "Bearer A", "Cookie": "c=1", "X-Token": "T", "Referer": "r"}
    item = Item(
        httpd.url(gone), mirrors=(httpd.url(same), httpd.url(path, host="localhost")),
        filename="m.bin", headers=headers, secret_headers=("X-Token",),
    )
    if stream:
        out = io.BytesIO()
        assert omniget.stream(item, out) == len(data)
        assert out.getvalue() == data
    else:
        report, _, out_dir = fetch("", tmp_path, item=item)
        assert report.exit_code == 0, report.failures
        assert (out_dir / "m.bin").read_bytes() == data
    for p in (gone, same):
        [asked] = httpd.requests_to(p)
        assert {k: asked.headers.get(k) for k in headers} == headers
    for asked in httpd.requests_to(path):
        assert asked.headers.get("Referer") == "r"
        assert [k for k in ("Authorization", "Cookie", "X-Token") if asked.headers.get(k)] == []
