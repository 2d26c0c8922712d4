"""One identity piece (a plain file) over one or more ranged connections.

A *span* is one connection's lease on ``[pos, end)`` of the file. The first request is a
plain GET and runs in the file's own task; most files end with it. When its head shows a
file worth splitting (size known, Range support), a :class:`~.splitter.Splitter` starts in
a task of its own and adds spans (see :mod:`.splitter` for how many and which bytes). Every
range answer is checked (206 + Content-Range at the asked offset, same validators): bytes
are never spliced at a wrong offset.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from typing import Any

from ..errors import (
    IntegrityError,
    OmnigetError,
    RemoteError,
    StorageError,
    TransientError,
)
from ..model import ByteRange
from .events import Retrying, Warned
from .job import FileJob
from .mirrors import PERMANENT_ON_ONE_MIRROR, next_mirror, not_a_copy
from .names import filename_from_content_disposition
from .spans import Interval, gaps, length, merge
from .splitter import TAKE_OVER_MIN, Span, Splitter
from .transports.base import (
    Head,
    Request,
    StopTransfer,
    check_status,
    fetch_when_granted,
    skip_prefix,
    transport_for,
)
from .verify import StreamHasher, digests_from_headers

log = logging.getLogger(__name__)

__all__ = ["PlainDownload"]

MAX_RESTARTS = 3
# a 416's Content-Range (compiled by re when first used, not at every start)
_UNSATISFIED = r"\s*bytes\s+\*/(\d+)\s*$"
ANY_LENGTH = 1 << 62  # pipe_room of a span that runs to the end of the body


def size_mismatch(job: FileJob, what: str) -> IntegrityError:
    """The file has another size than the one expected (the item's, or the server's)."""
    name = job.final.name if job.final is not None else job.item.filename
    err = IntegrityError(f"size mismatch for {name}: {what}")
    err.max_retries = 1  # (another server of a CDN may answer; more tries would not)
    return err


class _Restart(Exception):
    def __init__(self, reason: str, *, changed: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.changed = changed  # the remote file changed: drop every byte we have


class _SpanSink:
    """Writes one response's body into the part file at the span's position."""

    takes_views = True  # on_data uses its bytes only during the call

    def __init__(self, dl: PlainDownload, span: Span, req: Request) -> None:
        self.dl = dl
        self.span = span
        self.req = req
        self.skip = 0  # body bytes to drop (a 200 answer to a ranged request)
        self.decoded = False  # the answer's body was content-encoded (gzip, deflate)
        self.framed = True  # the answer's body ends by its own framing (see Head.framed)
        # Where this answer's body ends in file offsets (None: unknown until the head).
        self.body_end: int | None = req.range.end if req.range is not None else None
        self.hash = dl.job.stream_hash if span.start == 0 and not dl.job.done else None
        span.seen = now = time.monotonic()
        # when the request left (0: it may still wait for a connection slot)
        self.sent = now if span.ticket is not None and span.ticket.granted else 0.0

    def on_head(self, head: Head) -> None:
        self.decoded = head.decoded
        self.framed = head.framed
        self.dl.on_head(head, self)

    def on_data(self, data: bytes | memoryview) -> None:
        if self.skip:  # (bytes received all the same: they count as fetched)
            n = len(data)
            data, self.skip = skip_prefix(data, self.skip)
            self.dl.job.fetched += n - len(data)
            if not data:
                return
        span = self.span
        job = self.dl.job
        stop = False
        end = span.end
        if end is not None and span.pos + len(data) >= end:
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

    def pipe_room(self) -> int:
        """How many body bytes this sink takes straight from a pipe now (``on_pipe``);
        0 while it must see them (a hash, bytes to skip)."""
        if self.skip or self.hash is not None or self.dl.job.part is None:
            return 0
        end = self.span.end
        return ANY_LENGTH if end is None else end - self.span.pos

    def on_pipe(self, pipe: int, n: int) -> None:
        """``n`` body bytes (at most ``pipe_room()``) wait in ``pipe``: write them."""
        span = self.span
        part = self.dl.job.part
        assert part is not None
        part.write_from_pipe(pipe, n, span.pos)
        end = span.end
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
                self.dl.checkpoint(now)
        elif span.pos - span.saved >= self.dl.ckpt_bytes:
            self.dl.checkpoint(now)
        if stop:
            raise StopTransfer


class PlainDownload:
    def __init__(self, job: FileJob) -> None:
        self.job = job
        self.ctx = job.ctx
        self.settings = job.ctx.settings
        self.spans: list[Span] = []
        self.ranges_ok = True  # not known to be broken: resume with Range
        self.ranges_known = False  # advertised or seen (206): needed to split
        self.ckpt_bytes = self.settings.checkpoint_bytes
        self.urls = (job.item.download_url, *job.item.mirrors)
        self.gone: set[str] = set()  # mirrors that answered with a permanent error
        self.failing: set[str] = set()  # mirrors that failed lately (connect, reset, ...)
        self.head_seen = False
        self.said_refetch = False  # (a Warned that the bytes kept are fetched again)
        self.heads = 0  # answers accepted so far
        self.inline: Span | None = None  # the first span while it runs in the file's task
        self.splitter: Splitter | None = None  # made when worth splitting
        self.controller: asyncio.Task[None] | None = None  # runs the splitter
        self.runner: asyncio.Task[Any] | None = None  # the file's task
        self.interrupts = 0  # cancels of the file's task that only stop its first span
        self.slowest_head = 0.0  # seconds from a request to its answer, the longest seen

    # ----- the whole file ---------------------------------------------------------

    async def run(self) -> None:
        restarts = 0
        while True:
            try:
                await self._attempt()
                return
            except _Restart as exc:
                log.debug("%s: starting over: %s", self.job.item.filename, exc.reason)
                restarts += 1
                if restarts > MAX_RESTARTS:
                    raise TransientError(
                        f"{exc.reason} (gave up after {MAX_RESTARTS} restarts)"
                    ) from None
                if exc.changed:
                    self.job.restart()
                    self.job.size = self.job.item.size_bytes
                    self.head_seen = False
                else:
                    self.ranges_ok = False
                    self.job.done = self.covered()
                self.spans = []

    def covered(self) -> list[Interval]:
        done = self.job.done.copy()
        for s in self.spans:  # (a loop, not a list comprehension: once per file at least)
            if s.pos > s.start:
                done.append((s.start, s.pos))
        if not done or (len(done) == 1 and done[0][0] < done[0][1]):
            return done  # (what merge() makes of it: a small file's one span, as a rule)
        return merge(done)

    def checkpoint(self, now: float) -> None:
        for s in self.spans:
            s.saved = s.pos
        self.job.save_spans(self.covered(), now)

    async def _attempt(self) -> None:
        job = self.job
        if job.done and job.size is not None and self.ranges_ok:
            todo = gaps(job.done, job.size)
        elif job.done:
            begin = job.done[0][1] if job.done[0][0] == 0 else 0
            todo = [(begin, -1)]  # one stream to the end of the body
        else:
            todo = [(0, -1)]
        if job.part is None and job.final is not None and job.done:
            job.open_part(job.final, fresh=False)
        if not job.done:
            job.stream_hash = None
        pending = []
        for s, e in todo:
            end = job.size if e < 0 else e
            if end is None or end > s:
                pending.append(Span(s, s, end))
        if not pending:
            return
        first = pending.pop(0)
        self.splitter = self.controller = None
        try:
            if pending:  # resume gaps: every span in a task, the splitter here
                self.start_span(first, wait=True)
                self.splitter = Splitter(self)
                await self.splitter.run(pending)
            else:
                await self._run_first(first)
        except BaseException:
            await self._stop_all()
            raise
        finally:
            job.done = self.covered()
            for span in self.spans:  # (a task cancelled before it ran never closed its own)
                if span.ticket is not None and not span.ticket.closed:
                    span.ticket.close()
            self.spans = []

    async def _run_first(self, first: Span) -> None:
        """Run the first span in the file's own task (most files end with it: no task,
        no controller). When its answer shows a file worth splitting, the controller
        starts in a task of its own; it may interrupt this run to drop the span (its
        remainder moved to a fresh connection) or when it fails."""
        me = asyncio.current_task()
        assert me is not None
        url = self._lease(first, wait=True)
        assert url is not None
        # (its task: the file's own; a future stands for it once a controller starts)
        self.inline, self.runner, self.interrupts = first, me, 0
        try:
            await self._run_span(first, url)
        except asyncio.CancelledError:
            ours = self.interrupts
            if not ours or me.cancelling() > ours:
                raise  # (also) cancelled from outside
            for _ in range(ours):
                me.uncancel()
        finally:
            self.inline = None
            stand_in = first.task
            if stand_in is not None and not stand_in.done():
                stand_in.set_result(None)
        if self.controller is not None:
            await self.controller

    def _start_controller(self) -> None:
        """The first span's answer shows a file worth splitting: start the controller,
        and a future that stands for the first span's run (in the file's task) among the
        spans it watches (a small file, which never splits, makes none)."""
        inline = self.inline
        if inline is not None and inline.task is None:
            inline.task = asyncio.get_running_loop().create_future()
        self.splitter = Splitter(self)
        task = asyncio.get_running_loop().create_task(self.splitter.run([]))
        task.add_done_callback(self._controller_ended)
        self.controller = task

    def interrupt(self) -> None:
        """Stop the first span's run in the file's task (which then awaits the controller)."""
        runner = self.runner
        if self.inline is not None and runner is not None and not runner.done():
            self.interrupts += 1
            runner.cancel()

    def _controller_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.interrupt()  # (its error is raised where the file's task awaits it)

    async def _stop_all(self) -> None:
        for s in self.spans:  # errors of spans that ended too: the first one is raised
            if s.task is not None and s.task.done() and not s.task.cancelled():
                s.task.exception()
        tasks = [s.task for s in self.spans if s.task is not None and not s.task.done()]
        if self.controller is not None and not self.controller.done():
            tasks.append(self.controller)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        if self.job.part is not None and self.job.final is not None:
            self.checkpoint(time.monotonic())

    def start_span(self, span: Span, *, wait: bool) -> bool:
        """Start a span's task; ``wait``: queue for a slot (the task sets its request up
        meanwhile), else only if a slot is free now."""
        url = self._lease(span, wait=wait)
        if url is None:
            return False
        span.task = asyncio.create_task(self._run_span(span, url))
        return True

    def _lease(self, span: Span, *, wait: bool) -> str | None:
        """Give ``span`` a connection slot (see :meth:`start_span`) and count it among the
        file's spans; returns its URL, or None when no slot is free now."""
        urls = self.urls
        if self.gone or self.failing:  # (those that have not failed, if any)
            urls = tuple(u for u in urls if u not in self.gone and u not in self.failing) or urls
        url = urls[len(self.spans) % len(urls)]
        limits = self.ctx.limits
        light = span.pos == 0 and span.end is None  # a plain GET (may be pipelined)
        span.ticket = (
            limits.ticket(url, self.job.claim, light=light) if wait else limits.try_ticket(url)
        )
        if span.ticket is None:
            return None
        self.spans.append(span)
        span.seen = time.monotonic()
        return url

    def worth_splitting(self) -> bool:
        size = self.job.size
        # already split: steal smaller pieces, take over the tail
        need = TAKE_OVER_MIN if len(self.spans) > 1 else 2 * self.settings.min_split_size
        if size is None or size < need or self.settings.split == 1 or not self.splittable():
            return False  # (the size first: a small file asks nothing more)
        return self.left() >= need  # (left() <= size: no sum for small files)


    def left(self) -> int:
        """Bytes of the file not yet written (0 when the size is unknown)."""
        size = self.job.size
        return 0 if size is None else size - length(self.covered())


    def splittable(self) -> bool:
        return self.ranges_ok and self.ranges_known and self.job.size is not None

    # ----- one span: requests and retries ---------------------------------------

    async def _run_span(self, span: Span, url: str) -> None:
        job = self.job
        attempts = 0
        switches = 0  # to another mirror at once, without a wait (bounded)
        waited = 0.0
        try:
            while True:
                if span.end is not None and span.pos >= span.end:
                    return  # (cut short by stealing while it waited to try again)
                before = span.pos
                req = self._request(span, url)
                sink = _SpanSink(self, span, req)
                try:
                    assert span.ticket is not None
                    transport = transport_for(self.ctx.transports, url)
                    await fetch_when_granted(transport, req, sink, span.ticket)
                    self._check_complete(span, sink)
                    return
                except OmnigetError as exc:
                    if sink.decoded and span.pos > span.start:
                        self._drop_decoded(span)
                    if job.refreshable(exc) and await job.refresh(exc):
                        self.urls = (job.item.download_url, *job.item.mirrors)
                        url = self.urls[0]
                        continue
                    if not exc.retryable:
                        other = next_mirror(self.urls, url, self.gone)
                        if other is None or not isinstance(exc, PERMANENT_ON_ONE_MIRROR):
                            raise
                        said = url in self.gone  # (by another span: once is enough)
                        self.gone.add(url)  # a mirror's 404 (or DNS name, or login) is its own
                        url = other if said else self._to_mirror(other, exc)
                        continue
                    self.failing.add(url)
                    other = next_mirror(self.urls, url, self.gone | self.failing)
                    if other is not None and switches < 2 * len(self.urls):
                        switches += 1  # another mirror at once, as aria2 does
                        url = self._to_mirror(other, exc)
                        continue
                    if span.pos - before >= self.ckpt_bytes:
                        attempts = 0
                    attempts += 1
                    delay = self.ctx.policy.next_delay(attempts, exc, waited, self.ctx.rng)
                    if delay is None:
                        raise
                    url = next_mirror(self.urls, url, self.gone) or url  # (next in turn)
                    self.ctx.event(Retrying(job.item, job.final, exc, attempts, delay))
                    await self.ctx.clock.sleep(delay)
                    waited += delay
        finally:
            if span.ticket is not None:
                span.ticket.close()

    def _drop_decoded(self, span: Span) -> None:
        """A content-encoded answer failed: the bytes decoded from it are unchecked (a
        gzip stream's CRC comes at its end, and a corrupt stream decodes to wrong bytes
        before it fails), so the span starts over. Nothing more is fetched for that: an
        encoded answer is always a whole body, of which the next one would only have
        skipped these bytes."""
        job = self.job
        job.written -= span.pos - span.start
        span.pos = span.saved = span.start
        if span.start == 0 and job.stream_hash is not None:
            job.stream_hash = StreamHasher(job.stream_hash.algo)
        self.checkpoint(time.monotonic())

    def _to_mirror(self, other: str, exc: OmnigetError) -> str:
        log.debug("%s: %s; next mirror %s", self.job.item.filename, exc, other)
        self.ctx.event(Warned(self.job.item, self.job.final, f"{exc}; trying a mirror"))
        return other

    def _request(self, span: Span, url: str) -> Request:
        item = self.job.item
        rng: ByteRange | None = None
        if_range: str | None = None
        if self.ranges_ok and (span.pos > 0 or span.end is not None):
            rng = ByteRange(span.pos, span.end)
            if url == item.download_url:
                if_range = self.job.validator()
        return Request(
            url,
            headers=item.headers,
            range=rng,
            if_range=if_range,
            secret_headers=item.secret_headers,
            rate=self.ctx.rate,
        )

    def _check_complete(self, span: Span, sink: _SpanSink) -> None:
        size = self.job.size
        if span.end is not None:
            if span.pos < span.end and sink.framed and sink.body_end is None and span.end == size:
                # (the answer said no length, and ended by its own framing: not cut off)
                raise size_mismatch(self.job, f"{span.pos} bytes, not the {size} expected")
            if span.pos < span.end:
                raise TransientError(
                    f"connection closed at byte {span.pos} of {span.end} ({self.job.item.filename})"
                )
            return
        if size is not None and span.pos < size:
            raise TransientError(f"connection closed at byte {span.pos} of {size}")
        if size is None:
            self.job.size = span.pos  # no length up front: done where the body ended
            self.job.size_from_eof = True
            self.job.end_proven = sink.framed

    # ----- response heads -----------------------------------------------------------

    def on_head(self, head: Head, sink: _SpanSink) -> None:
        """Check an answer before any of its bytes are written."""
        job = self.job
        # validators are those of the item's own URL: mirrors have their own (by size)
        own = sink.req.url == job.item.download_url
        if head.status == 416 and sink.req.range is not None:
            self._unsatisfiable(head, sink.span, own)
        check_status(head, sink.req.url)
        cr = head.content_range
        sink.body_end = cr[1] if head.status == 206 and cr else head.total_size
        if not own and job.size is not None and head.total_size not in (None, job.size):
            raise not_a_copy(sink.req.url, head.total_size, job.size)
        said = job.item.size_bytes
        if said is not None and head.total_size not in (None, said):
            raise size_mismatch(job, f"{head.total_size} bytes on the server, the item says {said}")
        if job.item.expect == "media" and "text/html" in head.headers.get("content-type", ""):
            raise RemoteError(f"got a web page instead of a file from {head.url}")
        span = sink.span
        ranged = sink.req.range is not None
        if self.failing:
            self.failing.discard(sink.req.url)  # it answers again
        if head.decoded:
            self.ranges_ok = False
        if (self.head_seen or job.done) and self._changed(head, own):
            raise _Restart("the file changed on the server", changed=True)
        if own and not (job.etag or job.last_modified):
            job.etag, job.last_modified = head.etag, head.last_modified
        if head.status == 206 and ranged:
            if cr is None or cr[0] != span.pos:
                raise _Restart("the server answered a wrong byte range", changed=False)
            self.ranges_known = True
        else:  # a full body, starting at byte 0
            if ranged:
                running = sum(1 for s in self.spans if s.running)
                if span.pos and self.ranges_ok and running > 1 and not head.decoded:
                    raise _Restart("the server ignores byte ranges", changed=False)
                self.ranges_ok = False
            if head.decoded and span.pos:
                # bytes kept from an earlier answer (a run cut off, say) that this one's
                # checks do not cover: they are of the compressed body, and only of this one
                raise _Restart("a compressed answer cannot continue kept bytes", changed=True)
            sink.skip = span.pos  # drop what we already have
            if span.pos and not self.said_refetch:  # (else a long wait at 0 B/s, unsaid)
                self.said_refetch = True
                self.ctx.event(Warned(job.item, job.final, f"the server ignores Range: the "
                                      f"{span.pos} bytes already here come again before the rest"))
        if sink.sent:
            self.slowest_head = max(self.slowest_head, time.monotonic() - sink.sent)
        if not self.head_seen:
            self._first_head(head, sink)
            if self.inline is not None and self.controller is None and self.worth_splitting():
                self._start_controller()
        self.heads += 1
        if self.splitter is not None:
            self.splitter.head_event.set()

    def _unsatisfiable(self, head: Head, span: Span, own: bool) -> None:
        """A 416 to a ranged request. With the size it gives (``Content-Range: bytes
        */N``) where the span stands, and no other size known, every byte is here already
        (a body of unknown length whose end was lost with its connection): the span is
        complete. A smaller size than that means the file changed (or, from a mirror,
        that it is not a copy). Else it is an error."""
        m = re.match(_UNSATISFIED, head.headers.get("content-range", ""), re.I)
        if m is None:
            return
        size, job = int(m.group(1)), self.job
        if size < span.pos or (job.size is not None and size != job.size):
            if not own and job.size is not None:
                raise not_a_copy(head.url, size, job.size)
            raise _Restart("the file changed on the server", changed=True)
        if size == span.pos and job.size is None and span.end is None:
            job.size = span.end = size
            raise StopTransfer

    def _changed(self, head: Head, own: bool) -> bool:
        """Size, or (``own``: an answer from the item's own URL) validators differ from
        what we know: the remote file changed."""
        job = self.job
        if job.size is not None and head.total_size not in (None, job.size):
            return True
        if not own:
            return False
        if job.etag and head.etag:
            return head.etag != job.etag
        return bool(
            job.last_modified and head.last_modified and head.last_modified != job.last_modified
        )

    def _first_head(self, head: Head, sink: _SpanSink) -> None:
        """Learn size, validators and range support from the file's first answer."""
        job = self.job
        span = sink.span
        self.head_seen = True
        if head.total_size is not None:
            job.size = head.total_size
        self.ranges_known = head.accepts_ranges and not head.decoded
        self.ranges_ok = self.ranges_ok and not head.decoded
        if span.end is None and job.size is not None:
            span.end = job.size
        job.digests = digests_from_headers(head.headers, status=head.status, decoded=head.decoded)
        if job.final is None or job.part is None:
            self._open_output(head)
        expected = job.item.digest or (job.digests[0] if job.digests else None)
        if expected is not None and not job.done and span.start == 0:
            job.stream_hash = StreamHasher(expected.algo)
            sink.hash = job.stream_hash
        job.started_event()

    def _open_output(self, head: Head) -> None:
        job = self.job
        final = job.final
        assert final is not None
        if job.item.name_from_server and not job.done:
            cd = head.headers.get("content-disposition")
            name = filename_from_content_disposition(cd) if cd else None
            if name:
                parent = job.item.output_path.rpartition("/")[0]
                candidate = job.resolve_final(f"{parent}/{name}" if parent else name)
                job.server_path = candidate
                # (the name an earlier run recorded was taken at the start, --on-exists too)
                if name != (job.remembered or final).name:
                    final = job.take_server_name(candidate)
        part = job.open_part(final, fresh=not job.done)
        try:
            part.prepare(job.size, have=length(job.done) if job.done else 0)
        except StorageError:
            if not job.done:  # (nothing in it: no empty part file left behind)
                part.discard()
            raise
