"""The download engine: plan -> schedule -> transport -> assemble -> verify -> journal.

It knows bytes, never sites. :class:`Engine` is the only entry point.

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
