"""What a download run returns: one result per item, plus totals and the exit code."""

from __future__ import annotations

from dataclasses import field
from pathlib import Path
from typing import Literal

from .._frozen import compared_dataclass, frozen_dataclass
from ..errors import Cancelled, OmnigetError, StorageError
from ..model import Item

__all__ = ["FileResult", "Report"]

Status = Literal["ok", "skipped", "failed"]


@frozen_dataclass
class FileResult:
    """How one item ended: ok, skipped or failed, with sizes and the check made."""

    item: Item
    path: Path | None
    status: Status
    size: int = 0  # bytes of the finished file
    fetched: int = 0  # bytes fetched in this run
    verified: str | None = None  # "sha256", "size", ... or None
    error: OmnigetError | None = None
    reason: str = ""  # why skipped


@compared_dataclass
class Report:
    """Every item's result and the run's wall time. Whether every file is in:
    :attr:`succeeded` (the counts, ``ok`` first, are numbers, true with failures too)."""

    results: list[FileResult] = field(default_factory=list)
    elapsed: float = 0.0
    #: Why the run kept no resume state (its journal could not be used), if so.
    journal_error: StorageError | None = None
    #: The run was cancelled before the end of its item list, or before a file of it had
    #: its turn (those left, and those waiting for their turn, are not here).
    stopped: bool = False
    #: The first exception an ``on_event`` handler raised in the run, if one did: logged
    #: once, and the downloads went on (a handler's failure never stops or spoils one).
    handler_error: Exception | None = None

    def _count(self, status: Status) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def ok(self) -> int:
        """How many files were fetched in full: a count (``if report.ok:`` is true with
        failures too; ``if report.succeeded:`` is the check)."""
        return self._count("ok")

    @property
    def skipped(self) -> int:
        """How many files were not fetched: there already, or named as an earlier file of
        the run (each result's ``reason``: "exists", "same-name")."""
        return self._count("skipped")

    @property
    def failed(self) -> int:
        """How many files failed (the :attr:`interrupted` ones too)."""
        return self._count("failed")

    @property
    def interrupted(self) -> int:
        """Failed files that were only cut off (Ctrl+C, ``cancel``): a rerun resumes them."""
        return sum(1 for r in self.results if isinstance(r.error, Cancelled))

    @property
    def failures(self) -> list[FileResult]:
        """The failed files' results, in list order, each with its ``error``."""
        return [r for r in self.results if r.status == "failed"]

    @property
    def fetched(self) -> int:
        """Bytes fetched in this run (a resumed file's earlier bytes not counted)."""
        return sum(r.fetched for r in self.results)

    @property
    def succeeded(self) -> bool:
        """No file failed and the run went to the end of its list (a skipped file counts
        as in): ``if report.succeeded:`` (``report.ok`` is a count, true with failures
        too). The same as ``exit_code == 0``."""
        return not self.stopped and all(r.status != "failed" for r in self.results)

    @property
    def exit_code(self) -> int:
        """0 when the run :attr:`succeeded`, else the first failure's code (130, Cancelled's,
        for a run stopped before the end of its list with nothing failed)."""
        for r in self.results:
            if r.status == "failed":
                return r.error.exit_code if r.error is not None else 1
        return Cancelled.exit_code if self.stopped else 0

    def __repr__(self) -> str:
        cut = self.interrupted
        notes = [*([f"interrupted={cut}"] if cut else []), *(["stopped"] if self.stopped else [])]
        noted = f"({', '.join(notes)}) " if notes else ""
        return (
            f"<Report ok={self.ok} skipped={self.skipped} failed={self.failed} {noted}"
            f"fetched={self.fetched} elapsed={self.elapsed:.2f}s>"
        )
