"""Items whose URLs expire, extracted first and downloaded later (Megaloader's flow:
extract, filter, download): the source that made them refreshes them in the download run.
Against a real local server whose file URLs carry a token, refused (403) once old."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import itertools
import json
import os
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from tests.servers.httpd import HTTPServer
from tests.servers.wire import LoggedRequest

import omniget
from omniget.cli import main
from omniget.engine import Engine
from omniget.model import Item
from omniget.sources.base import Reach, Source

PASSWORD = "pw"
#: Each album's files.
ALBUMS = {"x": ("a.bin", "b.bin"), "y": ("a.bin", "b.bin"), "one": ("a.bin",)}


def data(album: str, name: str) -> bytes:
    """The bytes of a file: each its own."""
    return f"{album}/{name} ".encode() * 500


class TokenServer:
    """``/api/list?album=A`` and ``/api/fresh?album=A&name=N`` (with ``password``) give
    file URLs with a new token each, and only a file's newest token works:
    ``/files/A/N?token=T`` answers 403 to an old one. ``stale``: the list's URLs are
    old already when given (they expire before they are used; another album's, refreshed
    while this list was read, stay good); ``revoke()``: every token given so far is old."""

    def __init__(self, httpd: HTTPServer) -> None:
        self.httpd = httpd
        self.base = f"{httpd.host}:{httpd.port}"
        self.numbers = itertools.count(1)
        self.tokens: dict[str, str] = {}  # each file's newest (by its path)
        self.stale = False
        self.lock = threading.Lock()
        httpd.handle("/api/list", self.listing)
        httpd.handle("/api/fresh", self.fresh)
        for album, names in ALBUMS.items():
            for name in names:
                httpd.handle(f"/files/{album}/{name}", self.file)

    def url(self, album: str, name: str) -> str:
        """The file's URL with a new token (its only one that works)."""
        path = f"/files/{album}/{name}"
        with self.lock:
            self.tokens[path] = token = f"t{next(self.numbers)}"
        return f"http://{self.base}{path}?token={token}"

    def revoke(self) -> None:
        with self.lock:
            self.tokens.clear()

    def listing(self, req: LoggedRequest) -> tuple[int, dict[str, str], bytes]:
        if req.query.get("password") != PASSWORD:
            return 401, {}, b"password?"
        album = req.query["album"]
        body = [{"name": name, "url": self.url(album, name)} for name in ALBUMS[album]]
        if self.stale:  # (this list's own: another album's fresh tokens stay good)
            with self.lock:
                for name in ALBUMS[album]:
                    self.tokens.pop(f"/files/{album}/{name}", None)
        return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()

    def fresh(self, req: LoggedRequest) -> tuple[int, dict[str, str], bytes]:
        if req.query.get("password") != PASSWORD:
            return 401, {}, b"password?"
        url = self.url(req.query["album"], req.query["name"])
        return 200, {"Content-Type": "application/json"}, json.dumps({"url": url}).encode()

    def file(self, req: LoggedRequest) -> tuple[int, dict[str, str], bytes]:
        if req.query.get("token") != self.tokens.get(req.path):
            return 403, {}, b"this link has expired"
        album, name = req.path.split("/")[2:]
        return 200, {}, data(album, name)

    def refused(self) -> int:
        return sum(1 for r in self.httpd.requests if r.status == 403)


class TokenSource(Source):
    """``https://tokens.test/HOST:PORT/ALBUM``: the files a TokenServer lists in ALBUM
    (it takes the server's password as an option); ``refresh`` asks it for a new URL."""

    name = "tokens"
    patterns = (r"^https?://tokens\.test/",)
    examples = ("https://tokens.test/127.0.0.1:9/album",)
    option_names = ("password",)
    refreshed: ClassVar[list[str]] = []  # the files refreshed (ALBUM/NAME), each time

    def api(self, call: str) -> str:
        base, album = self.url.split("/")[3:5]
        password = self.options.get("password", "")
        return f"http://{base}/api/{call}album={album}&password={password}"

    async def items(self) -> AsyncIterator[Item]:
        album = self.url.split("/")[4]
        for entry in await self.ctx.http.get_json(self.api("list?")):
            yield Item(entry["url"], filename=entry["name"], source=self.name,
                       source_id=f"{album}/{entry['name']}", collection_name=album)

    async def refresh(self, item: Item) -> Item:
        self.refreshed.append(f"{self.url.split('/')[4]}/{item.filename}")
        got = await self.ctx.http.get_json(self.api(f"fresh?name={item.filename}&"))
        return dataclasses.replace(item, download_url=got["url"])


@pytest.fixture
def tokens(httpd: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[TokenServer]:
    import omniget.sources as registry

    builtin = registry.source_classes()
    monkeypatch.setattr(registry, "source_classes", lambda: (TokenSource, *builtin))
    monkeypatch.setattr(TokenSource, "refreshed", [])
    yield TokenServer(httpd)


def _settings(tmp_path: Path) -> omniget.Settings:
    return omniget.Settings(state_dir=tmp_path / "state", retries=0)


def test_extracted_items_are_refreshed_by_their_source_in_download(
    tokens: TokenServer, tmp_path: Path
) -> None:
    """Extracted, filtered and renamed, then downloaded once their URLs had expired: the
    download run's refresh hook knew only the sources it made itself, so every file
    failed with the 403 (exit code 5) where ``download(url)`` refreshed them. Each source
    is made again with the URL and options (the password) it was given."""
    items = [item for album in "xy" for item in omniget.extract(
        f"https://tokens.test/{tokens.base}/{album}", password=PASSWORD)]
    wanted = [dataclasses.replace(i, path=f"mine/{i.source_id}") for i in items
              if i.filename.endswith(".bin")]
    tokens.revoke()  # (time passed: the links expired)
    report = omniget.download(wanted, tmp_path / "out", settings=_settings(tmp_path))
    assert report.exit_code == 0, report.failures
    for album in "xy":
        for name in ALBUMS[album]:
            assert (tmp_path / "out/mine" / album / name).read_bytes() == data(album, name)
    assert sorted(TokenSource.refreshed) == ["x/a.bin", "x/b.bin", "y/a.bin", "y/b.bin"]
    assert tokens.refused() == 4  # (each refreshed after its 403, once)


def test_aextracted_items_are_refreshed_by_their_source_in_adownload(
    tokens: TokenServer, tmp_path: Path
) -> None:
    url = f"https://tokens.test/{tokens.base}/x"

    async def main() -> omniget.Report:
        items = [item async for item in omniget.aextract(url, password=PASSWORD)]
        tokens.revoke()
        return await omniget.adownload(items, tmp_path, settings=_settings(tmp_path))

    report = asyncio.run(main())
    assert report.exit_code == 0, report.failures
    assert (tmp_path / "x/b.bin").read_bytes() == data("x", "b.bin")
    assert sorted(TokenSource.refreshed) == ["x/a.bin", "x/b.bin"]


def test_an_engine_run_of_extracted_items_refreshes_them(
    tokens: TokenServer, tmp_path: Path
) -> None:
    """``await engine.run(items)`` of extracted items, no refresh hook given: the engine
    had none, and the 403 failed them (exit code 5)."""
    url = f"https://tokens.test/{tokens.base}/x"

    async def main() -> omniget.Report:
        items = [item async for item in omniget.aextract(url, password=PASSWORD)]
        tokens.revoke()
        eng = Engine(_settings(tmp_path))
        try:
            return await eng.run(items, tmp_path)
        finally:
            await eng.aclose()

    report = asyncio.run(main())
    assert report.exit_code == 0, report.failures
    assert (tmp_path / "x/a.bin").read_bytes() == data("x", "a.bin")
    assert sorted(TokenSource.refreshed) == ["x/a.bin", "x/b.bin"]


def test_a_stream_refreshes_an_expired_url_through_its_source(
    tokens: TokenServer, tmp_path: Path
) -> None:
    """A stream never refreshed: ``stream(item)`` of an extracted item whose URL had
    expired failed with the 403."""
    url = f"https://tokens.test/{tokens.base}/one"
    item = next(omniget.extract(url, password=PASSWORD))
    tokens.revoke()
    out = io.BytesIO()
    assert omniget.stream(item, out) == len(data("one", "a.bin"))
    assert out.getvalue() == data("one", "a.bin")
    assert TokenSource.refreshed == ["one/a.bin"] and tokens.refused() == 1
    due = dataclasses.replace(next(omniget.extract(url, password=PASSWORD)), expires=0.0)
    out = io.BytesIO()
    assert omniget.stream(due, out) == len(data("one", "a.bin"))  # (renewed before asked)
    assert TokenSource.refreshed == ["one/a.bin"] * 2 and tokens.refused() == 1


def test_a_source_that_needs_a_password_is_streamed_by_url(tokens: TokenServer) -> None:
    """stream() took no source options: a URL of a source that needs a password could
    not be streamed (its listing was refused)."""
    url = f"https://tokens.test/{tokens.base}/one"
    out = io.BytesIO()
    size = omniget.stream(url, out, source_options={"tokens": {"password": PASSWORD}})
    assert size == len(data("one", "a.bin")) and out.getvalue() == data("one", "a.bin")
    out = io.BytesIO()
    assert omniget.stream(url, out, source="tokens",
                          source_options={"tokens": {"password": PASSWORD}}) == size
    assert out.getvalue() == data("one", "a.bin")


def test_stream_checks_its_source_options_before_any_request(tokens: TokenServer) -> None:
    url = f"https://tokens.test/{tokens.base}/one"
    cases: list[tuple[object, type[Exception], str]] = [
        ({"tokens": {"pasword": "p"}}, ValueError,
         r"omniget.stream\(\): source_options\['tokens'\]: .*did you mean 'password'"),
        ({"token": {"password": "p"}}, ValueError, r"did you mean 'tokens'\?"),
        ({"tokens": "pw"}, TypeError, r"source_options\['tokens'\] is a mapping"),
    ]
    for tables, error, said in cases:
        with pytest.raises(error, match=said):
            omniget.stream(url, io.BytesIO(), source_options=tables)  # type: ignore[arg-type]
    with pytest.raises(omniget.UsageError, match="unknown source 'tokenz'"):
        omniget.stream(url, io.BytesIO(), source="tokenz")
    assert tokens.httpd.requests == []


def test_each_url_of_one_source_refreshes_its_own_items(
    tokens: TokenServer, tmp_path: Path
) -> None:
    """``download([album_x, album_y])``: the run refreshed every item of a source by the
    first source of that name it made (album x's), so album y's files were written with
    album x's bytes, without a word."""
    urls = [f"https://tokens.test/{tokens.base}/{album}" for album in "xy"]
    tokens.stale = True
    report = omniget.download(urls, tmp_path, settings=_settings(tmp_path),
                              source_options={"tokens": {"password": PASSWORD}})
    assert report.exit_code == 0, report.failures
    for album in "xy":
        for name in ALBUMS[album]:
            assert (tmp_path / album / name).read_bytes() == data(album, name)


def test_cli_output_file_refreshes_the_item_it_extracted(
    tokens: TokenServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``omniget -O NAME URL`` extracts the item itself (to name it) and hands it to the
    download: an expired URL failed with the 403 (exit 5, "this link has expired")."""
    for var in [v for v in os.environ if v.startswith("OMNIGET_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("OMNIGET_TOKENS_PASSWORD", PASSWORD)
    monkeypatch.chdir(tmp_path)
    tokens.stale = True
    assert main(["-q", "-O", "mine.bin", f"https://tokens.test/{tokens.base}/one"]) == 0
    assert (tmp_path / "mine.bin").read_bytes() == data("one", "a.bin")
    assert TokenSource.refreshed == ["one/a.bin"]


def test_cli_output_to_stdout_refreshes_the_item_it_extracted(
    tokens: TokenServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    """``omniget -O - URL`` streams the item it extracted: a stream never refreshed, and
    an expired URL failed with the 403 (exit 5)."""
    for var in [v for v in os.environ if v.startswith("OMNIGET_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("OMNIGET_TOKENS_PASSWORD", PASSWORD)
    tokens.stale = True
    assert main(["-q", "-O", "-", f"https://tokens.test/{tokens.base}/one"]) == 0
    assert capsysbinary.readouterr().out == data("one", "a.bin")
    assert TokenSource.refreshed == ["one/a.bin"]


class RenewingSource(Source):
    """``https://renewing.test/...``: one item; each refresh makes a new Item (its own
    origin not set) with the next token."""

    name = "renewing"
    patterns = (r"^https?://renewing\.test/",)
    examples = ("https://renewing.test/a",)

    async def items(self) -> AsyncIterator[Item]:
        yield Item("https://cdn.test/a.bin?t=0", source=self.name)

    async def refresh(self, item: Item) -> Item:
        n = int(item.download_url.rpartition("=")[2]) + 1
        return Item(f"https://cdn.test/a.bin?t={n}", source=self.name)


def test_a_refreshed_item_can_be_refreshed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A source's refresh that makes a new Item gave one without the origin: its URLs
    expiring again in the same download could not be renewed (the item came back as it
    was, and the file failed)."""
    import omniget.sources as registry

    builtin = registry.source_classes()
    monkeypatch.setattr(registry, "source_classes", lambda: (RenewingSource, *builtin))
    (item,) = omniget.extract("https://renewing.test/a")
    reach = Reach(omniget.Settings(), dict)

    async def twice() -> Item:
        return await reach.refresh(await reach.refresh(item))

    again = asyncio.run(twice())
    assert again.download_url.endswith("t=2") and again.origin is item.origin
