"""Cancelling adownload's task the ways an asyncio program does (at any point of a run,
again and again as it winds down, by a timeout, a TaskGroup whose sibling fails, one run
among several): CancelledError is raised (TimeoutError by a timeout), nothing of the run
is left behind or said, and the same call again finishes the files whole."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import logging
import random
import sys
import threading
import warnings
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.api._leftovers import ours, threads
from tests.servers.checks import recorded, wait_for
from tests.servers.httpd import HTTPServer

import omniget
from omniget.engine import finish, verify
from omniget.engine.events import Event, Progress, Retrying

BIG = 8_000_000


def _settings(tmp_path: Path) -> omniget.Settings:
    return omniget.Settings(state_dir=tmp_path / "state", split=4, min_split_size=1_000_000,
                            retry_max_wait=1)


def _files(httpd: HTTPServer, tag: str) -> tuple[list[omniget.Item | str], dict[str, bytes]]:
    """A split 8 MB file (its digest given) sent at 2 MB/s a connection (a second at
    least), and ten small files: three slow, two answered 503 once."""
    data = {"big.bin": random.Random(tag).randbytes(BIG)}
    url = httpd.add(httpd.new_path("big.bin"), data["big.bin"]) + "?drip=2000000"
    digest = omniget.Digest("sha256", hashlib.sha256(data["big.bin"]).hexdigest())
    entries: list[omniget.Item | str] = [omniget.Item(url, filename="big.bin", digest=digest)]
    for n in range(10):
        name = f"s{n}.bin"
        data[name] = random.Random(f"{tag}{n}").randbytes(60_000 + n)
        url = httpd.add(httpd.new_path(name), data[name])
        entries.append(url + ("?drip=200000" if n % 3 == 0 else
                              "?status=503&times=1&retry_after=1" if n % 5 == 1 else ""))
    return entries, data


def _whole_again(entries: list[omniget.Item | str], tmp_path: Path, data: dict[str, bytes],
                 dest: str = "out") -> None:
    again = omniget.download(entries, tmp_path / dest, settings=_settings(tmp_path))
    assert again.succeeded, again.failures
    for name, body in data.items():
        assert (tmp_path / dest / name).read_bytes() == body
    assert not list((tmp_path / dest).glob("*.omniget-part"))


@contextlib.contextmanager
def _nothing_left(httpd: HTTPServer, caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Nothing of what runs inside is left behind (descriptors, threads) or said (a
    warning, an error logged: "Task was destroyed but it is pending!", an exception
    ignored in a destructor)."""
    gc.collect()
    fds, before = ours(httpd.port), threads()
    unraisable: list[Any] = []
    hook, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        with caplog.at_level(logging.WARNING), warnings.catch_warnings():
            warnings.simplefilter("error")
            yield
            gc.collect()
    finally:
        sys.unraisablehook = hook
    assert unraisable == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    wait_for(lambda: threads() <= before, timeout=30)
    assert ours(httpd.port) - fds == set()


async def _raises_cancelled(task: Awaitable[object]) -> None:
    try:
        await task
    except asyncio.CancelledError:
        return
    raise AssertionError("adownload ended without raising CancelledError")


def _alone() -> None:
    """No task of the run is left on the loop."""
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def _run(entries: list[omniget.Item | str], tmp_path: Path,
               on_event: Callable[[Event], None]) -> omniget.Report:
    return await omniget.adownload(entries, tmp_path / "out", settings=_settings(tmp_path),
                             on_event=on_event)


def test_a_task_cancelled_again_and_again_as_it_winds_down_ends_cleanly(
    httpd: HTTPServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each cancel after the first lands in the run's own clean-up (the files' last
    checkpoints, the engine's close): the clean-up is done all the same, before
    CancelledError is raised, so what landed is recorded and nothing is said of it."""
    entries, data = _files(httpd, "again")

    async def main() -> None:
        landed = asyncio.Event()

        def on_event(ev: Event) -> None:
            if isinstance(ev, Progress) and ev.done >= 1_000_000:
                landed.set()

        task = asyncio.create_task(_run(entries, tmp_path, on_event))
        await landed.wait()
        task.cancel()
        while not task.done():  # (a cancel at each of its loop turns)
            await asyncio.sleep(0)
            task.cancel()
        await _raises_cancelled(task)
        _alone()

    with _nothing_left(httpd, caplog):
        asyncio.run(main())
    assert recorded(tmp_path / "state") >= 1_000_000
    _whole_again(entries, tmp_path, data)


WHEN = ["at-once", "listing", "mid-span", "twice", "back-off", "verifying"]


@pytest.mark.parametrize("when", WHEN)
def test_a_task_cancelled_at_any_point_raises_cancelled_error_and_resumes(
    httpd: HTTPServer, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """Before its first step, while the list is read, with bytes landing, cancelled
    twice, while a file waits to try again, while the split file is hashed."""
    entries, data = _files(httpd, when)
    hashing, hashed = threading.Event(), threading.Event()
    real = verify.file_digests

    def held_digests(*args: Any) -> list[str]:
        hashing.set()
        assert hashed.wait(30)
        return real(*args)

    monkeypatch.setattr(finish, "file_digests", held_digests)

    async def main() -> None:
        moment = asyncio.Event()

        def on_event(ev: Event) -> None:
            if when in ("mid-span", "twice") and isinstance(ev, Progress) and ev.done:
                moment.set()
            if when == "back-off" and isinstance(ev, Retrying):
                moment.set()

        task = asyncio.create_task(_run(entries, tmp_path, on_event))
        if when == "listing":
            await asyncio.sleep(0)
        elif when == "verifying":
            await asyncio.to_thread(hashing.wait, 30)
        elif when != "at-once":
            await moment.wait()
        task.cancel()
        if when == "twice":
            await asyncio.sleep(0)
            task.cancel()
        try:
            await _raises_cancelled(task)
        finally:
            hashed.set()  # (the hash's thread ends: asyncio.run waits for it)
        _alone()

    with _nothing_left(httpd, caplog):
        asyncio.run(main())
    if when == "verifying":  # (every byte was in: the rerun only hashes them again)
        assert recorded(tmp_path / "state") >= BIG
    _whole_again(entries, tmp_path, data)


@pytest.mark.parametrize("how", ["timeout", "wait_for"])
def test_a_timeout_around_adownload_raises_timeout_error_and_resumes(
    httpd: HTTPServer, tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    """The timeout's cancel is adownload's to raise as CancelledError, for the timeout to
    turn into TimeoutError (a swallowed cancel would hang it, or return a report)."""
    entries, data = _files(httpd, how)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        if how == "timeout":
            async with asyncio.timeout(None) as limit:
                def on_event(ev: Event) -> None:
                    if isinstance(ev, Progress) and ev.done and limit.when() is None:
                        limit.reschedule(loop.time())  # (it expires at the next turn)

                await _run(entries, tmp_path, on_event)
        else:
            # (the run takes a second at least)
            await asyncio.wait_for(_run(entries, tmp_path, lambda ev: None), 0.3)

    with _nothing_left(httpd, caplog), pytest.raises(TimeoutError):
        asyncio.run(main())
    _whole_again(entries, tmp_path, data)


def test_a_task_group_whose_other_task_fails_cancels_the_download_cleanly(
    httpd: HTTPServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The group raises its other task's error alone (the download's cancel is no error
    of its own)."""
    entries, data = _files(httpd, "group")

    async def main() -> None:
        landed = asyncio.Event()

        def on_event(ev: Event) -> None:
            if isinstance(ev, Progress) and ev.done:
                landed.set()

        async def fails() -> None:
            await landed.wait()
            raise ValueError("the other task")

        async with asyncio.TaskGroup() as group:
            group.create_task(_run(entries, tmp_path, on_event))
            group.create_task(fails())

    with _nothing_left(httpd, caplog), pytest.raises(ExceptionGroup) as raised:
        asyncio.run(main())
    assert [repr(e) for e in raised.value.exceptions] == ["ValueError('the other task')"]
    _whole_again(entries, tmp_path, data)


def test_one_of_several_downloads_on_a_loop_cancelled_leaves_the_others_alone(
    httpd: HTTPServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lists = [_files(httpd, f"several{n}") for n in range(3)]

    async def main() -> list[omniget.Report | BaseException]:
        landed = asyncio.Event()

        def on_event(ev: Event) -> None:
            if isinstance(ev, Progress) and ev.done:
                landed.set()

        tasks = [asyncio.create_task(omniget.adownload(
            entries, tmp_path / f"out{n}", settings=_settings(tmp_path),
            on_event=on_event if n == 1 else None)) for n, (entries, _) in enumerate(lists)]
        await landed.wait()
        tasks[1].cancel()
        ended = await asyncio.gather(*tasks, return_exceptions=True)
        _alone()
        return ended

    with _nothing_left(httpd, caplog):
        first, cancelled, third = asyncio.run(main())
    assert isinstance(cancelled, asyncio.CancelledError)
    for n, report in ((0, first), (2, third)):
        assert isinstance(report, omniget.Report) and report.succeeded, report
        for name, body in lists[n][1].items():
            assert (tmp_path / f"out{n}" / name).read_bytes() == body
    _whole_again(lists[1][0], tmp_path, lists[1][1], "out1")
