"""The source registry: an explicit module list, imported lazily; the first match wins
(specific sites first, the plain-HTTP fallback last); plugins add sources through the
``omniget.sources`` entry-point group."""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points

from ..errors import UnsupportedURL, UsageError
from .base import Source

__all__ = ["find_source", "source_classes"]

# Order matters: most specific first, the generic fallback last.
MODULES = ("http",)


@cache
def source_classes() -> tuple[type[Source], ...]:
    found: list[type[Source]] = []
    for ep in entry_points(group="omniget.sources"):
        found.append(ep.load())
    for mod in MODULES:
        found.append(importlib.import_module(f"{__name__}.{mod}").SOURCE)
    return tuple(found)


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
    raise UnsupportedURL(f"no source can handle {url!r} (is it a full http(s):// URL?)", url=url)
