"""What the soak tests share: their seeds, a run that may be cut off and resumed, and a
CLI run to kill."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from omniget.engine import Engine, Report
from omniget.engine.retry import FakeClock
from omniget.model import Item
from omniget.settings import Settings


def seeds(default: int) -> range:
    """The seeds a soak runs: ``default`` of them, or as many as ``OMNIGET_SOAK_SEEDS``
    says (``OMNIGET_SOAK_SEEDS=200 pytest -n 2 tests/faults/test_mixed_faults.py``)."""
    return range(1, 1 + int(os.environ.get("OMNIGET_SOAK_SEEDS", str(default))))


def run_maybe_cut(
    settings: Settings, items: list[Item], dest: Path, cut_after: float | None
) -> Report:
    """Run ``items`` to the end; with ``cut_after``, a first run is cut off after that
    many seconds (as by Ctrl+C) and the second one resumes it from the journal."""

    async def go(limit: float) -> Report | None:
        eng = Engine(settings, clock=FakeClock())
        try:
            return await asyncio.wait_for(eng.run(items, dest), limit)
        except TimeoutError:
            return None
        finally:
            await eng.aclose()

    if cut_after is not None:
        asyncio.run(go(cut_after))
    report = asyncio.run(go(60))
    assert report is not None, "the run did not end within 60 s"
    return report


def spawn(
    args: list[str], state: Path, stderr: int = subprocess.DEVNULL
) -> subprocess.Popen[bytes]:
    """``omniget ARGS`` in a subprocess with its journal in ``state`` (stdout dropped)."""
    env = {**os.environ, "OMNIGET_STATE_DIR": str(state)}
    return subprocess.Popen(
        [sys.executable, "-m", "omniget", *args],
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        env=env,
    )


def run_to_end(args: list[str], state: Path) -> subprocess.CompletedProcess[str]:
    """``omniget ARGS`` run to its end (2 minutes at most), its output kept."""
    return subprocess.run(
        [sys.executable, "-m", "omniget", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "OMNIGET_STATE_DIR": str(state)},
        timeout=120,
    )
