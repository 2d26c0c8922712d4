"""A TCP proxy that delays every byte by a fixed time in each direction.

Used by the S5p benchmark: with ``--delay 0.010`` a client talking to the proxy sees a
20 ms round trip to the server behind it, on plain loopback and without ``tc netem``
(which needs a kernel module that many VMs lack). Bandwidth is not limited: a chunk read
at time t is written at t + delay, while later chunks keep being read meanwhile.

Run it on its own::

    python bench/delayproxy.py --target 127.0.0.1:8080 --delay 0.010

It prints ``LISTENING <host> <port>`` once it accepts connections. ``bench/run.py`` starts
it as a child process so that its CPU time can be told apart from the client's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys
from collections.abc import Awaitable, Callable

CHUNK = 256 * 1024


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy reader -> writer, each chunk written ``delay`` seconds after it was read."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue()

    async def read_side() -> None:
        try:
            while True:
                data = await reader.read(CHUNK)
                queue.put_nowait((loop.time() + delay, data or None))
                if not data:
                    return
        except (ConnectionError, OSError):
            queue.put_nowait((loop.time() + delay, None))

    async def write_side() -> None:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if data is None:
                if writer.can_write_eof():
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    reading = asyncio.create_task(read_side())
    try:
        await write_side()
    finally:
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
            await reading


def make_handler(
    target_host: str, target_port: int, delay: float
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    async def handle(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        try:
            s_reader, s_writer = await asyncio.open_connection(target_host, target_port)
        except OSError:
            c_writer.close()
            return
        for w in (c_writer, s_writer):
            sock = w.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        up = asyncio.create_task(_pump(c_reader, s_writer, delay))
        down = asyncio.create_task(_pump(s_reader, c_writer, delay))
        try:
            # A connection ends when both directions are done or either one fails.
            await asyncio.gather(up, down)
        except (ConnectionError, OSError):
            pass
        finally:
            for task in (up, down):
                task.cancel()
            for w in (c_writer, s_writer):
                w.close()
                with contextlib.suppress(ConnectionError, OSError):
                    await w.wait_closed()

    return handle


async def serve(listen_host: str, listen_port: int, target: str, delay: float) -> None:
    host, _, port = target.rpartition(":")
    handler = make_handler(host, int(port), delay)
    server = await asyncio.start_server(handler, listen_host, listen_port, backlog=512)
    bound = server.sockets[0].getsockname()
    print(f"LISTENING {bound[0]} {bound[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:0", help="host:port (port 0 = any)")
    parser.add_argument("--target", required=True, help="host:port of the real server")
    parser.add_argument(
        "--delay", type=float, default=0.010, help="seconds added each way (default 0.010)"
    )
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        parser.error("the proxy only listens on 127.0.0.1")
    try:
        asyncio.run(serve(host, int(port), args.target, args.delay))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
