"""Fixtures of the pool tests (test_pipeline_pool.py, test_h1conn.py); the other modules
here define their own ``srv``. No test here sees the caller's proxy variables."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._pool_kit import PLAIN, want
from ._server import Server, static


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def srv() -> Iterator[Server]:
    with Server() as server:
        for i in range(40):
            server.route(f"/f{i}", static(want(f"/f{i}")))
        for p in PLAIN:
            server.route(f"/{p}", static(want(f"/{p}")))
        yield server
