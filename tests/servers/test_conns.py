"""The kernel's count of a client's connections (conns.py) against plain sockets."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from tests.servers import conns


@pytest.fixture(autouse=True)
def _counts() -> None:
    if not conns.can_count():
        pytest.skip("needs Linux's sock_diag netlink to count connections")


class Listener:
    """A listening socket on 127.0.0.1 whose clients connect and are accepted at once;
    every socket closes with the stack."""

    def __init__(self, stack: ExitStack) -> None:
        self.stack = stack
        self.sock = stack.enter_context(socket.create_server(("127.0.0.1", 0), backlog=200))
        self.port: int = self.sock.getsockname()[1]

    def connect(self, n: int) -> list[socket.socket]:
        """``n`` more connections; their client sockets."""
        clients = []
        for _ in range(n):
            clients.append(
                self.stack.enter_context(socket.create_connection(("127.0.0.1", self.port)))
            )
            self.stack.enter_context(self.sock.accept()[0])
        return clients


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as s:
        yield s


def test_every_answer_of_a_long_dump_is_read(stack: ExitStack) -> None:
    ours, other = Listener(stack), Listener(stack)
    ours.connect(60)
    other.connect(5)
    answers = list(conns._answers(socket.AF_INET, ours.port))
    assert len([a for a in answers if a]) >= 2  # (the kernel answers in pieces)
    assert sum(map(len, answers)) == 60
    assert conns.established(ours.port) == 60 and conns.established(other.port) == 5


def test_a_count_is_one_walk_of_the_table_however_many_other_sockets_there_are(
    stack: ExitStack,
) -> None:
    """The kernel sends only the sockets to the port asked for, so a test's few fit in
    its first answer, made in one walk. Asked for every port, as before, the walk went on
    at each read, and sockets opened between two reads counted too (40 here)."""
    ours, other = Listener(stack), Listener(stack)
    other.connect(100)  # (more than one answer holds)
    ours.connect(20)
    answers = conns._answers(socket.AF_INET, ours.port)
    first = next(answers)
    ours.connect(20)  # after the walk: not counted
    assert len(first) == 20 and sum(map(len, answers)) == 0
    assert conns.established(ours.port) == 40


def test_a_count_is_true_at_one_moment_while_sockets_close_and_open(
    stack: ExitStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A count is one moment of the kernel's table though its walk is not: here one of
    four IPv4 connections closes and an IPv6 one opens once the IPv4 table was walked
    (as a socket may close once its bucket was walked, and another open in one walked
    later, on a busy machine). Four were open at every moment; counted from one walk,
    the closed one and the new one both counted (5)."""
    ours = Listener(stack)
    clients = ours.connect(4)
    v6 = stack.enter_context(
        socket.create_server(("::1", ours.port), family=socket.AF_INET6, backlog=10)
    )
    answers = conns._answers
    churned: list[int] = []

    def churning(family: int, port: int) -> Iterator[list[bytes]]:
        if family == socket.AF_INET6 and not churned:  # (the IPv4 table was walked)
            churned.append(port)
            clients[0].close()  # (its FIN: no longer established)
            stack.enter_context(socket.create_connection(("::1", ours.port)))
            stack.enter_context(v6.accept()[0])
        yield from answers(family, port)

    monkeypatch.setattr(conns, "_answers", churning)
    assert conns.established(ours.port) == 4
    assert churned == [ours.port]


def test_a_connection_open_while_settle_waits_is_counted(stack: ExitStack) -> None:
    """However late the sampler gets its turn (a loaded machine): a connection open from
    before ``settle()`` until it returns is in the peak; a sampler that had no turn while
    a run's connections were open left it at 0."""
    listener = Listener(stack)
    with conns.PeakConnections(listener.port) as peak:
        [client] = listener.connect(1)
        peak.settle()
        client.close()
    assert peak.peak == 1
