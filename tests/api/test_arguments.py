"""Arguments a library caller gets wrong: each fails at once, naming what was wrong, as a
TypeError (the wrong kind of value) or a ValueError (out of range), never deep inside the
engine mid-run, and nothing already downloaded is touched."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import os
import re
import sys
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
        (lambda: omniget.Settings(state_dir=cast(Any, 5)), TypeError,
         "state_dir=...) takes a folder, a str or a Path (or None: the default), not 5"),
        (lambda: omniget.Settings(network=cast(Any, {"proxy": ""})), TypeError,
         "network=...) takes an omniget.NetworkSettings, not {'proxy': ''}"),
        (lambda: _net(connect_timeout=cast(Any, "5")), TypeError,
         "NetworkSettings(connect_timeout=...) takes a number of seconds above 0, not '5'"),
        (lambda: _net(stall_timeout=0), ValueError, "stall_timeout=...)"),
        (lambda: _net(connect_timeout=1e300), ValueError, "at most 2147483647"),
        # (NaN compares False with any bound: a NaN stall time switched the stall check
        # off, a NaN connect time failed the run in libcurl's options, a NaN retry time
        # failed the engine's start)
        (lambda: _net(stall_timeout=float("nan")), ValueError,
         "NetworkSettings(stall_timeout=...) takes a number of seconds above 0 and at most "
         "2147483647, not nan"),
        (lambda: _net(connect_timeout=float("nan")), ValueError, "connect_timeout=...)"),
        (lambda: omniget.Settings(retry_max_time=float("nan")), ValueError,
         "Settings(retry_max_time=...) takes a number of seconds of at least 0, not nan"),
        (lambda: omniget.Settings(retry_max_wait=float("nan")), ValueError,
         "retry_max_wait=...)"),
        (lambda: _net(user_agent=cast(Any, None)), TypeError,
         "user_agent=...) takes a str, not None"),
        (lambda: _net(proxy=cast(Any, 3128)), TypeError,
         "proxy=...) takes a str or None, not 3128"),
        (lambda: _net(ca_cert=cast(Any, 5)), TypeError,
         "ca_cert=...) takes a file's name, a str or a Path (or None), not 5"),
        (lambda: _net(cookies_file=cast(Any, _BytesPath())), TypeError,
         "cookies_file=...) takes a file's name, a str or a Path (or None), not <bytes path>"),
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


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: _net(user_agent="my\x00agent"), "user_agent"),
        (lambda: _net(user="me:pass\x00word"), "user"),
        (lambda: _net(user_origin="http://h\x00/"), "user_origin"),
        (lambda: _net(proxy="http://p\x00:3128"), "proxy"),
        (lambda: _net(headers=(("X-A", "a\x00b"),)), "headers"),
        (lambda: _net(headers=(("X-\x00A", "1"),)), "headers"),
        (lambda: _net(resolve=("h\x00:80:127.0.0.1",)), "resolve"),
        (lambda: _net(ca_cert="ca\x00.pem"), "ca_cert"),
        (lambda: _net(cookies_file=Path("c\x00.txt")), "cookies_file"),
        (lambda: _net(netrc_file="n\x00rc"), "netrc_file"),
        (lambda: omniget.Settings(state_dir="st\x00ate"), "state_dir"),
    ],
)
def test_a_nul_byte_in_a_setting_s_text_fails_when_made(
    make: Callable[[], object], name: str
) -> None:
    """A NUL in a setting's text passed, and the download raised "ValueError: embedded
    null byte" from libcurl or the file system, naming no setting."""
    with pytest.raises(ValueError, match=re.escape(f"({name}=...)")) as err:
        make()
    assert "NUL" in str(err.value) and "\x00" not in str(err.value)


@pytest.mark.parametrize("dest", ["", "out\x00put", Path("out\x00put")])
def test_a_dest_that_names_no_folder_is_refused_before_any_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dest: str | Path
) -> None:
    """``dest=""`` wrote into the current folder (the command refuses ``-o ''``), and a
    NUL in it raised "ValueError: embedded null byte" from the file system."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=re.escape("omniget.download(): dest ")):
        omniget.download("http://127.0.0.1:9/a.bin", dest)
    with pytest.raises(ValueError, match=re.escape("omniget.adownload(): dest ")):
        asyncio.run(omniget.adownload("http://127.0.0.1:9/a.bin", dest))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("agent", ["x\r\nEvil: 1", "x\nEvil: 1", "x\rEvil"])
def test_a_user_agent_with_a_line_break_fails_when_made(agent: str) -> None:
    """``NetworkSettings(user_agent="x\\r\\nEvil: 1")`` sent a header of its own, Evil,
    with every request (a header's value with a line break is refused)."""
    with pytest.raises(ValueError, match=re.escape("NetworkSettings(user_agent=...) takes")):
        _net(user_agent=agent)


def test_an_empty_state_dir_is_refused_when_made(tmp_path: Path) -> None:
    """``Settings(state_dir="")`` kept the resume journal in the current folder (the
    command refuses ``--state-dir ""``); "." names that folder, None the default."""
    with pytest.raises(ValueError, match=re.escape("Settings(state_dir=...) takes a folder")):
        omniget.Settings(state_dir="")
    assert omniget.Settings(state_dir=".").state_dir == Path(".")


def test_settings_in_range_are_kept_as_given() -> None:
    s = omniget.Settings(
        split=None, limit_rate=0, retries=0, checkpoint_seconds=0.0, fsync_seconds=1e9,
        retry_max_wait=30, state_dir=Path("st"),
        network=omniget.NetworkSettings(connect_timeout=5, headers=cast(Any, [("X-A", "1")]),
                                        resolve=cast(Any, ["h:80:127.0.0.1"]), max_redirects=0),
    )
    assert (s.limit_rate, s.retry_max_wait, s.network.connect_timeout) == (0, 30, 5)
    assert s.network.headers == (("X-A", "1"),) and s.network.resolve == ("h:80:127.0.0.1",)


class _BytesPath(os.PathLike[bytes]):
    """A path whose name is bytes (``os.fspath`` gives bytes): not a str's."""

    def __fspath__(self) -> bytes:
        return b"cookies.txt"

    def __repr__(self) -> str:
        return "<bytes path>"


def test_files_of_the_network_settings_take_a_path_and_keep_a_str(tmp_path: Path) -> None:
    """``NetworkSettings(cookies_file=Path(...))`` (``ca_cert=``, ``netrc_file=``) was a
    TypeError ("takes a str or None"), while ``Settings(state_dir=)`` takes a Path: each
    takes one now (mypy --strict too: this module has no cast for it), kept as the str,
    so the settings made either way are equal, and what reads them gets a str."""
    given = omniget.NetworkSettings(
        cookies_file=tmp_path / "c.txt", ca_cert=tmp_path / "ca.pem", netrc_file=tmp_path / "n"
    )
    read: tuple[str | None, ...] = (given.cookies_file, given.ca_cert, given.netrc_file)
    assert read == (str(tmp_path / "c.txt"), str(tmp_path / "ca.pem"), str(tmp_path / "n"))
    assert all(type(v) is str for v in read)
    as_str = omniget.NetworkSettings(cookies_file=str(tmp_path / "c.txt"),
                                     ca_cert=str(tmp_path / "ca.pem"),
                                     netrc_file=str(tmp_path / "n"))
    assert given == as_str and hash(given) == hash(as_str) and repr(given) == repr(as_str)
    again = dataclasses.replace(as_str, ca_cert=Path("other.pem"), netrc_file=None)
    assert (again.ca_cert, again.netrc_file) == ("other.pem", None)
    assert omniget.NetworkSettings().ca_cert is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        given.ca_cert = "x"  # type: ignore[misc]


def test_a_state_dir_given_as_a_str_is_read_back_as_a_path() -> None:
    """``Settings(state_dir="st")`` was taken (its error says "a str or a Path") and kept
    as the str, while the field says Path: ``settings.state_dir / "x"`` failed."""
    s = omniget.Settings(state_dir=cast(Any, "st"))
    assert isinstance(s.state_dir, Path) and s.state_dir / "x" == Path("st/x")
    assert s == omniget.Settings(state_dir=Path("st"))


URL = "http://127.0.0.1:9/a.bin"  # (nothing listens there: no call below gets that far)


def _run(call: Callable[..., object]) -> Callable[..., object]:
    """``call`` as download, or as adownload run to its end."""
    if call is omniget.adownload:
        return lambda *a, **kw: asyncio.run(omniget.adownload(*a, **kw))
    return call


@pytest.mark.parametrize("call", [omniget.download, omniget.adownload])
@pytest.mark.parametrize(
    ("args", "kw", "error", "said"),
    [
        ((None,), {}, TypeError,
         "(): takes a URL, an Item or an iterable of them, not None"),
        ((5,), {}, TypeError, "(): takes a URL, an Item or an iterable of them, not 5"),
        ((Path("a.bin"),), {}, TypeError,
         "(): takes a URL, an Item or an iterable of them, not PosixPath('a.bin')"),
        ((URL, None), {}, TypeError, "(): dest is a folder, a str or a Path, not None"),
        ((URL, b"out"), {}, TypeError, "(): dest is a folder, a str or a Path, not b'out'"),
        ((URL, 5), {}, TypeError, "(): dest is a folder, a str or a Path, not 5"),
        ((URL,), {"settings": {"jobs": 1}}, TypeError,
         "(): settings= takes an omniget.Settings, not {'jobs': 1}"),
        ((URL,), {"on_event": 5}, TypeError,
         "(): on_event= takes a function of one event, not 5"),
        ((URL,), {"only": True}, TypeError,
         "(): only= takes a function of an Item, not True"),
        ((URL,), {"source": "htp"}, omniget.UsageError, "unknown source 'htp' (known: http)"),
    ],
)
def test_download_arguments_of_the_wrong_kind_fail_before_anything_is_written(
    tmp_path: Path, call: Callable[..., object], args: tuple[Any, ...], kw: dict[str, Any],
    error: type[Exception], said: str
) -> None:
    """Each failed mid-run (``'NoneType' object is not iterable``, ``expected str, bytes
    or os.PathLike object``, ``'dict' object has no attribute 'retries'``), or not at all:
    on_event=5 was logged as a failing handler, source="htp" failed each URL in turn."""
    (tmp_path / "a.bin.omniget-part").write_bytes(b"kept")
    if len(args) == 1:
        args = (*args, tmp_path)
    with pytest.raises(error, match=re.escape(said)) as err:
        _run(call)(*args, **{"settings": _settings(tmp_path), **kw})
    assert str(err.value).startswith(f"omniget.{call.__name__}(): ") or error is not TypeError
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin.omniget-part"]
    assert (tmp_path / "a.bin.omniget-part").read_bytes() == b"kept"


@pytest.mark.parametrize("call", [omniget.download, omniget.adownload])
@pytest.mark.parametrize(
    ("entries", "kw", "said"),
    [
        ([URL, 5], {}, "(): a URL is a str, not int: 5"),
        ([omniget.Item(URL, size_bytes=cast(Any, "6"))], {},
         "(): Item(size_bytes=...) takes a whole number"),
        ([URL], {"cancel": 5}, "(): cancel= takes a threading.Event or an asyncio.Event, "
         "not 5"),
    ],
)
def test_a_bad_entry_or_cancel_is_named_by_the_call_given_it(
    tmp_path: Path, call: Callable[..., object], entries: list[Any], kw: dict[str, Any],
    said: str
) -> None:
    """adownload's said "omniget.download():", the name of the sync form that wraps it;
    a cancel= of the wrong kind named no call at all."""
    with pytest.raises(TypeError, match=re.escape(said)) as err:
        _run(call)(entries, tmp_path / "out", settings=_settings(tmp_path), **kw)
    assert str(err.value).startswith(f"omniget.{call.__name__}(): ")


def _settings(tmp_path: Path) -> omniget.Settings:
    return omniget.Settings(state_dir=tmp_path / "state", retries=0)


@pytest.mark.parametrize(
    ("out", "said"),
    [
        ("out.bin", "omniget.stream(): out is a binary file open for writing (open(name, 'wb'), "
         "sys.stdout.buffer), not 'out.bin'"),
        (io.StringIO(), "omniget.stream(): out is a binary file open for writing"),
        (sys.stdout, "omniget.stream(): out is a binary file open for writing"),
    ],
)
def test_stream_into_no_binary_file_fails_before_any_request(out: object, said: str) -> None:
    """A text file failed once the first bytes came (``write() argument must be str, not
    bytes``), a name with ``'str' object has no attribute 'write'``."""
    with pytest.raises(TypeError, match=re.escape(said)):
        omniget.stream(URL, cast(Any, out))


def test_stream_into_a_closed_file_fails_before_any_request(tmp_path: Path) -> None:
    """A file closed by its ``with`` block before the call failed after the request, with
    a bare ``ValueError: write to closed file`` from inside the engine."""
    with open(tmp_path / "out.bin", "wb") as out:
        pass
    with pytest.raises(ValueError, match=re.escape(
            "omniget.stream(): out is closed (open it again, or call stream inside its "
            "with block)")):
        omniget.stream(URL, out)


def test_extract_refuses_settings_that_are_no_settings() -> None:
    with pytest.raises(TypeError, match=re.escape(
            "omniget.extract(): settings= takes an omniget.Settings, not {'jobs': 1}")):
        omniget.extract(URL, settings=cast(Any, {"jobs": 1}))


def test_help_of_download_says_how_to_stop_resume_and_read_the_report() -> None:
    """``help(omniget.download)`` said nothing of Ctrl+C, of resuming, of what raises and
    what is only reported, of a notebook's running loop, or where the options go."""
    doc = " ".join((omniget.download.__doc__ or "").split())
    for said in ("KeyboardInterrupt", "the same call again resumes", "report.failures",
                 "A file that fails does not raise", "RuntimeError", "await adownload",
                 "omniget.Settings", "Progress", "keep it quick"):
        assert said in doc
    adoc = " ".join((omniget.adownload.__doc__ or "").split())
    assert "task.cancel()" in adoc and "CancelledError" in adoc and "resumes" in adoc
    edoc = " ".join((omniget.extract.__doc__ or "").split())
    assert "no request until the first ``next()``" in edoc and "aextract" in edoc


@pytest.mark.parametrize(
    ("kw", "said"),
    [
        ({"size_bytes": "6"}, "Item(size_bytes=...) takes a whole number of at least 0 "
         "(or None: not known), not '6'"),
        ({"size_bytes": 6.0}, "Item(size_bytes=...) takes a whole number"),
        ({"size_bytes": -1}, "Item(size_bytes=...) takes a whole number"),
        ({"filename": 5}, "Item(filename=...) takes a str, not 5"),
        ({"path": Path("x/y.txt")}, "Item(path=...) takes a str or None, not PosixPath('x/y.txt')"),
        ({"collection_name": 5}, "Item(collection_name=...) takes a str or None, not 5"),
        ({"digest": "sha256=" + "0" * 64}, "Item(digest=...) takes an omniget.Digest "
         "(Digest.parse('sha256=HEX')), not"),
        ({"modified": "2020"}, "Item(modified=...) takes a Unix time (or None), not '2020'"),
        ({"headers": {"X-A": 1}}, "Item(headers=...) takes a mapping of strs to strs, "
         "not {'X-A': 1}"),
        ({"mirrors": "http://127.0.0.1:9/m"}, "Item(mirrors=...) takes a tuple of URLs"),
    ],
)
@pytest.mark.parametrize("call", ["download", "stream"])
def test_an_item_made_by_hand_with_a_field_of_the_wrong_kind_is_named(
    tmp_path: Path, call: str, kw: dict[str, Any], said: str
) -> None:
    """They failed deep in the engine: ``'>' not supported between instances of 'str'
    and 'int'`` (size_bytes), an AssertionError (a negative size), ``'str' object has no
    attribute 'algo'`` (digest), ``'str' object cannot be interpreted as an integer`` once
    the file was fetched (modified)."""
    item = omniget.Item(URL, **kw)
    with pytest.raises(TypeError if kw.get("size_bytes") != -1 else ValueError,
                       match=re.escape(said)):
        if call == "stream":
            omniget.stream(item, io.BytesIO())
        else:
            omniget.download([item], tmp_path / "out", settings=_settings(tmp_path))
    assert list(tmp_path.glob("out/*")) == []


@pytest.mark.parametrize("field", ["modified", "expires"])
@pytest.mark.parametrize("when", [float("nan"), float("inf"), -float("inf")])
def test_an_item_s_time_that_is_no_time_is_refused_before_any_request(
    tmp_path: Path, field: str, when: float
) -> None:
    """``modified=float("nan")`` downloaded the file, then raised "ValueError: Invalid
    value NaN" out of the run as its time was set (the other files abandoned)."""
    item = omniget.Item("http://127.0.0.1:9/a.bin", **cast(Any, {field: when}))
    with pytest.raises(ValueError, match=re.escape(f"Item({field}=...) takes a Unix time")):
        omniget.download(item, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_item_of_a_url_that_is_no_str_is_named_when_made() -> None:
    """``Item(Path("x"))`` said ``argument of type 'PosixPath' is not iterable``."""
    with pytest.raises(TypeError, match=re.escape(
            "Item(download_url=...) takes a str, not PosixPath('x')")):
        omniget.Item(cast(Any, Path("x")))


@pytest.mark.parametrize("field", ["headers", "meta"])
@pytest.mark.parametrize("value", [None, 5, "X-A: 1"])
def test_an_item_whose_headers_or_meta_is_no_mapping_is_named_when_made(
    field: str, value: object
) -> None:
    """``Item(url, headers=None)`` said ``'NoneType' object is not iterable``, and
    ``headers="X-A: 1"`` ``dictionary update sequence element #0 has length 1; 2 is
    required``, from inside the Item."""
    with pytest.raises(TypeError, match=re.escape(
            f"Item({field}=...) takes a mapping (a dict), not {value!r}")):
        omniget.Item(URL, **{field: cast(Any, value)})


async def _async_handler(event: object) -> None:
    """What a caller of adownload writes, thinking its handler is awaited."""


@pytest.mark.parametrize("call", ["download", "adownload", "stream"])
def test_an_async_function_as_a_handler_is_refused(tmp_path: Path, call: str) -> None:
    """It was called and never awaited: no event reached it, and each call warned
    ``coroutine '...' was never awaited`` from inside the engine."""
    said = (f"omniget.{call}(): on_event= is called, not awaited: give a plain function "
            "(it may hand the event to a queue or a task), not the async function "
            "_async_handler")
    with pytest.raises(TypeError, match=re.escape(said)):
        if call == "stream":
            omniget.stream(URL, io.BytesIO(), on_event=cast(Any, _async_handler))
        else:
            _run(getattr(omniget, call))(URL, tmp_path, settings=_settings(tmp_path),
                                         on_event=_async_handler)
    with pytest.raises(TypeError, match=re.escape("only= is called, not awaited")):
        omniget.download(URL, tmp_path, only=cast(Any, _async_handler))


class _AsyncHandler:
    """A handler written as a class, its ``__call__`` async."""

    async def __call__(self, event: object) -> None:
        pass


def test_an_object_whose_call_is_async_is_refused_as_a_handler(tmp_path: Path) -> None:
    """It was taken, called, and never awaited: no event reached it (as with an async
    function, which is refused)."""
    with pytest.raises(TypeError, match=re.escape(
            "omniget.download(): on_event= is called, not awaited: give a plain function "
            "(it may hand the event to a queue or a task), not the async function "
            "_AsyncHandler")):
        omniget.download(URL, tmp_path, on_event=cast(Any, _AsyncHandler()))
    assert list(tmp_path.iterdir()) == []


def test_a_handler_that_cannot_take_one_event_is_refused(tmp_path: Path) -> None:
    """A progress hook written as urllib's or tqdm's (``done, total``) failed at the first
    event: logged once, then no event reached it for the rest of the run."""
    def hook(done: int, total: int) -> None:
        pass

    with pytest.raises(TypeError, match=re.escape(
            "omniget.download(): on_event= is called with one event; hook takes "
            "(done, total)")):
        omniget.download(URL, tmp_path, on_event=cast(Any, hook))
    with pytest.raises(TypeError, match=re.escape("only= is called with an Item; hook takes")):
        omniget.download(URL, tmp_path, only=cast(Any, hook))
    assert list(tmp_path.iterdir()) == []
    said: list[object] = []
    omniget.download([], tmp_path, on_event=said.append)  # (one argument: fine)
    omniget.download([], tmp_path, on_event=print, only=lambda item, *more: True)


@pytest.mark.parametrize("call", [omniget.download, omniget.adownload])
def test_a_checksum_in_settings_is_refused_for_a_list_of_many(
    tmp_path: Path, call: Callable[..., object]
) -> None:
    """Settings(checksum=...) is one file's digest (the command refuses --checksum with
    more than one URL): given a list, every other file was fetched three times and failed
    with a sha256 mismatch."""
    settings = omniget.Settings(state_dir=tmp_path / "state",
                                checksum=omniget.Digest.parse("sha256=" + "0" * 64))
    with pytest.raises(ValueError, match=re.escape(
            f"omniget.{call.__name__}(): settings.checksum is one file's digest, and the list "
            "has 2 entries (give each Item its digest=)")):
        _run(call)([URL, URL + "2"], tmp_path / "out", settings=settings)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kw", "error", "said"),
    [
        ({"headers": {"X-Token": "t"}, "secret_headers": "X-Token"}, TypeError,
         "Item(secret_headers=...) takes a tuple of header names (strs), not 'X-Token'"),
        ({"secret_headers": ("X-Token", 5)}, TypeError,
         "Item(secret_headers=...) takes a tuple of header names (strs)"),
        ({"expires": "tomorrow"}, TypeError,
         "Item(expires=...) takes a Unix time (or None), not 'tomorrow'"),
        ({"kind": "folder"}, ValueError,
         "Item(kind=...) takes one of 'file', 'dir', 'link', not 'folder'"),
        ({"expect": "video"}, ValueError,
         "Item(expect=...) takes one of 'any', 'media', not 'video'"),
        ({"pieces": omniget.Piece(URL)}, TypeError,
         "Item(pieces=...) takes a tuple of omniget.Piece, not Piece"),
        ({"pieces": (URL,)}, TypeError,
         f"Item(pieces=...) takes a tuple of omniget.Piece, not ({URL!r},)"),
        ({"pieces": (omniget.Piece(URL, range=cast(Any, (0, 5))),)}, TypeError,
         "Item(pieces=...): piece 0: range takes an omniget.ByteRange (or None), not (0, 5)"),
        ({"pieces": (omniget.Piece(URL), omniget.Piece(URL, size=cast(Any, "5")))}, TypeError,
         "Item(pieces=...): piece 1: size takes a whole number of at least 0 (or None), "
         "not '5'"),
        ({"pieces": (omniget.Piece(URL, offset=-5),)}, ValueError,
         "Item(pieces=...): piece 0: offset takes a whole number of at least 0 (or None), "
         "not -5"),
        ({"pieces": (omniget.Piece(URL, digest=cast(Any, "sha256=00")),)}, TypeError,
         "Item(pieces=...): piece 0: digest takes an omniget.Digest (or None), not "
         "'sha256=00'"),
        ({"pieces": (omniget.Piece(URL, transform=cast(Any, "gzip")),)}, ValueError,
         "Item(pieces=...): piece 0: transform takes an omniget.Transform ('identity', "
         "'zlib'), not 'gzip'"),
        ({"pieces": (omniget.Piece(cast(Any, 5)),)}, TypeError,
         "Item(pieces=...): piece 0: url takes a str, not 5"),
    ],
)
@pytest.mark.parametrize("call", ["download", "stream"])
def test_an_item_made_by_hand_with_a_wrong_field_is_refused_before_any_request(
    tmp_path: Path, call: str, kw: dict[str, Any], error: type[Exception], said: str
) -> None:
    """secret_headers="X-Token" (one name, not a tuple of them) was read as the names "X",
    "-", "T", ...: the header it meant to keep at its origin went along a redirect to
    another one. expires="tomorrow" failed mid-run, deep in the engine: ``unsupported
    operand type(s) for -: 'str' and 'float'``. kind="folder" made a link, refused as
    one ("link a.bin ->  points outside the output folder"); expect="video" was taken as
    "any". A piece of the wrong kind failed inside the engine (``'str' object has no
    attribute 'offset'``, ``'Piece' object is not iterable``, ``'str' object has no
    attribute 'algo'``), an offset below 0 mid-write ("Invalid argument"), and a
    transform="gzip" was taken as identity."""
    item = omniget.Item(URL, **kw)
    with pytest.raises(error, match=re.escape(said)):
        if call == "stream":
            omniget.stream(item, io.BytesIO())
        else:
            omniget.download([item], tmp_path / "out", settings=_settings(tmp_path))
    assert list(tmp_path.glob("out/*")) == []


@pytest.mark.parametrize("call", ["download", "adownload", "stream"])
@pytest.mark.parametrize(
    ("tables", "said"),
    [
        ([("http", {})], "source_options= takes a mapping of source names to their options "
         "(a dict), not [('http', {})]"),
        ("http", "source_options= takes a mapping of source names to their options (a dict), "
         "not 'http'"),
        ({5: {}}, "source_options= takes a mapping of source names to their options (a "
         "dict), not {5: {}}"),
    ],
)
def test_source_options_that_are_no_mapping_of_names_are_named(
    tmp_path: Path, call: str, tables: object, said: str
) -> None:
    """A list of pairs said ``'list' object has no attribute 'items'``, a table named 5
    ``'int' object has no attribute 'lower'``, from inside the check of them."""
    with pytest.raises(TypeError, match=re.escape(f"omniget.{call}(): {said}")):
        if call == "stream":
            omniget.stream(URL, io.BytesIO(), source_options=cast(Any, tables))
        else:
            _run(getattr(omniget, call))(URL, tmp_path / "out", settings=_settings(tmp_path),
                                         source_options=tables)
    assert not (tmp_path / "out").exists()


def test_load_settings_takes_a_config_file_s_name_as_a_str(tmp_path: Path) -> None:
    """``load_settings(config="omniget.toml")`` said ``'str' object has no attribute
    'read_bytes'``: only a Path was read."""
    (tmp_path / "omniget.toml").write_text("connections = 3\n", encoding="utf-8")
    for config in (str(tmp_path / "omniget.toml"), tmp_path / "omniget.toml"):
        settings, _ = omniget.load_settings(config=config, environ={})
        assert settings.connections_per_host == 3


@pytest.mark.parametrize(
    ("kw", "said"),
    [
        ({"config": 5}, "omniget.load_settings(): config= is a file's name, a str or a Path "
         "(or None: the default file), not 5"),
        ({"environ": [("OMNIGET_JOBS", "2")]}, "omniget.load_settings(): environ= takes a "
         "mapping of strs (os.environ, a dict), not [('OMNIGET_JOBS', '2')]"),
        ({"flags": ["connections"]}, "omniget.load_settings(): flags= takes a mapping of the "
         "command's option names to values (a dict), not ['connections']"),
    ],
)
def test_load_settings_arguments_of_the_wrong_kind_are_named(
    kw: dict[str, Any], said: str
) -> None:
    """Each said ``'list' object has no attribute 'items'`` (or ``'get'``, ``'read_bytes'``)
    from inside the command's configuration."""
    with pytest.raises(TypeError, match=re.escape(said)):
        omniget.load_settings(**{"environ": {}, **kw})


@pytest.mark.parametrize(
    ("kw", "said"),
    [
        ({"settings": {"retries": 1}}, "omniget.Engine(): settings= takes an omniget.Settings, "
         "not {'retries': 1}"),
        ({"on_event": 5}, "omniget.Engine(): on_event= takes a function of one event, not 5"),
        ({"on_event": _async_handler}, "omniget.Engine(): on_event= is called, not awaited"),
    ],
)
def test_an_engine_made_with_an_argument_of_the_wrong_kind_says_so(
    kw: dict[str, Any], said: str
) -> None:
    """The README's ``omniget.engine.Engine(settings)``: a dict said ``'dict' object has no
    attribute 'retries'`` from inside it; a handler that was no function, or an async
    one, was logged as failing (or never awaited) at each run's first event."""
    with pytest.raises(TypeError, match=re.escape(said)):
        omniget.Engine(**kw)


def test_an_engine_s_stream_given_a_url_says_it_takes_an_item() -> None:
    """The README's ``engine.stream(item, write)`` given a URL said ``'str' object has no
    attribute 'expires'``, from inside the engine (its ``run`` says what to do)."""
    async def main() -> None:
        eng = omniget.Engine(omniget.Settings(), journal=False)
        try:
            with pytest.raises(TypeError, match=re.escape(
                    "Engine.stream() writes an Item, not a URL (a str: "
                    f"{URL!r}); give a URL to omniget.stream")):
                await eng.stream(cast(Any, URL), io.BytesIO().write)
        finally:
            await eng.aclose()

    asyncio.run(main())


def test_adownload_given_an_engine_of_the_wrong_kind_says_so(tmp_path: Path) -> None:
    """``engine="x"`` said ``'str' object has no attribute 'settings'``."""
    with pytest.raises(TypeError, match=re.escape(
            "omniget.adownload(): engine= takes an omniget.Engine, not 'x'")):
        asyncio.run(omniget.adownload(URL, tmp_path, engine=cast(Any, "x")))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("algo", "hexv", "said"),
    [
        ("sha256", hashlib.sha256(b"x").digest(), "Digest(hex=...) takes the hex digits as a "
         "str (hashlib's hexdigest(), not digest()), not bytes"),
        ("sha256", 5, "Digest(hex=...) takes the hex digits as a str (hashlib's hexdigest(), "
         "not digest()), not int"),
        (None, "ab", "Digest(algo=...) takes a hash's name as a str ('sha256'), not None"),
    ],
)
def test_a_digest_of_the_wrong_kind_is_named_when_made(
    algo: object, hexv: object, said: str
) -> None:
    """``Digest("sha256", h.digest())`` (the bytes, not their hex) said ``cannot use a
    string pattern on a bytes-like object``; a number or None ``... has no attribute
    'lower'``."""
    with pytest.raises(TypeError, match=re.escape(said)):
        omniget.Digest(cast(Any, algo), cast(Any, hexv))


@pytest.mark.parametrize(
    ("start", "end", "said"),
    [
        ("0", 5, "ByteRange(start=...) takes a whole number of at least 0, not '0'"),
        (1.5, None, "ByteRange(start=...) takes a whole number of at least 0, not 1.5"),
        (0, "5", "ByteRange(end=...) takes a whole number (or None: to the end), not '5'"),
    ],
)
def test_a_byte_range_of_the_wrong_kind_is_named_when_made(
    start: object, end: object, said: str
) -> None:
    """``ByteRange("0", 5)`` said ``'<' not supported between instances of 'str' and
    'int'``; ``ByteRange(1.5)`` was taken, and asked for as ``Range: bytes=1.5-``."""
    with pytest.raises(TypeError, match=re.escape(said)):
        omniget.ByteRange(cast(Any, start), cast(Any, end))


@pytest.mark.parametrize("call", [omniget.download, omniget.adownload])
@pytest.mark.parametrize("path", ["/a\udcffb.bin", "/a.bin?q=\udce9"])
def test_a_url_of_lone_surrogates_fails_its_file_by_name_before_any_request(
    httpd: Any, tmp_path: Path, call: Callable[..., object], path: str
) -> None:
    """A URL made of undecodable bytes (``os.fsdecode``) raised UnicodeEncodeError out of
    the run, from libcurl's URL as it was percent-encoded."""
    url = httpd.url("") + path  # (url() percent-encodes its path)
    report = cast(omniget.Report, _run(call)(url, tmp_path / "out",
                                             settings=_settings(tmp_path)))
    [failure] = report.failures
    assert isinstance(failure.error, omniget.UsageError)
    assert str(failure.error).startswith(f"not a valid URL: {url!r}")
    assert "\\udc" in str(failure.error) and not any(0xD800 <= ord(c) < 0xE000
                                                       for c in str(failure.error))
    assert httpd.requests == []
