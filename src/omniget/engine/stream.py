"""One URL written in order to a stream (``omniget -O - URL``): one connection, retries
resume with Range from the bytes already written; if the server cannot resume, the bytes
already sent are skipped in the new answer (never written twice). The item's mirrors are
taken as a download into a file takes them: another one at once after a failure, one
whose file has another size, or that answered 404 or 401, never again. The item's size,
when it says one, is checked at the first answer, as a download checks it, before any byte
goes out. A known digest (the item's or ``--checksum``, and those the server gives from
its first answer on) is checked at the end: the bytes
are out by then, but the run fails with :class:`IntegrityError`; so does a
content-encoded answer whose stream fails its own check after some of its bytes went out
(a retry could only skip them). An error writing the stream (disk full, its reader gone)
is a :class:`StorageError` whose cause is the ``OSError``; it is never retried. Events
(path None): Started at the first answer, Progress at most every ``job.PROGRESS_EVERY`` s,
Finished at the end, Retrying and Warned."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import IntegrityError, OmnigetError, TransientError, UsageError, write_error
from ..model import ByteRange, Digest, Item
from .events import EventHandler, Finished, Progress, Retrying, Started, Warned
from .job import MAX_REFRESHES, PROGRESS_EVERY, REFRESH_MARGIN, FileJob
from .mirrors import PERMANENT_ON_ONE_MIRROR, headers_for, next_mirror, not_a_copy
from .ratelimit import RateLimit
from .resume import strong
from .retry import gave_up
from .spanfetch import PART_MIN
from .transports.base import (
    Head,
    Request,
    StopTransfer,
    check_status,
    safe_url,
    skip_prefix,
    transport_for,
)
from .transports.redirect import DOWNGRADED, downgraded
from .verify import (
    DIGEST_FIELDS,
    UNVERIFIED,
    StreamHasher,
    check_media,
    digest_mismatch,
    digests_from_headers,
    every_digest,
)

if TYPE_CHECKING:
    from .context import Refresher
    from .core import Engine

__all__ = ["stream_item", "write_error"]


class _StreamSink:
    def __init__(self, write: Callable[[bytes], object], done: int, item: Item) -> None:
        self.write = write
        self.item = item  # (its size, when it says one, is checked as a download checks it)
        self.on_start: Callable[[], None] | None = None  # at the first answer taken
        self.on_bytes: Callable[[], None] | None = None  # after each write
        #: hashes of the bytes out, by algorithm: the wanted digest's, and those of the
        #: server's digests given before the first byte went out
        self.hashes: dict[str, StreamHasher] = {}
        self.digests: list[Digest] = []  # the server's (each must hold)
        self.done = done
        self.skip = 0
        self.url = ""  # the URL asked now (the item's, or a mirror)
        # each URL's validators, ETag and Last-Modified (mirrors have their own)
        self.validators: dict[str, tuple[str | None, str | None]] = {}
        self.size: int | None = None
        self.size_from = ""  # the URL that gave the size
        self.decoded = False  # the current answer is content-encoded
        self.framed = True  # the current answer's body ends by its own framing
        self.ranges = True  # resume with Range (False once a 206 was not what was asked)
        self.end: int | None = None  # where the current 206's Content-Range ends
        self.downgrade = ""  # the plain http:// URL an https:// one was answered from

    def on_head(self, head: Head) -> None:
        if downgraded(self.url, head.url):
            self.downgrade = head.url
        self.decoded = head.decoded
        self.framed = head.framed
        if head.status == 416 and self.done and self.ranges:
            self._unsatisfiable(head)
        check_status(head, head.url)
        check_media(self.item, head)
        said = self.item.size_bytes
        if said is not None and head.total_size not in (None, said):
            err = IntegrityError(f"size mismatch for {self.item.filename}: {head.total_size} "
                                 f"bytes on the server, the item says {said}")
            err.max_retries = 1  # (as a download's: another server of a CDN may answer)
            raise err
        if self.done and self._changed(head):
            raise TransientError("the file changed on the server while streaming")
        size, total = self.size, head.total_size
        if size is not None and total is not None and total != size and self.url != self.size_from:
            raise not_a_copy(self.url, total, size)  # (a mirror: its own error)
        start, self.end = 0, None  # where the body starts in the file
        if head.status == 206:
            cr = head.content_range
            asked = self.done if self.ranges else 0
            if cr is None or cr[0] != asked:  # (another part, or a multipart body)
                self.ranges = False  # the next request asks for the whole body
                raise TransientError("the server answered a wrong byte range")
            start = cr[0]
            if not self.decoded:  # (an encoded body's range is of the encoded bytes)
                self.end = cr[1]
        self.skip = self.done - start  # (a whole body to a resume: what went out comes again)
        if head.etag or head.last_modified:
            self.validators[self.url] = (head.etag, head.last_modified)
        if self.size is None and head.total_size is not None:
            self.size, self.size_from = head.total_size, self.url
        if head.headers.has_any(DIGEST_FIELDS):
            self._add_digests(head)
        if self.on_start is not None:
            self.on_start()
            self.on_start = None

    def _add_digests(self, head: Head) -> None:
        """The server's digests of the file: hashed from the first byte, so only those of
        an algorithm hashed already once bytes are out (a later answer's)."""
        for d in digests_from_headers(head.headers, status=head.status, decoded=head.decoded):
            if d.algo not in self.hashes and self.done == 0:
                self.hashes[d.algo] = StreamHasher(d.algo)
            if d.algo in self.hashes and d not in self.digests:
                self.digests.append(d)

    def _changed(self, head: Head) -> bool:
        """The file at this URL changed since the bytes out came from it: another size,
        or other validators."""
        if self.url == self.size_from and head.total_size not in (None, self.size):
            return True
        etag, modified = self.validators.get(self.url, (None, None))
        if etag and head.etag:
            return head.etag != etag
        return bool(modified and head.last_modified and head.last_modified != modified)

    def if_range(self, url: str) -> str | None:
        """What to send as ``url``'s If-Range: a strong ETag, else Last-Modified."""
        etag, modified = self.validators.get(url, (None, None))
        return etag if strong(etag) else modified

    def _unsatisfiable(self, head: Head) -> None:
        """A 416 to the resume. With the size it gives (``Content-Range: bytes */N``)
        where the stream stands, every byte is out already (a body of unknown length
        whose end was lost with its connection): it is whole. A smaller one: the file
        changed."""
        m = re.match(r"\s*bytes\s+\*/(\d+)\s*$", head.headers.get("content-range", ""), re.I)
        if m is None or self.size not in (None, self.done):
            return
        size = int(m.group(1))
        if size < self.done:
            raise TransientError("the file changed on the server while streaming")
        if size == self.done:
            self.size, self.size_from = size, self.url
            raise StopTransfer

    def on_data(self, data: bytes) -> None:
        if self.skip:
            data, self.skip = skip_prefix(data, self.skip)
            if not data:
                return
        end, over = self.end, False
        if end is not None and self.done + len(data) > end:
            data, over = data[: end - self.done], True  # (past its range: not the file's)
        try:
            self.write(data)
        except OSError as exc:  # (the transport re-raises it from fetch)
            raise write_error(exc) from exc
        self.done += len(data)
        for h in self.hashes.values():
            h.update(data)
        if self.on_bytes is not None:
            self.on_bytes()
        if over:
            raise StopTransfer


async def stream_item(
    engine: Engine,
    item: Item,
    write: Callable[[bytes], object],
    emit: EventHandler,
    refresh: Refresher,
) -> int:
    if item.kind != "file":  # (a download makes a folder or a link of it: no bytes)
        what = "a folder" if item.kind == "dir" else "a link"
        raise UsageError(f"{item.filename} is {what}: it has no bytes to write to a stream")
    if item.expires is not None and engine.clock.time() >= item.expires - REFRESH_MARGIN:
        item = await refresh(item)
    if item.pieces:  # (its bytes are not its download_url's)
        raise UsageError(f"{item.filename} is made of pieces: it cannot be written to a "
                         "stream, only downloaded into a folder")
    transports = engine.transports()
    sink = _StreamSink(write, 0, item)
    limit = engine.settings.limit_rate
    rate = RateLimit(limit) if limit else None
    want = item.digest or engine.settings.checksum
    if want is not None:
        sink.hashes[want.algo] = StreamHasher(want.algo)
    listened = engine.listened
    if listened:
        _report_progress(engine, item, sink, emit)
    attempts, waited = 0, 0.0
    urls = (item.download_url, *item.mirrors)
    url = urls[0]
    gone: set[str] = set()  # mirrors that failed for good
    switches = 0  # to another mirror at once, without a wait (bounded)
    refreshed_at = -math.inf  # (the engine's monotonic clock)
    refreshes = (0, 0)  # refreshes in a row with no byte out between, and the bytes out then
    while True:
        rng = ByteRange(sink.done) if sink.done and sink.ranges else None
        req = Request(
            url,
            headers=headers_for(item, url),
            range=rng,
            if_range=sink.if_range(url) if rng else None,
            secret_headers=item.secret_headers,
            rate=rate,
        )
        before = sink.done
        sink.url = url
        try:
            await transport_for(transports, url).fetch(req, sink)
            if sink.skip:  # a whole body that ended before the bytes already out
                if sink.framed:
                    raise TransientError("the file changed on the server while streaming")
                raise TransientError(f"connection closed at byte {sink.done - sink.skip} of"
                                     f" the {sink.done} written already")
            if sink.size is not None and sink.done < sink.size:
                if sink.done == sink.end and sink.done - before >= PART_MIN:
                    continue  # a whole 206 of fewer bytes than asked: the rest at once
                raise TransientError(f"connection closed at byte {sink.done} of {sink.size}")
            break
        except OmnigetError as exc:
            if isinstance(exc, IntegrityError) and sink.decoded and sink.done > before:
                raise IntegrityError(
                    f"{exc}; {sink.done - before} bytes decoded from it were already "
                    "written out, and cannot be taken back"
                ) from None
            if sink.decoded and rng is not None:  # (a range of encoded bytes, maybe: they
                sink.ranges = False  # do not decode from their middle) the whole body next
            now = engine.clock.monotonic()
            if sink.done != refreshes[1]:
                refreshes = (0, sink.done)
            if (FileJob.refreshable(exc) and now - refreshed_at >= 1.0  # (as a file's job)
                    and refreshes[0] < MAX_REFRESHES):
                refreshed_at, refreshes = now, (refreshes[0] + 1, sink.done)
                fresh = await refresh(item)
                if fresh != item and not fresh.pieces:  # its URLs renewed: the rest from them
                    item = sink.item = fresh
                    urls = (item.download_url, *item.mirrors)
                    url, gone = urls[0], set()
                    continue
            other = next_mirror(urls, url, gone)
            if other is not None and not exc.retryable:
                if not isinstance(exc, PERMANENT_ON_ONE_MIRROR):
                    raise
                gone.add(url)
            if other is not None and (not exc.retryable or switches < 2 * len(urls)):
                switches += 1
                emit(Warned(item, None, f"{exc}; trying a mirror"))
                url = other
                continue
            if sink.done - before >= engine.settings.checkpoint_bytes:
                attempts = 0  # (as a download's span: a few bytes more are no success)
            attempts += 1
            delay = engine.policy.next_delay(attempts, exc, waited, engine.rng)
            if delay is None:
                gave_up(exc, attempts, engine.policy, waited)
                raise
            emit(Retrying(item, None, exc, attempts, delay))
            await engine.clock.sleep(delay)
            waited += delay
    if sink.downgrade:
        emit(Warned(item, None, DOWNGRADED.format(safe_url(sink.downgrade))))
    wanted = every_digest(want, sink.digests)
    for d in wanted:  # (each must hold: the item's first, then the server's)
        got = sink.hashes[d.algo].hexdigest()
        if got != d.hex:
            raise digest_mismatch(item.filename, d, got)
    if not wanted and sink.size is None and not sink.framed:
        emit(Warned(item, None, UNVERIFIED))
    if listened:
        verified = wanted[0].algo if wanted else "size" if sink.size is not None else None
        emit(Finished(item, None, sink.done, verified, sink.done))
    return sink.done


def _report_progress(
    engine: Engine, item: Item, sink: _StreamSink, emit: EventHandler
) -> None:
    """Started at the sink's first answer, then Progress at most every PROGRESS_EVERY s."""
    clock = engine.clock
    last = clock.monotonic()

    def start() -> None:
        emit(Started(item, None, sink.size, 0))

    def tick() -> None:
        nonlocal last
        now = clock.monotonic()
        if now - last >= PROGRESS_EVERY:
            last = now
            emit(Progress(item, None, sink.done, sink.size))

    sink.on_start, sink.on_bytes = start, tick

