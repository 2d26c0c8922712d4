"""Hosts found down in a run: their other files fail at once, not each after a budget.

A host is *down* when two files gave up on it (their retries spent on failures: refused
or timed-out connections, failed TLS handshakes, stalls, 5xx and 429 answers...) and no
request to it was answered since the first of them began its first failed try (an answer
counts once its status is taken: a 2xx, a 3xx followed), nor is an answer's body coming
from it. Without this, each of a host's files spends a whole retry budget on it in turn,
a few at a time (``-N``): 200 files of a host whose packets are dropped take an hour,
every try a line.

Its other files then fail at once, each naming the first of those failures (the CLI says
them in one line, with their count: see ``OmnigetError.shared``);
those waiting for a connection slot are refused there (:meth:`HostLimits.refuse`),
those waiting to try again give up at their next try. Files of other hosts go on. A
host is up again as soon as an answer comes from it (a file's try under way), or once a
retry budget (``retry_max_time``) has passed since it was found down: its next file is
tried, with a budget of its own.

A file with mirrors (several URLs, as aria2 takes them) spends no retries on one of them:
a failed try goes to the next at once. Its try that reached no server (refused, a name
that does not resolve, no connection within the connect timeout: the error's
``unreached``) is a strike for that host as a file's giving up is, once a file
(:meth:`DownHosts.mirror_failed`). A mirror found down is passed over, at once and without
a try (:meth:`DownHosts.before_try`; a file waiting for a connection slot to it is refused
there and waits for one at its next mirror instead); a file whose every mirror is found
down fails at once, as a file of one URL does. A file that goes to another mirror's host,
whatever the reason, gives its slot back and waits for one of that host's first (see
:mod:`.spanfetch`): its mirror's cap holds, and the slots of a dead host go to files
that still need them.

A proxy that takes no connection (or whose name does not resolve) is found down at the
first try that failed to reach it (:meth:`DownHosts.failed`): its failure is the proxy's
whichever the file's host (its error's ``shared`` cause says so). The file of that try
goes on trying it, its retries telling whether it comes back; any other file whose try
fails the same way then gives up at once, without the retries a file has (two for a
refused connection: each file under way said its own till one gave up), until an answer
is taken through it (an answer from a host reached directly, or through another proxy,
says nothing of it), or a budget later; one that goes through that proxy (``route``
says a URL's) is not tried at all (a proxy that drops packets cost each a connect
timeout).

A host is not found down at its first failed try the same way: a host that sheds load
(503s to every file for a while) or restarts fails the tries of several files at once,
and their retries are what gets them; their lines are folded by the CLI past a few.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING

from ..errors import OmnigetError, RemoteError
from .mirrors import next_mirror
from .scheduler import host_of

if TYPE_CHECKING:
    from .retry import Clock
    from .scheduler import HostLimits

__all__ = ["STRIKES", "DownHosts", "gave_up_early"]

#: Files given up on a host, with no answer from it since the first of them began, that
#: find it down (the few under way on a dead host give up together: no time lost).
STRIKES = 2


class DownHosts:
    """The hosts of one run found down, and the answers that keep a host up."""

    def __init__(
        self, clock: Clock, budget: float, limits: HostLimits,
        route: Callable[[str], str | None] = lambda url: None,
    ) -> None:
        self._clock = clock
        self._route = route  # a URL's proxy (None: none)
        self._budget = budget  # seconds a host stays down (then its next file is tried)
        self._limits = limits
        self._answers: dict[str, int] = {}  # host -> answers taken from it in this run
        self._live: dict[str, int] = {}  # host -> answers taken whose bodies still come
        #: host -> files that gave up on it, none answered since the first began, and
        #: the first one's error (its text, its shared cause)
        self._strikes: dict[str, tuple[int, str, str | None]] = {}
        #: host -> why it is down (the failure a file gave up on), and since when
        self._down: dict[str, tuple[str, float]] = {}
        #: host -> the ``shared`` cause of the failure it is down for, when it had one
        self._shared: dict[str, str] = {}
        #: the ``shared`` causes a try failed for (a proxy down): since when, through
        #: what, and the file (its owner) whose try it was, which alone tries it again
        self._proxies: dict[str, tuple[float, str | None, object]] = {}

    def mark(self, url: str) -> int:
        """Where ``url``'s host stands, as a try to it starts: give it to :meth:`gave_up`
        for the first failed try of a file's streak."""
        return self._answers.get(host_of(url), 0)

    def answered(self, url: str) -> None:
        """An answer from ``url``'s host was taken (call :meth:`ended` when its request
        ends): it is up."""
        host = host_of(url)
        self._answers[host] = self._answers.get(host, 0) + 1
        self._live[host] = self._live.get(host, 0) + 1
        if self._strikes:
            self._strikes.pop(host, None)
            self._down.pop(host, None)
        if self._proxies:  # (an answer through a proxy: it is up again)
            self._proxy_answered(url)

    def _proxy_answered(self, url: str) -> None:
        """An answer to ``url`` was taken: the proxies found down that it went through
        (or whose route is not known) are up. One that went direct, or through another
        proxy, says nothing of them (a run with ``no_proxy`` hosts kept trying a dead
        proxy's files at each answer of theirs)."""
        via = self._via(url)
        for cause, (_, proxy, _owner) in list(self._proxies.items()):
            if proxy is None or proxy == via:
                del self._proxies[cause]

    def ended(self, url: str) -> None:
        """The request of an answer taken (:meth:`answered`) ended, well or not."""
        host = host_of(url)
        self._live[host] -= 1

    def gave_up(self, url: str, why: str, mark: int, shared: str | None = None) -> None:
        """A file gave up on ``url`` (``why``: its error's text), its first failed try
        having started at ``mark``. Unless its host answered since (that try or any
        other) or is sending an answer's body now, that is a strike; at the
        :data:`STRIKES`-th with no answer in between, the host is down (one file's
        URL that never answers is that file's matter) and files waiting for a
        connection to it are refused. ``shared``: the error's cause other hosts' files
        may share (its ``shared``: a proxy down), which its files not tried say then."""
        if shared is not None:  # (a proxy down: whichever the file's host; no one's to try)
            found = self._proxies.get(shared)
            since = self._clock.monotonic() if found is None else found[0]
            self._proxies[shared] = (since, self._via(url), None)
        host = host_of(url)
        if self._answers.get(host, 0) != mark or self._live.get(host) or self.why(url):
            return
        strikes, first, cause = self._strikes.get(host, (0, why, shared))
        self._strikes[host] = (strikes + 1, first, cause)
        if strikes + 1 >= STRIKES:
            self._down[host] = (first, self._clock.monotonic())
            if cause:
                self._shared[host] = cause
            else:
                self._shared.pop(host, None)
            self._limits.refuse(host)

    def before_try(
        self, url: str, owner: object, last: OmnigetError | None, attempts: int,
        urls: Sequence[str] = (), gone: Collection[str] = (),
    ) -> str:
        """The URL a try of ``owner`` (a file) goes to: ``url``, or when its host is
        found down, the next of ``urls`` (the file's mirrors, ``url`` among them) that is
        not ``gone`` (failed for good) and whose host is not, at once. Raises when no try
        is to be made: every host found down (:meth:`not_tried`), or the proxy it goes
        through (:meth:`proxy_down`). ``last``: the error of its last failed try (the
        ``attempts``-th), raised instead when it had one (its own error says so)."""
        if (why := self.why(url)) is not None:
            other = self.next_up(urls, url, gone)
            if other is None:
                if last is None:
                    raise self.not_tried(url, why)
                raise gave_up_early(last, attempts, mirrors=len(urls) > 1)
            url = other
        if (unused := self.proxy_down(url, owner)) is not None:
            raise unused if last is None else last
        return url

    def after_try(
        self, url: str, exc: OmnigetError, attempts: int, owner: object,
        urls: Sequence[str] = (), gone: Collection[str] = (),
    ) -> None:
        """The rule after a failed try of ``owner`` (a file) to ``url``, the ``attempts``-th
        of its streak, before it waits to try again: raises ``exc`` when it is to end now,
        its host found down by another file meanwhile (said so: :func:`gave_up_early`) and,
        for a file with mirrors (``urls``, of which ``gone`` failed for good), every other
        one's too; or the proxy it failed to reach (:meth:`shared_down`). A file's one URL's
        proxy that it failed to reach is found down at once (:meth:`failed`)."""
        if len(urls) < 2:
            if self.why(url) is not None:  # (found so by another file)
                raise gave_up_early(exc, attempts) from None
            self.failed(url, exc.shared, owner)
        elif self.why(url) is not None and self.next_up(urls, url, gone) is None:
            raise gave_up_early(exc, attempts, mirrors=True) from None
        if self.shared_down(exc.shared, owner):  # (a proxy another file found down)
            raise exc

    def mirror_failed(self, url: str, exc: OmnigetError, mark: int, struck: set[str]) -> None:
        """A try to ``url`` of a file with mirrors, begun at ``mark``, failed. Such a file
        spends no retries on one URL (it goes to the next at once): a try that reached no
        server (``exc.unreached``: refused, a name that does not resolve, no connection
        within the connect timeout) is a strike for its host as a file that gave up on it
        is (:meth:`gave_up`), once a file (``struck``: the hosts it struck)."""
        if not exc.unreached or (host := host_of(url)) in struck:
            return
        struck.add(host)
        self.gave_up(url, str(exc), mark, exc.shared)

    def next_up(self, urls: Sequence[str], url: str, failed: Collection[str]) -> str | None:
        """The next of ``urls`` after ``url`` (in turn) not in ``failed`` whose host is not
        found down, or None."""
        if len(urls) < 2:
            return None
        return next_mirror(urls, url, {*failed, *(u for u in urls if self.why(u) is not None)})

    def failed(self, url: str, shared: str | None, owner: object) -> None:
        """A try of ``owner`` (a file) to ``url`` failed; ``shared``: its error's cause
        other hosts' files may share (a proxy that takes no connection). That is the
        proxy found down, at once (the tries of the files under way with it fail the same
        way: each said its own retries till one gave up): ``owner`` goes on trying it,
        its retries telling whether it comes back; the others do not (see
        :meth:`shared_down`)."""
        if shared is not None and shared not in self._proxies:
            self._proxies[shared] = (self._clock.monotonic(), self._via(url), owner)

    def shared_down(self, shared: str | None, owner: object = None) -> bool:
        """Whether a try failed for the cause whose ``shared`` this is (a proxy down),
        with no answer taken through it since, less than a budget ago: a try failed for
        it gives up at once, unless it is of the file that found it (``owner``), which
        tries it again till it gives up."""
        if shared is None or (found := self._proxies.get(shared)) is None:
            return False
        if self._clock.monotonic() - found[0] >= self._budget:
            del self._proxies[shared]
            return False
        return owner is None or found[2] is not owner

    def proxy_down(self, url: str, owner: object = None) -> RemoteError | None:
        """The error of a file of ``url`` not tried, the proxy it goes through found down
        (:meth:`shared_down`: not for the file that found it, ``owner``), or None."""
        if not self._proxies:
            return None
        via = self._via(url)
        for cause, (_, proxy, _owner) in list(self._proxies.items()):
            if proxy is not None and proxy == via and self.shared_down(cause, owner):
                text = cause.removeprefix("failed: ")
                err = RemoteError(f"not tried: {text} (another file gave up on it)")
                err.shared = cause
                return err
        return None

    def _via(self, url: str) -> str | None:
        """The proxy ``url`` goes through (None: none, or not known)."""
        try:
            return self._route(url)
        except ValueError:  # (a URL that is none: its own failure says so)
            return None

    def why(self, url: str) -> str | None:
        """Why ``url``'s host is down, or None when it is not (or no longer) known so."""
        if not self._down:
            return None
        host = host_of(url)
        down = self._down.get(host)
        if down is None:
            return None
        if self._clock.monotonic() - down[1] >= self._budget:
            del self._down[host]  # (a budget later: its next files try it again)
            self._strikes.pop(host, None)
            return None
        return down[0]

    def not_tried(self, url: str, why: str) -> RemoteError:
        """The error of a file of ``url`` not tried, its host down for ``why``: the CLI
        says the host once, with the count of its files not tried (its ``shared``), or
        the cause the first failure shared with other hosts' files (a proxy down)."""
        text = f"not tried: {host_of(url)} is down, another file gave up on it: {why}"
        err = RemoteError(text)
        err.shared = self._shared.get(host_of(url), text)
        return err


def gave_up_early(exc: OmnigetError, attempts: int, mirrors: bool = False) -> OmnigetError:
    """``exc``, the last of ``attempts`` failed tries, given up on before the retries
    are spent: other files found the host down meanwhile (``mirrors``: the hosts of
    every URL of the file)."""
    if mirrors:
        exc.message += " (gave up: the hosts of its mirrors answered no other file either)"
        return exc
    exc.message += (f" (gave up after {attempts} tr{'y' if attempts == 1 else 'ies'}: its "
                    "host answered no other file either)")
    return exc
