"""Arguments a library caller gets wrong: each fails at once, naming what was wrong, as a
TypeError (the wrong kind of value) or a ValueError (out of range), never deep inside the
engine mid-run, and nothing already downloaded is touched."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

import omniget


def _net(**kw: Any) -> omniget.Settings:
    return omniget.Settings(network=omniget.NetworkSettings(**kw))


@pytest.mark.parametrize(
    ("make", "error", "said"),
    [
        (lambda: omniget.Settings(connections_per_host=cast(Any, "4")), TypeError,
         "Settings(connections_per_host=...) takes a whole number of at least 1, not '4'"),
        (lambda: omniget.Settings(connections_per_host=0), ValueError,
         "Settings(connections_per_host=...) takes a whole number of at least 1, not 0"),
        (lambda: omniget.Settings(jobs=cast(Any, True)), TypeError,
         "jobs=...) takes a whole number"),
        (lambda: omniget.Settings(max_connections=0), ValueError, "max_connections=...)"),
        (lambda: omniget.Settings(split=0), ValueError, "split=...) takes a whole number of "
         "at least 1 (or None: adaptive), not 0"),
        (lambda: omniget.Settings(retries=cast(Any, "3")), TypeError,
         "retries=...) takes a whole number of at least 0, not '3'"),
        (lambda: omniget.Settings(retries=-1), ValueError, "retries=...)"),
        (lambda: omniget.Settings(limit_rate=cast(Any, "2M")), TypeError,
         "limit_rate=...) takes bytes per second, a whole number (2M: 2 * 1024 * 1024; "
         "0 or None: no limit), not '2M'"),
        (lambda: omniget.Settings(limit_rate=-5), ValueError, "limit_rate=...)"),
        (lambda: omniget.Settings(retry_max_wait=cast(Any, "9")), TypeError,
         "retry_max_wait=...) takes a number of seconds of at least 0, not '9'"),
        (lambda: omniget.Settings(checksum=cast(Any, "sha256=ab")), TypeError,
         "checksum=...) takes an omniget.Digest (Digest.parse('sha256=HEX')), not 'sha256=ab'"),
        (lambda: omniget.Settings(verify_size=cast(Any, "no")), TypeError,
         "verify_size=...) takes True or False, not 'no'"),
        (lambda: omniget.Settings(network=cast(Any, {"proxy": ""})), TypeError,
         "network=...) takes an omniget.NetworkSettings, not {'proxy': ''}"),
        (lambda: _net(connect_timeout=cast(Any, "5")), TypeError,
         "NetworkSettings(connect_timeout=...) takes a number of seconds above 0, not '5'"),
        (lambda: _net(stall_timeout=0), ValueError, "stall_timeout=...)"),
        (lambda: _net(connect_timeout=1e300), ValueError, "at most 2147483647"),
        (lambda: _net(user_agent=cast(Any, None)), TypeError,
         "user_agent=...) takes a str, not None"),
        (lambda: _net(proxy=cast(Any, 3128)), TypeError,
         "proxy=...) takes a str or None, not 3128"),
        (lambda: _net(ca_cert=cast(Any, Path("ca.pem"))), TypeError,
         "ca_cert=...) takes a str or None, not PosixPath('ca.pem')"),
        (lambda: _net(max_redirects=-1), ValueError, "max_redirects=...)"),
        (lambda: _net(insecure=cast(Any, 1)), TypeError, "insecure=...) takes True or False"),
        (lambda: _net(resolve=cast(Any, "h:80:127.0.0.1")), TypeError,
         "resolve=...) takes a tuple of 'HOST:PORT:ADDRESS' strs, not 'h:80:127.0.0.1'"),
        (lambda: _net(headers=cast(Any, {"X-A": "1"})), TypeError,
         "headers=...) takes a tuple of (name, value) pairs of strs (tuple(d.items()) for a "
         "dict), not {'X-A': '1'}"),
        (lambda: _net(headers=cast(Any, (("X-A", 1),))), TypeError, "headers=...)"),
    ],
)
def test_settings_of_the_wrong_kind_or_range_fail_when_made(
    make: Callable[[], object], error: type[Exception], said: str
) -> None:
    """They failed mid-run instead, deep in the engine: ``'<' not supported between
    instances of 'str' and 'int'`` (retries), ``'str' object has no attribute 'algo'``
    (checksum), ``too many values to unpack`` (headers), a hang (resolve as a str)."""
    with pytest.raises(error, match=re.escape(said)) as err:
        make()
    assert "\n" not in str(err.value)


def test_settings_in_range_are_kept_as_given() -> None:
    s = omniget.Settings(
        split=None, limit_rate=0, retries=0, checkpoint_seconds=0.0, fsync_seconds=1e9,
        retry_max_wait=30, state_dir=Path("st"),
        network=omniget.NetworkSettings(connect_timeout=5, headers=cast(Any, [("X-A", "1")]),
                                        resolve=cast(Any, ["h:80:127.0.0.1"]), max_redirects=0),
    )
    assert (s.limit_rate, s.retry_max_wait, s.network.connect_timeout) == (0, 30, 5)
    assert s.network.headers == (("X-A", "1"),) and s.network.resolve == ("h:80:127.0.0.1",)
