"""The library's errors and event text mask the secrets of the URLs they name, as the CLI
does (a program that logs ``str(exc)`` leaked ``?token=...``); the URL as given stays in
the item (and a SourceError's ``url``)."""

from __future__ import annotations

from pathlib import Path

from tests.servers.httpd import HTTPServer

import omniget
from omniget.engine.events import Event, Failed, Warned
from omniget.model import Item

SECRETS = ("SECRET", "PASSWORD")


def _settings(tmp_path: Path) -> omniget.Settings:
    return omniget.Settings(state_dir=tmp_path / "state", retries=0)


def _said(error: BaseException) -> list[str]:
    return [str(error), repr(error), *map(str, error.args)]


def _clean(texts: list[str]) -> None:
    for text in texts:
        assert not any(s in text for s in SECRETS), text


def test_a_404_names_its_url_without_the_token_or_password(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    base = httpd.url("/missing")
    with_login = base.replace("://", "://alice:PASSWORD@")
    urls = [f"{base}?token=SECRET", f"{with_login}?X-Amz-Signature=SECRET&part=1"]
    events: list[Event] = []
    report = omniget.download(urls, tmp_path / "out", settings=_settings(tmp_path),
                              on_event=events.append)
    assert [r.status for r in report.results] == ["failed", "failed"]
    for result, url in zip(report.results, urls, strict=True):
        error = result.error
        assert isinstance(error, omniget.RemoteNotFound) and error.exit_code == 6
        _clean(_said(error))
        assert "/missing?token=***" in str(error) or "Signature=***&part=1" in str(error)
        assert result.item.download_url == url  # (the URL as given: the program's to use)
        assert error.url == url
    failed = [e for e in events if isinstance(e, Failed)]
    assert len(failed) == 2
    _clean([t for e in failed for t in _said(e.error)])


def test_a_bad_url_is_named_without_the_token_or_password(tmp_path: Path) -> None:
    bad_port = "http://alice:PASSWORD@127.0.0.1:12x/a.bin?token=SECRET"
    no_source = "gopher://127.0.0.1/a.bin?api_key=SECRET"
    events: list[Event] = []
    report = omniget.download([bad_port, no_source], tmp_path / "out",
                              settings=_settings(tmp_path), on_event=events.append)
    first, second = report.results
    assert isinstance(first.error, omniget.UsageError) and "'12x'" in str(first.error)
    assert isinstance(second.error, omniget.UnsupportedURL)
    assert "api_key=***" in str(second.error)
    for result in report.results:
        assert result.error is not None
        _clean(_said(result.error))
    assert first.item.download_url == bad_port and second.error.url == no_source
    _clean([t for e in events if isinstance(e, Failed) for t in _said(e.error)])


def test_a_warning_names_the_failed_mirror_without_its_token(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    good = httpd.add(httpd.new_path("m.bin"), b"m" * 1000)
    item = Item(download_url=httpd.url("/gone.bin") + "?token=SECRET", filename="m.bin",
                mirrors=(good,))
    events: list[Event] = []
    report = omniget.download([item], tmp_path / "out", settings=_settings(tmp_path),
                              on_event=events.append)
    assert report.succeeded, report.failures
    [warned] = [e for e in events if isinstance(e, Warned)]
    assert "trying a mirror" in warned.message and "token=***" in warned.message
    _clean([warned.message])


def test_a_warning_masks_a_url_it_names_itself() -> None:
    """Not only an error's text: a source's own warning naming a URL is masked too."""
    item = Item(download_url="http://127.0.0.1/a.bin", filename="a.bin")
    warned = Warned(item, None, "moved to http://bob:PASSWORD@127.0.0.1/b?sig=SECRET&x=1")
    assert warned.message == "moved to http://bob:***@127.0.0.1/b?sig=***&x=1"


def test_a_comma_after_a_url_ends_its_secret_not_one_inside_it() -> None:
    """A message goes on after a URL with ", ": that comma is the message's (it was
    masked with the value); a comma inside a value is the value's."""
    from omniget.masks import mask_secrets

    said = "HTTP 401 from http://h/a?auth=u%3Ap, redirected from http://h/b?sig=x,y&n=1"
    assert mask_secrets(said) == (
        "HTTP 401 from http://h/a?auth=***, redirected from http://h/b?sig=***&n=1")
    assert mask_secrets("at http://h/a?token=abc,") == "at http://h/a?token=***,"


def test_a_long_url_is_masked_in_time_linear_in_its_length() -> None:
    """The user:password pattern tried a scheme at each letter of a long run of them and
    read the run to its end each time: a 60 KB path took 19 s to mask, a line."""
    import time

    from omniget.masks import mask_secrets

    url = f"http://bob:PASSWORD@h/{'d' * 200_000}/a.bin?token=SECRET&x=1"
    started = time.process_time()
    said = mask_secrets(f"HTTP 503 from {url}; retrying")
    assert said.endswith("/a.bin?token=***&x=1; retrying") and "bob:***@h/ddd" in said
    assert time.process_time() - started < 10  # (linear: milliseconds; before: ~200 s)
