"""An item's ``size_bytes`` (what its source says) is checked against the bytes the
server sends: a file of another size is an integrity failure, never a success with the
server's size, nor a file cut down to the item's."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.faults.test_http_faults import fetch, files
from tests.servers.httpd import HTTPServer

from omniget import IntegrityError
from omniget.model import Item

KiB = 1024
QUERIES: list[dict[str, Any]] = [{}, {"chunked": 1, "norange": 1}, {"gzip": 1}]


@pytest.mark.parametrize(
    "query",
    [
        {},  # Content-Length
        {"chunked": 1},  # no length, a 206 to the ranged request
        {"chunked": 1, "norange": 1},  # no length at all, the body's own end
        {"gzip": 1},  # an encoded answer: its length is not the file's
    ],
    ids=["length", "chunked", "chunked-norange", "gzip"],
)
@pytest.mark.parametrize("said", [1000, 50 * KiB], ids=["smaller", "larger"])
def test_a_size_other_than_the_item_s_fails(
    httpd: HTTPServer,
    payload: Callable[..., bytes],
    tmp_path: Path,
    query: dict[str, Any],
    said: int,
) -> None:
    data = payload(20 * KiB, 7)
    path = httpd.new_path("s.bin")
    httpd.add(path, data)
    item = Item(httpd.url(path, **query), path="s.bin", size_bytes=said)
    report, _, out = fetch([item], tmp_path, retries=3)
    [result] = report.results
    assert result.status == "failed", (query, said)
    assert isinstance(result.error, IntegrityError), result.error
    assert "size mismatch" in str(result.error) and str(said) in str(result.error)
    assert "s.bin" not in files(out)
    assert len(httpd.requests_to(path)) <= 2  # (one retry at most: another would say the same)


def test_the_item_s_size_when_it_is_right(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    data = payload(20 * KiB, 8)
    path = httpd.new_path("s.bin")
    httpd.add(path, data)
    items = [
        Item(httpd.url(path, **q), path=f"{n}.bin", size_bytes=len(data))
        for n, q in enumerate(QUERIES)
    ]
    report, _, out = fetch(items, tmp_path)
    assert report.exit_code == 0, report.failures
    assert [r.verified for r in report.results] == ["size"] * 3
    for n in range(3):
        assert (out / f"{n}.bin").read_bytes() == data
