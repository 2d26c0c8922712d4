"""The public functions' argument checks: a URL is a str, a source is given only options
it takes, ``source_options`` names known sources; a mistake fails at once, named by the
function it was given to, before any request."""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable, Mapping

from .errors import nearest
from .model import Item
from .sources.base import Source, option_problem


def check_options(cls: type[Source], options: Mapping[str, object], name: str) -> None:
    """A keyword argument the source does not take is a typo, never silently ignored."""
    problem = option_problem(cls, options, ("source", "settings", "transports"))
    if problem is not None:
        raise TypeError(f"omniget.{name}(): {problem}")


def check_source_options(
    tables: Mapping[str, Mapping[str, object]] | None, name: str
) -> None:
    """``source_options`` of download: each known source's table holds only options it
    takes; a name close to a source's is a typo. (Other names are kept: the CLI passes
    tables for sources not installed here, such as GOFILE_TOKEN's.)"""
    if not tables:
        return
    from .sources import source_classes  # (looked up here: tests add a source)

    known = {cls.name: cls for cls in source_classes()}
    for table, options in tables.items():
        cls = known.get(table)
        if cls is None:
            near = nearest(table.lower(), known)  # (names are lower case: HTTP is http)
            if near is not None:
                raise ValueError(f"omniget.{name}(): source_options[{table!r}]: no source "
                                 f"is called {table!r}; did you mean {near!r}?")
            continue
        if not isinstance(options, Mapping):
            raise TypeError(f"omniget.{name}(): source_options[{table!r}] is a mapping of "
                            f"option names to values, not {type(options).__name__}")
        problem = option_problem(cls, options)
        if problem is not None:
            raise ValueError(f"omniget.{name}(): source_options[{table!r}]: {problem}")


def one_or_many(
    items_or_urls: Iterable[Item | str] | AsyncIterable[Item | str] | str | Item, name: str
) -> Iterable[Item | str] | AsyncIterable[Item | str]:
    """One URL or item as a list of one (a str is no list of URLs); bytes refused."""
    if isinstance(items_or_urls, str | Item):
        return [items_or_urls]
    if isinstance(items_or_urls, bytes | bytearray):
        check_url(items_or_urls, name)
    return items_or_urls


def check_url(url: object, name: str) -> None:
    """A URL is a str: anything else fails here, named, not deep inside a source."""
    if not isinstance(url, str):
        raise TypeError(f"omniget.{name}(): a URL is a str, not {type(url).__name__}: {url!r}")
