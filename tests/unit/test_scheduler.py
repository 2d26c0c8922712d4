"""HostLimits: per-host, global and per-file slots, granted in order and synchronously."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from omniget.engine import scheduler
from omniget.engine.scheduler import UNIT, FileClaim, HostLimits, Ticket

A = "http://a.test/x"
B = "http://b.test/y"


def test_per_host_cap_queues_and_grants_in_order_on_close() -> None:
    lim = HostLimits(per_host=2, total=10)
    order: list[str] = []
    t1, t2 = lim.ticket(A), lim.ticket(A)
    assert t1.granted and t2.granted
    t3, t4 = lim.ticket(A), lim.ticket(A)
    t3.on_grant(lambda: order.append("t3"))
    t4.on_grant(lambda: order.append("t4"))
    assert not t3.granted and order == []
    t1.close()
    # granted inside close(), before it returns: no event-loop round trip
    assert t3.granted and order == ["t3"] and not t4.granted
    t2.close()
    assert order == ["t3", "t4"]
    assert lim.free_for(A) == 0


def test_other_hosts_are_not_held_up_by_a_full_host() -> None:
    lim = HostLimits(per_host=1, total=10)
    a1 = lim.ticket(A)
    a2 = lim.ticket(A)  # waits for a.test
    b1 = lim.ticket(B)  # a2 is blocked by its host: b1 passes it
    assert a1.granted and not a2.granted and b1.granted
    assert lim.try_ticket(B) is None
    b1.close()
    assert not a2.granted
    a1.close()
    assert a2.granted


def test_a_new_ticket_waits_behind_one_that_can_use_the_same_slot() -> None:
    lim = HostLimits(per_host=4, total=1)
    first = lim.ticket(A)
    queued = lim.ticket(B)
    later = lim.ticket(B)
    assert first.granted and not queued.granted and not later.granted
    first.close()
    assert queued.granted and not later.granted


def test_global_cap_holds_across_hosts() -> None:
    lim = HostLimits(per_host=4, total=2)
    t = [lim.ticket(A), lim.ticket(B), lim.ticket(B)]
    assert [x.granted for x in t] == [True, True, False]
    assert lim.try_ticket(A) is None
    t[0].close()
    assert t[2].granted


def test_closing_a_waiting_ticket_withdraws_it() -> None:
    lim = HostLimits(per_host=1, total=10)
    held = lim.ticket(A)
    gone, next_ = lim.ticket(A), lim.ticket(A)
    called: list[str] = []
    gone.on_grant(lambda: called.append("gone"))
    gone.close()
    held.close()
    assert next_.granted and not gone.granted and called == []
    gone.close()  # closing twice is harmless
    next_.close()
    next_.close()
    assert lim.free_for(A) == 1


def test_file_claims_bound_files_transferring_at_once() -> None:
    lim = HostLimits(per_host=8, total=16, files=2)
    c1, c2, c3 = FileClaim(), FileClaim(), FileClaim()
    a = lim.ticket(A, c1)
    a_extra = lim.ticket(A, c1)  # the same file's second connection needs no new file slot
    b = lim.ticket(A, c2)
    c = lim.ticket(A, c3)  # a third file waits although connections are free
    assert a.granted and a_extra.granted and b.granted and not c.granted
    a.close()
    a_extra.close()
    assert not c.granted  # file 1's connections are closed, but it still holds its turn
    lim.release_file(c1)
    assert c.granted and c3.held and not c1.held
    lim.release_file(c1)  # releasing twice is harmless
    lim.release_file(c2)
    lim.release_file(c3)


def test_a_failing_grant_callback_does_not_break_the_release() -> None:
    lim = HostLimits(per_host=1, total=10)
    first = lim.ticket(A)
    second = lim.ticket(A)

    def boom() -> None:
        raise RuntimeError("boom")

    seen: list[int] = []
    second.on_grant(boom)
    second.on_grant(lambda: seen.append(1))
    first.close()
    assert second.granted and seen == [1]


def test_grant_callbacks_that_ask_for_and_withdraw_tickets() -> None:
    """A grant's callbacks may change the queue while it is being walked: every ticket
    that fits is still granted in the same release, and none twice."""
    lim = HostLimits(per_host=3, total=10)
    held = [lim.ticket(A) for _ in range(3)]
    a1, b1, a2, b2, a3 = (lim.ticket(u) for u in (A, B, A, B, A))
    assert b1.granted and b2.granted and not a1.granted
    late: list[Ticket] = []
    a1.on_grant(lambda: late.append(lim.ticket(B)))  # asks for one more
    a1.on_grant(a2.close)  # withdraws one waiting behind it
    for t in held[:2]:
        t.close()
    assert a1.granted and a2.closed and not a2.granted and a3.granted
    assert late[0].granted  # (b.test had room)
    assert lim.free_for(A) == 0


def test_waiting_on_a_ticket_and_cancelling_the_wait() -> None:
    async def go() -> None:
        lim = HostLimits(per_host=1, total=10)
        held = lim.ticket(A)
        queued = lim.ticket(A)
        waiter = asyncio.create_task(queued.wait())
        await asyncio.sleep(0)
        assert not waiter.done()
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        queued.close()  # the owner withdraws it: no slot is left behind
        held.close()
        again = lim.ticket(A)
        await asyncio.wait_for(again.wait(), 1)
        assert again.granted and lim.free_for(A) == 0
        again.close()
        assert lim.free_for(A) == 1

    asyncio.run(go())


def test_a_parked_ticket_gives_the_run_s_cap_back_and_keeps_its_host_s() -> None:
    """A file waiting to try again holds no connection: other hosts get its part of the
    run's cap meanwhile (they waited the whole backoff out), its own host does not."""

    async def go() -> None:
        lim = HostLimits(per_host=1, total=1)
        a = lim.ticket(A)
        a_next, b = lim.ticket(A), lim.ticket(B)
        assert a.granted and not a_next.granted and not b.granted
        a.park()
        assert b.granted and not a_next.granted  # (a.test asked to be left alone)
        unpark = asyncio.create_task(a.unpark())
        later = lim.ticket(B)  # (one that asks after: behind the parked one)
        await asyncio.sleep(0)
        assert not unpark.done() and not later.granted
        b.close()
        await asyncio.wait_for(unpark, 1)
        assert not a.parked and not later.granted
        a.close()
        assert a_next.granted and not later.granted
        a_next.close()
        assert later.granted
        later.close()
        assert lim.free_for(A) == 1 and lim.free_for(B) == 1

    asyncio.run(go())


def test_a_parked_ticket_unparks_at_once_with_room_and_closes_cleanly() -> None:
    async def go() -> None:
        lim = HostLimits(per_host=2, total=2)
        a = lim.ticket(A)
        a.park()
        assert lim.free_for(B) == 2 and lim.free_for(A) == 1
        await asyncio.wait_for(a.unpark(), 1)
        assert lim.free_for(B) == 1
        a.park()
        a.close()  # (a parked ticket closed: its host's slot comes back, once)
        assert lim.free_for(A) == 2 and lim.free_for(B) == 2
        b1, b2 = lim.ticket(B), lim.ticket(B)
        assert b1.granted and b2.granted
        b1.park()
        a2 = lim.ticket(A)  # (takes the part b1 gave back)
        waiting = asyncio.create_task(b1.unpark())
        await asyncio.sleep(0)
        assert a2.granted and not waiting.done()
        waiting.cancel()  # (its holder cancelled while it waits: then it closes it)
        with pytest.raises(asyncio.CancelledError):
            await waiting
        b1.close()
        a2.close()
        b2.close()
        assert lim.free_for(A) == 2 and lim.free_for(B) == 2

    asyncio.run(go())


def test_light_tickets_to_a_pipelined_host_share_a_connection() -> None:
    from omniget.engine.scheduler import UNIT

    lim = HostLimits(per_host=2, total=3, pipelined=lambda url: url.startswith("http://a."))
    light = [lim.ticket(A, light=True) for _ in range(2 * UNIT)]
    assert all(t.granted for t in light)  # 2 connections' worth of pipelined requests
    extra = lim.ticket(A, light=True)
    assert not extra.granted
    extra.close()  # (withdrawn)
    assert lim.try_ticket(A) is None and lim.free_for(A) == 0
    # not pipelined: a light request to b.test takes a whole connection
    b = [lim.ticket(B, light=True) for _ in range(2)]
    assert [t.granted for t in b] == [True, False]  # the global cap (3) is reached
    for t in light[:UNIT]:
        t.close()
    assert b[1].granted  # one connection's worth freed: b.test gets it
    assert lim.free_for(A) == 0


def test_a_light_ticket_costs_what_its_host_says() -> None:
    """HTTP/2 streams take one part of a connection, pipelined HTTP/1.1 requests more: a
    connection's worth is UNIT streams but only UNIT // 4 pipelined requests here."""
    from omniget.engine.scheduler import UNIT

    lim = HostLimits(per_host=1, total=4, pipelined=lambda url: 1 if url == A else 4)
    streams = [lim.ticket(A, light=True) for _ in range(UNIT + 1)]
    assert [t.granted for t in streams] == [True] * UNIT + [False]
    piped = [lim.ticket(B, light=True) for _ in range(UNIT // 4 + 1)]
    assert [t.granted for t in piped] == [True] * (UNIT // 4) + [False]
    piped[0].close()
    assert piped[-1].granted


def test_a_heavy_ticket_waits_until_a_whole_connection_is_free() -> None:
    lim = HostLimits(per_host=1, total=4, pipelined=lambda url: True)
    light = lim.ticket(A, light=True)
    heavy = lim.ticket(A)
    assert light.granted and not heavy.granted
    more = lim.ticket(A, light=True)
    assert more.granted  # the heavy one cannot use the part left; a light one can
    light.close()
    assert not heavy.granted
    more.close()
    assert heavy.granted


def test_a_waiting_light_ticket_gets_cheaper_when_its_host_starts_sharing() -> None:
    from omniget.engine.scheduler import UNIT

    shared: set[str] = set()
    lim = HostLimits(per_host=1, total=4, pipelined=lambda url: url in shared)
    first = lim.ticket(A, light=True)  # not shared yet: a whole connection
    waiting = [lim.ticket(A, light=True) for _ in range(3)]
    heavy = lim.ticket(A)  # a ranged request: always a whole connection
    assert first.granted and first.cost == UNIT and not any(t.granted for t in waiting)
    shared.add(A)  # the first answer showed the host can share (pipelining, HTTP/2)
    first.close()
    assert all(t.granted and t.cost == 1 for t in waiting)
    assert not heavy.granted  # three parts are in use: no whole connection is free
    for t in waiting:
        t.close()
    assert heavy.granted and heavy.cost == UNIT


# ----- the fast wake grants exactly what a plain in-order scan grants ---------------


@dataclass(eq=False)  # (tickets are told apart by identity, as the real ones are)
class _T:
    host: str
    light: bool
    cost: int
    claim: int | None
    granted: bool = False


class _Plain:
    """The grant rule written as plainly as possible: after every change, scan every
    waiting ticket in order and grant each one that fits."""

    def __init__(self, per_host: int, total: int, files: int, shared: set[str]) -> None:
        self.per_host, self.total, self.files = per_host * UNIT, total * UNIT, files
        self.shared = shared
        self.used: dict[str, int] = {}
        self.waiting: list[_T] = []
        self.held: set[int] = set()

    def wake(self) -> None:
        for t in list(self.waiting):
            if t.light and t.host in self.shared:
                t.cost, t.light = 1, False
            fits = (
                self.used.get(t.host, 0) + t.cost <= self.per_host
                and sum(self.used.values()) + t.cost <= self.total
                and (t.claim is None or t.claim in self.held or len(self.held) < self.files)
            )
            if fits:
                self.waiting.remove(t)
                t.granted = True
                self.used[t.host] = self.used.get(t.host, 0) + t.cost
                if t.claim is not None:
                    self.held.add(t.claim)

    def ticket(self, host: str, light: bool, claim: int | None) -> _T:
        cost = 1 if light and host in self.shared else UNIT
        t = _T(host, light and cost != 1, cost, claim)
        self.waiting.append(t)
        self.wake()
        return t

    def close(self, t: _T) -> None:
        if t.granted:
            self.used[t.host] -= t.cost
            t.granted = False
            self.wake()
        elif t in self.waiting:
            self.waiting.remove(t)

    def release(self, claim: int) -> None:
        if claim in self.held:
            self.held.discard(claim)
            self.wake()


# a heavy ticket refused with one part left, a light one behind it that fits
_LAST_PART = [("share", "a", True, None, 0)] + [("ticket", "a", True, None, 0)] * 7
_LAST_PART += [("ticket", "a", False, None, 0), ("ticket", "a", True, None, 0)]


@settings(max_examples=300, deadline=None)
@example(_LAST_PART, 1, 5, 3)
@example(
    [("ticket", "a", False, None, 0)] * 4
    + [("close", "a", False, None, 2), ("close", "a", False, None, 0)],
    1,
    1,
    1,
)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["ticket", "ticket", "ticket", "close", "release", "share"]),
            st.sampled_from(["a", "b", "c"]),
            st.booleans(),
            st.one_of(st.none(), st.integers(0, 4)),
            st.integers(0, 50),
        ),
        max_size=100,
    ),
    st.integers(1, 3),
    st.integers(1, 5),
    st.integers(1, 3),
)
def test_grants_match_a_plain_in_order_scan(
    ops: list[tuple[str, str, bool, int | None, int]], per_host: int, total: int, files: int
) -> None:
    shared: set[str] = set()
    lim = HostLimits(
        per_host=per_host,
        total=total,
        files=files,
        pipelined=lambda url: url.split("/")[2].split(".")[0] in shared,
    )
    plain = _Plain(per_host, total, files, shared)
    claims: dict[int, FileClaim] = {}
    pairs: list[tuple[Ticket, _T]] = []
    for op, host, light, claim_no, pick in ops:
        if op == "ticket":
            claim = None if claim_no is None else claims.setdefault(claim_no, FileClaim())
            pairs.append(
                (
                    lim.ticket(f"http://{host}.test/f", claim, light=light),
                    plain.ticket(host, light, claim_no),
                )
            )
        elif op == "close" and pairs:
            real, model = pairs.pop(pick % len(pairs))
            real.close()
            plain.close(model)
        elif op == "release" and claim_no is not None and claim_no in claims:
            # a file ends: its tickets are closed first, then its file slot goes
            for real, model in [p for p in pairs if p[1].claim == claim_no]:
                pairs.remove((real, model))
                real.close()
                plain.close(model)
            lim.release_file(claims.pop(claim_no))
            plain.release(claim_no)
        elif op == "share":
            shared.add(host)
        assert [r.granted for r, _ in pairs] == [m.granted for _, m in pairs]


def test_host_of_a_url_asked_again_and_again() -> None:
    urls = {
        "http://Example.COM:8080/a/b": "example.com:8080",
        "https://user:pw@Host/x?y=1": "host",
        "http://h": "h",
        "h.example:81": "h.example:81",
        "HTTP://[::1]:8/": "[::1]:8",
    }
    for _ in range(2):  # (the second time from what the first one kept)
        assert {u: scheduler.host_of(u) for u in urls} == urls
    for i in range(scheduler._HOSTS_KEPT + 10):  # a long list: what is kept stays bounded
        assert scheduler.host_of(f"http://h{i % 7}.test/f{i}") == f"h{i % 7}.test"
        assert len(scheduler._hosts) <= scheduler._HOSTS_KEPT
    assert {u: scheduler.host_of(u) for u in urls} == urls


@pytest.fixture
def walks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The length of the waiting queue at each walk of it (HostLimits._wake)."""
    seen: list[int] = []
    real = HostLimits._wake

    def counted(self: HostLimits) -> None:
        seen.append(len(self._waiters))
        real(self)

    monkeypatch.setattr(HostLimits, "_wake", counted)
    return seen


def test_a_change_that_lets_no_ticket_go_walks_no_queue(walks: list[int]) -> None:
    """A new ticket that does not fit, behind others that could not go either, and a file
    slot given back while no file waited for one, grant nothing: the waiting queue (a run's
    2 x -j files set up ahead) is not walked for them. Changes that may let one go are."""
    lim = HostLimits(per_host=1, total=4, pipelined=lambda url: UNIT // 8)
    tickets = [lim.ticket(A, light=True) for _ in range(12)]
    assert [t.granted for t in tickets] == [True] * 8 + [False] * 4  # (8 share a connection)
    walks.clear()
    tickets.append(lim.ticket(A, light=True))
    assert walks == [] and not tickets[-1].granted
    tickets[0].close()
    assert walks == [5] and tickets[8].granted and not tickets[9].granted

    walks.clear()
    files = HostLimits(per_host=1, total=1, files=100)
    claims = [FileClaim() for _ in range(3)]
    held = [files.ticket(A, claim) for claim in claims]
    assert [t.granted for t in held] == [True, False, False]
    walks.clear()
    files.release_file(claims[0])  # (1 of 100 file slots was taken: nobody waited)
    assert walks == [] and not held[1].granted
    held[0].close()
    assert walks == [2] and held[1].granted

    walks.clear()
    one = HostLimits(per_host=4, total=16, files=1)
    first, second = FileClaim(), FileClaim()
    t1, t2 = one.ticket(A, first), one.ticket(B, second)
    assert t1.granted and not t2.granted  # (it waits for the one file slot)
    walks.clear()
    one.release_file(first)
    assert walks == [1] and t2.granted


def test_a_host_that_starts_sharing_prices_all_its_waiting_light_tickets_at_once(
    walks: list[int],
) -> None:
    """The first wake that finds a host sharing its connections prices every light ticket
    waiting for it anew, not only those it walks before the host is full: one left priced
    as a whole connection would have every later change walk the queue (a run's 2 x -j
    files set up ahead) for it, twice per file, granting nothing."""
    shared: set[str] = set()
    lim = HostLimits(per_host=1, total=4, files=100,
                     pipelined=lambda url: UNIT // 8 if url.split("/")[2] in shared else 0)
    claims = [FileClaim() for _ in range(21)]
    first = lim.ticket(A, claims[0], light=True)  # (not shared yet: a whole connection)
    waiting = [lim.ticket(A, claim, light=True) for claim in claims[1:]]
    assert first.granted and not any(t.granted for t in waiting)
    shared.add("a.test")  # (its first answer showed it can share)
    first.close()
    assert [t.granted for t in waiting] == [True] * 8 + [False] * 12
    assert all(t.cost == UNIT // 8 for t in waiting)
    walks.clear()
    lim.release_file(claims[0])  # (no file waits for a file slot)
    later = lim.ticket(A, FileClaim(), light=True)  # (priced as shared: no room)
    assert walks == [] and not later.granted
    waiting[0].close()
    assert walks == [13] and waiting[8].granted and not waiting[9].granted


def test_a_light_ticket_that_may_get_cheaper_is_looked_at_again() -> None:
    """While a waiting light ticket is priced as a whole connection, any change walks the
    queue: its host may have started sharing since (then it fits)."""
    x, y = "http://a.test/x", "http://a.test/y"
    shared = {x}
    lim = HostLimits(per_host=1, total=1, pipelined=lambda url: 8 if url in shared else 0)
    first = lim.ticket(x, light=True)  # (8 parts of the connection)
    waiting = lim.ticket(y, light=True)  # (not shared: a whole connection, no room)
    assert first.granted and not waiting.granted
    shared.add(y)
    heavy = lim.ticket(x)  # does not fit, and still the queue is walked for the light one
    assert waiting.granted and waiting.cost == 8 and not heavy.granted
