"""A long URL list extracted by the CLI (``list``, ``--dry-run``, ``-O``): one loop and one
set of transports for the whole command, each URL still lazy, in order, with its own
options and its own failure."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Generator
from pathlib import Path
from typing import Any

import pytest
from tests.servers.httpd import HTTPServer

import omniget.drive
import omniget.listing
from omniget import Item
from omniget.cli import main
from omniget.errors import AuthRequired
from omniget.settings import Settings
from omniget.sources.base import Source

pytestmark = pytest.mark.isolated


class PagedSource(Source):
    """Lists the lines of the page at its URL (a request: no items at once); a URL with
    "bad" in it fails after its request. The option ``tag`` names the items' folder."""

    name = "paged"
    patterns = (r"^http://127\.0\.0\.1:\d+/paged/",)
    option_names = ("tag",)

    async def items(self) -> AsyncIterator[Item]:
        page = await self.ctx.http.request(self.url)
        if "warn" in self.url:  # (as a source's own warning: logged under "omniget")
            logging.getLogger("omniget.sources.paged").warning("page %s is cut short", self.url)
        if "bad" in self.url:
            raise AuthRequired("needs a token")
        for line in page.text.split():
            yield Item(download_url=f"{self.url}/{line}", path=f"{self.options['tag']}/{line}",
                       source=self.name)


@pytest.fixture
def paged(monkeypatch: pytest.MonkeyPatch, httpd: HTTPServer) -> Callable[[str], str]:
    """Adds the paged source; its function serves a page of two lines, by name."""
    import omniget.sources as registry

    builtin = registry.source_classes()
    monkeypatch.setattr(registry, "source_classes", lambda: (PagedSource, *builtin))

    def page(name: str) -> str:
        return httpd.add(f"/paged/{name}", f"{name}-1\n{name}-2\n".encode())

    return page


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many event loops and sets of transports the extraction makes."""
    made = {"loops": 0, "transports": 0}
    new_loop, transports = asyncio.new_event_loop, omniget.drive.default_transports

    def count_loop() -> asyncio.AbstractEventLoop:
        made["loops"] += 1
        return new_loop()

    def count_transports(settings: Settings) -> Any:
        made["transports"] += 1
        return transports(settings)

    monkeypatch.setattr(asyncio, "new_event_loop", count_loop)
    monkeypatch.setattr(omniget.listing, "default_transports", count_transports)
    return made


def test_a_url_list_is_listed_on_one_loop_and_one_set_of_transports(
    paged: Callable[[str], str], built: dict[str, int], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``omniget list`` of 30 plain links and 4 paged URLs (one failing). Before: an event
    loop and a set of transports per URL (34 each, ~0.5 ms per URL); now one of each, the
    plain links' items known without any loop."""
    monkeypatch.setenv("OMNIGET_PAGED_TAG", "t")
    plain = [f"http://127.0.0.1:9/f{n}.bin" for n in range(30)]
    pages = [paged("a"), paged("bad"), paged("b"), paged("c")]
    urls = [*plain[:10], *pages[:2], *plain[10:20], *pages[2:], *plain[20:]]
    assert main(["list", *urls]) == 5
    out, err = capsys.readouterr()
    paths = [line.split("\t")[0] for line in out.splitlines()]
    assert paths == [*(f"f{n}.bin" for n in range(10)), "t/a-1", "t/a-2",
                     *(f"f{n}.bin" for n in range(10, 20)), "t/b-1", "t/b-2", "t/c-1", "t/c-2",
                     *(f"f{n}.bin" for n in range(20, 30))]
    assert err == f"omniget: error: {pages[1]}: needs a token\n"
    assert built == {"loops": 1, "transports": 1}


def test_plain_links_alone_need_no_loop(
    built: dict[str, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--dry-run -i`` of 200 plain links: one set of transports, no loop (was 200 each)."""
    urls = tmp_path / "urls.txt"
    urls.write_text("".join(f"http://127.0.0.1:9/f{n}.bin\n" for n in range(200)))
    assert main(["--dry-run", "--json", "-o", "dl", "-i", str(urls)]) == 0
    assert capsys.readouterr().out.count('"action": "write"') == 200
    assert built == {"loops": 0, "transports": 1}


def test_each_listing_is_lazy_and_none_goes_on_once_left(
    paged: Callable[[str], str], httpd: HTTPServer
) -> None:
    """No request before an item is asked for, none for the next URL before the last one's
    items are taken, none once the listing is left."""
    first, second = paged("a"), paged("b")
    httpd.clear_log()
    found: Generator[tuple[str | Item, object], None, None] = omniget.listing.extract_each(
        [first, second], source=None, settings=Settings(), source_options={"paged": {"tag": "x"}}
    )
    assert httpd.requests == []
    entry, item = next(found)
    assert entry == first and isinstance(item, Item) and item.output_path == "x/a-1"
    assert [r.path for r in httpd.requests] == ["/paged/a"]
    next(found)
    assert [r.path for r in httpd.requests] == ["/paged/a"]
    found.close()
    assert [r.path for r in httpd.requests] == ["/paged/a"]


@pytest.mark.parametrize("flag", ["", "-q"])
def test_list_json_tells_its_warnings_as_events(
    paged: Callable[[str], str], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], flag: str,
) -> None:
    """The CLI's warnings (--insecure) and the library's (a source's) are ``warning``
    events, in order with the items, as in ``get --json``. Before: stderr only (and
    --insecure was said nowhere)."""
    monkeypatch.setenv("OMNIGET_PAGED_TAG", "t")
    page = paged("warn")
    flags = [flag] if flag else []
    assert main(["list", *flags, "--json", "--insecure", page]) == 0
    out, err = capsys.readouterr()
    events = [json.loads(line) for line in out.splitlines()]
    said = ["TLS certificates are not verified (--insecure)", f"page {page} is cut short"]
    assert [e.get("event") for e in events] == ["warning", "warning", None, None, "summary"]
    assert events[:2] == [{"event": "warning", "level": "warning", "message": m} for m in said]
    assert [e["download_url"] for e in events[2:4]] == [f"{page}/warn-1", f"{page}/warn-2"]
    assert err == ("" if flag else "".join(f"omniget: warning: {m}\n" for m in said))
