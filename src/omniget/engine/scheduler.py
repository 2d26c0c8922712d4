"""Connection limits shared by every file of a run: a global cap, a per-host cap, and the
number of files transferring at once (``-j``).

A :class:`Ticket` is one connection's worth of permission. It is granted at once when a
slot is free, else in order of asking; granting runs the ticket's callbacks synchronously,
so a transport can start a request that is already set up in the same moment another
request frees its slot (no trip through the event loop's queue in between: at 20 ms RTT
that trip is what separates back-to-back requests). A ticket may also carry a file's
:class:`FileClaim`: the file's first granted ticket then takes one of the ``files`` slots,
which the file gives back with :meth:`HostLimits.release_file` when its bytes are in. A
granted ticket whose holder waits to try again is parked (:meth:`Ticket.park`): its part of
the run's cap goes to other hosts meanwhile, its host's part stays taken.

Slots are counted in :data:`UNIT` parts of a connection. A request takes a whole
connection, except a ``light`` one (a plain GET with no Range) to a host whose connections
the transport shares: several such requests share one connection, so each takes the parts
``pipelined(url)`` says (HTTP/2 streams: one, so 32 streams make a connection's worth;
HTTP/1.1 pipelining: four, for 8 requests in flight per connection). A light ticket still
waiting when its host starts sharing (its first answer came meanwhile) is re-costed before
it is granted. The caps stay caps on connections.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import Callable

from ..hosts import host_key

__all__ = ["UNIT", "FileClaim", "HostLimits", "Ticket", "host_of"]

#: Parts of a connection: the most requests that ever share one (HTTP/2 streams).
UNIT = 32


#: URL -> its host_of(), for the URLs of the last while (a request asks for its host four
#: or five times: its ticket, its cost, the pool's key...; a dict look-up is ~5x cheaper).
_hosts: dict[str, str] = {}
_HOSTS_KEPT = 4096


def host_of(url: str) -> str:
    """``host[:port]`` of a URL as hosts are keyed (:func:`omniget.hosts.host_key`: one
    key for every spelling of a host)."""
    host = _hosts.get(url)
    if host is None:
        scheme, sep, rest = url.partition("://")
        netloc = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0] if sep else url
        host = host_key(netloc.rpartition("@")[2], scheme.lower())
        if len(_hosts) >= _HOSTS_KEPT:
            _hosts.clear()
        _hosts[url] = host
    return host


class FileClaim:
    """One file's right to transfer: held from its first granted ticket until released."""

    __slots__ = ("began", "held")

    def __init__(self) -> None:
        self.held = False
        self.began = False  # a ticket of it was granted once: the file had its turn


class Ticket:
    """A request for one connection slot to ``host``. Close it exactly once when done:
    that frees the slot if it was granted, or withdraws the request if not."""

    __slots__ = (
        "_callbacks", "_limits", "claim", "closed", "cost", "granted", "host", "light", "parked",
        "refusal", "refused",
    )

    def __init__(
        self,
        limits: HostLimits,
        host: str,
        claim: FileClaim | None,
        cost: int = UNIT,
        light: str | None = None,
    ) -> None:
        self._limits = limits
        self.host = host
        self.claim = claim
        self.cost = cost
        self.light = light  # a light request's URL: it may get cheaper while it waits
        self.granted = False
        self.closed = False
        self.parked = False  # granted, its part of the run's cap given back (see park)
        self._callbacks: list[Callable[[], None]] = []
        #: Called if the ticket is refused while it waits (its host found down): the
        #: ticket is closed first (no grant, its callbacks dropped) and ``refused`` set.
        self.refusal: Callable[[], object] | None = None
        self.refused = False

    def on_grant(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when granted (now, if it already is). It must not raise."""
        if self.granted:
            callback()
        else:
            self._callbacks.append(callback)

    async def wait(self) -> None:
        """Wait until granted."""
        if self.granted:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not fut.done():
                fut.set_result(None)

        self.on_grant(wake)
        await fut

    def park(self) -> None:
        """Its holder waits to try again, with no connection: the run's cap gets this
        ticket's part back for other hosts meanwhile; its host's cap does not (a host
        that failed, or asked to be left alone, gets no other request in its place)."""
        if self.granted and not self.closed and not self.parked:
            self.parked = True
            self._limits._park(self)

    async def unpark(self) -> None:
        """Take the run's part back: at once if there is room, else ahead of every new
        ticket as soon as there is."""
        if self.parked and not self.closed:
            await self._limits._unpark(self)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._callbacks.clear()
        self._limits._close(self)

    def _grant(self) -> None:
        self.granted = True
        callbacks, self._callbacks = self._callbacks, []
        for cb in callbacks:
            try:
                cb()
            except Exception:  # a callback's failure is its own requester's to report
                pass

    def __repr__(self) -> str:
        state = "closed" if self.closed else "granted" if self.granted else "waiting"
        return f"<Ticket {self.host} {state}>"


class HostLimits:
    def __init__(
        self,
        per_host: int,
        total: int,
        files: int | None = None,
        pipelined: Callable[[str], int] | None = None,
    ) -> None:
        self.per_host = max(1, per_host)
        self.total = max(1, total)
        self.files = None if files is None else max(1, files)
        self.pipelined = pipelined
        self._used: dict[str, int] = defaultdict(int)
        self._whole: dict[str, int] = defaultdict(int)  # host -> whole-connection tickets
        self._in_use = 0
        self._files_in_use = 0
        self._waiters: deque[Ticket] = deque()
        self._changes = 0  # counts changes to _waiters (a grant's callbacks may make some)
        self._hosts_waiting: dict[str, int] = defaultdict(int)  # host -> its waiting tickets
        #: Waiting light tickets still priced as a whole connection (they may get cheaper
        #: at the next wake, their host having started sharing since they asked).
        self._may_shrink = 0
        #: Parked tickets waiting for their part of the run's cap back, in order (ahead
        #: of every waiting ticket), each with the future its holder awaits.
        self._unparking: deque[tuple[Ticket, asyncio.Future[None]]] = deque()

    # ----- tickets ---------------------------------------------------------------

    def ticket(self, url: str, claim: FileClaim | None = None, *, light: bool = False) -> Ticket:
        """A ticket for ``url``'s host: granted now if a slot is free and no ticket that
        could use it waits ahead, else queued. With ``claim``, granting also needs a free
        file slot (unless the claim already holds one). ``light``: a GET without Range,
        which takes only part of a connection if the host's connections are shared."""
        pipelined = self.pipelined
        if not light or pipelined is None:
            t = Ticket(self, host_of(url), claim)
        elif cost := pipelined(url):
            t = Ticket(self, host_of(url), claim, cost)
        else:
            t = Ticket(self, host_of(url), claim, UNIT, url)
        self._waiters.append(t)  # granted at once if it is free and nothing ahead can go
        self._changes += 1
        self._hosts_waiting[t.host] += 1
        if t.light is not None:
            self._may_shrink += 1
        if self._may_shrink or self._free(t):
            self._wake()
        # (else no waiter can go: none could at the last change, nothing was freed since,
        # no cost has dropped, and this one does not fit)
        return t

    def try_ticket(self, url: str) -> Ticket | None:
        """A granted ticket if ``url``'s host has a free slot now (never queues)."""
        t = Ticket(self, host_of(url), None)
        if self._unparking or not self._free(t):
            return None
        self._take(t)
        return t

    def release_file(self, claim: FileClaim) -> None:
        """The file's bytes are in (or it gave up): its file slot goes to the next file."""
        if claim.held:
            claim.held = False
            full = self.files is None or self._files_in_use >= self.files  # (until now)
            self._files_in_use -= 1
            if full or self._may_shrink:  # (else no waiter was held back by a file slot)
                self._wake()

    def refuse(self, host: str) -> None:
        """``host`` is down: its waiting tickets that have a ``refusal`` are closed and
        told (their holders fail without a try); the others wait on."""
        if host not in self._hosts_waiting:
            return
        refused = [t for t in self._waiters if t.host == host and t.refusal is not None]
        for t in refused:
            t.refused = True
            t.close()
        for t in refused:
            assert t.refusal is not None
            t.refusal()

    def _free(self, t: Ticket) -> bool:
        if (
            self._used[t.host] + t.cost > self.per_host * UNIT
            or self._in_use + t.cost > self.total * UNIT
        ):
            return False
        claim = t.claim
        return (
            self.files is None
            or claim is None
            or claim.held
            or self._files_in_use < self.files
        )

    def _take(self, t: Ticket) -> None:
        self._used[t.host] += t.cost
        self._in_use += t.cost
        if t.cost == UNIT:
            self._whole[t.host] += 1
        claim = t.claim
        if claim is not None:
            claim.began = True
        if claim is not None and not claim.held and self.files is not None:
            claim.held = True
            self._files_in_use += 1
        t._grant()

    def _park(self, t: Ticket) -> None:
        self._in_use -= t.cost
        self._wake()

    async def _unpark(self, t: Ticket) -> None:
        if not self._unparking and self._in_use + t.cost <= self.total * UNIT:
            self._in_use += t.cost
            t.parked = False
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._unparking.append((t, fut))
        await fut

    def _close(self, t: Ticket) -> None:
        if t.granted and t.parked:  # (its part of the run's cap was given back)
            self._used[t.host] -= t.cost
            if t.cost == UNIT:
                self._whole[t.host] -= 1
            for i, (waiting, _) in enumerate(self._unparking):
                if waiting is t:
                    del self._unparking[i]
                    break
            self._wake()
        elif t.granted:
            self._used[t.host] -= t.cost
            self._in_use -= t.cost
            if t.cost == UNIT:
                self._whole[t.host] -= 1
            self._wake()
        else:
            try:
                self._waiters.remove(t)
            except ValueError:
                pass
            else:
                self._changes += 1
                self._unwait(t.host)
                if t.light is not None:
                    self._may_shrink -= 1

    def _unwait(self, host: str) -> None:
        left = self._hosts_waiting[host] - 1
        if left:
            self._hosts_waiting[host] = left
        else:
            del self._hosts_waiting[host]

    def _wake(self) -> None:
        """Grant waiting tickets in order, skipping those whose host (or file) is full;
        parked tickets first get their part of the run's cap back."""
        cap = self.total * UNIT
        unparking = self._unparking
        while unparking and self._in_use + unparking[0][0].cost <= cap:
            t, fut = unparking.popleft()
            self._in_use += t.cost
            t.parked = False
            if not fut.done():
                fut.set_result(None)
        if not self._waiters or unparking:  # (the room that frees up goes to them first)
            return
        host_cap = self.per_host * UNIT
        files = self.files
        shared: dict[str, int] | None = None  # host -> a light request's cost now
        # host -> the room its cap had when it refused a ticket (grants only shrink it)
        room: dict[str, int] = {}
        full = 0  # hosts with waiters and no room at all
        waiters = self._waiters
        i = 0
        while i < len(waiters):
            if self._in_use >= cap or full == len(self._hosts_waiting):
                break
            t = waiters[i]
            i += 1
            claim = t.claim
            # (cheap skip: a file waiting for its first slot while every file slot is taken)
            if (
                files is not None
                and claim is not None
                and not claim.held
                and self._files_in_use >= files
            ):
                continue
            if t.light is not None and self.pipelined is not None:
                # the host may have started sharing connections since it asked
                shared = {} if shared is None else shared
                now = shared.get(t.host)
                if now is None:
                    now = shared[t.host] = self.pipelined(t.light)
                    if now:  # every light ticket of its host is cheaper now, not just this
                        self._shrink(t.host, now)
                if now and t.light is not None:
                    t.cost, t.light = now, None
                    self._may_shrink -= 1
            host = t.host
            if t.cost > room.get(host, host_cap):
                continue
            if self._used[host] + t.cost > host_cap:
                room[host] = left = host_cap - self._used[host]
                full += left < 1
                continue
            if not t.granted and not t.closed and self._free(t):
                del waiters[i - 1]
                self._unwait(host)
                if t.light is not None:
                    self._may_shrink -= 1
                self._changes += 1
                before = self._changes
                self._take(t)
                # go on with the next one, or start over if the grant's callbacks asked
                # for or withdrew tickets meanwhile
                i = i - 1 if self._changes == before else 0

    def _shrink(self, host: str, cost: int) -> None:
        """``host`` shares its connections now: its waiting light tickets cost ``cost``
        (once, for all: one left priced whole, out of the walks' reach behind a full host,
        would have every later change walk the queue again for it)."""
        for t in self._waiters:
            if t.light is not None and t.host == host:
                t.cost, t.light = cost, None
                self._may_shrink -= 1

    # ----- queries ------------------------------------------------------------------

    def whole(self, host: str) -> int:
        """Tickets that hold a whole connection to ``host`` (``host_of`` form) now."""
        return self._whole.get(host, 0)

    def free_for(self, url: str) -> int:
        """How many more connections ``url``'s host could get right now."""
        host = host_of(url)
        free = min(self.per_host * UNIT - self._used[host], self.total * UNIT - self._in_use)
        return max(0, free // UNIT)

    def __repr__(self) -> str:
        used = {h: n / UNIT for h, n in self._used.items() if n}
        waiting = len(self._waiters)
        return (
            f"<HostLimits in_use={self._in_use / UNIT:g}/{self.total} files={self._files_in_use}"
            f" hosts={used} waiting={waiting}>"
        )
