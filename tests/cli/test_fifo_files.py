"""Files the user names (--cookies, -i, --config, --ca-cert) that are FIFOs: one nobody
writes to must not hold the run past one Ctrl+C, and one that is written (a shell's
``<(...)``, a named FIFO fed by another program) is read as its text. Before, a FIFO given
as --cookies was opened once the run's own Ctrl+C handling was on: the first Ctrl+C only
asked the run to stop, and the open went on waiting; a second one was needed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from tests.servers.checks import wait_for
from tests.servers.httpd import HTTPServer

from omniget.cli import main

pytestmark = pytest.mark.isolated(work=True)


def _waits_for_a_writer(pid: int) -> bool:
    """The process's main thread is in an open of a FIFO, waiting for its writer."""
    try:
        return Path(f"/proc/{pid}/wchan").read_text() == "wait_for_partner"
    except OSError:
        return False


@pytest.mark.parametrize("option", ["--cookies", "-i", "--config"])
def test_a_fifo_nobody_writes_takes_one_ctrl_c(tmp_path: Path, option: str) -> None:
    fifo = tmp_path / "work" / "pipe"
    os.mkfifo(fifo)
    env = {**os.environ, "OMNIGET_STATE_DIR": str(tmp_path / "state"), "NO_COLOR": "1"}
    args = [option, str(fifo)] + ([] if option == "-i" else ["http://127.0.0.1:9/x.bin"])
    with subprocess.Popen([sys.executable, "-m", "omniget", *args], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:
        try:
            wait_for(lambda: _waits_for_a_writer(proc.pid), timeout=60)
            proc.send_signal(signal.SIGINT)
            try:
                _, err = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                pytest.fail(f"{option} FIFO: one Ctrl+C did not end the run")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 130
    said = err.decode().strip().splitlines()[-1]
    if option == "--cookies":  # (a FIFO that can be fed again)
        assert said.startswith("omniget: error: interrupted")
    else:  # nothing began, and the FIFO's text cannot be read again: no resume promised
        assert err.decode() == "omniget: error: interrupted\n"
        assert not (tmp_path / "state").exists()  # (no journal)


def test_a_ca_cert_fifo_is_refused_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           ) -> None:
    os.mkfifo("pipe")
    assert main(["--ca-cert", "pipe", "https://127.0.0.1:9/x.bin"]) == 2
    assert capsys.readouterr().err == "omniget: error: --ca-cert pipe: not a file or folder\n"


def _feed(path: Path, text: str) -> threading.Thread:
    """A writer for the FIFO at ``path``: opens it (once a reader does) and writes."""

    def write() -> None:
        with open(path, "w") as f:
            f.write(text)

    feeder = threading.Thread(target=write, daemon=True)
    feeder.start()
    return feeder


def test_a_cookies_fifo_that_is_written_is_read(httpd: HTTPServer) -> None:
    url = httpd.add(httpd.new_path("c.bin"), b"data")
    os.mkfifo("cookies")
    feeder = _feed(Path("cookies"), "127.0.0.1\tFALSE\t/\tFALSE\t0\tsid\tabc\n")
    assert main(["-q", "--cookies", "cookies", url]) == 0
    feeder.join(10)
    assert Path("c.bin").read_bytes() == b"data"
    assert [r.header("cookie") for r in httpd.requests] == ["sid=abc"]


def test_a_cookies_pipe_serves_every_request_of_the_run(httpd: HTTPServer) -> None:
    """``--cookies <(...)``: a pipe can be read once; each connection pool the run makes
    gets its cookies all the same."""
    urls = [httpd.add(httpd.new_path(f"p{i}.bin"), b"x") for i in range(3)]
    read, write = os.pipe()
    os.write(write, b"127.0.0.1\tFALSE\t/\tFALSE\t0\tsid\tabc\n")
    os.close(write)
    try:
        assert main(["-q", "--cookies", f"/dev/fd/{read}", *urls]) == 0
    finally:
        os.close(read)
    assert [r.header("cookie") for r in httpd.requests] == ["sid=abc"] * 3


def test_a_later_run_reads_the_file_of_that_name_then(httpd: HTTPServer) -> None:
    """Two runs in one process (a program calling main twice): a cookies FIFO, then a
    file of the same name; the second run sends the file's cookies, not the FIFO's."""
    url = httpd.add(httpd.new_path("c.bin"), b"data")
    os.mkfifo("cookies")
    feeder = _feed(Path("cookies"), "127.0.0.1\tFALSE\t/\tFALSE\t0\tsid\tfifo\n")
    assert main(["-q", "--cookies", "cookies", "-o", "one", url]) == 0
    feeder.join(10)
    os.unlink("cookies")
    Path("cookies").write_text("127.0.0.1\tFALSE\t/\tFALSE\t0\tsid\tfile\n")
    assert main(["-q", "--cookies", "cookies", "-o", "two", url]) == 0
    assert [r.header("cookie") for r in httpd.requests] == ["sid=fifo", "sid=file"]
