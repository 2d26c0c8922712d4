"""omniget.hosts: one key per host however a URL spells it."""

from __future__ import annotations

import pytest

from omniget.engine.scheduler import host_of
from omniget.hosts import host_key


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
