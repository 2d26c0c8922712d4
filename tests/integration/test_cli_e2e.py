"""The CLI in a subprocess against real local servers: kill -9 then resume, a full disk,
permission errors, bounded memory, a rerun of a finished download, nginx."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.integration._cli import drop_mode_overrides, omniget, start
from tests.servers.checks import recorded, wait_for
from tests.servers.httpd import HTTPServer, LoggedRequest
from tests.servers.nginx import NginxServer

from omniget.engine.journal import FILENAME, Journal

MiB = 1024 * 1024


def range_start(request: LoggedRequest) -> int:
    """Where a logged request's ``Range: bytes=START-...`` starts."""
    value = request.header("range")
    assert value is not None
    return int(value.split("=")[1].split("-")[0])


def test_sigkill_then_rerun_gives_identical_bytes(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    data = payload(24 * MiB, 21)
    path = httpd.new_path("big.bin")
    url = httpd.add(path, data)
    out, state = tmp_path / "out", tmp_path / "state"
    # slow enough to be killed halfway: 4 MiB/s for the run, over four connections
    proc = start(url, "-o", str(out), "-q", "--limit-rate", "4M", "--split", "4", state=state)
    part = out / "big.bin.omniget-part"
    # (not a time: a slow run has less; 6 MiB leaves the rerun's bound below room for
    # the bytes a loaded machine's takeovers fetch twice)
    wait_for(lambda: recorded(state) >= 6 * MiB)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "big.bin").exists()
    connections = len({r.conn_id for r in httpd.requests_to(path)})
    assert connections >= 2
    written = _written(part.read_bytes(), data)  # what the killed run had put in place
    assert httpd.wait_closed()  # (each request of the run before logged)
    httpd.clear_log()
    done = omniget(url, "-o", str(out), "-q", state=state)
    assert done.returncode == 0, done.stderr
    assert hashlib.sha256((out / "big.bin").read_bytes()).digest() == hashlib.sha256(data).digest()
    assert sorted(os.listdir(out)) == ["big.bin"]
    resumed = httpd.requests_to(path)
    starts = [range_start(r) for r in resumed]
    assert min(starts) > 0  # every connection resumed past its own start
    assert all(r.header("if-range") for r in resumed)
    # the rerun fetched only what the killed run had not checkpointed (it had ~6 MiB)
    fetched = sum(r.sent for r in resumed)
    assert fetched <= len(data) - 2 * MiB
    assert fetched <= len(data) - min(starts) + 1024
    # ... of the bytes it had written, at most one checkpoint interval (2 MiB) per
    # connection came again
    again = [_overlap(written, (range_start(r), range_start(r) + r.sent)) for r in resumed]
    assert sum(again) <= connections * 2 * MiB, (again, connections)
    assert max(again) <= 2 * MiB, again  # (and no one request more than one interval)


BLOCK = 4096


def _written(part: bytes, data: bytes) -> list[tuple[int, int]]:
    """The spans of ``part`` that hold ``data``'s bytes (by 4 KiB blocks; the rest is a
    preallocated file's zeros)."""
    spans: list[tuple[int, int]] = []
    for at in range(0, min(len(part), len(data)), BLOCK):
        if part[at : at + BLOCK] == data[at : at + BLOCK]:
            if spans and spans[-1][1] == at:
                spans[-1] = (spans[-1][0], at + BLOCK)
            else:
                spans.append((at, at + BLOCK))
    return spans


def _overlap(spans: list[tuple[int, int]], span: tuple[int, int]) -> int:
    return sum(max(0, min(e, span[1]) - max(s, span[0])) for s, e in spans)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupt_keeps_state_then_rerun_resumes(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, sig: signal.Signals
) -> None:
    data = payload(12 * MiB, 23)
    path = httpd.new_path("cut.bin")
    url = httpd.add(path, data)
    out, state = tmp_path / "out", tmp_path / "state"
    as_json = sig == signal.SIGTERM  # (and the JSON summary, once)
    flags = ["--json"] if as_json else []
    proc = start(url, "-o", str(out), "--limit-rate", "4M", *flags, state=state,
                 stdout=subprocess.PIPE)
    part = out / "cut.bin.omniget-part"
    wait_for(lambda: recorded(state) > 0)  # (not a time: a slow run has none yet)
    proc.send_signal(sig)
    stdout, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    lines = err.decode().splitlines()
    assert lines[-1] == "omniget: error: interrupted; run the same command again to resume"
    if as_json:
        summary = json.loads(stdout.splitlines()[-1])
        assert (summary["event"], summary["failed"], summary["interrupted"]) == ("summary", 0, 1)
    else:
        assert "0 failed, 1 interrupted" in err.decode()
    assert part.exists() and not (out / "cut.bin").exists()
    assert httpd.wait_closed()  # (each request of the run before logged)
    httpd.clear_log()
    done = omniget(url, "-o", str(out), "-q", state=state)
    assert done.returncode == 0, done.stderr
    assert (out / "cut.bin").read_bytes() == data
    assert sorted(os.listdir(out)) == ["cut.bin"]
    starts = [range_start(r) for r in httpd.requests_to(path)]
    assert min(starts) > 0  # resumed, not started over


def test_rerun_of_finished_download_is_a_noop(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    data = payload(300_000, 22)
    path = httpd.new_path("once.bin")
    url = httpd.add(path, data)
    state = tmp_path / "state"
    first = omniget(url, "-o", str(tmp_path / "o"), "-q", state=state)
    assert first.returncode == 0, first.stderr
    again = omniget(url, "-o", str(tmp_path / "o"), "-q", state=state)
    assert again.returncode == 0, again.stderr
    assert len(httpd.requests_to(path)) == 1
    assert os.listdir(tmp_path / "o") == ["once.bin"]


def test_a_rerun_after_a_power_loss_fetches_a_file_whose_bytes_were_lost(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """What ext4 can leave after a power loss right after a file finished: its name and
    size over blocks never written (zeros), and the mark saying they were not yet known to
    be on the disk (set on another boot). Before, the rerun said it was there and left it."""
    data = payload(300_000, 25)
    path = httpd.new_path("lost.bin")
    url = httpd.add(path, data)
    out = tmp_path / "o"
    first = omniget(url, "-o", str(out), "-q", state=tmp_path / "state")
    assert first.returncode == 0, first.stderr
    there = out / "lost.bin"
    try:
        os.setxattr(there, "user.omniget.unsynced", f"another-boot {len(data)}".encode())
    except OSError:
        pytest.skip("this filesystem keeps no user extended attributes")
    with there.open("wb") as f:  # (what the disk kept: the size, no block written)
        f.truncate(len(data))
    again = omniget(url, "-o", str(out), state=tmp_path / "state")
    assert again.returncode == 0, again.stderr
    assert there.read_bytes() == data
    assert len(httpd.requests_to(path)) == 2
    assert "its bytes were known to be on the disk; downloading it again" in again.stderr
    assert os.listdir(out) == ["lost.bin"]


def test_server_chosen_name_rerun_is_a_noop(httpd: HTTPServer, tmp_path: Path) -> None:
    path = httpd.new_path("dl")
    httpd.add(path, b"content")
    url = httpd.url(path, cd="report final.pdf")
    state = tmp_path / "state"
    for _ in range(2):
        res = omniget(url, "-o", str(tmp_path / "o"), "-q", state=state)
        assert res.returncode == 0, res.stderr
    assert os.listdir(tmp_path / "o") == ["report final.pdf"]
    assert len(httpd.requests_to(path)) == 1


def _tmpfs(where: Path, size: str) -> bool:
    where.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True
    )
    return res.returncode == 0


def test_disk_full_is_clear_and_resumable(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    small = tmp_path / "small"
    if not _tmpfs(small, "3m"):
        pytest.skip("cannot mount a tmpfs here (needs root and mount)")
    try:
        data = payload(6 * MiB, 23)
        path = httpd.new_path("huge.bin")
        url = httpd.add(path, data)
        # no Content-Length: the free-space check cannot help, the write fails with ENOSPC
        res = omniget(httpd.url(path, nolength=1), "-o", str(small), state=tmp_path / "st")
        assert res.returncode == 7, res.stderr
        lines = [ln for ln in res.stderr.splitlines() if "error" in ln]
        assert any("disk full" in ln and str(small) in ln for ln in lines), res.stderr
        assert "Traceback" not in res.stderr
        assert not (small / "huge.bin").exists()
        # with a Content-Length the check refuses before writing
        res = omniget(url, "-o", str(small), state=tmp_path / "st2")
        assert res.returncode == 7
        assert "not enough space" in res.stderr
        assert list(small.iterdir()) == []  # (no empty part file left behind)
    finally:
        subprocess.run(["umount", str(small)], capture_output=True)


def test_a_disk_full_run_resumes_once_there_is_room(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """The promise's other half: the bytes written before the disk filled are kept and
    recorded, and the same command, once there is room, goes on from them."""
    small = tmp_path / "small"
    if not _tmpfs(small, "3m"):
        pytest.skip("cannot mount a tmpfs here (needs root and mount)")
    try:
        data = payload(6 * MiB, 24)
        path = httpd.new_path("grow.bin")
        url = httpd.url(path, nolength=1)  # (no free-space check: ENOSPC midway)
        httpd.add(path, data)
        res = omniget(url, "-o", str(small), state=tmp_path / "st")
        assert res.returncode == 7, res.stderr
        assert "partial data kept" in res.stderr, res.stderr
        part = small / "grow.bin.omniget-part"
        kept = part.stat().st_size
        assert kept > 1 * MiB
        grown = subprocess.run(
            ["mount", "-o", "remount,size=16m", str(small)], capture_output=True
        )
        if grown.returncode != 0:
            pytest.skip("cannot grow the tmpfs here")
        assert httpd.wait_closed()  # (each request of the run before logged)
        httpd.clear_log()
        res = omniget(url, "-o", str(small), state=tmp_path / "st")
        assert res.returncode == 0, res.stderr
        assert (small / "grow.bin").read_bytes() == data
        assert sorted(os.listdir(small)) == ["grow.bin"]
        [again] = httpd.requests_to(path)
        assert range_start(again) > 0  # resumed, not started over
    finally:
        subprocess.run(["umount", str(small)], capture_output=True)


def test_permission_denied_is_exit_7(httpd: HTTPServer, tmp_path: Path) -> None:
    url = httpd.add(httpd.new_path("p.bin"), b"data")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    kw: dict[str, object] = {}
    if os.geteuid() == 0:
        kw["preexec_fn"] = drop_mode_overrides
        try:
            probe = subprocess.run(
                [sys.executable, "-c", f"open({str(locked / 'x')!r}, 'w')"],
                capture_output=True, check=False, **kw,  # type: ignore[call-overload]
            )
        except subprocess.SubprocessError:
            pytest.skip("running as root and cannot drop CAP_DAC_OVERRIDE here")
        assert b"PermissionError" in probe.stderr, probe.stderr  # modes now bind root
    res = omniget(url, "-o", str(locked), state=tmp_path / "state", **kw)
    assert res.returncode == 7, res.stderr
    assert "permission denied" in res.stderr and "Traceback" not in res.stderr
    assert str(locked) in res.stderr  # the message names the path
    assert "nothing was written" in res.stderr and "resume" not in res.stderr
    assert os.listdir(locked) == []


def test_peak_memory_is_bounded_on_a_large_file(nginx: NginxServer, tmp_path: Path) -> None:
    name = "mem.bin"
    src = nginx.root / name
    with open(src, "wb") as f:  # sparse 512 MiB file: cheap to make, real bytes to move
        f.truncate(512 * MiB)
        f.seek(100 * MiB)
        f.write(b"marker")
    proc = start(nginx.url(name), "-o", str(tmp_path / "o"), "-q", state=tmp_path / "st")
    # ru_maxrss of a forked child counts the parent's pages before exec: read the
    # exec'd program's own high-water mark instead.
    peak_kib = 0
    while proc.poll() is None:
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
        except OSError:
            break
        m = re.search(r"VmHWM:\s+(\d+) kB", status)
        peak_kib = max(peak_kib, int(m.group(1)) if m else 0)
        time.sleep(0.005)
    assert proc.wait() == 0
    assert 0 < peak_kib / 1024 < 64, f"peak RSS {peak_kib / 1024:.0f} MiB"
    assert (tmp_path / "o" / name).stat().st_size == 512 * MiB
    src.unlink()


def test_nginx_split_download_is_exact(
    nginx: NginxServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    data = payload(20 * MiB, 24)
    (nginx.root / "s.bin").write_bytes(data)
    res = omniget(
        nginx.url("s.bin", slow=True),
        "-o",
        str(tmp_path),
        "--split",
        "4",
        "-q",
        state=tmp_path / "st",
    )
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "s.bin").read_bytes() == data


def test_typo_url_is_one_line_exit_2(tmp_path: Path) -> None:
    res = omniget("htps:/example.com/x", state=tmp_path)
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


def test_unknown_flag_is_one_line_exit_2(tmp_path: Path) -> None:
    res = omniget("--conections", "4", "http://127.0.0.1:9/x", state=tmp_path)
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) <= 2 and "Traceback" not in res.stderr


def test_stdout_output(httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path) -> None:
    data = payload(200_000, 25)
    url = httpd.add(httpd.new_path("o.bin"), data)
    env = {**os.environ, "OMNIGET_STATE_DIR": str(tmp_path)}
    res = subprocess.run(
        [sys.executable, "-m", "omniget", "-O", "-", url], capture_output=True, env=env, timeout=60
    )
    assert res.returncode == 0 and res.stdout == data


@pytest.mark.parametrize("framing", ["nolength", "chunked"])
def test_stdout_says_when_a_body_could_not_be_verified(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, framing: str
) -> None:
    # No length and no hash: a body ended by the server closing the connection looks
    # like a cut one, and the user is told; a chunked body's last chunk proves its end.
    data = payload(50_000, 26)
    path = httpd.new_path("u.bin")
    httpd.add(path, data)
    query: dict[str, Any] = {framing: 1}
    env = {**os.environ, "OMNIGET_STATE_DIR": str(tmp_path)}
    res = subprocess.run(
        [sys.executable, "-m", "omniget", "-O", "-", httpd.url(path, **query)],
        capture_output=True, env=env, timeout=60,
    )
    assert res.returncode == 0 and res.stdout == data
    assert (b"not verified" in res.stderr) == (framing == "nolength"), res.stderr


def test_stdout_closed_by_its_reader_is_one_line_exit_7(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    # (as `omniget -O - URL | head -c 10`: curl and wget also say the output failed)
    url = httpd.add(httpd.new_path("p.bin"), payload(8 * MiB, 28))
    env = {**os.environ, "OMNIGET_STATE_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "omniget", "-O", "-", url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert len(proc.stdout.read(10)) == 10
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 7
    assert err.strip() == "omniget: error: stdout closed before the whole file was written"


@pytest.mark.parametrize("split", ["1", "4"])
def test_checksum_is_checked(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, split: str
) -> None:
    # --split 4: every connection writes its own span, so the whole file is hashed at the end
    data = payload(3 * MiB, 26)
    url = httpd.add(httpd.new_path("c.bin"), data)
    good = hashlib.sha256(data).hexdigest()
    bad = good[:-1] + ("0" if good[-1] != "0" else "1")
    out, state = tmp_path / "out", tmp_path / "state"
    ok = omniget(url, "-o", str(out), "--split", split, "--checksum", f"sha256={good}", "-v",
                 state=state)
    assert ok.returncode == 0, ok.stderr
    assert "sha256 ok" in ok.stderr  # (-v: the line of each file says what was checked)
    (out / "c.bin").unlink()
    wrong = omniget(
        url, "-o", str(out), "--split", split, "--checksum", f"sha256={bad}", state=state
    )
    assert wrong.returncode == 4, wrong.stderr
    assert f"expected {bad}" in wrong.stderr and "Traceback" not in wrong.stderr
    assert not (out / "c.bin").exists()


def test_checksum_on_stdout(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    data = payload(100_000, 27)
    url = httpd.add(httpd.new_path("s.bin"), data)
    env = {**os.environ, "OMNIGET_STATE_DIR": str(tmp_path)}
    wrong = "md5=" + "0" * 32
    res = subprocess.run(
        [sys.executable, "-m", "omniget", "-O", "-", "--checksum", wrong, url],
        capture_output=True, env=env, timeout=60,
    )
    assert res.returncode == 4 and res.stdout == data  # the bytes are out; the exit says so
    assert b"md5 mismatch" in res.stderr
    right = "md5=" + hashlib.md5(data).hexdigest()
    res = subprocess.run(
        [sys.executable, "-m", "omniget", "-O", "-", "--checksum", right, url],
        capture_output=True, env=env, timeout=60,
    )
    assert res.returncode == 0 and res.stdout == data


def test_on_exists_rename_is_not_remembered(httpd: HTTPServer, tmp_path: Path) -> None:
    # A rename chosen because the name was taken is this run's choice: a later run with
    # another --on-exists decides afresh from the URL's name.
    url = httpd.add(httpd.new_path("small"), b"new")
    out, state = tmp_path / "o", tmp_path / "state"
    out.mkdir()
    (out / "small").write_bytes(b"old")
    for mode in ("rename", "rename", "overwrite"):
        res = omniget(url, "-o", str(out), "-q", "--on-exists", mode, state=state)
        assert res.returncode == 0, res.stderr
    assert sorted(os.listdir(out)) == ["small", "small_1", "small_2"]
    assert (out / "small").read_bytes() == b"new"


def test_on_exists_rename_resumes_its_unfinished_file_under_the_new_name(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    # The first run renames (the name it was given is taken) and is cut off: its rerun in
    # the same mode goes on with that renamed part file instead of starting a third name.
    # (A name the server chose is remembered anyway: this is one given by the caller.)
    data = payload(600 * 1024, 23)
    path = httpd.new_path("big.bin")
    httpd.add(path, data)
    out, state = tmp_path / "o", tmp_path / "state"
    out.mkdir()
    (out / "big.bin").write_bytes(b"mine")
    url = httpd.url(path, reset=200_000, times=1)  # (the same URL: the same download)
    given = str(out / "big.bin")
    res = omniget(url, "-O", given, "-q", "--on-exists", "rename", "--retries", "0", state=state)
    assert res.returncode == 3, res.stderr
    assert sorted(os.listdir(out)) == ["big.bin", "big_1.bin.omniget-part"]
    res = omniget(url, "-O", given, "-q", "--on-exists", "rename", state=state)
    assert res.returncode == 0, res.stderr
    assert sorted(os.listdir(out)) == ["big.bin", "big_1.bin"]
    assert (out / "big_1.bin").read_bytes() == data and (out / "big.bin").read_bytes() == b"mine"
    assert range_start(httpd.requests_to(path)[-1]) > 0


def test_server_chosen_name_is_remembered_as_the_server_gave_it(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    path = httpd.new_path("dl")
    httpd.add(path, b"content")
    url = httpd.url(path, cd="chosen.txt")
    out, state = tmp_path / "o", tmp_path / "state"
    out.mkdir()
    (out / "chosen.txt").write_bytes(b"mine")
    res = omniget(url, "-o", str(out), "-q", "--on-exists", "rename", state=state)
    assert res.returncode == 0, res.stderr
    assert (out / "chosen_1.txt").read_bytes() == b"content"
    # the rerun knows the name without asking: skip, no request
    before = len(httpd.requests_to(path))
    res = omniget(url, "-o", str(out), "-q", state=state)
    assert res.returncode == 0 and len(httpd.requests_to(path)) == before
    res = omniget(url, "-o", str(out), "-q", "--on-exists", "overwrite", state=state)
    assert res.returncode == 0, res.stderr
    assert (out / "chosen.txt").read_bytes() == b"content"
    assert sorted(os.listdir(out)) == ["chosen.txt", "chosen_1.txt"]


@pytest.mark.parametrize("first", ["missing", "auth"])
def test_mirror_is_tried_after_a_permanent_error(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, first: str
) -> None:
    data = payload(50_000, 28)
    good = httpd.add(httpd.new_path("m.bin"), data)
    bad_path = httpd.new_path("m.bin")
    if first == "missing":
        bad = httpd.url(bad_path)  # nothing there: 404
    else:
        httpd.add(bad_path, data)
        bad = httpd.url(bad_path, auth="u:p")  # 401 without credentials
    listing = tmp_path / "list.txt"
    listing.write_text(f"{bad}\t{good}\n")
    res = omniget("-i", str(listing), "-o", str(tmp_path / "o"), state=tmp_path / "st")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "o" / "m.bin").read_bytes() == data
    assert "trying a mirror" in res.stderr


def test_limit_rate_is_for_the_whole_run(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    # three files at once share 1 MB/s (each alone would stay under it)
    urls = [httpd.add(httpd.new_path(f"r{i}.bin"), payload(300_000, 30 + i)) for i in range(3)]
    start = time.monotonic()
    res = omniget(*urls, "-o", str(tmp_path / "o"), "-q", "--limit-rate", "1M",
                  state=tmp_path / "st")
    assert res.returncode == 0, res.stderr
    assert time.monotonic() - start >= 0.75  # 900 KB at 1 MiB/s (a margin)


def test_limit_rate_applies_on_stdout(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    data = payload(600_000, 33)
    url = httpd.add(httpd.new_path("slow.bin"), data)
    env = {**os.environ, "OMNIGET_STATE_DIR": str(tmp_path)}
    start = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-m", "omniget", "-O", "-", "--limit-rate", "1M", url],
        capture_output=True, env=env, timeout=60,
    )
    assert res.returncode == 0 and res.stdout == data
    assert time.monotonic() - start >= 0.45


def test_debug_shows_requests_and_answers(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    url = httpd.add(httpd.new_path("d.bin"), payload(10_000, 34))
    res = omniget(url, "-o", str(tmp_path / "o"), "--debug", state=tmp_path / "st")
    assert res.returncode == 0, res.stderr
    assert f"GET {url} -> 200" in res.stderr
    quiet = omniget(url, "-o", str(tmp_path / "p"), state=tmp_path / "st")
    assert "GET " not in quiet.stderr


def test_user_credentials_go_to_the_first_urls_server_only(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    first = httpd.add(httpd.new_path("one.txt"), b"one")
    second = httpd.add(httpd.new_path("two.txt"), b"two").replace("127.0.0.1", "localhost")
    res = omniget(first, second, "-o", str(tmp_path / "o"), "--user", "alice:s3cret",
                  state=tmp_path / "st")
    assert res.returncode == 0, res.stderr
    [one] = httpd.requests_to("/" + first.split("/", 3)[3])
    [two] = httpd.requests_to("/" + second.split("/", 3)[3])
    assert one.headers.get("authorization", "").startswith("Basic ")
    assert "authorization" not in two.headers


@pytest.mark.parametrize("flags", [["--debug"], ["-v", "--json"]], ids=["debug", "json"])
def test_secrets_never_reach_the_output_of_a_real_run(
    httpd: HTTPServer, tmp_path: Path, flags: list[str]
) -> None:
    """Through the CLI and the real transport (the CLI's own tests use a stand-in API): a
    password in the URL, one given by --user, a bearer token, a cookie, a token in the
    query string. One file is refused (401 names its URL), one is fetched."""
    path = httpd.new_path("r.bin")
    httpd.add(path, b"never")
    refused = httpd.url(path, auth="alice:right-pass")
    fine = httpd.add(httpd.new_path("f.bin"), b"fine")
    with_pass = refused.replace("http://", "http://bob:url-pass-123@", 1)
    with_token = f"{fine}?token=query-tok-456&auth_token=query-tok-457&X-Amz-Signature=sig-458"
    # a token as the URL's user name (as git hosts take one): it is fetched, and said
    as_user = httpd.add(httpd.new_path("g.bin"), b"good").replace("http://", "http://user-tok-222@")
    res = omniget(
        with_pass, with_token, as_user, "-o", str(tmp_path / "o"), *flags,
        "--user", "carol:user-pass-789",
        "-H", "Authorization: Bearer head-tok-000",
        "-H", "Cookie: sid=cookie-val-111",
        state=tmp_path / "st",
    )
    assert res.returncode == 5, res.stderr
    assert (tmp_path / "o" / "f.bin").read_bytes() == b"fine"
    assert (tmp_path / "o" / "g.bin").read_bytes() == b"good"
    said = res.stdout + res.stderr
    assert "401" in said
    for secret in ("url-pass-123", "user-pass-789", "head-tok-000", "cookie-val-111",
                   "query-tok-456", "query-tok-457", "sig-458", "user-tok-222"):
        assert secret not in said, secret


def flocked(path: Path) -> bool:
    """Whether a process holds a flock on the file at ``path``, as /proc/locks lists them
    (looked at without taking the lock: a try to take it could make its holder's own try
    fail, if they met)."""
    try:
        st = os.stat(path)
        with open("/proc/locks", encoding="ascii") as f:
            locks = f.read()
    except OSError:
        return False
    at = f" {os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino} "
    return any(line.split()[1:2] == ["FLOCK"] and at in line for line in locks.splitlines())


@pytest.mark.parametrize("same_url", [True, False])
def test_a_second_run_on_the_same_file_stops_clearly(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, same_url: bool
) -> None:
    """Two omniget processes writing one file of one folder: the second stops with exit 7
    and a plain message, and the first one's file comes out whole. Before, the same URL
    twice was an internal error (its journal record deleted under it), and two URLs of
    one name saved the second's bytes under the first's "done"."""
    first, other = payload(4 * MiB, 51), payload(4 * MiB, 52)
    a, b = httpd.new_path("data.bin"), httpd.new_path("data.bin")
    httpd.add(a, first)
    httpd.add(b, other)
    out, state = tmp_path / "out", tmp_path / "state"
    # ~2.8 s at one connection; stopped (SIGSTOP) midway while the second one runs, so
    # that it is still there however long the second takes to start on a loaded machine
    running = start(httpd.url(a, drip=1_500_000), "-o", str(out), "-N", "1", state=state)
    try:
        # Stopped once its part file is locked, not as soon as it is there: stopped between
        # the two, its file is free to take (as a dead run's), and the second run does, so
        # that this one stops at its lock (exit 7; see tests/unit/test_assemble.py).
        wait_for(lambda: running.poll() is not None or flocked(out / "data.bin.omniget-part"))
        running.send_signal(signal.SIGSTOP)
        assert running.poll() is None, running.stderr.read() if running.stderr else ""
        try:
            second = omniget(httpd.url(a if same_url else b), "-o", str(out), state=state)
        finally:
            running.send_signal(signal.SIGCONT)
        assert running.wait(timeout=60) == 0, running.stderr.read() if running.stderr else ""
    finally:
        running.kill()
    assert second.returncode == 7, second.stderr
    assert "being downloaded by another omniget run" in second.stderr
    assert "Traceback" not in second.stderr and "internal error" not in second.stderr
    assert (out / "data.bin").read_bytes() == first
    assert sorted(p.name for p in out.iterdir()) == ["data.bin"]


def test_a_second_run_meeting_the_journal_locked_by_the_first_stops_clearly(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """The first run stopped (SIGSTOP) inside a journal transaction, its part file locked:
    the test plays it, holding both. The second waits OPEN_WAIT for the journal, goes on
    without resume state, and stops as when it meets the part file alone (exit 7, that
    run's line), leaving the part file as it is. Before, it said the part file was kept
    "not resumed" and told the user to delete it: the live file of the other run."""
    url = httpd.add(httpd.new_path("data.bin"), payload(64 * 1024, 53))
    out, state = tmp_path / "out", tmp_path / "state"
    out.mkdir()
    Journal.in_dir(state).close()
    part = out / "data.bin.omniget-part"
    part.write_bytes(b"first run's bytes")
    with open(part, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        db = sqlite3.connect(state / FILENAME, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            second = omniget(url, "-o", str(out), state=state)
        finally:
            db.close()
    assert second.returncode == 7, second.stderr
    lines = second.stderr.splitlines()
    assert "open failed: database is locked" in lines[0]
    assert lines[1] == (f"omniget: error: {out / 'data.bin'} is being downloaded by another"
                        " omniget run in the same folder; run again once it is done")
    assert part.read_bytes() == b"first run's bytes"
    assert sorted(p.name for p in out.iterdir()) == [part.name]


def test_a_state_folder_that_is_a_file_is_a_warning_not_a_stop(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """As curl and aria2, which keep working without state: one warning line, then the
    download (exit 0). Before: exit 7 and nothing downloaded."""
    data = payload(300_000, 41)
    url = httpd.add(httpd.new_path("w.bin"), data)
    state = tmp_path / "state"
    state.write_text("not a folder")
    res = omniget(url, "-o", str(tmp_path / "o"), state=state)
    assert res.returncode == 0, res.stderr
    first = res.stderr.splitlines()[0]
    assert first == (f"omniget: warning: resume journal {state / 'journal.sqlite'}: open failed:"
                     f" {state} is a file, not a folder (see the state-dir set by environment"
                     " variable OMNIGET_STATE_DIR);"
                     " downloading without resume state")
    assert (tmp_path / "o" / "w.bin").read_bytes() == data
    quiet = omniget(url, "-o", str(tmp_path / "q"), "-q", state=state)
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_a_read_only_journal_is_found_out_before_any_byte(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """Before, it opened fine and the first file failed at its first checkpoint (exit 7),
    its part file kept with no record of its bytes (so a rerun started it over)."""
    data = payload(3 * MiB, 42)
    url = httpd.add(httpd.new_path("ro.bin"), data)
    state = tmp_path / "state"
    first = omniget(httpd.add(httpd.new_path("x"), b"x"), "-o", str(tmp_path / "x"), "-q",
                    state=state)
    assert first.returncode == 0, first.stderr
    (state / "journal.sqlite").chmod(0o400)
    kw: dict[str, object] = {}
    if os.geteuid() == 0:
        kw["preexec_fn"] = drop_mode_overrides
    res = omniget(url, "-o", str(tmp_path / "o"), "--split", "1", "--limit-rate", "6M",
                  state=state, **kw)
    if os.geteuid() == 0 and "readonly" not in res.stderr:
        pytest.skip("running as root and cannot drop CAP_DAC_OVERRIDE here")
    assert res.returncode == 0, res.stderr
    assert res.stderr.splitlines()[0] == (
        f"omniget: warning: resume journal {state / 'journal.sqlite'}: open failed:"
        " attempt to write a readonly database (journal.sqlite: permission denied);"
        " downloading without resume state")
    assert (tmp_path / "o" / "ro.bin").read_bytes() == data
    assert os.listdir(tmp_path / "o") == ["ro.bin"]


def test_a_state_folder_removed_during_a_run_is_made_again(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """Before, the run went on recording into the removed journal (SQLite keeps it
    open): no word of it, and a rerun after a kill found no record and started over."""
    data = payload(24 * MiB, 45)
    path = httpd.new_path("gone.bin")
    url = httpd.add(path, data)
    out, state = tmp_path / "out", tmp_path / "state"
    proc = start(url, "-o", str(out), "--split", "1", "--limit-rate", "4M", state=state)
    wait_for(lambda: recorded(state) >= 1 * MiB)
    shutil.rmtree(state)
    wait_for(lambda: recorded(state) > 0)  # (made again, with the run's records)
    again = recorded(state)
    wait_for(lambda: recorded(state) > again)  # (a later write: the warning is out)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=30)
    assert f"resume journal {state / FILENAME}: it was removed during the run; made again" \
        in err.decode(), err
    assert httpd.wait_closed()  # (each request of the run before logged)
    httpd.clear_log()
    done = omniget(url, "-o", str(out), "-q", state=state)
    assert done.returncode == 0, done.stderr
    assert (out / "gone.bin").read_bytes() == data
    assert min(range_start(r) for r in httpd.requests_to(path)) >= again  # resumed


@pytest.mark.parametrize("which", ["journal.sqlite", "journal.sqlite-wal", "journal.sqlite-shm"])
def test_a_journal_file_this_user_cannot_open_is_named(
    httpd: HTTPServer, tmp_path: Path, which: str
) -> None:
    """The journal, or the -wal / -shm file SQLite keeps beside it (left by another
    user's run, say), cannot be opened: before, the warning said only "unable to open
    database file", whichever it was."""
    url = httpd.add(httpd.new_path("u.bin"), b"data")
    state = tmp_path / "state"
    held = Journal.in_dir(state)  # (keeps the -wal and -shm files there)
    try:
        held.start("k", path="p", url="u", size=None, etag=None, last_modified=None)
        (state / which).chmod(0)
        kw: dict[str, object] = {}
        if os.geteuid() == 0:
            kw["preexec_fn"] = drop_mode_overrides
        res = omniget(url, "-o", str(tmp_path / "o"), state=state, **kw)
    finally:
        held.close()
    if os.geteuid() == 0 and "unable to open" not in res.stderr:
        pytest.skip("running as root and cannot drop CAP_DAC_OVERRIDE here")
    assert res.returncode == 0, res.stderr
    assert res.stderr.splitlines()[0] == (
        f"omniget: warning: resume journal {state / FILENAME}: open failed: unable to open"
        f" database file ({which}: permission denied); downloading without resume state")


def test_a_journal_file_of_another_user_says_whose_it_is(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """A run as root (sudo keeping HOME) left the -shm file in the user's state folder:
    before, the warning said only "unable to open database file"."""
    if os.geteuid() != 0:
        pytest.skip("making a file another user's needs root")
    url = httpd.add(httpd.new_path("w.bin"), b"data")
    state = tmp_path / "state"
    held = Journal.in_dir(state)  # (keeps the -wal and -shm files there)
    try:
        held.start("k", path="p", url="u", size=None, etag=None, last_modified=None)
        os.chown(state / "journal.sqlite-shm", 65534, 65534)
        res = omniget(url, "-o", str(tmp_path / "o"), state=state,
                      preexec_fn=drop_mode_overrides)
    finally:
        held.close()
    if "unable to open" not in res.stderr:
        pytest.skip("running as root and cannot drop CAP_DAC_OVERRIDE here")
    try:
        owner = pwd.getpwuid(65534).pw_name
    except KeyError:
        owner = "uid 65534"
    assert res.stderr.splitlines()[0] == (
        f"omniget: warning: resume journal {state / FILENAME}: open failed: unable to open"
        f" database file (journal.sqlite-shm: permission denied; it is {owner}'s, not this"
        " user's: left by a run as another user, under sudo say); downloading without"
        " resume state")


def test_interrupted_without_a_journal_says_a_rerun_starts_over(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    data = payload(6 * MiB, 43)
    path = httpd.new_path("nj.bin")
    url = httpd.add(path, data)
    out, state = tmp_path / "out", tmp_path / "state"
    state.write_text("not a folder")
    proc = start(url, "-o", str(out), "--limit-rate", "4M", state=state)
    part = out / "nj.bin.omniget-part"
    wait_for(lambda: part.exists() and part.stat().st_blocks * 512 > 0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert err.decode().splitlines()[-1] == (
        "omniget: error: interrupted; what the resume journal could not record"
        " (see the warning above) starts over on a rerun")
    assert not out.exists()  # (a part file nothing could resume; the folder it made)


def test_a_full_state_disk_is_a_warning_and_the_download_goes_on(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """The state folder's disk is full: before, the file failed at its first checkpoint
    (exit 7), its fetched bytes in a part file nothing recorded."""
    small = tmp_path / "small"
    if not _tmpfs(small, "256k"):
        pytest.skip("cannot mount a tmpfs here (needs root and mount)")
    try:
        state = small / "state"
        first = omniget(httpd.add(httpd.new_path("x"), b"x"), "-o", str(tmp_path / "x"), "-q",
                        state=state)
        assert first.returncode == 0, first.stderr
        fd = os.open(small / "filler", os.O_WRONLY | os.O_CREAT)  # the rest of the disk
        with contextlib.suppress(OSError):
            while os.write(fd, b"\0" * 4096):
                pass
        os.close(fd)
        data = payload(3 * MiB, 44)
        url = httpd.add(httpd.new_path("fs.bin"), data)
        res = omniget(url, "-o", str(tmp_path / "o"), "--split", "1", state=state)
        assert res.returncode == 0, res.stderr
        [warning] = [ln for ln in res.stderr.splitlines() if "warning" in ln]
        assert warning.startswith(f"omniget: warning: resume journal {state / 'journal.sqlite'}")
        assert warning.endswith((
            "; downloading without resume state",  # (at the open,
            "; going on without resume state for the rest of the run",  # or later)
        ))
        assert (tmp_path / "o" / "fs.bin").read_bytes() == data
        assert os.listdir(tmp_path / "o") == ["fs.bin"]
    finally:
        subprocess.run(["umount", str(small)], capture_output=True)


def test_a_run_started_with_sigint_ignored_keeps_ignoring_it(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path
) -> None:
    """``omniget URL &`` in a script starts it with SIGINT ignored, so that the terminal's
    Ctrl+C (meant for the script) leaves it alone: it downloads on, as curl and wget do.
    Before, the download's own handler took SIGINT over and stopped. SIGTERM still stops."""
    data = payload(3 * MiB, 24)
    url = httpd.add(httpd.new_path("bg.bin"), data)
    out = tmp_path / "out"

    def ignore_sigint() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    proc = start(url, "-o", str(out), "--limit-rate", "4M", state=tmp_path / "state",
                 preexec_fn=ignore_sigint)
    part = out / "bg.bin.omniget-part"
    wait_for(lambda: part.exists() and part.stat().st_blocks * 512 > 0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert (out / "bg.bin").read_bytes() == data
    slow = httpd.new_path("slow.bin")
    httpd.add(slow, payload(MiB, 25))
    proc = start(httpd.url(slow, drip=20_000), "-o", str(out), state=tmp_path / "state",
                 preexec_fn=ignore_sigint)
    wait_for(lambda: (out / "slow.bin.omniget-part").exists())
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err


def test_tls_is_verified_unless_turned_off_with_a_warning(
    httpsd: HTTPServer, tls_ca_path: Path, tmp_path: Path
) -> None:
    """The real CLI over TLS: a certificate of an unknown CA is refused by default; the
    CA given with --ca-cert is trusted; --insecure fetches it, saying it did not check."""
    url = httpsd.add(httpsd.new_path("t.bin"), b"secure")
    state = tmp_path / "st"
    refused = omniget(url, "-o", str(tmp_path / "a"), "--retries", "0", state=state)
    assert refused.returncode == 3, refused.stderr
    assert "--ca-cert" in refused.stderr
    assert not (tmp_path / "a" / "t.bin").exists()
    trusted = omniget(url, "-o", str(tmp_path / "b"), "--ca-cert", str(tls_ca_path), state=state)
    assert trusted.returncode == 0, trusted.stderr
    assert "warning" not in trusted.stderr
    assert (tmp_path / "b" / "t.bin").read_bytes() == b"secure"
    unchecked = omniget(url, "-o", str(tmp_path / "c"), "--insecure", state=state)
    assert unchecked.returncode == 0, unchecked.stderr
    assert "warning: TLS certificates are not verified (--insecure)" in unchecked.stderr
    assert (tmp_path / "c" / "t.bin").read_bytes() == b"secure"


@pytest.mark.parametrize("rate", [[], ["--limit-rate", "64M"]], ids=["own", "libcurl"])
def test_a_run_stopped_longer_than_the_stall_window_goes_on_whole_when_continued(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, rate: list[str]
) -> None:
    """``kill -STOP``, then ``kill -CONT`` (Ctrl+Z, then fg) after more than the stall
    window (``--timeout 2``), a split file, small files and a file whose server is
    silent across the stop among those in flight: the stop is not the servers' stall,
    the run ends whole with no retry, one request for the file held. (Its requests go on
    omniget's own connections, or with a rate limit on libcurl's: each watches for
    stalls its own way.)"""
    held, big = payload(300_000, 61), payload(6 * MiB, 62)
    small = {f"s{i}.bin": payload(60_000, 70 + i) for i in range(10)}
    urls = []
    hold = httpd.new_path("held.bin")
    httpd.add(hold, held)
    urls.append(httpd.url(hold, hold="h"))
    for name, data in {"big.bin": big, **small}.items():
        path = httpd.new_path(name)
        httpd.add(path, data)
        urls.append(httpd.url(path, drip=MiB if name == "big.bin" else 100_000))
    out, state = tmp_path / "out", tmp_path / "state"
    proc = start(*urls, "-o", str(out), "-j", "4", "--split", "4", "--timeout", "2", *rate,
                 state=state)
    try:
        assert httpd.held("h")  # (its first bytes came: the server is silent from here)
        proc.send_signal(signal.SIGSTOP)
        time.sleep(5)  # (the point: 2.5 stall windows, stopped)
        proc.send_signal(signal.SIGCONT)
    finally:
        httpd.release("h")
    assert proc.stderr is not None
    err = proc.communicate(timeout=120)[1].decode()
    assert proc.returncode == 0, err
    assert "retry" not in err and "stalled" not in err, err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {
        "held.bin": held, "big.bin": big, **small}
    assert len(httpd.requests_to(hold)) == 1


@pytest.mark.parametrize("name", ["SIGWINCH", "SIGCONT", "SIGUSR1", "SIGUSR2"])
def test_other_signals_change_nothing_or_end_the_run_as_their_defaults_do(
    httpd: HTTPServer, payload: Callable[..., bytes], tmp_path: Path, name: str
) -> None:
    """A window resized (SIGWINCH) or a SIGCONT that stopped nothing: the run goes on to
    its end. SIGUSR1 and SIGUSR2, which omniget gives no meaning, end it as their
    defaults do (as curl's), with no word: what the journal has is kept, as after a
    SIGKILL, and the same command resumes."""
    signum = getattr(signal, name)
    data = payload(8 * MiB, 63)  # (4 s: half of it left once the journal has 2 MiB)
    path = httpd.new_path("o.bin")
    url = httpd.add(path, data)
    out, state = tmp_path / "out", tmp_path / "state"
    proc = start(httpd.url(path, drip=MiB), "-o", str(out), "-q", "--split", "2",
                 state=state)
    wait_for(lambda: recorded(state) >= 2 * MiB)
    proc.send_signal(signum)
    assert proc.stderr is not None
    err = proc.communicate(timeout=60)[1].decode()
    ends = signum in (signal.SIGUSR1, signal.SIGUSR2)
    assert (proc.returncode, err) == (-signum if ends else 0, "")
    if ends:
        assert httpd.wait_closed()  # (each request of the run before logged)
        httpd.clear_log()
        rerun = omniget(url, "-o", str(out), "-q", state=state)
        assert rerun.returncode == 0, rerun.stderr
        assert sum(r.sent for r in httpd.requests_to(path)) <= len(data) - 2 * MiB
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {"o.bin": data}
