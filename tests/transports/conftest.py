"""Fixtures of the pool tests (test_pipeline_pool.py, test_h1conn.py); the other modules
here define their own ``srv``."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from ._pool_kit import PLAIN, want
from ._server import Server, static


@pytest.fixture
def srv() -> Iterator[Server]:
    with Server() as server:
        for i in range(40):
            server.route(f"/f{i}", static(want(f"/f{i}")))
        for p in PLAIN:
            server.route(f"/{p}", static(want(f"/{p}")))
        yield server


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port
