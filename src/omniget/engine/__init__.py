"""The download engine: plan -> schedule -> transport -> assemble -> verify -> journal.

It knows bytes, never sites. :class:`Engine` is the only entry point: ``Engine.run(items,
dest)`` returns a :class:`Report` and hands its typed events to ``on_event`` handlers as
they happen; ``Engine.stream(item, write)`` writes one item in order (``-O -``). Where this
differs from design.md, and why: ``docs/design-notes.md``.

Where design.md's stages live (its layout names one module per stage; each grew into a few):

- run: :mod:`.core` (``Engine``), :mod:`.context` (what a run shares), :mod:`.outputs` (output
  paths claimed), :mod:`.resources`, :mod:`.emitter` and :mod:`.events`, :mod:`.report`;
- one file: :mod:`.job` (``FileJob``) with :mod:`.existing` (a file already there),
  :mod:`.resume` (part file and resume state) and :mod:`.finish` (fetch, checks, atomic finish);
- plan and schedule: :mod:`.plain` with :mod:`.splitter`, :mod:`.spanfetch` and :mod:`.spans`
  (one identity piece over ranged connections), :mod:`.pieces` (zlib chunks, segments, local
  slices), :mod:`.scheduler` (connection caps), :mod:`.ratelimit`, :mod:`.retry`,
  :mod:`.mirrors`, :mod:`.stream` (``-O -``);
- transport: :mod:`.transports` (libcurl in ``http``/``curlloop``/``easy``/``sharing``, the
  pipelined HTTP/1.1 pool in ``pipeline``/``h1conn``, a memory double);
- assemble, verify, journal: :mod:`.assemble`, :mod:`.names` (safe names), :mod:`.verify`,
  :mod:`.durable` (finished files not yet on the disk), :mod:`.journal` (a package).

Its names are imported when first used: importing a module of the package (the command
line's parser needs only a few light ones) does not load the engine with asyncio, pycurl
and SQLite."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .core import Engine
    from .report import FileResult, Report

__all__ = ["Engine", "FileResult", "Report"]


def __getattr__(name: str) -> object:
    # The first use of a name the package does not have yet loads the engine (its modules
    # become the package's attributes, as importing the package made them before).
    core = importlib.import_module(".core", __name__)  # (not `from . import`: that asks
    report = importlib.import_module(".report", __name__)  # the package, so calls here)
    globals().update(Engine=core.Engine, FileResult=report.FileResult, Report=report.Report)
    if name in globals():
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
