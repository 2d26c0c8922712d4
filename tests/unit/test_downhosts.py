"""DownHosts: a host is down when two files gave up on it with no answer from it since the
first one's first failed try began, nor any answer's body coming; it is up again at its
next answer, or a budget later."""

from __future__ import annotations

import pycurl
import pytest

from omniget.engine.downhosts import STRIKES, DownHosts
from omniget.engine.retry import FakeClock
from omniget.engine.scheduler import HostLimits
from omniget.engine.transports.curlerrors import ProxyPath, curl_error
from omniget.errors import OmnigetError, RemoteError, TransientError

A = "http://a.test/x"
A2 = "http://a.test/other"
B = "http://b.test/y"


def made(budget: float = 300.0) -> tuple[DownHosts, HostLimits, FakeClock]:
    clock = FakeClock()
    limits = HostLimits(per_host=1, total=10)
    return DownHosts(clock, budget, limits), limits, clock


def given_up(down: DownHosts, url: str, why: str, times: int = STRIKES) -> None:
    """``times`` files of ``url``'s host give up on it, each failing from its first try."""
    for _ in range(times):
        down.gave_up(url, why, down.mark(url))


def test_a_host_two_files_gave_up_on_with_no_answer_is_down_for_its_other_urls() -> None:
    down, _, _ = made()
    assert STRIKES == 2
    given_up(down, A, "could not connect", 1)
    assert down.why(A) is None  # (one file's URL that never answers is its own matter)
    down.gave_up(A2, "timed out", down.mark(A2))
    assert down.why(A2) == "could not connect"  # (the first of them named)
    assert down.why(B) is None
    err = down.not_tried(A2, "could not connect")
    assert not err.retryable and err.exit_code == 3
    assert str(err) == "not tried: a.test is down, another file gave up on it: could not connect"


def test_an_answer_since_the_first_failed_try_began_keeps_the_host_up() -> None:
    down, _, _ = made()
    mark = down.mark(A)
    down.answered(A2)  # (another file of the host had an answer meanwhile)
    down.ended(A2)
    for _ in range(STRIKES):
        down.gave_up(A, "HTTP 503", mark)
    assert down.why(A) is None
    mark = down.mark(A)
    down.answered(A)  # (the try's own: a body cut short)
    down.ended(A)
    for _ in range(STRIKES):
        down.gave_up(A, "connection reset", mark)
    assert down.why(A) is None


def test_an_answer_between_two_files_giving_up_keeps_the_host_up() -> None:
    down, _, _ = made()
    given_up(down, A, "HTTP 503", 1)
    down.answered(A2)
    down.ended(A2)
    given_up(down, A, "HTTP 503", STRIKES - 1)
    assert down.why(A) is None


def test_an_answer_whose_body_still_comes_keeps_the_host_up() -> None:
    down, _, _ = made()
    down.answered(A2)  # (a large file, begun before)
    given_up(down, A, "HTTP 503")
    assert down.why(A) is None
    down.ended(A2)
    given_up(down, A, "HTTP 503")
    assert down.why(A) == "HTTP 503"


def test_an_answer_before_the_first_failed_try_does_not() -> None:
    down, _, _ = made()
    down.answered(A)
    down.ended(A)
    given_up(down, A2, "timed out")
    assert down.why(A) == "timed out"


def test_a_down_host_is_up_again_at_its_next_answer_or_a_budget_later() -> None:
    down, _, clock = made(budget=60.0)
    given_up(down, A, "timed out")
    down.answered(A)  # (a try under way got through)
    assert down.why(A) is None
    down.ended(A)
    given_up(down, A, "refused")
    clock.advance(59.0)
    assert down.why(A) == "refused"
    clock.advance(1.0)
    assert down.why(A) is None  # its next files are tried again...
    given_up(down, A, "refused", STRIKES - 1)
    assert down.why(A) is None  # ...and take as many files giving up again


def test_tickets_waiting_for_a_down_host_are_refused_others_wait_on() -> None:
    down, limits, _ = made()
    held = limits.ticket(A)
    told: list[str] = []
    waiting = limits.ticket(A2)
    waiting.refusal = lambda: told.append("a2")
    silent = limits.ticket(A)  # (no refusal: waits on)
    other = limits.ticket(B)
    assert held.granted and other.granted and not waiting.granted
    given_up(down, A, "refused")
    assert told == ["a2"] and waiting.refused and waiting.closed and not waiting.granted
    assert not silent.closed and not silent.refused
    held.close()
    assert silent.granted


def test_a_proxy_a_file_gave_up_on_is_down_till_an_answer_or_a_budget_later() -> None:
    """Its cause (the error's ``shared``) is down at the first file that gave up on it,
    whichever the host; any answer taken, or a budget, makes it up again."""
    down, _, clock = made(budget=300.0)
    cause = "failed: could not connect to the proxy http://p:1 (--proxy): refused"
    assert not down.shared_down(cause) and not down.shared_down(None)
    down.gave_up(A, "could not connect to the proxy", down.mark(A), cause)
    assert down.shared_down(cause) and not down.shared_down("failed: another")
    assert down.why(B) is None  # (no host is down for it)
    down.answered(B)
    down.ended(B)
    assert not down.shared_down(cause)
    down.gave_up(A, "could not connect to the proxy", down.mark(A), cause)
    clock.advance(299.0)
    assert down.shared_down(cause)
    clock.advance(1.0)
    assert not down.shared_down(cause)


def test_a_url_through_a_proxy_found_down_is_not_tried_and_others_are() -> None:
    """``route`` says each URL's proxy: those of the one found down are not tried, each
    error carrying its cause (said once for them all); a URL that goes direct, or
    through another proxy, is tried."""
    clock = FakeClock()
    routes = {A: "http://p:1", B: "http://p:1", A2: None}
    down = DownHosts(clock, 300.0, HostLimits(per_host=1, total=10), routes.get)
    cause = "failed: could not connect to the proxy http://p:1 (--proxy): timed out"
    assert down.proxy_down(B) is None
    down.gave_up(A, "timed out", down.mark(A), cause)
    err = down.proxy_down(B)
    assert err is not None and err.shared == cause and not err.retryable
    assert str(err) == ("not tried: could not connect to the proxy http://p:1 (--proxy): "
                        "timed out (another file gave up on it)")
    assert down.proxy_down(A2) is None and down.proxy_down("http://c.test/z") is None
    clock.advance(300.0)
    assert down.proxy_down(B) is None


def test_a_direct_answer_keeps_a_proxy_found_down_down() -> None:
    """An answer from a URL that goes direct (no_proxy), or through another proxy, says
    nothing of the proxy found down: its files stay not tried. One through it clears it."""
    clock = FakeClock()
    routes = {A: "http://p:1", B: "http://p:1", A2: None, "http://c.test/z": "http://q:2"}
    down = DownHosts(clock, 300.0, HostLimits(per_host=1, total=10), routes.get)
    cause = "failed: could not connect to the proxy http://p:1 (--proxy): refused"
    down.gave_up(A, "refused", down.mark(A), cause)
    for other in (A2, "http://c.test/z"):
        down.answered(other)
        down.ended(other)
        assert down.shared_down(cause) and down.proxy_down(B) is not None, other
    down.answered(B)
    down.ended(B)
    assert not down.shared_down(cause) and down.proxy_down(B) is None


def test_a_proxy_is_down_at_its_first_failed_try_for_all_but_the_file_that_found_it() -> None:
    """The first try that failed to reach the proxy finds it down: that file (its owner)
    tries it again; the others' tries that fail for it give up at once, and their URLs
    through it are not tried. Once that file gave up, it is no one's to try."""
    clock = FakeClock()
    routes = {A: "http://p:1", B: "http://p:1"}
    down = DownHosts(clock, 300.0, HostLimits(per_host=1, total=10), routes.get)
    cause = "failed: could not connect to the proxy http://p:1 (--proxy): refused"
    first, second = object(), object()
    down.failed(A, None, first)  # (no shared cause: a host's failure, not a proxy's)
    assert not down.shared_down(cause)
    down.failed(A, cause, first)
    assert not down.shared_down(cause, first) and down.proxy_down(A, first) is None
    assert down.shared_down(cause, second) and down.proxy_down(B, second) is not None
    down.failed(B, cause, second)  # (it stays the first one's)
    assert not down.shared_down(cause, first)
    down.gave_up(A, "refused", down.mark(A), cause)
    assert down.shared_down(cause, first) and down.proxy_down(B, first) is not None


def unreached(text: str) -> TransientError:
    err = TransientError(text)
    err.unreached = True
    return err


def test_a_mirror_s_try_that_reached_no_server_is_a_strike_once_a_file() -> None:
    """A file with mirrors goes to the next at once: its try that reached no server
    counts as a file's giving up on that host, once a file; other failures do not."""
    down, _, _ = made()
    one: set[str] = set()
    down.mirror_failed(A, unreached("could not connect"), down.mark(A), one)
    down.mirror_failed(A2, unreached("could not connect"), down.mark(A2), one)
    assert down.why(A) is None  # (one file, twice: one strike)
    down.mirror_failed(A, TransientError("HTTP 503"), down.mark(A), set())
    assert down.why(A) is None  # (an answer: no strike)
    down.mirror_failed(A2, unreached("timed out"), down.mark(A2), set())
    assert down.why(A) == "could not connect"


def test_a_mirror_found_down_is_passed_over_and_all_of_them_down_is_not_tried() -> None:
    down, _, _ = made()
    urls = (A, B, "http://c.test/z")
    given_up(down, A, "could not connect")
    assert down.before_try(A, None, None, 0, urls) == B  # (the next, at once)
    assert down.before_try(B, None, None, 0, urls) == B
    assert down.before_try(A, None, None, 0, urls, {B}) == "http://c.test/z"  # (B gone)
    given_up(down, B, "timed out")
    given_up(down, "http://c.test/z", "timed out")
    with pytest.raises(RemoteError, match=r"^not tried: a\.test is down, another file gave up"):
        down.before_try(A, None, None, 0, urls)
    last = unreached("could not connect (b.test)")
    with pytest.raises(TransientError, match=r"\(gave up: the hosts of its mirrors answered no"):
        down.before_try(A, None, last, 1, urls)
    late = TransientError("reset")  # (a failed try's error, after its host was found down)
    with pytest.raises(TransientError, match="hosts of its mirrors"):
        down.after_try(B, late, 1, None, urls)


def test_only_a_try_that_reached_no_server_is_said_unreached() -> None:
    """Refused, a name that does not resolve, no connection within the connect timeout:
    not a refused proxy (its own ``shared`` rule), nor a reset or a stall."""
    url = "http://a.test/x"

    def said(code: int, proxy: ProxyPath | None = None) -> bool:
        err = curl_error(code, "no", url, proxy=proxy)
        return isinstance(err, OmnigetError) and err.unreached

    for code in (pycurl.E_COULDNT_CONNECT, pycurl.E_COULDNT_RESOLVE_HOST,
                 pycurl.E_OPERATION_TIMEDOUT):
        assert said(code), code
    via = ProxyPath(0, False, 0, False)
    for code in (pycurl.E_COULDNT_CONNECT, pycurl.E_OPERATION_TIMEDOUT):
        assert not said(code, via), code
    for code in (pycurl.E_RECV_ERROR, pycurl.E_PARTIAL_FILE, pycurl.E_SSL_CONNECT_ERROR):
        assert not said(code), code
