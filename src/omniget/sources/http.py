"""Plain links: the fallback source. It makes no request: the engine learns the size and
the server's file name (Content-Disposition) from the download's own first answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from ..errors import UsageError
from ..model import Item
from .base import Source

__all__ = ["HttpSource"]


class HttpSource(Source):
    name = "http"
    patterns = (r"^https?://[^/?#\s]+",)
    examples = ("https://example.com/files/archive.zip", "http://127.0.0.1:8080/a%20b.bin")

    async def items(self) -> AsyncIterator[Item]:
        try:
            _ = urlsplit(self.url).port  # (a bad port or bracket raises)
        except ValueError as e:
            raise UsageError(f"not a valid URL: {e}") from None
        yield Item(download_url=self.url, source=self.name, name_from_server=True)


SOURCE = HttpSource
