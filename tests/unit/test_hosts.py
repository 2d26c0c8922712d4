"""omniget.hosts: one key per host however a URL spells it, and the zone id of an IPv6
literal read one way."""

from __future__ import annotations

import pytest

from omniget.engine.scheduler import host_of
from omniget.hosts import host_key, split_zone


@pytest.mark.parametrize(
    ("authority", "key"),
    [("[::1]", "[::1]"), ("[0:0::1]", "[::1]"), ("[0000::1]", "[::1]"),
     ("[0:0:0:0:0:0:0:1]:8080", "[::1]:8080"), ("[2001:DB8::A]:81", "[2001:db8::a]:81"),
     ("[::ffff:127.0.0.1]", "127.0.0.1"), ("[0:0:0:0:0:FFFF:7f00:1]:81", "127.0.0.1:81"),
     ("[::127.0.0.1]", "[::7f00:1]"),  # (IPv4-compatible: an IPv6 address of its own)
     ("Example.COM:8080", "example.com:8080"), ("example.com", "example.com"),
     ("127.0.0.1:0080", "127.0.0.1:80"), ("example.com:", "example.com")],
)
def test_each_spelling_of_a_host_is_one_key(authority: str, key: str) -> None:
    assert host_key(authority) == key


@pytest.mark.parametrize(
    ("authority", "key"),
    [("[fe80::1%25eth0]:81", "[fe80::1%25eth0]:81"), ("[FE80:0::1%eth0]", "[fe80::1%25eth0]"),
     ("[fe80::1%25Eth0]", "[fe80::1%25Eth0]"),  # (an interface's name keeps its case)
     ("[fe80::1%252]", "[fe80::1%252]"), ("[fe80::1%2]", "[fe80::1%252]"),
     ("[::1%25lo]:81", "[::1]:81"), ("[0:0::1%lo]", "[::1]")],  # (ignored off link-local)
)
def test_a_zone_id_is_part_of_the_key_only_where_it_picks_the_interface(
    authority: str, key: str
) -> None:
    assert host_key(authority) == key


@pytest.mark.parametrize(
    ("url", "key"),
    [("http://example.com:80/a", "example.com"), ("https://example.com:443/a", "example.com"),
     ("http://example.com:443/a", "example.com:443"), ("HTTP://EXAMPLE.com/a", "example.com"),
     ("https://example.com:80/a", "example.com:80"), ("ftp://example.com:80/a", "example.com:80"),
     ("http://user:p@ss@[0:0::1]:80/a", "[::1]"), ("http://[::1]:81?q", "[::1]:81"),
     ("http://example.com#top", "example.com")],
)
def test_a_urls_host_leaves_out_its_schemes_default_port(url: str, key: str) -> None:
    assert host_of(url) == key


@pytest.mark.parametrize("authority", ["[::1", "[nothing]:80", "[::1]x", "host:port"])
def test_what_is_no_address_stays_as_written(authority: str) -> None:
    assert host_key(authority) == authority.lower()


@pytest.mark.parametrize(
    ("inside", "parts"),
    [("fe80::1%25eth0", ("fe80::1", "eth0")), ("fe80::1%eth0", ("fe80::1", "eth0")),
     ("fe80::1%251", ("fe80::1", "1")), ("fe80::1%2", ("fe80::1", "2")),
     ("fe80::1%2525", ("fe80::1", "25")),  # (libcurl: zone 25)
     ("fe80::1%25", ("fe80::1", "")), ("fe80::1%", ("fe80::1", "")),  # (empty: refused)
     ("fe80::1", ("fe80::1", None))],
)
def test_a_zone_id_after_percent_25_or_a_bare_percent(
    inside: str, parts: tuple[str, str | None]
) -> None:
    assert split_zone(inside) == parts


@pytest.mark.parametrize(
    ("zone", "scope"),
    [("%25lo", "lo"), ("%lo", "lo"), ("%2525", 25), ("%257", 7), ("%25nosuchif0", 0)],
)
def test_the_pipelined_reader_connects_with_that_zone(zone: str, scope: str | int) -> None:
    """The reader's socket address for ``[ADDRESS%25ZONE]``: the zone as split_zone reads
    it, an interface's name turned into its index (one naming none: no scope)."""
    import socket

    from omniget.engine.transports.h1socket import _scoped

    if scope == "lo":
        try:
            scope = socket.if_nametoindex("lo")
        except OSError:
            pytest.skip("no interface named lo here")
    assert _scoped(f"::1{zone}", 80) == ("::1", 80, 0, scope)


@pytest.mark.parametrize(
    ("host", "said"),
    [("[fe80::1%25]", "an empty zone id"), ("[fe80::1%]", "not a valid URL"),
     ("[fe80::1%25nosuchif0]", "no network interface 'nosuchif0'"),
     ("[fe80::1%nosuchif0]", "no network interface 'nosuchif0'")],
)
def test_the_http_source_refuses_a_zone_that_cannot_work(host: str, said: str) -> None:
    from omniget.errors import UsageError
    from omniget.sources.http import HttpSource

    with pytest.raises(UsageError, match=said):
        HttpSource.check_url(f"http://{host}:80/f.txt")
