"""The items of a list of URLs, lazily, entry by entry (:func:`extract_each`), for the CLI
when it must see them itself (``list``, ``--dry-run``, ``-O``): one set of transports for
the whole list, and one loop for the listings that need requests."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Generator, Iterable, Mapping
from typing import TYPE_CHECKING

from .checks import check_options, check_url
from .drive import default_transports, drive
from .errors import OmnigetError
from .model import Item
from .settings import Settings
from .sources import find_source
from .sources.base import Source, SourceContext, source_context, with_origin

if TYPE_CHECKING:
    from .engine.transports.http import CurlTransport


def extract_each(
    entries: Iterable[str | Item],
    *,
    source: str | None,
    settings: Settings,
    source_options: Mapping[str, Mapping[str, object]],
) -> Generator[tuple[str | Item, Item | OmnigetError], None, None]:
    """Each entry's items in order, lazily, as ``extract`` gives them, each as (entry,
    item); an entry's failure as (entry, error), and the rest goes on (an Item entry is
    its own item). ``source_options``: each source's options, by its name. One set of
    transports serves every URL; items known without a request need no loop, and the
    listings that do share one, made when first needed (a loop and transports per URL
    cost ~0.5 ms each). Transports that cannot be made (a ``--ca-cert`` or cookies file
    that cannot be read) fail the whole list, raised at its first entry, as they fail a
    download before its first file: not once per URL."""
    contexts: dict[str, SourceContext] = {}  # one per source, as in adownload
    transports: dict[str, CurlTransport] = {}  # made at the first entry
    pending: list[Source] = []  # the next source for the listings to list
    listings: Generator[Item | OmnigetError | None, None, None] | None = None
    try:
        for entry in entries:
            if not transports:  # (raised: the whole list's failure, even for an Item's)
                transports.update(default_transports(settings))
            if isinstance(entry, Item):
                yield entry, entry
                continue
            check_url(entry, "extract")
            try:
                cls = find_source(entry, source)
                opts = source_options.get(cls.name, {})
                check_options(cls, opts, "extract")
                ctx = contexts.get(cls.name)
                if ctx is None:
                    ctx = contexts[cls.name] = source_context(settings, transports, opts)
                src = cls(entry, ctx, **opts)
                known = src.items_at_once()
            except OmnigetError as exc:
                yield entry, exc
                continue
            if known is not None:
                mark = with_origin(src)
                for item in known:
                    yield entry, item if mark is None else mark(item)
                continue
            if listings is None:
                listings = drive(_listings(pending.pop), transports)
            pending.append(src)
            for got in listings:
                if got is None:  # its listing ended
                    break
                yield entry, got
    finally:
        if listings is not None:
            listings.close()
        else:  # (made, never used: nothing to wait for)
            for transport in {id(t): t for t in transports.values()}.values():
                transport.close()


async def _listings(
    next_source: Callable[[], Source],
) -> AsyncGenerator[Item | OmnigetError | None, None]:
    """The items of source after source (``next_source()`` each time), each listing
    ended by None; a listing's failure is given as its error, and the next one goes on."""
    while True:
        src = next_source()
        mark = with_origin(src)
        try:
            async for item in src.items():
                yield item if mark is None else mark(item)
        except OmnigetError as exc:
            yield exc
        yield None
