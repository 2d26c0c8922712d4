"""A header of NetworkSettings that no request line can carry (a line break in it, a
name with a ':' or a blank) is refused when the settings are made, naming the field and
not the value (a token, maybe), as the other settings' bad text is; it failed each file
of a run instead."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tests.servers.httpd import HTTPServer

import omniget

SECRET = "s3cr3t-token"


@pytest.mark.parametrize(
    "pair",
    [("Authorization", f"Bearer {SECRET}\r\nX-Evil: 1"), ("X-A", f"{SECRET}\nEvil: 1"),
     ("X-A", f"{SECRET}\rEvil"), (f"X-{SECRET}\r\nEvil", "1"), (f"X-{SECRET}: a", "b"),
     (f"X {SECRET}", "b"), ("", SECRET)],
    ids=["crlf-value", "lf-value", "cr-value", "crlf-name", "colon-name", "blank-name",
         "no-name"],
)
def test_a_header_no_request_can_carry_fails_when_made(
    httpd: HTTPServer, tmp_path: Path, pair: tuple[str, str]
) -> None:
    with pytest.raises(ValueError, match=re.escape("NetworkSettings(headers=...) takes")) as err:
        omniget.NetworkSettings(headers=(pair,))
    said = str(err.value)
    assert SECRET not in said and "Evil" not in said and "\n" not in said, said
    # the same pair in one item's headers still fails that file alone, at its request
    url = httpd.add(httpd.new_path("a.bin"), b"a" * 10)
    item = omniget.Item(url, headers={pair[0]: pair[1]})
    settings = omniget.Settings(state_dir=tmp_path / "state", retries=0)
    [result] = omniget.download([item], tmp_path / "out", settings=settings).results
    assert isinstance(result.error, omniget.UsageError) and httpd.requests == []
