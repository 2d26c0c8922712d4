"""What tripped a newcomer's first programs: a file's lines given as URLs, a setting
named as other tools name it, a settings object printed to a log."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.servers.httpd import HTTPServer

import omniget


def _settings(tmp_path: Path) -> omniget.Settings:
    return omniget.Settings(state_dir=tmp_path / "state", retries=0)


def test_a_file_s_lines_are_downloaded_as_the_urls_they_hold(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """``download(open("urls.txt"))`` gave each URL with its newline: the files were
    saved as ``a.txt_`` (the newline made safe), and a second run fetched them again."""
    a = httpd.add(httpd.new_path("a.txt"), b"a" * 10)
    b = httpd.add(httpd.new_path("b.txt"), b"b" * 20)
    listed = tmp_path / "urls.txt"
    listed.write_text(f"{a}\n  {b}  \n", encoding="utf-8")
    out = tmp_path / "out"
    for _ in range(2):
        with open(listed, encoding="utf-8") as lines:
            report = omniget.download(lines, out, settings=_settings(tmp_path))
        assert report.succeeded, report.failures
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "b.txt"]
    assert (report.ok, report.skipped) == (0, 2)
    assert [r.item.download_url for r in report.results] == [a, b]


def test_a_url_with_blanks_around_it_is_the_url(httpd: HTTPServer, tmp_path: Path) -> None:
    """As the command takes a pasted URL: extract, stream and an Item made by hand."""
    url = httpd.add(httpd.new_path("c.txt"), b"c" * 5)
    (item,) = omniget.extract(f" {url}\n")
    assert (item.download_url, item.filename) == (url, "c.txt")
    made = omniget.Item(f"{url}\r\n")
    assert (made.download_url, made.filename) == (url, "c.txt")
    report = omniget.download(made, tmp_path / "out", settings=_settings(tmp_path))
    assert report.succeeded and (tmp_path / "out" / "c.txt").read_bytes() == b"c" * 5
    with open(tmp_path / "s.bin", "wb") as f:
        assert omniget.stream(f"\t{url} ", f) == 5


@pytest.mark.parametrize("word", ["rate_limit", "speed_limit", "max_speed", "bandwidth",
                                  "max_rate", "ratelimit"])
def test_a_speed_limit_named_as_elsewhere_is_limit_rate(word: str, tmp_path: Path) -> None:
    """``speed_limit`` was said to mean ``NetworkSettings(low_speed_limit=...)`` (the speed
    under which a transfer counts as stalled: the opposite of a cap), and ``rate_limit``
    or ``max_speed`` meant nothing."""
    with pytest.raises(TypeError, match=r"did you mean limit_rate=\?"):
        omniget.Settings(**{word: 1000})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"settings=omniget\.Settings\(limit_rate=\.\.\.\)"):
        omniget.download([], tmp_path, **{word: 1000})  # type: ignore[arg-type]


def test_a_blank_line_of_a_file_is_reported_failed_as_the_readme_says(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """As an empty URL: it said "no source can handle ''" (is it a full URL?)."""
    url = httpd.add(httpd.new_path("d.txt"), b"d")
    listed = tmp_path / "urls.txt"
    listed.write_text(f"{url}\n\n", encoding="utf-8")
    with open(listed, encoding="utf-8") as lines:
        report = omniget.download(lines, tmp_path / "out", settings=_settings(tmp_path))
    assert (report.ok, report.failed) == (1, 1)
    error = report.failures[0].error
    assert isinstance(error, omniget.UnsupportedURL)
    assert str(error) == "the URL is empty (a blank line, or a str of blanks)"
    with pytest.raises(omniget.UnsupportedURL, match=r"^the URL is empty"):
        omniget.extract(" ")
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert 'download(open("urls.txt"))' in readme and "a blank one is" in " ".join(readme.split())


def test_settings_printed_to_a_log_show_no_password() -> None:
    """``print(settings)`` (or a log of it) showed ``user='me:hunter2'``, the proxy's
    password and an Authorization header's value; an Item's repr already hid the last."""
    network = omniget.NetworkSettings(
        user="me:hunter2", proxy="http://pu:proxypass@proxy.test:3128",
        headers=(("Authorization", "Bearer tok3n"), ("X-Mine", "shown")),
    )
    for text in (repr(network), repr(omniget.Settings(network=network)), str(network)):
        assert "hunter2" not in text and "proxypass" not in text and "tok3n" not in text
        assert "user='me:***'" in text and "proxy='http://pu:***@proxy.test:3128'" in text
        assert "('Authorization', '***'), ('X-Mine', 'shown')" in text
    assert network.user == "me:hunter2"  # (the values themselves are as given)
    plain = omniget.NetworkSettings(user="me")
    assert "user='me'" in repr(plain) and repr(plain).startswith("NetworkSettings(proxy=None,")


def test_settings_state_dir_s_hint_takes_the_str_it_takes(tmp_path: Path) -> None:
    """``Settings(state_dir="state")`` worked, as its check says (a str or a Path), but
    its hint took a Path alone: ``mypy --strict`` refused a user's program."""
    import os
    import typing

    hint = typing.get_type_hints(omniget.Settings)["state_dir"]
    assert {str, os.PathLike[str], type(None)} <= set(typing.get_args(hint))
    assert omniget.Settings(state_dir=str(tmp_path)).state_dir == tmp_path  # (a Path)


@pytest.mark.parametrize("call", ["download", "adownload"])
def test_a_url_given_as_dest_says_the_urls_come_first(
    call: str, httpd: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``download("downloads", url)`` (the folder first) reported "no source can handle
    'downloads'" as a failed file, and said nothing of the URL taken for a folder."""
    url = httpd.add(httpd.new_path("e.txt"), b"e")
    monkeypatch.chdir(tmp_path)
    said = (rf"^omniget\.{call}\(\): dest is a folder, not a URL \('http://.*e\.txt'\): "
            rf"the URLs come first, {call}\(urls, dest\)$")
    with pytest.raises(ValueError, match=said):
        if call == "download":
            omniget.download("downloads", url)
        else:
            asyncio.run(omniget.adownload(["downloads"], url))
    assert list(tmp_path.iterdir()) == [] and not httpd.requests


@pytest.mark.parametrize("cls", [omniget.Settings, omniget.NetworkSettings])
def test_help_of_the_settings_tells_each_field(cls: type) -> None:
    """``help(omniget.Settings)`` showed ``limit_rate: int | None`` and ``on_exists:
    OnExists``, not that the one is bytes per second nor what the other takes."""
    import dataclasses

    doc = " ".join((cls.__doc__ or "").split())
    missing = [f.name for f in dataclasses.fields(cls) if f"``{f.name}``" not in doc]
    assert missing == []
    if cls is omniget.Settings:
        assert "bytes per second" in doc and "``rename``" in doc


def test_a_file_named_as_the_docstring_says_lands_under_that_name(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    """``download(url, "a.zip")`` (urlretrieve's way) makes a folder ``a.zip``: help()
    said only "the folder dest", not how a file is named."""
    url = httpd.add(httpd.new_path("f.bin"), b"f" * 3)
    doc = " ".join((omniget.download.__doc__ or "").split())
    assert "no file's name (as urlretrieve's is)" in doc
    assert 'name a file ``Item(url, filename="a.zip")``' in doc
    item = omniget.Item(url, filename="a.zip")
    report = omniget.download(item, tmp_path, settings=_settings(tmp_path))
    assert report.succeeded and (tmp_path / "a.zip").read_bytes() == b"fff"


def test_a_missing_ca_bundle_is_raised_for_a_url_with_a_blank_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Raised at once for ``https://...``, it was a failed file for `` https://...``."""
    monkeypatch.setenv("CURL_CA_BUNDLE", str(tmp_path / "missing.pem"))
    for url in ("https://127.0.0.1:9/a.bin", " https://127.0.0.1:9/a.bin"):
        with pytest.raises(omniget.UsageError, match="CURL_CA_BUNDLE="):
            omniget.download([url], tmp_path / "out", settings=_settings(tmp_path))


def test_a_proxy_password_is_hidden_without_a_scheme_too() -> None:
    """(``host:port`` is an HTTP proxy; its password was shown, as one with a slash.)"""
    for proxy, shown in (("pu:proxypass@proxy.test:3128", "pu:***@proxy.test:3128"),
                         ("http://pu:proxy/pass@proxy.test:3128",
                          "http://pu:***@proxy.test:3128")):
        text = repr(omniget.NetworkSettings(proxy=proxy))
        assert "proxy" + "pass" not in text and "pass@" not in text, text
        assert f"proxy='{shown}'" in text, text
