"""What a source is: a class that knows one site or format, turns a URL into Items, and
never writes an output file.

A source declares ``name``, ``patterns`` (regular expressions matched against the URL),
``examples`` and ``option_names`` (the options it takes; any other is refused, so a typo
is never silently ignored); its constructor does no I/O; ``items()`` is an async
generator making requests through the injected :class:`SourceContext` (so the user's
proxy, CA and cookie settings apply); ``refresh(item)`` re-resolves expiring URLs when
the engine asks. Two optional hooks: ``check_url(url)`` fails a URL the source can never
fetch before any request, and ``items_at_once()`` gives the items of a source that knows
them without a request (a plain link's). The context holds the settings, the HTTP client
and the source's options; sources log through :mod:`logging`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import field
from typing import TYPE_CHECKING, Any, ClassVar

from .._frozen import compared_dataclass
from ..engine.transports.base import Head, Request, Transport, check_status, transport_for
from ..errors import ParseError, UsageError, nearest
from ..model import Item, Origin
from ..settings import Settings

if TYPE_CHECKING:
    from .response import Response

__all__ = [
    "HttpClient", "Marker", "Reach", "Response", "Source", "SourceContext", "option_problem",
    "source_context", "with_origin",
]

MAX_BODY = 32 * 1024 * 1024  # API answers and pages, never files


def __getattr__(name: str) -> object:
    """:class:`Response` (of :mod:`.response`) is loaded when first used: a source's first
    request, or an import of it from here."""
    if name == "Response":
        from .response import Response

        return Response
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Collect:
    def __init__(self) -> None:
        self.head: Head | None = None
        self.chunks: list[bytes] = []
        self.size = 0

    def on_head(self, head: Head) -> None:
        check_status(head, head.url, file=False)
        self.head = head

    def on_data(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > MAX_BODY:
            raise ParseError(f"answer too large (over {MAX_BODY} bytes)")
        self.chunks.append(data)


class HttpClient:
    """The small client sources use for pages and APIs (not for files)."""

    def __init__(self, transports: Mapping[str, Transport]) -> None:
        self.transports = transports

    async def request(
        self,
        url: str,
        *,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        secret_headers: tuple[str, ...] = (),
    ) -> Response:
        transport = transport_for(self.transports, url)
        sink = _Collect()
        req = Request(
            url,
            headers=dict(headers or {}),
            method=method,
            body=body,
            secret_headers=secret_headers,
        )
        head = await transport.fetch(req, sink)
        from .response import Response

        return Response(head.status, head.url, head.headers, b"".join(sink.chunks))

    async def get_json(self, url: str, **kw: Any) -> Any:
        return (await self.request(url, **kw)).json()


@compared_dataclass
class SourceContext:
    """What a source gets to work with: settings, an HTTP client and its options."""

    settings: Settings
    http: HttpClient
    options: Mapping[str, object] = field(default_factory=dict)


def source_context(
    settings: Settings, transports: Mapping[str, Transport], options: Mapping[str, object]
) -> SourceContext:
    """A source's context on ``transports`` (the run's, so proxies and CAs apply)."""
    return SourceContext(settings=settings, http=HttpClient(transports), options=dict(options))


class Source:
    """Base class of every source. Subclasses set the class attributes and ``items``."""

    name: ClassVar[str] = ""
    patterns: ClassVar[tuple[str, ...]] = ()
    examples: ClassVar[tuple[str, ...]] = ()
    #: The options it takes: extract()'s keyword arguments, the keys of its config table.
    option_names: ClassVar[tuple[str, ...]] = ()
    _compiled: ClassVar[list[re.Pattern[str]] | None] = None

    def __init__(self, url: str, ctx: SourceContext, **options: object) -> None:
        self.url = url
        self.ctx = ctx
        self.options = options

    @classmethod
    def matches(cls, url: str) -> bool:
        if cls._compiled is None:
            cls._compiled = [re.compile(p, re.I) for p in cls.patterns]
        for p in cls._compiled:  # noqa: SIM110 (per URL: any() over a generator costs more)
            if p.search(url):
                return True
        return False

    @classmethod
    def check_url(cls, url: str) -> None:
        """Raise, with no request, what a URL this source can never fetch would fail with
        later (a malformed host or port, say). By default nothing is checked."""

    def items(self) -> AsyncIterator[Item]:
        raise NotImplementedError

    def items_at_once(self) -> Sequence[Item] | None:
        """The items of :meth:`items`, for a source that knows them without a request
        (the engine then lists a long URL list without an async generator per URL); None,
        the default, when it does not."""
        return None

    async def refresh(self, item: Item) -> Item:
        """Re-resolve an item whose URLs expired; the default keeps it as it is."""
        return item


class Marker:
    """Marks the items one source makes with its :class:`~omniget.model.Origin` (the URL
    and options it was given), so that a later run can make that source again to refresh
    them (an item already marked, or another source's, is kept as it is)."""

    __slots__ = ("name", "origin")

    def __init__(self, src: Source) -> None:
        self.origin = Origin(src.url, src.options)
        self.name = src.name

    def __call__(self, item: Item) -> Item:
        if item.origin is not None or item.source != self.name:
            return item
        return dataclasses.replace(item, origin=self.origin)


def with_origin(src: Source) -> Marker | None:
    """The :class:`Marker` for the items of ``src``; None for a source without a
    ``refresh`` of its own (nothing to reach it again for)."""
    own = getattr(type(src), "refresh", Source.refresh)  # (a duck-typed one may have none)
    return None if own is Source.refresh else Marker(src)


class Reach:
    """The sources that made items, each found by the :class:`~omniget.model.Origin` its
    items carry: one given with :meth:`add` (made in this run), else made again once per
    origin with the URL and options it was given, on ``transports()``'s transports."""

    def __init__(
        self, settings: Settings, transports: Callable[[], Mapping[str, Transport]]
    ) -> None:
        self.settings = settings
        self.transports = transports
        self.made: dict[Origin, Source] = {}  # (by identity)

    def add(self, origin: Origin, src: Source) -> None:
        self.made[origin] = src

    def source(self, item: Item) -> Source | None:
        """The source that made ``item``; None when it carries no origin, or its source
        is not installed here."""
        origin = item.origin
        if origin is None:
            return None
        src = self.made.get(origin)
        if src is None:
            from . import find_source  # (the registry imports this module)

            try:
                cls = find_source(origin.url, item.source)
            except UsageError:
                return None
            opts = origin.options
            ctx = source_context(self.settings, self.transports(), opts)
            src = self.made[origin] = cls(origin.url, ctx, **opts)
        return src

    async def refresh(self, item: Item) -> Item:
        """``item`` refreshed by the source that made it (as it is without one)."""
        src = self.source(item)
        return item if src is None else self.keep_origin(item, await src.refresh(item))

    @staticmethod
    def keep_origin(item: Item, fresh: Item) -> Item:
        """``fresh`` (``item`` refreshed by its source, made anew) with ``item``'s origin:
        its URLs may expire again in the same download."""
        if fresh.origin is not None or item.origin is None or fresh.source != item.source:
            return fresh
        return dataclasses.replace(fresh, origin=item.origin)


def option_problem(
    cls: type[Source], options: Iterable[str], also: Iterable[str] = ()
) -> str | None:
    """What is wrong with the option names ``options`` for the source ``cls`` (the first
    unknown one, and the near name it may stand for among its options and ``also``), or
    None when the source takes them all."""
    for key in options:
        if key in cls.option_names:
            continue
        takes = ", ".join(cls.option_names) or "none"
        near = nearest(key, [*cls.option_names, *also])
        hint = f"; did you mean {near!r}?" if near else ""
        return f"unknown option {key!r} (the {cls.name} source takes: {takes}){hint}"
    return None
