"""The download engine: plan -> schedule -> transport -> assemble -> verify -> journal.

It knows bytes, never sites. :class:`Engine` is the only entry point."""

from .core import Engine
from .report import FileResult, Report

__all__ = ["Engine", "FileResult", "Report"]
