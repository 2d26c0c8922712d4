"""A socket libcurl closed leaves no watch of its number on the event loop: the next
socket given that number (another run's, the program's own) is watched as its own."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.servers.httpd import HTTPServer

import omniget
from omniget.engine import Engine


def test_a_program_s_own_socket_after_a_run_on_a_kept_engine_is_heard(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """The file's connection closed at its end (a close-delimited body) while the engine
    stays open: the program's next connection, on the same loop, most often gets that
    socket's number. asyncio took it for the old one still registered (FileNotFoundError
    from its selector, or a read that never woke)."""
    url = httpd.add(httpd.new_path("a.bin"), b"a" * 3_000_000) + "?nolength=1"
    other = httpd.add(httpd.new_path("b.bin"), b"b" * 10)

    async def main() -> bytes:
        engine = Engine(omniget.Settings(state_dir=tmp_path / "state"))
        try:
            report = await omniget.adownload(url, tmp_path / "out", engine=engine)
            assert report.succeeded
            reader, writer = await asyncio.open_connection("127.0.0.1", httpd.port)
            try:
                path = other.partition(f":{httpd.port}")[2]
                writer.write(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
                return await asyncio.wait_for(reader.read(), 10)
            finally:
                writer.close()
        finally:
            await engine.aclose()

    answer = asyncio.run(main())
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"b" * 10)
