"""The pipelined reader's race of a host's addresses (h1socket.dial): the order it tries
them in, and what is left of the addresses that lost, however the race ends."""

from __future__ import annotations

import asyncio
import gc
import socket
from types import SimpleNamespace
from typing import Any

import pytest

from omniget.engine.transports.h1socket import dial, interleave


def test_a_race_cancelled_as_an_address_fails_closes_every_socket() -> None:
    """The connection is dropped (its connect task cancelled) in the turn in which one
    of the addresses raced fails: both sockets are closed, and that address's error is
    not logged as never retrieved (cancel() on its finished task marks it seen)."""
    reported: list[dict[str, Any]] = []
    made: list[socket.socket] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: reported.append(context))
        connects: dict[str, asyncio.Future[None]] = {}
        started = asyncio.Event()

        async def sock_connect(sock: socket.socket, addr: tuple[Any, ...]) -> None:
            made.append(sock)
            connects[addr[0]] = fut = loop.create_future()
            if len(connects) == 2:
                started.set()
            await fut

        loop.sock_connect = sock_connect  # type: ignore[method-assign,assignment]
        conn = SimpleNamespace(
            origin=SimpleNamespace(addr=(("127.0.0.1", "127.0.0.2"), 80)),
            pool=SimpleNamespace(loop=loop), socket=None, dialing=(),
        )
        task = loop.create_task(dial(conn, loop.time() + 60))  # type: ignore[arg-type]
        await started.wait()  # (the second address is tried beside the first)
        connects["127.0.0.1"].set_exception(ConnectionRefusedError(111, "refused"))
        task.cancel()  # (in the same turn: the connection ended)
        try:
            await task
        except asyncio.CancelledError:
            pass
        for _ in range(5):  # (the losers close a turn or two later)
            await asyncio.sleep(0)
        del task
        gc.collect()

    asyncio.run(main())
    assert len(made) == 2
    assert all(s.fileno() == -1 for s in made)  # (closed)
    assert reported == []


def test_the_address_that_connects_wins_and_the_others_are_closed() -> None:
    """The first address never answers (its SYN dropped); the second, tried beside it
    after NEXT_ADDRESS_AFTER, connects: its socket is the connection's, and the first's
    connect is cancelled and its socket closed (no descriptor left connecting)."""
    made: dict[str, socket.socket] = {}

    async def main() -> socket.socket:
        loop = asyncio.get_running_loop()

        async def sock_connect(sock: socket.socket, addr: tuple[Any, ...]) -> None:
            made[addr[0]] = sock
            if addr[0] == "127.0.0.1":
                await loop.create_future()  # (never answers)

        loop.sock_connect = sock_connect  # type: ignore[method-assign,assignment]
        conn = SimpleNamespace(
            origin=SimpleNamespace(addr=(("127.0.0.1", "127.0.0.2"), 80)),
            pool=SimpleNamespace(loop=loop), socket=None, dialing=(),
        )
        sock: socket.socket = await dial(conn, loop.time() + 60)  # type: ignore[arg-type]
        assert (conn.socket, conn.dialing) == (sock, ())
        for _ in range(5):  # (the losers close a turn or two later)
            await asyncio.sleep(0)
        return sock

    won = asyncio.run(main())
    try:
        assert won is made["127.0.0.2"] and won.fileno() != -1
        assert made["127.0.0.1"].fileno() == -1
    finally:
        won.close()


V4, V6 = socket.AF_INET, socket.AF_INET6


@pytest.mark.parametrize(
    ("given", "tried"),
    [(["a4", "b4", "c6"], ["c6", "a4", "b4"]),
     (["a6", "b6", "c4"], ["a6", "c4", "b6"]),
     (["a4", "b6", "c4", "d6", "e6", "f6"], ["b6", "a4", "d6", "c4", "e6", "f6"]),
     (["a4", "b4"], ["a4", "b4"]), (["a6"], ["a6"]), ([], [])],
)
def test_the_families_take_turns_ipv6_first(given: list[str], tried: list[str]) -> None:
    """RFC 8305 section 4, as libcurl orders a host's addresses: IPv6 first, then the
    families by turns, each family's addresses in the order given; what one family has
    left over goes last."""
    addresses: list[tuple[int, tuple[Any, ...]]] = [
        (V6 if name.endswith("6") else V4, (name, 80)) for name in given
    ]
    assert [addr[0] for _, addr in interleave(addresses)] == tried


def test_the_race_tries_the_families_by_turns() -> None:
    """Every address refuses at once: the race tried them all, IPv6 first and then by
    turns (the list's order kept a dead family's addresses ahead of the other's)."""
    tried: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()

        async def sock_connect(sock: socket.socket, addr: tuple[Any, ...]) -> None:
            tried.append(addr[0])
            raise ConnectionRefusedError(111, "refused")

        loop.sock_connect = sock_connect  # type: ignore[method-assign,assignment]
        hosts = ("127.0.0.2", "127.0.0.3", "::1", "127.0.0.4", "::2")
        conn = SimpleNamespace(origin=SimpleNamespace(addr=(hosts, 80)),
                               pool=SimpleNamespace(loop=loop), socket=None, dialing=())
        with pytest.raises(ConnectionRefusedError):
            await dial(conn, loop.time() + 60)  # type: ignore[arg-type]

    asyncio.run(main())
    assert tried == ["::1", "127.0.0.2", "::2", "127.0.0.3", "127.0.0.4"]
