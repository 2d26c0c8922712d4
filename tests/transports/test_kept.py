"""KeptConnections: shutting libcurl's idle connections by socket number, safely."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from omniget.engine.transports.kept import KeptConnections


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as srv:
        yield srv


def connect(srv: socket.socket) -> tuple[socket.socket, socket.socket]:
    client = socket.create_connection(srv.getsockname())
    server_side, _ = srv.accept()
    return client, server_side


def peer_sees_eof(server_side: socket.socket) -> bool:
    server_side.settimeout(2)
    return server_side.recv(10) == b""


def test_a_noted_connection_is_shut_and_its_descriptor_stays_open(
    listener: socket.socket,
) -> None:
    client, server_side = connect(listener)
    with client, server_side:
        kept = KeptConnections()
        kept.note("h:80", client.fileno())
        assert kept.has("h:80")
        assert kept.shut("h:80") == 1
        assert peer_sees_eof(server_side)
        assert client.fileno() >= 0 and not kept.has("h:80")
        assert kept.shut("h:80") == 0  # forgotten once shut


def test_in_use_and_spare_connections_stay(listener: socket.socket) -> None:
    pairs = [connect(listener) for _ in range(3)]
    try:
        kept = KeptConnections()
        for client, _ in pairs:
            kept.note("h:80", client.fileno())
        busy = pairs[0][0].fileno()
        assert kept.shut("h:80", in_use={busy}, spare=1) == 1
        assert kept.shut("h:80", in_use={busy}) == 1  # the spare one, now
        assert kept.has("h:80")  # the busy one is still noted
        pairs[0][1].sendall(b"x")
        assert pairs[0][0].recv(1) == b"x"  # and still works
        assert kept.shut("h:80") == 1
    finally:
        for client, server_side in pairs:
            client.close()
            server_side.close()


def test_a_number_reused_by_another_connection_is_left_alone(listener: socket.socket) -> None:
    first, first_server = connect(listener)
    kept = KeptConnections()
    kept.note("h:80", first.fileno())
    second, second_server = connect(listener)
    # libcurl closed the first connection and the second got its number: dup2 does both
    # at once (a number closed and left free could go to another thread's file first)
    fd = first.detach()
    os.dup2(second.fileno(), fd)
    try:
        with second, second_server, first_server:
            assert peer_sees_eof(first_server)  # (the first connection is gone)
            assert kept.shut("h:80") == 0
            second_server.sendall(b"ok")
            assert os.read(fd, 2) == b"ok"  # the number's connection still works
    finally:
        os.close(fd)


def test_a_number_that_is_no_socket_is_not_noted() -> None:
    kept = KeptConnections()
    with open(__file__, "rb") as f:
        kept.note("h:80", f.fileno())
    kept.note("h:80", 10_000)  # not open at all
    assert not kept.has("h:80")
