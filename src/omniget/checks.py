"""The public functions' argument checks: a URL is a str, a source is given only options
it takes, ``source_options`` names known sources, each other argument is of its kind; a
mistake fails at once, named by the function it was given to, before any request."""

from __future__ import annotations

import inspect
import io
import math
import os
from collections.abc import AsyncIterable, Iterable, Mapping
from typing import get_args

from .errors import nearest
from .layout import layout_problem
from .masks import mask_secrets
from .model import ByteRange, Digest, Expect, Item, ItemKind, LocalSlice, Piece, Transform
from .settings import Settings
from .sources.base import Source, option_problem


def check_options(cls: type[Source], options: Mapping[str, object], name: str) -> None:
    """A keyword argument the source does not take is a typo, never silently ignored."""
    problem = option_problem(cls, options, ("source", "settings", "transports"))
    if problem is not None:
        if "; did you mean" not in problem:  # (a Settings field given as an option?)
            from .keywords import settings_hint

            problem += settings_hint(next(k for k in options if k not in cls.option_names))
        raise TypeError(f"omniget.{name}(): {problem}")


def check_source_options(
    tables: Mapping[str, Mapping[str, object]] | None, name: str
) -> None:
    """``source_options`` of download: each known source's table holds only options it
    takes; a name close to a source's is a typo. (Other names are kept: the CLI passes
    tables for sources not installed here, such as GOFILE_TOKEN's.)"""
    if tables is None:
        return
    if not isinstance(tables, Mapping) or not all(isinstance(k, str) for k in tables):
        raise TypeError(f"omniget.{name}(): source_options= takes a mapping of source names "
                        f"to their options (a dict), not {shown(tables)}")
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
    if not isinstance(items_or_urls, Iterable | AsyncIterable):
        raise TypeError(f"omniget.{name}(): takes a URL, an Item or an iterable of them, "
                        f"not {shown(items_or_urls)}")
    return items_or_urls


def check_run(
    name: str, dest: object, settings: object, on_event: object, only: object, source: object
) -> None:
    """download's other arguments: ``dest`` a folder's name, the functions callable, the
    settings a Settings, ``source`` a known source's name (UsageError, as extract says)."""
    check_settings(settings, name)
    if not isinstance(dest, str) and not (
        isinstance(dest, os.PathLike) and isinstance(os.fspath(dest), str)
    ):
        raise TypeError(f"omniget.{name}(): dest is a folder, a str or a Path, "
                        f"not {shown(dest)}")
    folder = os.fspath(dest)
    if not folder:  # (Path(""): the current folder, as "." says it)
        raise ValueError(f"omniget.{name}(): dest '' names no folder (the current one: '.')")
    if "\0" in folder:
        raise ValueError(f"omniget.{name}(): dest {shown(folder)} has a NUL byte, which no "
                         "folder's name has")
    if "://" in folder:  # (the arguments swapped: no folder is named so)
        url = mask_secrets(repr(os.fspath(dest)))
        raise ValueError(f"omniget.{name}(): dest is a folder, not a URL ({url}): the URLs "
                         f"come first, {name}(urls, dest)")
    for arg, value, what in (("on_event", on_event, "one event"), ("only", only, "an Item")):
        check_function(value, arg, what, name)
    if source is not None:
        from .sources import find_source

        find_source("", str(source))  # (an unknown name: UsageError, before any entry)


def check_function(value: object, arg: str, what: str, name: str) -> None:
    """A handler or filter is a plain function: one that is async would be called and its
    coroutine never awaited (no event would reach it)."""
    if value is None:
        return
    if not callable(value):
        raise TypeError(f"omniget.{name}(): {arg}= takes a function of {what}, "
                        f"not {shown(value)}")
    called = getattr(value, "__name__", type(value).__name__)
    if inspect.iscoroutinefunction(value) or (  # (or an object whose __call__ is async)
        not inspect.isroutine(value) and inspect.iscoroutinefunction(type(value).__call__)
    ):
        raise TypeError(f"omniget.{name}(): {arg}= is called, not awaited: give a plain "
                        "function (it may hand the event to a queue or a task), not the "
                        f"async function {called}")
    try:
        shape = inspect.signature(value)
    except ValueError:  # (a builtin that says nothing of its parameters)
        return
    try:
        shape.bind(None)
    except TypeError:  # (a hook written as urllib's: done, total)
        raise TypeError(f"omniget.{name}(): {arg}= is called with {what}; {called} "
                        f"takes ({', '.join(shape.parameters)})") from None


def check_settings(settings: object, name: str) -> None:
    if settings is not None and not isinstance(settings, Settings):
        given = shown(settings)
        if isinstance(settings, tuple) and settings and isinstance(settings[0], Settings):
            given = ("the pair load_settings() gives: settings, source_options = "
                     "omniget.load_settings()")
        raise TypeError(f"omniget.{name}(): settings= takes an omniget.Settings, not {given}")


def check_cancel(cancel: object, name: str) -> None:
    if cancel is not None and not callable(getattr(cancel, "is_set", None)):
        kinds = "a threading.Event" if name == "stream" else ("a threading.Event or an "
                                                             "asyncio.Event")
        raise TypeError(f"omniget.{name}(): cancel= takes {kinds}, not {shown(cancel)}")


def check_out(out: object) -> None:
    """stream's ``out``: written bytes, so no text file (its write fails at the first
    bytes, after the request) and no file name."""
    if isinstance(out, io.TextIOBase) or not callable(getattr(out, "write", None)):
        raise TypeError("omniget.stream(): out is a binary file open for writing "
                        f"(open(name, 'wb'), sys.stdout.buffer), not {shown(out)}")
    if getattr(out, "closed", False) is True:  # (else: "write to closed file", mid-run)
        raise ValueError("omniget.stream(): out is closed (open it again, or call stream "
                         "inside its with block)")


def check_item(item: Item, name: str) -> None:
    """The fields of an item made by hand (a source's are right): each of its kind, or a
    TypeError (a negative size: ValueError) before the engine trips on it mid-run."""
    size = item.size_bytes
    if size is not None and (type(size) is not int or size < 0):
        raise (TypeError if type(size) is not int else ValueError)(
            _field(name, item, "size_bytes", "a whole number of at least 0 (or None: not known)"))
    if not isinstance(item.filename, str):
        raise TypeError(_field(name, item, "filename", "a str"))
    for f in ("collection_name", "source_id", "path", "link_target", "variant_of"):
        if not isinstance(getattr(item, f), str | None):
            raise TypeError(_field(name, item, f, "a str or None"))
    if not isinstance(item.digest, Digest | None):
        raise TypeError(_field(name, item, "digest",
                               "an omniget.Digest (Digest.parse('sha256=HEX'))"))
    for f in ("modified", "expires"):
        when = getattr(item, f)
        if when is not None and (not isinstance(when, int | float) or isinstance(when, bool)):
            raise TypeError(_field(name, item, f, "a Unix time (or None)"))
        if when is not None and not math.isfinite(when):  # (nan: set as a file's time, late)
            raise ValueError(_field(name, item, f, "a Unix time (or None)"))
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in item.headers.items()):
        raise TypeError(_field(name, item, "headers", "a mapping of strs to strs"))
    if not isinstance(item.mirrors, tuple) or not all(isinstance(m, str) for m in item.mirrors):
        raise TypeError(_field(name, item, "mirrors", "a tuple of URLs (strs)"))
    for f, allowed in (("kind", get_args(ItemKind)), ("expect", get_args(Expect))):
        if getattr(item, f) not in allowed:
            raise ValueError(_field(name, item, f, "one of " + ", ".join(map(repr, allowed))))
    if item.pieces:
        _check_pieces(item, name)
    secret = item.secret_headers  # (a str would be read as one-letter names: none kept back)
    if not isinstance(secret, tuple) or not all(isinstance(h, str) for h in secret):
        raise TypeError(_field(name, item, "secret_headers", "a tuple of header names (strs)"))


_WHOLE = "a whole number of at least 0 (or None)"


def _check_pieces(item: Item, name: str) -> None:
    """An item's pieces made by hand: a tuple of Piece, each field of its kind (the engine
    read them mid-run: ``'str' object has no attribute 'offset'``)."""
    pieces = item.pieces
    if not isinstance(pieces, tuple | list) or not all(isinstance(p, Piece) for p in pieces):
        raise TypeError(_field(name, item, "pieces", "a tuple of omniget.Piece"))
    for n, piece in enumerate(pieces):
        said = f"omniget.{name}(): Item(pieces=...): piece {n}: "
        if not isinstance(piece.url, str):
            raise TypeError(f"{said}url takes a str, not {shown(piece.url)}")
        for f in ("offset", "size"):
            value = getattr(piece, f)
            if value is not None and (type(value) is not int or value < 0):
                raise (TypeError if type(value) is not int else ValueError)(
                    f"{said}{f} takes {_WHOLE}, not {shown(value)}")
        for f, kind in (("range", ByteRange), ("digest", Digest), ("fetched_digest", Digest),
                        ("local", LocalSlice)):
            value = getattr(piece, f)
            if not isinstance(value, kind | None):
                raise TypeError(f"{said}{f} takes an omniget.{kind.__name__} (or None), "
                                f"not {shown(value)}")
        if piece.transform not in tuple(Transform):
            known = ", ".join(repr(t.value) for t in Transform)
            raise ValueError(f"{said}transform takes an omniget.Transform ({known}), "
                             f"not {shown(piece.transform)}")
    problem = layout_problem(item)
    if problem is not None:
        raise ValueError(f"omniget.{name}(): Item(pieces=...) of {item.filename}: {problem}")


def _field(name: str, item: Item, field: str, what: str) -> str:
    value = getattr(item, field)
    return (f"omniget.{name}(): Item({field}=...) takes {what}, "
            f"not {shown(dict(value) if field == 'headers' else value)}")


def shown(value: object) -> str:
    """A wrong argument as an error shows it: its repr when short, else its type."""
    text = repr(value)
    return text if len(text) <= 60 else type(value).__name__


def check_url(url: object, name: str) -> str:
    """A URL is a str: anything else fails here, named, not deep inside a source. It is
    returned without blanks around it (a line of a file keeps its newline), as the command
    takes a pasted URL."""
    if not isinstance(url, str):
        raise TypeError(f"omniget.{name}(): a URL is a str, not {type(url).__name__}: {url!r}")
    return url.strip()
