"""What the engine sets up for its runs beside the transports and the journal: the
default refresh hook (an item's source, reached by its origin), the HTTP transport's
pipelining and a run's connection caps made to see each other, and the test by which
:meth:`.core.Engine.aclose` prunes the journal's records of files that are gone."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from ..settings import Settings
from .assemble import part_path
from .context import Refresher
from .scheduler import HostLimits
from .transports.base import Transport

__all__ = ["by_origin", "gone", "share_limits"]


def by_origin(
    settings: Settings, transports: Callable[[], Mapping[str, Transport]]
) -> Refresher:
    """The default refresh hook: an item's own source, reached by the origin it carries
    (an item extracted earlier), else none."""
    from ..sources.base import Reach  # (the sources import the engine's transports)

    return Reach(settings, transports).refresh


def share_limits(transports: Mapping[str, Transport], limits: HostLimits) -> None:
    """Let the HTTP transport's pipelining and the run's connection caps see each other:
    a pipelined request takes part of a connection, and the pipelined connections keep
    within the per-host cap beside the whole ones."""
    http = transports.get("http")
    pipelined = getattr(http, "pipelined", None)
    count_held = getattr(http, "count_held", None)
    if callable(pipelined) and callable(count_held):
        limits.pipelined = pipelined
        count_held(limits.whole)


def gone(path: str, done: bool) -> bool:
    """A journal record's file is gone: the finished file, or the part file of one not."""
    return not os.path.lexists(path if done else part_path(Path(path)))
