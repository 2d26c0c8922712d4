"""One span of a :class:`~.plain.PlainDownload`: its requests, retries and mirror
switches (:func:`run_span`), and the sink that writes its answers' bodies into the part
file at the span's position (:class:`SpanSink`). Each function takes the download.

A span's connection slot (its :class:`~.scheduler.Ticket`) is one of its URL's host's: a
switch to a URL of another host (a mirror, a renewed URL) gives it back and waits for one
of that host's before the request goes, as the span's first try did.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from ..errors import IntegrityError, OmnigetError, TransientError
from ..model import ByteRange
from .checkpoints import sync_lost
from .events import Retrying, Warned
from .job import FileJob
from .mirrors import PERMANENT_ON_ONE_MIRROR, headers_for, next_mirror
from .retry import gave_up
from .scheduler import Ticket, host_of
from .spans import within
from .splitter import Span
from .transports.base import (
    Head,
    Request,
    StopTransfer,
    fetch_when_granted,
    transport_for,
)
from .verify import StreamHasher

if TYPE_CHECKING:
    from .plain import PlainDownload

log = logging.getLogger(__name__)

__all__ = ["SpanSink", "run_span", "size_mismatch"]

ANY_LENGTH = 1 << 62  # pipe_room of a span that runs to the end of the body
#: A whole 206 of at least this many bytes, fewer than asked, is a part (the next one is
#: asked for at once); a smaller one counts as a failed try (a server that would send a
#: file a few bytes at a time)
PART_MIN = 64 << 10


def size_mismatch(job: FileJob, what: str) -> IntegrityError:
    """The file has another size than the one expected (the item's, or the server's)."""
    name = job.final.name if job.final is not None else job.item.filename
    err = IntegrityError(f"size mismatch for {name}: {what}")
    err.max_retries = 1  # (another server of a CDN may answer; more tries would not)
    return err


class SpanSink:
    """Writes one response's body into the part file at the span's position."""

    takes_views = True  # on_data uses its bytes only during the call

    def __init__(self, dl: PlainDownload, span: Span, req: Request) -> None:
        self.dl = dl
        self.span = span
        self.req = req
        self.skip = 0  # body bytes sent again (a 200 answer to a ranged request)
        self.decoded = False  # the answer's body was content-encoded (gzip, deflate)
        self.framed = True  # the answer's body ends by its own framing (see Head.framed)
        self.answered = False  # its head was taken (see DownHosts.answered)
        # Where this answer's body ends in file offsets (None: unknown until the head).
        self.body_end: int | None = req.range.end if req.range is not None else None
        self.range_end: int | None = None  # where a 206's Content-Range ends
        self.hash = dl.job.stream_hash if span.start == 0 and not dl.job.done else None
        span.seen = now = time.monotonic()
        # when the request left (0: it may still wait for a connection slot)
        self.sent = now if span.ticket is not None and span.ticket.granted else 0.0

    def on_head(self, head: Head) -> None:
        self.decoded = head.decoded
        self.framed = head.framed
        self.dl.on_head(head, self)
        cr = head.content_range
        if head.status == 206 and cr is not None and not head.decoded:
            self.range_end = cr[1]

    def _end(self) -> int | None:
        """Where this answer's writes end: the span's end, or its 206's range's if
        sooner (bytes a body sends past its Content-Range are not the file's)."""
        end, mine = self.span.end, self.range_end
        return mine if end is None or (mine is not None and mine < end) else end

    def on_data(self, data: bytes | memoryview) -> None:
        if self.skip:
            data = self._again(data)
            if not data:
                return
        span = self.span
        job = self.dl.job
        stop = False
        end = self._end()
        if end is not None and span.pos + len(data) >= end:
            if span.dropped:  # (its bytes went elsewhere, or are of a file that changed)
                raise StopTransfer
            # Stop early only when the answer would go on past our end (a span cut
            # short by stealing); an answer that ends here keeps its connection.
            over = span.pos + len(data) > end
            if over and end == job.size:  # (the answer said no length: it is too long)
                raise size_mismatch(job, f"more than the {end} bytes expected")
            stop = over or self.body_end != end
            data = data[: end - span.pos]
        part = job.part
        assert part is not None
        part.write_at(data, span.pos)
        if self.hash is not None:
            self.hash.update(data)
        self._advance(len(data), stop)

    def _again(self, data: bytes | memoryview) -> bytes | memoryview:
        """Of ``data``, the bytes before the span's position that a whole answer to a
        ranged request sends again are written over what the part file holds there (they
        came anyway: the file is then the server's bytes, whatever happened to the part
        file since). They count as fetched; those an earlier run had written count as
        written the first time they come again, as they are no longer resumed (see
        PlainDownload._sent_again). The rest is returned."""
        if self.span.dropped:  # (see on_data)
            raise StopTransfer
        n = min(len(data), self.skip)
        job = self.dl.job
        part = job.part
        assert part is not None
        at = self.span.pos - self.skip
        part.write_at(data[:n], at)
        self.skip -= n
        job.fetched += n
        dl = self.dl
        if dl.owed:
            job.written += within(dl.owed, at, at + n)
            dl.owed = [(max(s, at + n), e) for s, e in dl.owed if e > at + n]
        now = time.monotonic()
        if now >= job.next_tick:
            job.progress(now)
        return data[n:]

    def pipe_room(self) -> int:
        """How many body bytes this sink takes straight from a pipe now (``on_pipe``);
        0 while it must see them (a hash, bytes to skip)."""
        if self.skip or self.hash is not None or self.dl.job.part is None:
            return 0
        end = self._end()
        return ANY_LENGTH if end is None else end - self.span.pos

    def on_pipe(self, pipe: int, n: int) -> None:
        """``n`` body bytes (at most ``pipe_room()``) wait in ``pipe``: write them."""
        span = self.span
        part = self.dl.job.part
        assert part is not None
        part.write_from_pipe(pipe, n, span.pos)
        end = self._end()
        self._advance(n, end is not None and span.pos + n >= end and self.body_end != end)

    def _advance(self, n: int, stop: bool) -> None:
        """``n`` bytes were written at the span's position; ``stop``: end the answer."""
        span = self.span
        job = self.dl.job
        span.pos += n
        job.written += n
        job.fetched += n
        # (the hot path: one clock read and two comparisons per chunk)
        now = span.seen = time.monotonic()
        if now >= job.next_tick:
            job.progress(now)
            if job.due_checkpoint(now):
                self._checkpoint(now)
        elif span.pos - span.saved >= self.dl.ckpt_bytes:
            self._checkpoint(now)
        if stop:
            raise StopTransfer

    def _checkpoint(self, now: float) -> None:
        job = self.dl.job
        self.dl.checkpoint(now)
        if job.ctx.lost_syncs:  # (the disk failed a sync of the file: it fails now)
            sync_lost(job)


# ----- one span: requests and retries ---------------------------------------


async def run_span(dl: PlainDownload, span: Span, url: str) -> None:
    job = dl.job
    down = dl.ctx.down
    attempts = 0
    switches = 0  # to another mirror at once, without a wait (bounded)
    mark = 0  # (down.mark at the start of the streak's first failed try)
    last: OmnigetError | None = None  # the last try's error (before a wait)
    tried: OmnigetError | None = None  # with mirrors: the last failed try's error
    try:
        while True:
            if span.end is not None and span.pos >= span.end:
                return  # (cut short by stealing while it waited to try again)
            if len(dl.urls) == 1:  # (its host, or its proxy, found down: not tried)
                down.before_try(url, job, last, attempts)
            else:  # (a mirror found down: the next at once; all of them: not tried)
                was, url = url, down.before_try(url, job, last or tried, attempts, dl.urls,
                                                dl.gone)
                if url != was:
                    log.debug("%s: %s is down; next mirror %s", job.item.filename,
                              host_of(was), url)
                ticket = span.ticket  # (refused: see below; another host's: a switch)
                if ticket is not None and (ticket.refused or ticket.host != host_of(url)):
                    span.ticket = _reticket(dl, span, url, ticket)
            before = span.pos
            req = _request(dl, span, url)
            sink = SpanSink(dl, span, req)
            ticket = span.ticket
            begun = down.mark(url)
            try:
                assert ticket is not None
                transport = transport_for(dl.ctx.transports, url)
                if not ticket.granted:  # (refused if its host is found down meanwhile)
                    me = asyncio.current_task()
                    if me is not None:
                        ticket.refusal = me.cancel
                try:
                    await fetch_when_granted(transport, req, sink, ticket)
                finally:
                    if sink.answered:
                        down.ended(url)
                if _a_part(span, sink, before):
                    continue
                _check_complete(dl, span, sink)
                return
            except asyncio.CancelledError:
                task = asyncio.current_task()
                # (refused: its own cancel, taken back unless one came from outside too)
                if ticket is not None and ticket.refused and task and task.uncancel() == 0:
                    if len(dl.urls) > 1:
                        continue  # (a slot at another mirror, or not tried: see above)
                    why = down.why(url) or "it was found down"
                    raise down.not_tried(url, why) from None
                raise
            except OmnigetError as exc:
                if sink.decoded and span.pos > span.start:
                    _drop_decoded(dl, span)
                if job.refreshable(exc) and await job.refresh(exc):
                    dl.urls = (job.item.download_url, *job.item.mirrors)
                    url = dl.urls[0]
                    ticket = span.ticket  # (its URL renewed: maybe another host's)
                    if ticket is not None and ticket.host != host_of(url):
                        span.ticket = _reticket(dl, span, url, ticket)
                    continue
                if len(dl.urls) > 1:  # (a mirror that took no connection: evidence)
                    tried = exc
                    down.mirror_failed(url, exc, begun, dl.struck)
                if not exc.retryable:
                    other = next_mirror(dl.urls, url, dl.gone)
                    if other is None or not isinstance(exc, PERMANENT_ON_ONE_MIRROR):
                        raise
                    said = url in dl.gone  # (by another span: once is enough)
                    dl.gone.add(url)  # a mirror's 404 (or DNS name, or login) is its own
                    url = other if said else _to_mirror(dl, other, exc)
                    continue
                dl.failing.add(url)
                other = down.next_up(dl.urls, url, dl.gone | dl.failing)
                if other is not None and switches < 2 * len(dl.urls):
                    switches += 1  # another mirror at once, as aria2 does
                    url = _to_mirror(dl, other, exc)
                    continue
                if span.pos - before >= dl.ckpt_bytes:
                    attempts = 0
                attempts += 1
                now = dl.ctx.clock.monotonic()
                waited = dl.waits.spent(now)  # (the file's: retry-max-time is per file)
                alone = len(dl.urls) == 1
                if attempts == 1:
                    mark = begun
                down.after_try(url, exc, attempts, job, dl.urls, dl.gone)
                delay = dl.ctx.policy.next_delay(attempts, exc, waited, dl.ctx.rng)
                if delay is None:
                    gave_up(exc, attempts, dl.ctx.policy, waited)
                    if alone:
                        down.gave_up(url, str(exc), mark, exc.shared)
                    raise
                dl.waits.add(now, delay)
                last = exc
                url = next_mirror(dl.urls, url, dl.gone) or url  # (next in turn)
                dl.ctx.event(Retrying(job.item, job.final, exc, attempts, delay))
                ticket = span.ticket
                if ticket is not None:  # (no connection while it waits: see Ticket.park)
                    ticket.park()
                await dl.ctx.clock.sleep(delay)
                if ticket is not None and (alone or ticket.host == host_of(url)):
                    await ticket.unpark()  # (else one of url's host is asked for: above)
    finally:
        if span.ticket is not None:
            span.ticket.close()


def _reticket(dl: PlainDownload, span: Span, url: str, ticket: Ticket) -> Ticket:
    """A slot for ``span``, which goes to ``url``, of another host than ``ticket``'s (a
    mirror, or a renewed URL): ``ticket`` is given back (or withdrawn, if still waited
    for; one refused is closed already) and one for ``url``'s host is asked for, queued
    as a file's first try's is, before the request goes. (A file that went on on its
    old slot took a connection to its mirror beside the mirror's own cap's: twice -N,
    its old host's slot held meanwhile.)"""
    ticket.close()
    new = dl.ticket(span, url, wait=True)
    assert new is not None
    return new


def _drop_decoded(dl: PlainDownload, span: Span) -> None:
    """A content-encoded answer failed: the bytes decoded from it are unchecked (a
    gzip stream's CRC comes at its end, and a corrupt stream decodes to wrong bytes
    before it fails), so the span starts over. Nothing more is fetched for that: an
    encoded answer is always a whole body, of which the next one would only have
    skipped these bytes."""
    job = dl.job
    job.written -= span.pos - span.start
    span.pos = span.saved = span.start
    if span.start == 0 and job.stream_hash is not None:
        job.stream_hash = StreamHasher(job.stream_hash.algo)
    dl.checkpoint(time.monotonic())


def _to_mirror(dl: PlainDownload, other: str, exc: OmnigetError) -> str:
    log.debug("%s: %s; next mirror %s", dl.job.item.filename, exc, other)
    dl.ctx.event(Warned(dl.job.item, dl.job.final, f"{exc}; trying a mirror"))
    return other


def _request(dl: PlainDownload, span: Span, url: str) -> Request:
    item = dl.job.item
    rng: ByteRange | None = None
    if_range: str | None = None
    if dl.ranges_ok and (span.pos > 0 or span.end is not None):
        rng = ByteRange(span.pos, span.end)
        if url == item.download_url:
            if_range = dl.job.validator()
    return Request(
        url,
        headers=headers_for(item, url),
        range=rng,
        if_range=if_range,
        secret_headers=item.secret_headers,
        rate=dl.ctx.rate,
    )


def _a_part(span: Span, sink: SpanSink, before: int) -> bool:
    """The answer was a whole 206 of fewer bytes than asked (a server that caps what it
    sends at once), of :data:`PART_MIN` at least: not a failure, the rest comes next."""
    end = sink.range_end
    return (
        end is not None and span.pos == end and span.end is not None and end < span.end
        and span.pos - before >= PART_MIN
    )


def _check_complete(dl: PlainDownload, span: Span, sink: SpanSink) -> None:
    if sink.skip:  # a whole body that ended before the span's position
        if sink.framed:
            dl.shrank()  # (by its own framing: the file is shorter now)
        raise TransientError(f"connection closed at byte {span.pos - sink.skip} of the"
                             f" {span.pos} here already ({dl.job.item.filename})")
    size = dl.job.size
    if span.end is not None:
        if span.pos < span.end and sink.framed and sink.body_end is None and span.end == size:
            # (the answer said no length, and ended by its own framing: not cut off)
            raise size_mismatch(dl.job, f"{span.pos} bytes, not the {size} expected")
        if span.pos < span.end:
            raise TransientError(
                f"connection closed at byte {span.pos} of {span.end} ({dl.job.item.filename})"
            )
        return
    if size is not None and span.pos < size:
        raise TransientError(f"connection closed at byte {span.pos} of {size}")
    if size is None:
        dl.job.size = span.pos  # no length up front: done where the body ended
        dl.job.size_from_eof = True
        dl.job.end_proven = sink.framed
