"""A source's small API answer (:meth:`HttpClient.request <.base.HttpClient.request>`).
Loaded when a source makes its first request: making the dataclass would cost every
other start (a plain URL's download makes none)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ParseError

__all__ = ["Response"]


@dataclass
class Response:
    """A source's small API answer, read whole."""

    status: int
    url: str
    headers: Mapping[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        try:
            import json  # (imported where used: start-up time)
            return json.loads(self.body)
        except ValueError as exc:
            raise ParseError(f"expected JSON from {self.url}, got {self.body[:80]!r}") from exc
