"""A keyword a call does not take (a typo, a Settings field or the command's option name
given to the wrong call) is named with what was meant, as ``load_settings(flags=...)``
names it, not only Python's bare "unexpected keyword argument"."""

from __future__ import annotations

import asyncio
import inspect
import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import omniget

URL = "http://127.0.0.1:9/a.bin"  # (nothing listens: no call here may get that far)
#: The classes as a caller without a type checker has them (any keyword goes).
Settings: Any = omniget.Settings
NetworkSettings: Any = omniget.NetworkSettings


def _adownload(*args: Any, **kw: Any) -> object:
    return asyncio.run(omniget.adownload(*args, **kw))


@pytest.mark.parametrize(
    ("call", "kw", "said"),
    [
        (omniget.download, {"conections": 4}, "omniget.download() got an unexpected keyword "
         "argument 'conections'; did you mean settings=omniget.Settings("
         "connections_per_host=...)? (the command's --connections)"),
        (omniget.download, {"connections": 4}, "; did you mean settings=omniget.Settings("
         "connections_per_host=...)? (the command's --connections)"),
        (omniget.download, {"retries": 3}, "'retries'; did you mean settings=omniget."
         "Settings(retries=...)?"),
        (omniget.download, {"proxy": ""}, "'proxy'; did you mean settings=omniget.Settings("
         "network=omniget.NetworkSettings(proxy=...))?"),
        (omniget.download, {"on_events": print}, "'on_events'; did you mean on_event=?"),
        (omniget.download, {"dst": "x"}, "omniget.download() got an unexpected keyword "
         "argument 'dst'; did you mean dest=?"),
        (_adownload, {"conections": 4}, "omniget.adownload() got an unexpected keyword "
         "argument 'conections'; did you mean settings=omniget.Settings("
         "connections_per_host=...)?"),
        (_adownload, {"cancle": None}, "omniget.adownload() got an unexpected keyword "
         "argument 'cancle'; did you mean cancel=?"),

        (omniget.download, {"dest_dir": "x"}, "'dest_dir'; did you mean dest=?"),
        (omniget.download, {"download_dir": "x"}, "'download_dir'; did you mean dest=?"),
        (omniget.download, {"save_to": "x"}, "'save_to'; did you mean dest=?"),
        (omniget.download, {"stop": None}, "'stop'; did you mean cancel=?"),
        (omniget.download, {"stop_event": None}, "'stop_event'; did you mean cancel=?"),
        (_adownload, {"cancel_event": None}, "'cancel_event'; did you mean cancel=?"),
    ],
)
def test_download_names_the_keyword_meant(
    tmp_path: Path, call: Callable[..., object], kw: dict[str, Any], said: str
) -> None:
    with pytest.raises(TypeError, match=re.escape(said)):
        call(URL, tmp_path / "out", **kw)
    assert not (tmp_path / "out").exists()


def test_stream_names_the_keyword_meant() -> None:
    with pytest.raises(TypeError, match=re.escape(
            "omniget.stream() got an unexpected keyword argument 'conections'; did you mean "
            "settings=omniget.Settings(connections_per_host=...)?")):
        omniget.stream(URL, io.BytesIO(), conections=4)  # type: ignore[call-arg]


def test_extract_names_a_setting_given_as_a_source_option() -> None:
    """extract takes the source's options as keywords: a Settings field there was only
    "unknown option 'retries' (the http source takes: none)"."""
    with pytest.raises(TypeError, match=re.escape(
            "omniget.extract(): unknown option 'retries' (the http source takes: none); "
            "did you mean settings=omniget.Settings(retries=...)?")):
        omniget.extract(URL, retries=3)


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (lambda: Settings(conections=4), "Settings() got an unexpected keyword "
         "argument 'conections'; did you mean connections_per_host=? (the command's "
         "--connections)"),
        (lambda: Settings(connections=4), "'connections'; did you mean "
         "connections_per_host=? (the command's --connections)"),
        (lambda: Settings(retrys=4), "'retrys'; did you mean retries=?"),
        (lambda: Settings(limit_rat=4), "'limit_rat'; did you mean limit_rate=?"),
        (lambda: Settings(proxy=""), "Settings() got an unexpected keyword argument "
         "'proxy'; did you mean network=omniget.NetworkSettings(proxy=...)?"),
        (lambda: Settings(timeout=5), "'timeout'; did you mean network=omniget."
         "NetworkSettings(connect_timeout=..., stall_timeout=...)? (the command's --timeout)"),
        (lambda: NetworkSettings(conect_timeout=3), "NetworkSettings() got an "
         "unexpected keyword argument 'conect_timeout'; did you mean connect_timeout=?"),
        (lambda: NetworkSettings(retries=3), "NetworkSettings() got an unexpected "
         "keyword argument 'retries'; did you mean omniget.Settings(retries=...)?"),
        (lambda: Settings(colour=True), "Settings() got an unexpected keyword "
         "argument 'colour'"),
    ],
)
def test_settings_name_the_field_meant(make: Callable[[], object], said: str) -> None:
    with pytest.raises(TypeError, match=re.escape(said)):
        make()


def test_the_calls_look_as_before() -> None:
    """help() and inspect see the real signatures; adownload is still a coroutine
    function; other TypeErrors pass as they were."""
    assert "items_or_urls" in inspect.signature(omniget.download).parameters
    assert "kwargs" not in str(inspect.signature(omniget.download))
    assert inspect.iscoroutinefunction(omniget.adownload)
    assert "engine" in inspect.signature(omniget.adownload).parameters
    assert list(inspect.signature(omniget.Settings).parameters)[:2] == [
        "network", "connections_per_host"]
    assert "proxy" in inspect.signature(omniget.NetworkSettings).parameters
    with pytest.raises(TypeError, match=r"missing 1 required positional argument"):
        omniget.download()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=re.escape("omniget.download(): takes a URL")):
        omniget.download(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=re.escape("Settings(retries=...) takes")):
        omniget.Settings(retries="3")  # type: ignore[arg-type]


def test_load_settings_names_the_keyword_meant() -> None:
    with pytest.raises(TypeError, match=re.escape(
            "omniget.load_settings() got an unexpected keyword argument 'flag'; did you "
            "mean flags=?")):
        omniget.load_settings(flag={"connections": 8})  # type: ignore[call-arg]


@pytest.mark.parametrize("call", ["download", "extract"])
def test_load_settings_given_whole_as_settings_says_to_unpack_it(
    tmp_path: Path, call: str
) -> None:
    """``settings=omniget.load_settings()`` (a pair) said only "not tuple"."""
    pair: Any = omniget.load_settings(environ={}, flags={"state-dir": str(tmp_path)})
    with pytest.raises(TypeError, match=re.escape(
            f"omniget.{call}(): settings= takes an omniget.Settings, not the pair "
            "load_settings() gives: settings, source_options = omniget.load_settings()")):
        getattr(omniget, call)(URL, settings=pair)


def test_an_argument_given_by_position_that_goes_by_name_is_named(tmp_path: Path) -> None:
    """``download(urls, "out", settings)`` said only "takes from 1 to 2 positional
    arguments but 3 were given"."""
    settings = omniget.Settings(state_dir=tmp_path / "state")
    with pytest.raises(TypeError, match=re.escape(
            "omniget.download() takes 2 arguments by position (items_or_urls, dest), not 3: "
            "the others go by name (settings=, on_event=, cancel=, source=, "
            "source_options=, only=)")):
        omniget.download(URL, tmp_path / "out", settings)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("word", "said"),
    [
        ("destination", "did you mean dest=?"),
        ("folder", "did you mean dest=?"),
        ("callback", "did you mean on_event=?"),
        ("reporthook", "did you mean on_event=?"),
        ("filter", "did you mean only=?"),
        ("proxies", "did you mean settings=omniget.Settings(network=omniget.NetworkSettings("
         "proxy=...))?"),
        ("verify", "did you mean settings=omniget.Settings(network=omniget.NetworkSettings("
         "insecure=...))?"),
        ("overwrite", "did you mean settings=omniget.Settings(on_exists=...)?"),
        ("max_workers", "did you mean settings=omniget.Settings(jobs=...)?"),
    ],
)
def test_a_word_of_other_download_libraries_is_named(
    tmp_path: Path, word: str, said: str
) -> None:
    """Names a newcomer brings from requests, urllib or a thread pool had no near name
    here (``destination``, ``callback``, ``proxies``, ``max_workers``)."""
    with pytest.raises(TypeError, match=re.escape(f"argument {word!r}; {said}")):
        omniget.download(URL, tmp_path / "out", **{word: None})
