"""libcurl plumbing for the HTTP transport: the asyncio <-> ``CurlMulti`` loop and the stall
watchdog. CA discovery is :mod:`.trust`; libcurl's result codes as omniget errors are
:mod:`.curlerrors`.

The loop is event-driven: libcurl says which sockets to watch (``CURLMOPT_SOCKETFUNCTION``)
and when its next timeout is due (``CURLMOPT_TIMERFUNCTION``); we watch them with
``loop.add_reader`` / ``add_writer`` and ``loop.call_later`` and call ``socket_action`` for
exactly the socket that became ready. No polling interval adds to any request's latency.

A socket libcurl stops reading (a transfer ended; its connection goes back to the cache)
stays registered for reading: the next transfer on that connection asks for it again at
once, and two selector calls per request are saved. If it turns readable meanwhile (the
server closed it) it is unregistered then. Because libcurl may close it and a new socket
may get the same number, a registration is trusted again only if the socket's inode is
the one it was made for. One that libcurl closed is unregistered as soon as libcurl is
back (:meth:`CurlLoop._unwatch_closed`): the loop's selector would take the next socket
given that number, anyone's (another run's, the program's own), for the closed one, and
never wake it.

libcurl asks for a 0 ms timeout on every add; one already queued keeps its place on the
loop rather than being pushed behind everything queued since (at 20 ms RTT, 16 files'
worth of finishing work), so transfers added in one pass start together, early in the next.
(Running it at once from ``add`` was measured: 4% faster at 20 ms RTT, 7% slower on
CPU-bound many-file runs.)

libcurl functions must not be called from inside libcurl's own callbacks: the socket and
timer callbacks here only touch the event loop, and every ``socket_action`` runs from a
loop callback.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections import deque
from collections.abc import Callable

import pycurl

__all__ = ["CLOSED", "STALLED", "TLS_REPLY", "CurlLoop", "DoneCallback"]

#: Result code for transfers still running when the loop is closed.
CLOSED = -1
#: Result code for transfers the stall watchdog ended.
STALLED = -2
#: Result code for a request whose connection's first bytes were a TLS record: a TLS
#: server where HTTP was asked (the pipelined reader's own; libcurl says "HTTP/0.9").
TLS_REPLY = -5  # (-3 and -4: h1queue.FALLBACK, easy.TO_PIPE)
#: Retries after a refused connection (or an unreachable host).
CONNECT_RETRIES = 2
WEIRD_REPLY = 8  # CURLE_WEIRD_SERVER_REPLY (pycurl names it for FTP only)

#: Called once per finished transfer with libcurl's result code (0 = ok) and message.
DoneCallback = Callable[[int, str], None]

SWEEP_AFTER = 1.0  # seconds idle before unused read registrations go
BEAT = 0.25  # the loop's heartbeat while transfers run (with a connect timeout)
HELD_UP = 1.0  # a gap this long between two beats: the loop was held up (less a beat)
_READ = 1  # pycurl.POLL_IN
_WRITE = 2  # pycurl.POLL_OUT


class _Running:
    """A transfer in the multi: its done callback, the watchdog's byte samples, and when
    it was added (the real time, and the loop's time held up by then)."""

    __slots__ = ("added", "done", "held_up", "report", "samples")

    def __init__(self, done: DoneCallback, now: float, report: bool, held_up: float) -> None:
        self.done = done
        self.report = report  # note the connection libcurl keeps after it (in ``kept``)
        self.samples: deque[tuple[float, int]] = deque([(now, 0)])
        self.added, self.held_up = time.monotonic(), held_up


class CurlLoop:
    """One ``CurlMulti`` driven by one asyncio event loop.

    A transfer moving fewer than ``low_speed_limit`` bytes/s (both directions and headers
    count) over ``stall_timeout`` seconds ends with :data:`STALLED`; libcurl's own
    LOW_SPEED_TIME takes whole seconds only. One shared timer checks every transfer. A
    stalled transfer's connection is shut too when nothing at all came over it for that
    long (an HTTP/2 connection gone silent: libcurl would put the retries on it). A
    transfer's window starts when its request goes, not while it waits for its turn
    and other transfers move; nor while it connects, when ``connect_timeout`` (libcurl's
    own, which ends it as timed out) is no longer than the window (with windows equal,
    which of the two came first decided whether a connection that never got through
    "stalled" or "timed out").

    Windows are measured on a clock that counts a gap between two checks as one check's
    step at most (the pipelined reader counts quiet checks the same way): a loop held up
    past the window (the process stopped, swapped out, a long GC) was not watching, and
    its first check after the pause would cut every transfer before reading what came.

    libcurl's connect timeout runs on the real clock: a transfer connecting as the
    process stopped (Ctrl+Z, ``kill -STOP``) for longer timed out as it went on, before
    its server had a chance. A heartbeat counts the time the loop was held up; such a
    transfer connects again, its timeout anew (see :meth:`_connect_again`).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        max_host_connections: int,
        max_total_connections: int,
        stall_timeout: float = 0.0,
        low_speed_limit: int = 1,
        connect_timeout: float = 0.0,
    ) -> None:
        self.loop = loop
        self.stall_timeout = stall_timeout
        self.connect_timeout = connect_timeout
        self.low_speed_limit = max(1, low_speed_limit)
        self._multi = pycurl.CurlMulti()
        self._fds: dict[int, int] = {}  # fd -> mask registered with the loop
        self._want: dict[int, int] = {}  # fd -> mask libcurl asked for (never 0)
        self._ino: dict[int, int] = {}  # fd -> inode of the socket registered for reading
        #: sockets libcurl stopped watching, still registered for reading: closed since?
        self._dropped: set[int] = set()
        self._sweep: asyncio.TimerHandle | None = None
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._running: dict[pycurl.Curl, _Running] = {}
        #: finished transfer (added with ``report_socket``) -> the socket of the
        #: connection libcurl kept after it; the caller pops its entry
        self.kept: dict[pycurl.Curl, int] = {}
        # transfers added since libcurl last ran: each may be about to open a connection
        # or take one it kept (once run, one without a socket is opening its own)
        self._unrun: set[pycurl.Curl] = set()
        #: transfers paused on purpose (--limit-rate: each waits its turn in the run's
        #: budget, however long): no stall while so, their window starts again after
        self.held: set[pycurl.Curl] = set()
        # sockets that turned readable since the watchdog last looked, and when it last
        # saw each so (a connection that was silent for the stall window is shut)
        self._heard: set[int] = set()
        self._last_heard: dict[int, float] = {}
        self._watched = 0.0  # the watchdog's clock (see _clock)
        self._real = time.monotonic()  # the real time it was last read
        self._beat: asyncio.TimerHandle | None = None
        self._last_beat = self._real
        self._held_up = 0.0  # seconds the loop was held up while transfers ran
        self._closed = False
        m = self._multi
        m.setopt(pycurl.M_SOCKETFUNCTION, self._on_socket)
        m.setopt(pycurl.M_TIMERFUNCTION, self._on_timer)
        if max_host_connections > 0:
            m.setopt(pycurl.M_MAX_HOST_CONNECTIONS, max_host_connections)
        if max_total_connections > 0:
            m.setopt(pycurl.M_MAX_TOTAL_CONNECTIONS, max_total_connections)
            m.setopt(pycurl.M_MAXCONNECTS, max_total_connections)  # idle cache size

    @property
    def active(self) -> int:
        """Transfers added and not yet finished."""
        return len(self._running)

    def add(self, easy: pycurl.Curl, done: DoneCallback, report_socket: bool = False) -> None:
        """Start ``easy``; ``done(code, message)`` is called from the loop when it ends.
        With ``report_socket``, a transfer that ends well and leaves its connection in
        libcurl's cache puts that connection's socket in :attr:`kept` first."""
        if self._closed:
            raise RuntimeError("curl loop is closed")
        if self.connect_timeout > 0 and self._beat is None:
            self._last_beat = time.monotonic()
            self._beat = self.loop.call_later(BEAT, self._on_beat)
        self._running[easy] = _Running(done, self._clock(), report_socket, self._held_up)
        try:
            self._multi.add_handle(easy)  # libcurl then asks for a 0 ms timer to start
        except BaseException:
            del self._running[easy]
            raise
        self._unrun.add(easy)
        if self.stall_timeout > 0 and self._watchdog is None:
            self._watchdog = self.loop.call_later(self.stall_timeout / 4, self._check_stalls)

    @property
    def starting(self) -> int:
        """Transfers added since libcurl last ran: each may be about to open a connection."""
        return len(self._unrun)

    def unrun(self, easy: pycurl.Curl) -> bool:
        """``easy`` was added and libcurl has not run it yet: it has picked no connection."""
        return easy in self._unrun

    @property
    def sockets(self) -> int:
        """Sockets libcurl watches now: its connections in use (idle ones are not)."""
        return len(self._want)

    def running(self, easy: pycurl.Curl) -> bool:
        """``easy`` was added and has not finished."""
        return easy in self._running

    def remove(self, easy: pycurl.Curl) -> bool:
        """Abort ``easy`` if it is running; its done callback is not called."""
        self._unrun.discard(easy)
        self.held.discard(easy)
        if self._running.pop(easy, None) is None:
            return False
        try:
            self._multi.remove_handle(easy)
        except pycurl.error:
            pass
        if self._dropped:  # (its connection closed, cut short)
            self._unwatch_closed()
        return True

    def close(self) -> None:
        """Abort every transfer (their callbacks get :data:`CLOSED`) and free the multi."""
        if self._closed:
            return
        self._closed = True
        for handle in (self._timer, self._watchdog, self._sweep, self._beat):
            if handle is not None:
                handle.cancel()
        self._timer = self._watchdog = self._sweep = self._beat = None
        pending = list(self._running.items())
        self._running.clear()
        self._unrun.clear()
        for easy, _ in pending:
            try:
                self._multi.remove_handle(easy)
            except pycurl.error:
                pass
        self._unwatch_all()
        self._multi.close()
        self._unwatch_all()  # in case cleanup reported sockets again
        for _, running in pending:
            try:
                running.done(CLOSED, "transport closed")
            except RuntimeError:  # their event loop is already closed
                pass

    # -- libcurl callbacks (must not raise: pycurl would print the traceback) --

    def _on_socket(self, what: int, fd: int, multi: object, data: object) -> None:
        try:
            new = 0 if what == pycurl.POLL_REMOVE else what & (_READ | _WRITE)
            was = self._want.pop(fd, 0)
            if new:
                self._want[fd] = new
            reg = self._fds.get(fd, 0)
            if not new and reg & _READ:
                self._dropped.add(fd)  # (libcurl may close it now: see _unwatch_closed)
            if new and reg and not was and _inode(fd) != self._ino.get(fd):
                self._forget(fd)  # the registration is a closed socket's: same number
                reg = 0
            # a dropped read interest stays registered; write interest follows exactly
            if reg == (new & _WRITE) | ((new | reg) & _READ):
                return
            loop = self.loop
            if reg & _WRITE and not new & _WRITE:
                loop.remove_writer(fd)
                reg &= ~_WRITE
            if new & _WRITE and not reg & _WRITE:
                loop.add_writer(fd, self._act, fd, pycurl.CSELECT_OUT)
                reg |= _WRITE
            if new & _READ and not reg & _READ:
                loop.add_reader(fd, self._act, fd, pycurl.CSELECT_IN)
                self._ino[fd] = _inode(fd)
                reg |= _READ
            if reg:
                self._fds[fd] = reg
            else:
                self._fds.pop(fd, None)
        except Exception:
            # A closed loop or an fd the selector refuses: the stall watchdog ends
            # such a transfer rather than a callback printing a traceback.
            pass

    def _on_timer(self, timeout_ms: int) -> None:
        try:
            timer = self._timer
            # a 0 ms one already queued (call_soon: not a TimerHandle) keeps its place
            if timeout_ms == 0 and timer is not None and not isinstance(timer, asyncio.TimerHandle):
                return
            if timer is not None:
                timer.cancel()
                self._timer = None
            if self._closed or timeout_ms < 0:
                return
            if timeout_ms == 0:
                self._timer = self.loop.call_soon(self._on_timeout)
            else:
                self._timer = self.loop.call_later(timeout_ms / 1000.0, self._on_timeout)
        except Exception:
            pass

    # -- loop callbacks --

    def _on_timeout(self) -> None:
        self._timer = None
        self._act(pycurl.SOCKET_TIMEOUT, 0)

    def _act(self, fd: int, event: int) -> None:
        if self._closed:
            return
        if event == pycurl.CSELECT_IN and not self._want.get(fd, 0) & _READ:
            self._drop_read(fd)  # an idle connection turned readable: closed, probably
            return
        if event == pycurl.CSELECT_IN:
            self._heard.add(fd)
        started = bool(self._unrun)  # (a connection it opens may close an idle one)
        self._unrun.clear()  # (every socket_action runs the transfers just added)
        try:
            self._multi.socket_action(fd, event)
        except pycurl.error:
            # Only multi-level misuse lands here (a socket libcurl no longer knows).
            self._forget(fd)
        multi = self._multi
        while True:
            queued, ok, failed = multi.info_read()
            # (failures first: a transfer held back whose connect timeout ran out in the
            # pass where the stream it waited for ended waits on, that one still running
            # for _wait_again; on a loop held up past the timeout both come at once)
            for easy, code, message in failed:
                self._finish(easy, code, message)
            for easy in ok:
                self._finish(easy, 0, "")
            if not queued:
                break
        if self._dropped or (started and len(self._fds) > len(self._want)):
            self._unwatch_closed(idle=started)

    def _unwatch_closed(self, idle: bool = False) -> None:
        """Unregister the sockets libcurl stopped watching and has closed since (it
        closes them before it is back): their numbers are free for any socket, which
        the loop would take for them. Open ones (idle in libcurl's cache) stay. Those
        it stopped watching in this pass are looked at; ``idle``: every idle one too
        (transfers started: a connection opened for one may have closed an idle one)."""
        dropped, self._dropped = self._dropped, set()
        if idle:
            dropped.update(fd for fd in self._fds if fd not in self._want)
        for fd in dropped:
            if fd not in self._want and fd in self._fds and _inode(fd) != self._ino.get(fd):
                self._forget(fd)  # (the selector lets go of a closed number quietly)

    def _finish(self, easy: pycurl.Curl, code: int, message: str) -> None:
        if code == pycurl.E_COULDNT_CONNECT:
            message = _with_os_reason(easy, message)
        elif code == pycurl.E_OPERATION_TIMEDOUT and (
                self._wait_again(easy, message) or self._connect_again(easy)):
            return
        running = self._running.pop(easy, None)
        self._unrun.discard(easy)
        self.held.discard(easy)
        if running is not None and running.report and code == 0:
            fd = easy.getinfo(pycurl.ACTIVESOCKET)  # (-1 once removed from the multi)
            if fd >= 0:
                self.kept[easy] = fd
        try:
            self._multi.remove_handle(easy)
        except pycurl.error:
            pass
        if not self._running and self._sweep is None:
            self._sweep = self.loop.call_later(SWEEP_AFTER, self._sweep_idle)
        if running is not None:
            running.done(code, message)

    def _wait_again(self, easy: pycurl.Curl, message: str) -> bool:
        """``easy``'s connect timeout ran out while libcurl held it back under its caps
        (no connection of its own, none taken, no name looked up: not "Resolving timed
        out" nor "Connection timed out") while other transfers held the connections: it
        asked nothing of any server, so no try failed; it goes back into the queue, its
        timeout anew. (The engine's tickets keep most transfers out of that queue; not
        those a redirect sends to another host.)"""
        running = self._running.get(easy)
        if running is None or not message.startswith("Operation timed out"):
            return False
        try:
            if (easy.getinfo(pycurl.NUM_CONNECTS) or easy.getinfo(pycurl.PRIMARY_IP)
                    or easy.getinfo(pycurl.NAMELOOKUP_TIME_T)):
                return False
            # (another transfer holds a connection: it ends, or its own checks end it)
            if not any(other is not easy and other.getinfo(pycurl.PRIMARY_IP)
                       for other in self._running):
                return False
        except pycurl.error:
            return False
        return self._add_again(easy, running)

    def _connect_again(self, easy: pycurl.Curl) -> bool:
        """``easy``'s connect timeout ran out, but would not have without the time the
        loop was held up since it was added (the process stopped, a machine asleep): its
        server had no chance to answer meanwhile, so no try failed. Nothing of an answer
        came (it was connecting): it connects again, its timeout anew."""
        running = self._running.get(easy)
        if running is None:
            return False
        self._count_beat()  # (the gap up to now, too)
        held_up = self._held_up - running.held_up
        if held_up <= 0 or time.monotonic() - running.added - held_up >= self.connect_timeout:
            return False
        try:
            if easy.getinfo(pycurl.SIZE_DOWNLOAD_T) or easy.getinfo(pycurl.HEADER_SIZE):
                return False
        except pycurl.error:
            return False
        return self._add_again(easy, running)

    def _add_again(self, easy: pycurl.Curl, running: _Running) -> bool:
        """``easy`` out of the multi and in again, a transfer anew with its timeouts and
        its watchdog's window (no try of it failed); False if libcurl refuses."""
        try:
            self._multi.remove_handle(easy)
            self._multi.add_handle(easy)
        except pycurl.error:
            return False
        running.samples = deque([(self._clock(), 0)])
        running.added, running.held_up = time.monotonic(), self._held_up
        self._unrun.add(easy)
        return True

    def _on_beat(self) -> None:
        self._beat = None
        self._count_beat()
        if self._running and not self._closed:
            self._beat = self.loop.call_later(BEAT, self._on_beat)

    def _count_beat(self) -> None:
        """The time since the last beat, if that is long enough to say the loop was held
        up, counted in :attr:`_held_up` (less the beat it was waiting for)."""
        now = time.monotonic()
        if now - self._last_beat >= HELD_UP:
            self._held_up += now - self._last_beat - BEAT
        self._last_beat = now

    def _clock(self) -> float:
        """Seconds watched: real time, but a gap between two readings counts as one
        watchdog step at most (checks are a step apart while the loop runs freely)."""
        real = time.monotonic()
        self._watched += min(real - self._real, self.stall_timeout / 4)
        self._real = real
        return self._watched

    def _check_stalls(self) -> None:
        self._watchdog = None
        if self._closed or not self._running:
            return
        now = self._clock()
        window = self.stall_timeout
        for fd in self._heard:
            self._last_heard[fd] = now
        self._heard.clear()
        slow: list[tuple[pycurl.Curl, _Running, float]] = []
        quiet: dict[pycurl.Curl, bool] = {}  # transfer -> no byte in its window
        unsent: set[_Running] = set()  # those whose request has not gone yet
        for easy, running in self._running.items():
            try:
                moved = int(
                    easy.getinfo(pycurl.SIZE_DOWNLOAD_T)
                    + easy.getinfo(pycurl.SIZE_UPLOAD_T)
                    + easy.getinfo(pycurl.HEADER_SIZE)
                )
            except pycurl.error:
                continue
            samples = running.samples
            if easy in self.held:  # (paused by us: not quiet, and its window starts anew)
                running.samples = deque([(now, moved)])
                quiet[easy] = False
                continue
            samples.append((now, moved))
            if _unsent(easy):
                unsent.add(running)
            while len(samples) > 2 and samples[1][0] <= now - window:
                samples.popleft()
            then, before = samples[0]
            span = now - then
            quiet[easy] = moved == before
            # (steps counted at most: four of them add up to the window, give or take
            # a rounding)
            if span >= window * (1 - 1e-9) and moved - before < self.low_speed_limit * span:
                slow.append((easy, running, span))
        # one whose request has not gone yet, while others move, waits for its turn (a
        # connection, or an HTTP/2 stream): its window starts when it goes; and one
        # connecting is the connect timeout's if that ends it no later
        waits = not all(quiet.values()) or 0 < self.connect_timeout <= window
        if waits:  # (at each check it waits, not only one that finds it slow: one
            # going between two checks had its wait counted in its window, and was cut)
            for running in unsent:
                running.samples = deque([running.samples[-1]])
        stalled = [(easy, running, span) for easy, running, span in slow
                   if not (waits and running in unsent)]
        if stalled:
            self._shut_silent([easy for easy, _, _ in stalled], quiet, now - window)
        for easy, running, span in stalled:
            self.remove(easy)
            running.done(STALLED, f"less than {self.low_speed_limit} B/s for {span:.1f} s")
        if self._running:
            self._watchdog = self.loop.call_later(window / 4, self._check_stalls)

    def _shut_silent(
        self, stalled: list[pycurl.Curl], quiet: dict[pycurl.Curl, bool], since: float
    ) -> None:
        """Shut the connections of ``stalled`` transfers that were silent since ``since``
        (a stall window ago): nothing to read on the socket, no byte for any transfer on
        it. Removing a stalled HTTP/2 stream leaves its connection to libcurl, which puts
        the next streams (the retries among them) on it, where they stall in turn; a
        connection shut so it drops, failing the streams left on it, which are retried."""
        socket_of: dict[pycurl.Curl, int] = {}
        for easy in self._running:
            try:
                socket_of[easy] = easy.getinfo(pycurl.ACTIVESOCKET)
            except pycurl.error:
                continue
        alive = {fd for easy, fd in socket_of.items() if not quiet.get(easy, True)}
        heard = self._last_heard
        for fd in {socket_of.get(easy, -1) for easy in stalled} - alive - {-1}:
            if heard.get(fd, since) > since + self.stall_timeout / 4:  # (noted that late)
                continue
            try:
                sock = socket.socket(fileno=os.dup(fd))
            except OSError:
                continue
            with sock:  # (closes the duplicate only; libcurl still owns the socket)
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _sweep_idle(self) -> None:
        """Idle for a while: keep no registration libcurl did not ask for."""
        self._sweep = None
        if not self._running:
            for fd in [fd for fd in self._fds if fd not in self._want]:
                self._forget(fd)

    def _drop_read(self, fd: int) -> None:
        mask = self._fds.get(fd, 0)
        if mask & _WRITE:
            self._fds[fd] = mask & ~_READ
            try:
                self.loop.remove_reader(fd)
            except Exception:
                pass
        else:
            self._forget(fd)

    def _forget(self, fd: int) -> None:
        mask = self._fds.pop(fd, 0)
        self._ino.pop(fd, None)
        try:
            if mask & _READ:
                self.loop.remove_reader(fd)
            if mask & _WRITE:
                self.loop.remove_writer(fd)
        except Exception:
            pass

    def _unwatch_all(self) -> None:
        for fd in list(self._fds):
            self._forget(fd)
        self._want.clear()


def _unsent(easy: pycurl.Curl) -> bool:
    """``easy`` has not sent its request yet: it is connecting (the connect timeout's
    part), or libcurl holds it back until a connection or an HTTP/2 stream is free (the
    server's SETTINGS_MAX_CONCURRENT_STREAMS reached), while the others take their turn."""
    try:
        return int(easy.getinfo(pycurl.PRETRANSFER_TIME_T)) == 0
    except pycurl.error:
        return False


def _inode(fd: int) -> int:
    """The inode of the socket on ``fd`` (-1 if closed): tells sockets apart that got
    the same descriptor number one after another."""
    try:
        return os.fstat(fd).st_ino
    except OSError:
        return -1


def _with_os_reason(easy: pycurl.Curl, message: str) -> str:
    """libcurl's "Failed to connect to H port P after N ms: Couldn't connect to server"
    with the system's reason (connection refused, no route to host, ...) at its end."""
    try:
        err = easy.getinfo(pycurl.OS_ERRNO)
    except pycurl.error:
        return message
    if not err:
        return message
    head, sep, _ = message.rpartition(": ")
    return f"{head if sep else message}: {os.strerror(err)}"
