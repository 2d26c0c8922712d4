"""Every source: its examples match it (and only the fallback matches after it), building
it makes no request, and its items are valid."""

from __future__ import annotations

import asyncio
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omniget.engine.transports.memory import MemoryTransport
from omniget.errors import UnsupportedURL, UsageError
from omniget.model import Item
from omniget.settings import Settings
from omniget.sources import find_source, source_classes
from omniget.sources.base import HttpClient, Source, SourceContext

SOURCES = source_classes()


def test_registry_lists_http_last() -> None:
    assert SOURCES[-1].name == "http"
    names = [s.name for s in SOURCES]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("cls", SOURCES, ids=lambda c: c.name)
def test_examples_pick_their_own_source(cls: type[Source]) -> None:
    assert cls.examples, f"{cls.name} has no examples"
    for url in cls.examples:
        assert find_source(url) is cls


@pytest.mark.parametrize("cls", SOURCES, ids=lambda c: c.name)
def test_option_names_can_be_keywords_and_environment_names(cls: type[Source]) -> None:
    """extract(url, NAME=...) and OMNIGET_<SOURCE>_<NAME> (read in lower case) reach them."""
    for name in cls.option_names:
        assert name.isidentifier() and name == name.lower(), name
    assert cls.name.isalnum() and cls.name == cls.name.lower()  # (no "_": SOURCE_KEY splits)


@pytest.mark.parametrize("cls", SOURCES, ids=lambda c: c.name)
def test_construction_makes_no_request(cls: type[Source]) -> None:
    mem = MemoryTransport()
    ctx = SourceContext(Settings(), HttpClient({"http": mem, "https": mem}))
    for url in cls.examples:
        cls(url, ctx)
    assert mem.requests == []


@pytest.mark.parametrize("cls", SOURCES, ids=lambda c: c.name)
def test_items_known_at_once_are_the_items(cls: type[Source]) -> None:
    """A source that gives its items at once gives those items() yields, with no request."""
    mem = MemoryTransport()
    ctx = SourceContext(Settings(), HttpClient({"http": mem, "https": mem}))

    async def collect(src: Source) -> list[Item]:
        return [i async for i in src.items()]

    for url in cls.examples:
        known = cls(url, ctx).items_at_once()
        if known is not None:
            assert list(known) == asyncio.run(collect(cls(url, ctx)))
    assert mem.requests == []
    if cls.name == "http":
        with pytest.raises(UsageError, match="no host name"):
            cls("http://exa mple.com/x", ctx).items_at_once()


def test_unknown_urls_are_usage_errors() -> None:
    with pytest.raises(UnsupportedURL) as info:
        find_source("ftp-ish:nothing")
    assert info.value.exit_code == 2
    with pytest.raises(UsageError):
        find_source("https://x.test/", "no-such-source")


def test_http_source_items_are_valid() -> None:
    mem = MemoryTransport()
    ctx = SourceContext(Settings(), HttpClient({"http": mem, "https": mem}))
    src = find_source("https://x.test/a/b%20c.zip?x=1")("https://x.test/a/b%20c.zip?x=1", ctx)

    async def collect() -> list[Item]:
        return [i async for i in src.items()]

    items = asyncio.run(collect())
    assert len(items) == 1
    item = items[0]
    assert item.filename == "b c.zip"
    assert item.name_from_server and item.source == "http"
    assert mem.requests == []


def _urlish() -> st.SearchStrategy[str]:
    """URLs and near-URLs: schemes in any case (and with a long s), hosts that start
    with what the pattern refuses, spaces of several kinds, nothing after the scheme."""
    schemes = st.sampled_from(
        ["http://", "https://", "HTTP://", "HttpS://", "http:/", "https:", "ftp://",
         "http\u017f://", "https\u017f://", " http://", "xhttp://", ""]
    )  # fmt: skip
    rest = st.text(
        alphabet=st.sampled_from(list("ab1.:/?#@[]% \t\n\u00a0\u2003\u017fK\u212ae")),
        max_size=8,
    )
    return st.builds(lambda a, b: a + b, schemes, rest)


@settings(max_examples=500, deadline=None)
@given(_urlish())
def test_the_http_source_matches_as_its_pattern_says(url: str) -> None:
    """HttpSource.matches tells the usual URL without its regular expression; every
    answer is the pattern's own."""
    from omniget.sources.http import HttpSource

    pattern = re.compile(HttpSource.patterns[0], re.I)
    assert HttpSource.matches(url) == bool(pattern.search(url))


def test_a_plain_url_is_matched_without_the_pattern(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fallback source tells an ordinary http(s) URL of a list by its first characters:
    its regular expression (a scan per URL) is left for the others."""
    from omniget.sources.http import HttpSource

    searched: list[str] = []

    class Recording:
        def search(self, url: str) -> bool:
            searched.append(url)
            return bool(re.search(HttpSource.patterns[0], url, re.I))

    monkeypatch.setattr(HttpSource, "_compiled", [Recording()])
    assert HttpSource.matches("http://127.0.0.1:8080/f.bin")
    assert HttpSource.matches("HTTPS://example.com")
    assert searched == []
    assert not HttpSource.matches("http:///nohost") and searched == ["http:///nohost"]
    assert HttpSource.matches("http\u017f://x") and len(searched) == 2  # (the pattern's call)


@settings(max_examples=300, deadline=None)
@given(_urlish())
def test_a_name_from_a_url_is_cut_and_decoded_as_before(url: str) -> None:
    from omniget.model import name_from_url

    if not re.search("[?#%;]", url) and url.count("/") > 2:
        assert name_from_url(url) == (url.rpartition("/")[2] or "index.html")
    else:
        assert name_from_url(url) != "" and "/" not in name_from_url(url)
