"""One identity piece (a plain file) over one or more ranged connections.

A *span* is one connection's lease on ``[pos, end)`` of the file. The first request is a
plain GET and runs in the file's own task; most files end with it. When its head shows a
file worth splitting (size known, Range support), a :class:`~.splitter.Splitter` starts in
a task of its own and adds spans (see :mod:`.splitter` for how many and which bytes). Every
range answer is checked (206 + Content-Range at the asked offset, same validators): bytes
are never spliced at a wrong offset. When the file changed, the whole new body that
If-Range brings (a 200) is the download, whatever span asked: the others are dropped.

One span's requests, retries and the sink that writes its bytes are in :mod:`.spanfetch`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from ..errors import (
    StorageError,
    TransientError,
)
from .checkpoints import record_anew, save_spans
from .events import Warned
from .job import FileJob
from .mirrors import not_a_copy
from .names import filename_from_content_disposition
from .retry import FileWaits
from .scheduler import Ticket
from .spanfetch import SpanSink, run_span, size_mismatch
from .spans import Interval, gaps, length, merge, within
from .splitter import TAKE_OVER_MIN, Span, Splitter
from .transports.base import (
    Head,
    StopTransfer,
    check_status,
    safe_url,
)
from .transports.redirect import DOWNGRADED, downgraded
from .verify import DIGEST_FIELDS as _DIGEST_FIELDS
from .verify import StreamHasher, check_media, digests_from_headers, strength

log = logging.getLogger(__name__)

__all__ = ["PlainDownload"]

MAX_RESTARTS = 3


class _Restart(Exception):
    def __init__(self, reason: str, *, changed: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.changed = changed  # the remote file changed: drop every byte we have


class PlainDownload:
    def __init__(self, job: FileJob) -> None:
        self.job = job
        self.ctx = job.ctx
        self.settings = job.ctx.settings
        self.spans: list[Span] = []
        self.ranges_ok = True  # not known to be broken: resume with Range
        self.ranges_known = False  # advertised or seen (206): needed to split
        self.ckpt_bytes = self.settings.checkpoint_bytes
        alone = job.mirror_alone  # (all its bytes from that one URL: see finish.py)
        self.urls = (job.item.download_url, *job.item.mirrors) if alone is None else (alone,)
        self.used: set[str] = set()  # the URLs whose answers were taken
        self.fresh = not job.done  # no byte of an earlier download kept
        self.gone: set[str] = set()  # mirrors that answered with a permanent error
        self.failing: set[str] = set()  # mirrors that failed lately (connect, reset, ...)
        self.struck: set[str] = set()  # hosts it gave a strike (see DownHosts.mirror_failed)
        self.head_seen = False
        self.said_refetch = False  # (a Warned that the bytes kept are fetched again)
        self.said_downgrade = False  # (a Warned that an https:// URL led to http://)
        self.heads = 0  # answers accepted so far
        self.restarts = 0  # starts from byte 0 (a _Restart, or one in place: _start_over)
        self.stale = 0  # spans of self.spans dropped when the file changed (_start_over)
        self.inline: Span | None = None  # the first span while it runs in the file's task
        self.splitter: Splitter | None = None  # made when worth splitting
        self.controller: asyncio.Task[None] | None = None  # runs the splitter
        self.runner: asyncio.Task[Any] | None = None  # the file's task
        self.interrupts = 0  # cancels of the file's task that only stop its first span
        self.slowest_head = 0.0  # seconds from a request to its answer, the longest seen
        self.waits = FileWaits()  # its spans' waits to try again (retry-max-time)
        # bytes an earlier run wrote that no whole answer has sent again yet (resumed), and
        # those one did and that come again before its span's position (written as they do)
        self.kept: list[Interval] = job.done
        self.owed: list[Interval] = []

    # ----- the whole file ---------------------------------------------------------

    async def run(self) -> None:
        while True:
            try:
                await self._attempt()
                return
            except _Restart as exc:
                log.debug("%s: starting over: %s", self.job.item.filename, exc.reason)
                self.restarts += 1
                if self.restarts > MAX_RESTARTS:
                    raise TransientError(
                        f"{exc.reason} (gave up after {MAX_RESTARTS} restarts)"
                    ) from None
                if exc.changed:
                    self.job.restart()
                    self.kept, self.owed = [], []
                    self.job.size = self.job.item.size_bytes
                    self.head_seen = False
                else:
                    self.ranges_ok = False
                    self.job.done = self.covered()
                self.spans, self.stale = [], 0

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
        save_spans(self.job, self.covered(), now)

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
        if job.resumed:  # (its bytes on disk shown from now, not from its first answer:
            job.started_event()  # a server that does not answer showed it at 0%)
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
            self.spans, self.stale = [], 0

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
            await run_span(self, first, url)
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
        span.task = asyncio.create_task(run_span(self, span, url))
        return True

    def _lease(self, span: Span, *, wait: bool) -> str | None:
        """Give ``span`` a connection slot (see :meth:`start_span`) and count it among the
        file's spans; returns its URL, or None when no slot is free now."""
        urls = self.urls
        if len(urls) > 1:  # (those that have not failed, nor their hosts, if any)
            why = self.ctx.down.why
            urls = tuple(u for u in urls if u not in self.gone and u not in self.failing
                         and why(u) is None) or urls
        url = urls[len(self.spans) % len(urls)]
        span.ticket = self.ticket(span, url, wait=wait)
        if span.ticket is None:
            return None
        self.spans.append(span)
        span.seen = time.monotonic()
        return url

    def ticket(self, span: Span, url: str, *, wait: bool) -> Ticket | None:
        """A connection slot for ``span`` at ``url``'s host: queued for (``wait``), or
        one free now (else None)."""
        limits = self.ctx.limits
        if not wait:
            return limits.try_ticket(url)
        light = span.pos == 0 and span.end is None  # a plain GET (may be pipelined)
        return limits.ticket(url, self.job.claim, light=light)

    def worth_splitting(self) -> bool:
        size = self.job.size
        # already split: steal smaller pieces, take over the tail
        split = len(self.spans) - self.stale > 1
        need = TAKE_OVER_MIN if split else 2 * self.settings.min_split_size
        if size is None or size < need or self.settings.split == 1 or not self.splittable():
            return False  # (the size first: a small file asks nothing more)
        return self.left() >= need  # (left() <= size: no sum for small files)


    def left(self) -> int:
        """Bytes of the file not yet written (0 when the size is unknown)."""
        size = self.job.size
        return 0 if size is None else size - length(self.covered())


    def to_fetch(self) -> int:
        """Bytes of the file this attempt set out to fetch: its size, less what an earlier
        attempt or run left in place (0 when the size is unknown). Unlike :meth:`left`, not
        less the bytes come since (its first answer's, which may come with its head)."""
        size = self.job.size
        return 0 if size is None else size - length(self.job.done)

    def splittable(self) -> bool:
        return self.ranges_ok and self.ranges_known and self.job.size is not None

    # ----- response heads -----------------------------------------------------------

    def on_head(self, head: Head, sink: SpanSink) -> None:
        """Check an answer before any of its bytes are written."""
        if sink.span.dropped:  # (its bytes went to another span, or were of an old file)
            raise StopTransfer
        job = self.job
        # validators are those of the item's own URL: mirrors have their own (by size)
        own = sink.req.url == job.item.download_url
        if head.status == 416 and sink.req.range is not None:
            self._unsatisfiable(head, sink.span, own)
        check_status(head, sink.req.url)
        sink.answered = True  # (its host is up: see downhosts.py)
        self.ctx.down.answered(sink.req.url)
        cr = head.content_range
        sink.body_end = cr[1] if head.status == 206 and cr else head.total_size
        if not own and job.size is not None and head.total_size not in (None, job.size):
            raise not_a_copy(sink.req.url, head.total_size, job.size)
        said = job.item.size_bytes
        if said is not None and head.total_size not in (None, said):
            raise size_mismatch(job, f"{head.total_size} bytes on the server, the item says {said}")
        check_media(job.item, head)
        span = sink.span
        ranged = sink.req.range is not None
        if self.failing:
            self.failing.discard(sink.req.url)  # it answers again
        if head.decoded:
            self.ranges_ok = False
        fresh = (self.head_seen or job.done) and self._changed(head, own)
        if fresh:
            if not self._whole_new_file(head, sink, own):
                raise _Restart("the file changed on the server", changed=True)
            self._start_over(sink)
        if own and not (job.etag or job.last_modified):
            job.etag, job.last_modified = head.etag, head.last_modified
        if fresh:
            pass  # (the new file's first answer, from byte 0: nothing to check against)
        elif head.status == 206 and ranged:
            if cr is None or cr[0] != span.pos:
                raise _Restart("the server answered a wrong byte range", changed=False)
            self.ranges_known = True
        else:  # a full body, starting at byte 0
            if head.status == 206 and (cr is None or cr[0] != 0):
                # (a part nobody asked for, or a multipart body: not from byte 0)
                raise _Restart("the server answered a wrong byte range", changed=False)
            if ranged:
                running = sum(1 for s in self.spans if s.running)
                # (a whole answer for each span, or each gap of a resumed file, would
                # send the file again for each: one stream takes the rest)
                if self.ranges_ok and not head.decoded and (
                    (span.pos and running > 1) or self._kept_after(span)
                ):
                    raise _Restart("the server ignores byte ranges", changed=False)
                self.ranges_ok = False
            if head.decoded and span.pos:
                # bytes kept from an earlier answer (a run cut off, say) that this one's
                # checks do not cover: they are of the compressed body, and only of this one
                raise _Restart("a compressed answer cannot continue kept bytes", changed=True)
            if self.kept:  # (none for a file begun afresh: most)
                self._sent_again(span)
            if span.pos:  # (what we have comes again: written over it)
                sink.skip = span.pos
                if not self.said_refetch:  # (else a long wait at 0 B/s, unsaid)
                    self.said_refetch = True
                    self.ctx.event(Warned(job.item, job.final, "the server ignores Range: the"
                                          f" {span.pos} bytes already here come again before"
                                          " the rest"))
        self.used.add(sink.req.url)
        if sink.sent:
            self.slowest_head = max(self.slowest_head, time.monotonic() - sink.sent)
        if not self.head_seen:
            self._first_head(head, sink)
            if self.inline is not None and self.controller is None and self.worth_splitting():
                self._start_controller()
        elif head.headers.has_any(_DIGEST_FIELDS):  # (a later answer's must hold too)
            self._add_digests(head)
        self.heads += 1
        if self.splitter is not None:
            self.splitter.head_event.set()

    def _whole_new_file(self, head: Head, sink: SpanSink, own: bool) -> bool:
        """The file changed, and this answer brings the whole new one (the 200 an If-Range
        gives): it can be the download, in place of a request from byte 0, within the
        restarts a file gets. The file's other spans (a resumed file's other gaps, or
        spans of a split) are then dropped (_start_over): that needs the splitter, which
        starts the spans and watches them, still running (or none, for a lone span)."""
        if head.status != 200 or not own or head.decoded or self.restarts >= MAX_RESTARTS:
            return False
        if self.splitter is None:
            return self.spans == [sink.span]
        return self.controller is None or not self.controller.done()

    def _start_over(self, sink: SpanSink) -> None:
        """What run() does on a _Restart for a changed file (every byte forgotten: the
        journal's, the part file's, those kept and owed), done in place: ``sink``'s answer,
        a whole body from byte 0, is then taken as the file's first (see _first_head).
        Every other span is dropped (its task cancelled, nothing more of its answer
        written: SpanSink), queued gaps of the old file forgotten, and the splitter starts
        again as for a new file."""
        self.restarts += 1
        log.debug("%s: the file changed on the server; its new bytes come in this answer",
                  self.job.item.filename)
        span = sink.span
        for other in self.spans:
            if other is not span:
                self._drop(other)
        self.stale = len(self.spans) - 1
        self.job.restart()
        self.kept, self.owed = [], []
        self.head_seen = False
        span.start = span.pos = span.saved = 0
        span.end = None  # (the new size, if known: _first_head)
        sink.skip = 0
        sink.hash = None  # (the new file's stream hash, if any: _first_head)
        self.job.connections = 1
        if self.splitter is not None:
            self.splitter.renew()

    def _drop(self, span: Span) -> None:
        """Stop a span of a file that changed: its bytes count for nothing (covered()),
        and any more of its answer is refused (on_head, SpanSink) until its task ends."""
        cancelled, span.dropped = span.dropped, True  # (a span taken over is, already)
        span.start = span.pos = span.saved = span.end = 0
        task = span.task
        if cancelled or task is None or task.done():
            return
        task.cancel()
        if span is self.inline:  # (its task is the file's: stop only the span)
            self.interrupt()
        elif (ticket := span.ticket) is not None:  # (a task cancelled before it ran
            task.add_done_callback(lambda _: ticket.close())  # never closes its own)

    def shrank(self) -> None:
        """A whole answer ended, by its own framing, before the bytes we have."""
        raise _Restart("the file changed on the server (shorter than the bytes here)",
                       changed=True)

    def _kept_after(self, span: Span) -> bool:
        """Bytes an earlier run wrote lie past ``span``'s end (gaps of a resumed file)."""
        end = span.end
        return end is not None and any(e > end for _, e in self.kept)

    def _sent_again(self, span: Span) -> None:
        """A whole answer for ``span`` sends every byte before its end: those kept from an
        earlier run are no more resumed than any other (those before its position are
        written again as they come, see SpanSink._again; the others as any byte is)."""
        end = span.end if span.end is not None else 1 << 62
        kept = self.kept
        if kept[0][0] >= end:
            return
        self.job.resumed -= within(kept, 0, end)
        self.job.started_event(again=True)  # (said at the first request with them)
        self.owed = merge([*self.owed, *((s, min(e, span.pos)) for s, e in kept if s < span.pos)])
        self.kept = [(max(s, end), e) for s, e in kept if e > end]

    def _unsatisfiable(self, head: Head, span: Span, own: bool) -> None:
        """A 416 to a ranged request. With the size it gives (``Content-Range: bytes
        */N``) where the span stands, and no other size known, every byte is here already
        (a body of unknown length whose end was lost with its connection): the span is
        complete. A smaller size than that means the file changed (or, from a mirror,
        that it is not a copy). Else it is an error."""
        size, job = head.unsatisfied_size, self.job
        if size is None:
            return
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

    def _first_head(self, head: Head, sink: SpanSink) -> None:
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
        # (with any a resumed file's record kept, which an answer to a resume may not
        # give again: Content-MD5 comes with a 200 only)
        self._add_digests(head)
        if job.final is None or job.part is None:
            self._open_output(head)
        if not self.said_downgrade and downgraded(sink.req.url, head.url):
            self.said_downgrade = True
            self.ctx.event(Warned(job.item, job.final, DOWNGRADED.format(safe_url(head.url))))
        expected = job.item.digest or (job.digests[0] if job.digests else None)
        if expected is not None and not job.done and span.start == 0:
            job.stream_hash = StreamHasher(expected.algo)
            sink.hash = job.stream_hash
        if job.generation and job.journal_started:  # (restarted: its record has the old
            record_anew(job)  # file's validators, which a rerun's If-Range would name)
        job.started_event()

    def _add_digests(self, head: Head) -> None:
        """The whole-file digests ``head`` gives, beside those known: each must hold."""
        job = self.job
        found = digests_from_headers(head.headers, status=head.status, decoded=head.decoded)
        if found and job.digests:
            found = sorted(dict.fromkeys([*job.digests, *found]), key=strength)
        if found:
            job.digests = found

    def _open_output(self, head: Head) -> None:
        job = self.job
        final = job.final
        assert final is not None
        if job.item.name_from_server and not job.done:
            field = head.headers._last.get("content-disposition")  # (no Headers.get call)
            name = filename_from_content_disposition(field[1]) if field and field[1] else None
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
