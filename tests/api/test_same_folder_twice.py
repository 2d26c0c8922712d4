"""Two downloads of the same files into the same folder at once (two threads of one
program, two tasks on one event loop, two programs): each file is written by one of
them, the other skips it or stops it as another run's (PartBusy), no file is wrong, and a
third run has nothing to do."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import threading
from pathlib import Path
from typing import Literal

import pytest
from tests.servers.httpd import HTTPServer

import omniget
from omniget.engine.assemble import PartFile

SRC = str(Path(omniget.__file__).resolve().parent.parent)
#: PartBusy's words, whichever way it found the other run: holding the part file ("is being
#: downloaded"), or done with it a moment before this run's open or lock ("was finished",
#: "was finished or removed"; a loaded machine can pause a run there)
BUSY = "by another omniget run in the same folder"

SCRIPT = """
import sys
from pathlib import Path
import omniget
report = omniget.download(sys.argv[3:], sys.argv[1], settings=omniget.Settings(
    state_dir=Path(sys.argv[2]), split=4, min_split_size=1_000_000))
for r in report.results:
    print(r.item.filename, r.status, "" if r.error is None else str(r.error), sep="\\t")
"""


def _files(httpd: HTTPServer) -> tuple[list[str], dict[str, bytes]]:
    """A split 6 MB file sent at 6 MB/s and 24 small ones (a third of them slow)."""
    data = {"big.bin": random.Random("big").randbytes(6_000_000)}
    urls = [httpd.add("/big.bin", data["big.bin"]) + "?drip=6000000"]
    for n in range(24):
        name = f"s{n}.bin"
        data[name] = random.Random(name).randbytes(40_000 + n)
        urls.append(httpd.add(f"/{name}", data[name]) + ("?drip=300000" if n % 3 == 0 else ""))
    return urls, data


def _settings(tmp_path: Path) -> omniget.Settings:
    return omniget.Settings(state_dir=tmp_path / "state", split=4, min_split_size=1_000_000)


def _ends(report: omniget.Report) -> dict[str, tuple[str, str]]:
    return {r.item.filename: (r.status, str(r.error)) for r in report.results}


def _each_written_once(ends: list[dict[str, tuple[str, str]]], data: dict[str, bytes],
                       tmp_path: Path) -> None:
    for name, body in data.items():
        (first, why1), (second, why2) = ends[0][name], ends[1][name]
        assert "ok" in (first, second), (name, why1, why2)
        for status, why in ((first, why1), (second, why2)):
            assert status in ("ok", "skipped") or BUSY in why, (name, why)
        assert (tmp_path / "out" / name).read_bytes() == body
    assert not list((tmp_path / "out").glob("*.omniget-part"))


def _third_run_skips_them_all(urls: list[str], tmp_path: Path, n: int) -> None:
    third = omniget.download(urls, tmp_path / "out", settings=_settings(tmp_path))
    assert (third.succeeded, third.skipped, third.fetched) == (True, n, 0)


def test_two_threads_downloading_the_same_files_into_one_folder(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    urls, data = _files(httpd)
    ends: list[dict[str, tuple[str, str]]] = [{}, {}]
    go = threading.Barrier(2)

    def run(n: int) -> None:
        go.wait()
        report = omniget.download(urls, tmp_path / "out", settings=_settings(tmp_path))
        ends[n] = _ends(report)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    _each_written_once(ends, data, tmp_path)
    _third_run_skips_them_all(urls, tmp_path, len(data))


def test_two_tasks_on_one_loop_downloading_the_same_files_into_one_folder(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """(No retry: a file whose socket the shared loop never heard from, failed after the
    connect timeout, shows; see tests/transports/test_closed_sockets_unwatched.py.)"""
    urls, data = _files(httpd)
    settings = omniget.Settings(state_dir=tmp_path / "state", split=4,
                                min_split_size=1_000_000, retries=0)

    async def main() -> list[omniget.Report]:
        return list(await asyncio.gather(*(
            omniget.adownload(urls, tmp_path / "out", settings=settings) for _ in range(2))))

    _each_written_once([_ends(r) for r in asyncio.run(main())], data, tmp_path)
    _third_run_skips_them_all(urls, tmp_path, len(data))


def test_two_programs_downloading_the_same_files_into_one_folder(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    urls, data = _files(httpd)
    env = {**os.environ, "PYTHONPATH": SRC}
    procs = [subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "out"), str(tmp_path / "state"), *urls],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(2)]
    ends: list[dict[str, tuple[str, str]]] = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        ends.append({name: (status, why) for name, status, why in
                     (line.split("\t") for line in out.splitlines())})
    _each_written_once(ends, data, tmp_path)
    _third_run_skips_them_all(urls, tmp_path, len(data))



def test_a_part_file_another_run_finished_as_this_one_opened_it_is_skipped(
    httpd: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """This run found another run's part file, and that run finished it (renamed it into
    place) before this one's open: --on-exists decides, as for a file there before the
    run (skipped: it has the size the server gives), not a failure telling to run again.
    With overwrite, it still stops as another run's (PartBusy)."""
    body = random.Random("done").randbytes(50_000)
    url = httpd.add("/done.bin", body)
    real = PartFile._open_there

    def finished_meanwhile(self: PartFile, flags: int) -> int:
        if os.path.exists(self.where):
            os.replace(self.where, self.final)  # (the other run's rename)
        return real(self, flags)

    monkeypatch.setattr(PartFile, "_open_there", finished_meanwhile)
    policies: list[tuple[Literal["skip", "overwrite"], str]] = [
        ("skip", "skipped"), ("overwrite", "failed")]
    for on_exists, status in policies:
        out = tmp_path / on_exists
        out.mkdir()
        (out / "done.bin.omniget-part").write_bytes(body)  # (the other run's, all there)
        report = omniget.download([url], out, settings=omniget.Settings(
            state_dir=tmp_path / "state", on_exists=on_exists))
        (result,) = report.results
        assert result.status == status, result.error
        if status == "failed":
            assert BUSY in str(result.error)
        assert (out / "done.bin").read_bytes() == body
        assert sorted(p.name for p in out.iterdir()) == ["done.bin"]
