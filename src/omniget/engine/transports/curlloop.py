"""asyncio <-> libcurl multi glue, event-driven.

libcurl tells us which sockets to watch (``CURLMOPT_SOCKETFUNCTION``) and when its next
timeout is due (``CURLMOPT_TIMERFUNCTION``); we watch them with ``loop.add_reader`` /
``add_writer`` and ``loop.call_later``, and call ``socket_action`` for exactly the socket that
became ready. There is no polling interval, so nothing is added to a request's latency.

libcurl functions must not be called from inside libcurl's own callbacks: the socket and
timer callbacks here only touch the event loop, and every ``socket_action`` runs from a
loop callback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pycurl

__all__ = ["CLOSED", "CurlLoop", "DoneCallback"]

#: The result code handed to pending transfers when the loop is closed under them.
CLOSED = -1

#: Called once per finished transfer with libcurl's result code (0 = ok) and message.
DoneCallback = Callable[[int, str], None]

_READ = 1  # pycurl.POLL_IN
_WRITE = 2  # pycurl.POLL_OUT


class CurlLoop:
    """One ``CurlMulti`` driven by one asyncio event loop."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        max_host_connections: int,
        max_total_connections: int,
    ) -> None:
        self.loop = loop
        self._multi = pycurl.CurlMulti()
        self._fds: dict[int, int] = {}  # fd -> watched mask (_READ | _WRITE)
        self._timer: asyncio.TimerHandle | None = None
        self._done: dict[pycurl.Curl, DoneCallback] = {}
        self._closed = False
        m = self._multi
        m.setopt(pycurl.M_SOCKETFUNCTION, self._on_socket)
        m.setopt(pycurl.M_TIMERFUNCTION, self._on_timer)
        if max_host_connections > 0:
            m.setopt(pycurl.M_MAX_HOST_CONNECTIONS, max_host_connections)
        if max_total_connections > 0:
            m.setopt(pycurl.M_MAX_TOTAL_CONNECTIONS, max_total_connections)
            # Keep enough idle connections cached for reuse.
            m.setopt(pycurl.M_MAXCONNECTS, max_total_connections)

    @property
    def active(self) -> int:
        """Transfers added and not yet finished."""
        return len(self._done)

    @property
    def closed(self) -> bool:
        return self._closed

    def add(self, easy: pycurl.Curl, done: DoneCallback) -> None:
        """Start ``easy``; ``done(code, message)`` is called from the loop when it ends."""
        if self._closed:
            raise RuntimeError("curl loop is closed")
        self._done[easy] = done
        try:
            self._multi.add_handle(easy)
        except BaseException:
            del self._done[easy]
            raise
        # libcurl asks for a 0 ms timeout through the timer callback to kick it off.

    def remove(self, easy: pycurl.Curl) -> bool:
        """Abort ``easy`` if it is running; its done callback is not called."""
        if self._done.pop(easy, None) is None:
            return False
        try:
            self._multi.remove_handle(easy)
        except pycurl.error:
            pass
        return True

    def close(self) -> None:
        """Abort every transfer (their callbacks get :data:`CLOSED`) and free the multi."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending = list(self._done.items())
        self._done.clear()
        for easy, _ in pending:
            try:
                self._multi.remove_handle(easy)
            except pycurl.error:
                pass
        self._unwatch_all()
        self._multi.close()
        self._unwatch_all()  # in case cleanup reported sockets again
        for _, done in pending:
            try:
                done(CLOSED, "transport closed")
            except RuntimeError:  # their event loop is already closed
                pass

    # -- libcurl callbacks (must not raise: pycurl would print the traceback) --

    def _on_socket(self, what: int, fd: int, multi: object, data: object) -> None:
        try:
            new = 0 if what == pycurl.POLL_REMOVE else what & (_READ | _WRITE)
            old = self._fds.get(fd, 0)
            if old == new:
                return
            loop = self.loop
            if old & _READ and not new & _READ:
                loop.remove_reader(fd)
            if old & _WRITE and not new & _WRITE:
                loop.remove_writer(fd)
            if new & _READ and not old & _READ:
                loop.add_reader(fd, self._act, fd, pycurl.CSELECT_IN)
            if new & _WRITE and not old & _WRITE:
                loop.add_writer(fd, self._act, fd, pycurl.CSELECT_OUT)
            if new:
                self._fds[fd] = new
            else:
                self._fds.pop(fd, None)
        except Exception:
            # A closed loop or an fd the selector refuses: the transfer's stall
            # watchdog ends it rather than a callback printing a traceback.
            pass

    def _on_timer(self, timeout_ms: int) -> None:
        try:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if timeout_ms >= 0 and not self._closed:
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
        try:
            self._multi.socket_action(fd, event)
        except pycurl.error:
            # Only multi-level misuse lands here (a socket libcurl no longer knows).
            self._forget(fd)
        self._drain()

    def _drain(self) -> None:
        multi = self._multi
        while True:
            queued, ok, failed = multi.info_read()
            for easy in ok:
                self._finish(easy, 0, "")
            for easy, code, message in failed:
                self._finish(easy, code, message)
            if not queued:
                return

    def _finish(self, easy: pycurl.Curl, code: int, message: str) -> None:
        done = self._done.pop(easy, None)
        try:
            self._multi.remove_handle(easy)
        except pycurl.error:
            pass
        if done is not None:
            done(code, message)

    def _forget(self, fd: int) -> None:
        mask = self._fds.pop(fd, 0)
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
