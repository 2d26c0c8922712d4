"""The source registry: an explicit module list, imported when first needed (not at
``import omniget``); the first match wins (specific sites first, the plain-HTTP fallback
last). Plugins add sources through the ``omniget.sources`` entry-point group, and are asked
before the built-in sources, so a plugin can take a host the fallback would take. An
explicit name (``source=``, ``--source``) wins over matching."""

from __future__ import annotations

import importlib
import os
import sys
from functools import cache

from ..errors import UnsupportedURL, UsageError
from .base import Source

__all__ = ["find_source", "source_classes"]

# Order matters: most specific first, the generic fallback last.
MODULES = ("http",)


GROUP = "omniget.sources"


@cache
def source_classes() -> tuple[type[Source], ...]:
    found: list[type[Source]] = []
    targets = plugin_targets()
    if targets:  # (code not ours: it may make TLS connections of its own with asyncio)
        _asyncio_tls_back()
    for target in targets:
        module, _, attr = target.partition(":")
        obj: object = importlib.import_module(module.strip())
        for part in attr.strip().split(".") if attr.strip() else ():
            obj = getattr(obj, part)
        found.append(obj)  # type: ignore[arg-type]
    for mod in MODULES:
        found.append(importlib.import_module(f"{__name__}.{mod}").SOURCE)
    return tuple(found)


def _asyncio_tls_back() -> None:
    """Give asyncio its TLS support back where the command loaded it without (see
    omniget.__main__): a plugin that connects with asyncio over TLS (aiohttp, httpx)
    met "stdlib ssl module not available" there, and only there."""
    from asyncio import base_events, selector_events, sslproto

    if getattr(sslproto, "ssl", None) is not None:
        return
    import ssl

    for module in (base_events, selector_events, sslproto):
        if getattr(module, "ssl", ssl) is None:
            setattr(module, "ssl", ssl)  # noqa: B010 (not an attribute asyncio exports)
    sslproto.SSLAgainErrors = (ssl.SSLWantReadError, ssl.SSLSyscallError)  # (as at import)


def find_source(url: str, name: str | None = None) -> type[Source]:
    """The source for ``url`` (or the one called ``name``)."""
    classes = source_classes()
    if name:
        for cls in classes:
            if cls.name == name:
                return cls
        known = ", ".join(sorted(c.name for c in classes))
        raise UsageError(f"unknown source {name!r} (known: {known})")
    for cls in classes:
        if cls.matches(url):
            return cls
    if not url.strip():  # (the command refuses one before: a library's list may hold it)
        raise UnsupportedURL("the URL is empty (a blank line, or a str of blanks)", url=url)
    raise UnsupportedURL(f"no source can handle {url!r} (is it a full http(s):// URL?)", url=url)


def plugin_targets() -> list[str]:
    """``module:attr`` of every entry point in the ``omniget.sources`` group.

    Reads ``entry_points.txt`` of the installed distributions in the folders on
    ``sys.path`` directly (the first of a name wins, as for imports): importing
    :mod:`importlib.metadata` costs more start-up time than the whole scan.
    Distributions inside zip files on ``sys.path`` are not seen.
    """
    seen: set[str] = set()
    out: list[str] = []
    for folder in sys.path:
        try:
            entries = sorted(os.scandir(folder or "."), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            base, dot, kind = entry.name.rpartition(".")
            if not dot or kind not in ("dist-info", "egg-info"):
                continue
            dist = base.partition("-")[0].lower().replace("_", "-").replace(".", "-")
            if dist in seen:
                continue
            seen.add(dist)
            try:
                with open(os.path.join(entry.path, "entry_points.txt"), encoding="utf-8") as fh:
                    text = fh.read()
            except OSError:
                continue
            out.extend(_group(text, GROUP))
    return out


def _group(text: str, group: str) -> list[str]:
    """The values of one ``[group]`` of an entry_points.txt (an INI file)."""
    out: list[str] = []
    inside = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            inside = line[1:-1].strip() == group
        elif inside and "=" in line:
            out.append(line.partition("=")[2].strip())
    return out
