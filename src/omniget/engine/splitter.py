"""How many connections one file gets, and which bytes each takes: the controller of a
:class:`~.plain.PlainDownload` once its first answer shows a file worth splitting.

A fixed number (``--split N``) starts at once. Adaptively, a large file (``EARLY_SPLIT``
split sizes or more to fetch: its size, or what a resumed one lacks, counted as its first
answer comes, before the bytes that came with it) opens eight connections (at most the host
cap) at that answer, as many as its first window would have tried anyway, then twice as
many after 0.1 s; a smaller one tries four after 0.1 s on one connection. After each step:
if the rate grew about as much as the connections did (a per-connection limit) go to the
host cap, if it grew at all double again, else stay. Every window is timed from the new
spans' first answers, not from their connects. When a span finishes, the largest remaining
span is split in two (work stealing), down to a quarter of the split size. In the tail,
when nothing is left to split, a free connection takes over the whole remainder of a span
that has been silent for a while (a paced or stalled connection) and that span's transfer
is dropped. When the file changes and one span's answer brings the whole new file, the
others are dropped and all this starts again from that answer (:meth:`Splitter.renew`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import field
from typing import TYPE_CHECKING, Any

from .._frozen import plain_dataclass
from .scheduler import Ticket
from .spans import split_largest

if TYPE_CHECKING:
    from .plain import PlainDownload

log = logging.getLogger(__name__)

__all__ = ["TAKE_OVER_MIN", "Span", "Splitter"]

TICK = 0.1  # controller wake-up, seconds
FIRST_WINDOW = 0.1  # adaptive: the one-connection rate, measured from its first answer
WINDOW = 0.1  # adaptive: then throughput over this long, from the new spans' answers
FIRST_STEP = 4  # adaptive: connections tried after the first window
EARLY_SPLIT = 32  # adaptive: a file this many min split sizes long takes EARLY_STEP at once
EARLY_STEP = 2 * FIRST_STEP  # (one window of FIRST_STEP would only ever double it)
GROWTH = 1.3  # adaptive: keep doubling while throughput grows by this factor
LINEAR = 0.8  # adaptive: growth this close to linear in connections means each is capped
STEAL_FRACTION = 4  # a running span is split down to min_split_size / this
HEAD_WAIT = 2.0  # adaptive: measure anyway when new spans stay silent this long
QUIET = 0.02  # tail: a span silent this long (and 2x the slowest first answer) is taken over
TAKE_OVER_MIN = 16 * 1024  # tail: smaller remainders are left where they are


@plain_dataclass
class Span:
    """A byte range of one file on one connection: ``pos`` moves from ``start`` to ``end``."""

    start: int
    pos: int
    end: int | None  # None: to the end of the body
    ticket: Ticket | None = None  # its connection slot (granted, or waited for)
    # its task; for the first span, which runs in the file's own task, a future that
    # stands for it (cancelling it interrupts that run)
    task: asyncio.Future[None] | None = None
    saved: int = field(init=False)  # pos at the last checkpoint
    seen: float = 0.0  # monotonic time of its request or its last bytes
    # its remainder was taken over, or the file changed (PlainDownload._drop): its task
    # is being cancelled, and nothing more of its answer is written
    dropped: bool = False

    def __post_init__(self) -> None:
        self.saved = self.start

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done() and not self.dropped

    @property
    def remaining(self) -> int:
        return 0 if self.end is None else self.end - self.pos


class Splitter:
    """Adds spans to one download attempt of a file, steals work, takes over quiet tails."""

    def __init__(self, dl: PlainDownload) -> None:
        self.dl = dl
        self.ctx = dl.ctx
        self.settings = dl.settings
        self.target = 1
        self.frozen = False
        self.head_event = asyncio.Event()  # set on every accepted answer
        # the adaptive window waits for this many answers (first: the first span's)
        self.heads_wanted = dl.heads + 1
        self.heads_until = 0.0  # ... but no longer than this (monotonic time)
        self.wake_at: float | None = None  # tail: when a span may be quiet enough to take over
        self.pending: list[Span] = []  # resume gaps not started yet (run's)
        self.renewed = False  # the file changed and one span brings the new one (renew)

    def renew(self) -> None:
        """The file changed, and one span's answer brings the whole new file (the other
        spans are dropped): the gaps of the old one still queued are forgotten, and the
        new file is split as any new file is, from that answer (see run)."""
        self.pending.clear()
        self.renewed = True
        self.head_event.set()

    def begin(self) -> None:
        """A fixed split starts at once, as does a large file's early step; else the
        adaptive window measures one connection first."""
        dl = self.dl
        if self.settings.split is not None and dl.splittable():
            self.target = max(1, self.settings.split)
            self.fill(self.pending)
        elif dl.splittable() and dl.to_fetch() >= EARLY_SPLIT * self.settings.min_split_size:
            self.target = min(EARLY_STEP, self.ctx.limits.per_host)  # large: no 1-conn window
            self.fill(self.pending)

    async def run(self, pending: list[Span]) -> None:
        dl = self.dl
        self.pending = pending
        # An adaptive window runs while every started span has answered (heads >=
        # heads_wanted): it is timed from those answers, not from the connects.
        window_t = time.monotonic()
        window_b = dl.job.fetched
        last_rate: float | None = None
        last_conns = 1
        self.begin()
        while True:
            if self.renewed:  # a new file, from its first answer (its one span)
                self.renewed, self.frozen, self.target = False, False, 1
                self.heads_wanted = dl.heads
                window_t, window_b = time.monotonic(), dl.job.fetched
                last_rate, last_conns = None, 1
                self.begin()
            active: list[asyncio.Future[Any]] = [
                s.task for s in dl.spans if s.task is not None and not s.task.done()
            ]
            if not active:
                break
            waiting = dl.heads < self.heads_wanted
            timeout = TICK
            if not waiting:  # wake when the window ends
                window = FIRST_WINDOW if last_rate is None else WINDOW
                timeout = max(0.001, min(TICK, window_t + window - time.monotonic()))
            if self.wake_at is not None:  # the tail: a span may soon be quiet enough
                timeout = max(0.001, min(timeout, self.wake_at - time.monotonic()))
            waiter: asyncio.Task[bool] | None = None
            if waiting:  # wake as soon as the awaited heads arrive
                self.head_event.clear()
                waiter = asyncio.create_task(self.head_event.wait())
                active.append(waiter)
            try:
                done, _ = await asyncio.wait(
                    active, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
            finally:  # (cancelled too: no wait left pending on the loop)
                if waiter is not None:
                    waiter.cancel()
            done.discard(waiter)  # (None: not there)
            if waiting and (dl.heads >= self.heads_wanted or time.monotonic() > self.heads_until):
                self.heads_wanted = dl.heads  # a span that failed before answering
                window_t, window_b = time.monotonic(), dl.job.fetched
            for t in done:
                self.check_span(t)
            if self.renewed:
                continue  # (a new file: its window, not this one's; see above)
            if dl.head_seen and not pending and not dl.worth_splitting():
                # small or unsplittable: just wait for the streams (the first error stops
                # it), unless the file changed meanwhile (the new one may be worth it)
                rest = [t for t in active if t is not waiter and not t.done()]
                if await self.wait_out(rest):
                    continue
                break
            now = time.monotonic()
            if not dl.splittable():
                continue
            if self.settings.split is not None:
                self.target = max(1, self.settings.split)
            elif (
                not self.frozen
                and dl.heads >= self.heads_wanted
                # (the wake-up is timed to the window's end: allow float rounding)
                and now - window_t >= (FIRST_WINDOW if last_rate is None else WINDOW) * 0.999
                and dl.job.fetched > window_b
            ):
                rate = (dl.job.fetched - window_b) / (now - window_t)
                conns = dl.job.connections
                if last_rate is None:  # the first window: probe one step up
                    step = FIRST_STEP if conns == 1 else conns * 2
                    self.target = min(step, self.ctx.limits.per_host)
                elif rate >= last_rate * LINEAR * conns / last_conns:
                    # the rate grew with the connections: a per-connection limit; go to the cap
                    self.target = self.ctx.limits.per_host
                elif rate >= last_rate * GROWTH:
                    self.target = min(conns * 2, self.ctx.limits.per_host)
                else:
                    self.frozen = True
                last_rate, last_conns = rate, conns
                window_t, window_b = now, dl.job.fetched
            self.fill(pending)
        if pending:  # resume gaps left when the connections ran out
            for span in pending:
                dl.start_span(span, wait=True)
            pending.clear()
            await self.run([])

    async def wait_out(self, rest: list[asyncio.Future[Any]]) -> bool:
        """Wait for the tasks of ``rest`` to end (raising the first error); True as soon
        as the file is renewed (see renew)."""
        while rest and not self.renewed:
            self.head_event.clear()
            waiter = asyncio.create_task(self.head_event.wait())
            try:
                done, _ = await asyncio.wait(
                    [*rest, waiter], return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                waiter.cancel()
            for t in done:
                if t is not waiter:
                    self.check_span(t)
            rest = [t for t in rest if not t.done()]
        return self.renewed

    def check_span(self, task: asyncio.Future[Any]) -> None:
        """Raise a finished span task's error; a dropped span's cancellation is none (its
        bytes went to another connection)."""
        dl = self.dl
        if task.cancelled() and any(s.task is task and s.dropped for s in dl.spans):
            return
        task.result()

    def steal_unit(self) -> int:
        return max(1, self.settings.min_split_size // STEAL_FRACTION)

    def fill(self, pending: list[Span]) -> None:
        """Start spans up to the target; the adaptive window then waits for their answers."""
        dl = self.dl
        want = self.target - sum(1 for s in dl.spans if s.running)
        started = 0
        self.wake_at = None
        while want > 0:
            if pending:
                if not dl.start_span(pending[0], wait=False):
                    break
                pending.pop(0)
            elif not self.steal():
                break
            want -= 1
            started += 1
        dl.job.connections = sum(1 for s in dl.spans if s.running)
        if started:
            self.heads_wanted = dl.heads + started
            self.heads_until = time.monotonic() + HEAD_WAIT
            log.debug(
                "%s: %d connections (target %d)",
                dl.job.item.filename, dl.job.connections, self.target,
            )

    def steal(self) -> bool:
        """Give a free connection part of a running span: the far half of the largest
        remainder, or in the tail the whole remainder of a quiet span (whose transfer is
        then dropped). False when there is nothing to take or no free slot."""
        dl = self.dl
        running = [s for s in dl.spans if s.running and s.end is not None]
        live = {i: (s.pos, s.end or 0) for i, s in enumerate(running)}
        choice = split_largest(live, self.steal_unit())
        if choice is not None:
            victim, mid = running[choice[0]], choice[1]
        else:
            quiet = None if self.ctx.rate else self.quiet(running)  # (paused, not quiet)
            if quiet is None:
                return False
            victim, mid = quiet, quiet.pos
        new = Span(mid, mid, victim.end)
        victim.end = mid
        if not dl.start_span(new, wait=False):
            victim.end = new.end  # no free slot: give the bytes back
            return False
        if victim.pos >= mid and victim.task is not None:
            log.debug(
                "%s: bytes %d-%d move from a quiet connection to a fresh one",
                dl.job.item.filename, mid, new.end,
            )
            victim.dropped = True
            victim.task.cancel()
            if victim is dl.inline:  # (its task is the file's: stop only the span)
                dl.interrupt()
        return True

    def quiet(self, running: list[Span]) -> Span | None:
        """The tail: the span with the most bytes left among those silent for longer than
        a fresh request takes to answer. Sets ``wake_at`` when one may become so later."""
        dl = self.dl
        now = time.monotonic()
        quiet = max(QUIET, 2 * dl.slowest_head)
        best: Span | None = None
        for s in running:
            if s.remaining < TAKE_OVER_MIN:
                continue
            if now - s.seen < quiet:
                at = s.seen + quiet
                self.wake_at = at if self.wake_at is None else min(self.wake_at, at)
            elif best is None or s.remaining > best.remaining:
                best = s
        return best
