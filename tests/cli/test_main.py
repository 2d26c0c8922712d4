"""main() in-process with the public API monkeypatched: exit codes, output modes, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

import omniget
import omniget.listing
from omniget.cli import main
from omniget.engine.events import Failed, Finished, Progress, Started
from omniget.engine.report import FileResult, Report, Status
from omniget.errors import (
    AuthRequired,
    Cancelled,
    IntegrityError,
    NotFound,
    OmnigetError,
    Refused,
    StorageError,
    TransientError,
    UnsupportedURL,
    UsageError,
)
from omniget.model import Item
from omniget.sources import find_source

URL = "https://example.com/files/a.bin"
MiB = 1024 * 1024


pytestmark = pytest.mark.isolated


class FakeAPI:
    """Stands in for omniget.download / extract and the CLI's stream and records the calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.downloads: list[dict[str, Any]] = []
        self.extracts: list[tuple[str, dict[str, Any]]] = []
        self.streamed: list[Item] = []
        self.behaviour: Callable[[list[Any], dict[str, Any]], Report] = lambda items, kw: Report()
        self.items: dict[str, list[Item]] = {}
        self.extract_error: OmnigetError | None = None
        monkeypatch.setattr(omniget, "download", self.download)
        monkeypatch.setattr(omniget, "extract", self.extract)
        monkeypatch.setattr(omniget, "stream", self.stream)
        monkeypatch.setattr(omniget.listing, "extract_each", self.extract_each)

    def download(self, items: Iterable[Any], dest: Any = ".", **kw: Any) -> Report:
        got = list(items)
        failed: list[FileResult] = []
        only = kw.get("only")
        if only is not None:  # as the real one: the items behind each URL, filtered
            found: list[Item] = []
            for entry in got:
                try:
                    found += [entry] if isinstance(entry, Item) else self.extract(entry)
                except OmnigetError as e:
                    failed.append(FileResult(Item(download_url=entry), None, "failed", error=e))
            got = [item for item in found if only(item)]
        self.downloads.append({"items": got, "dest": dest, **kw})
        report = self.behaviour(got, kw)
        report.results.extend(failed)
        return report

    def extract(self, url: str, **kw: Any) -> Iterable[Item]:
        self.extracts.append((url, kw))
        if self.extract_error is not None:
            raise self.extract_error
        return iter(self.items.get(url, [Item(download_url=url)]))

    def extract_each(
        self, entries: Iterable[str | Item], *, source: str | None, settings: Any,
        source_options: dict[str, dict[str, object]],
    ) -> Iterator[tuple[str | Item, Item | OmnigetError]]:
        """As the CLI's extraction of a list: each URL through omniget.extract (above)."""
        for entry in entries:
            if isinstance(entry, Item):
                yield entry, entry
                continue
            try:
                opts = source_options.get(find_source(entry, source).name, {})
                found = list(omniget.extract(entry, source=source, settings=settings, **opts))
            except OmnigetError as e:
                yield entry, e
                continue
            for item in found:
                yield entry, item

    def stream(self, item: Item, out: Any, *, settings: Any, on_event: Any) -> int:
        self.streamed.append(item)
        out.write(b"streamed bytes")
        return 14


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> FakeAPI:
    return FakeAPI(monkeypatch)


def raising(error: BaseException) -> Callable[[list[Any], dict[str, Any]], Report]:
    def behaviour(items: list[Any], kw: dict[str, Any]) -> Report:
        raise error

    return behaviour


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (UsageError("bad"), 2),
        (UnsupportedURL("no source for it"), 2),
        (NotFound("gone"), 6),
        (AuthRequired("login needed"), 5),
        (IntegrityError("md5 mismatch"), 4),
        (StorageError("disk full"), 7),
        (Refused("DRM"), 8),
        (TransientError("timed out"), 3),
        (OmnigetError("odd"), 1),
    ],
)
def test_error_exit_codes(
    api: FakeAPI, capsys: pytest.CaptureFixture[str], error: OmnigetError, code: int
) -> None:
    api.behaviour = raising(error)
    assert main([URL]) == code
    err = capsys.readouterr().err
    assert err == f"omniget: error: {error}\n"


def test_keyboard_interrupt(api: FakeAPI, capsys: pytest.CaptureFixture[str]) -> None:
    api.behaviour = raising(KeyboardInterrupt())
    assert main([URL]) == 130
    err = capsys.readouterr().err
    assert err == "omniget: error: interrupted; run the same command again to resume\n"


def test_interrupted_list_promises_no_resume(
    api: FakeAPI, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def stop(url: str, **kw: Any) -> Iterable[Item]:
        raise KeyboardInterrupt

    monkeypatch.setattr(omniget, "extract", stop)
    assert main(["list", URL]) == 130
    assert capsys.readouterr().err == "omniget: error: interrupted\n"  # (nothing to resume)


def test_unexpected_exception_no_traceback(
    api: FakeAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    api.behaviour = raising(RuntimeError("boom"))
    assert main([URL]) == 1
    err = capsys.readouterr().err
    assert err == (
        "omniget: error: internal error: RuntimeError: boom (run with --debug for the traceback)\n"
    )
    assert main(["--debug", URL]) == 1
    assert "Traceback" in capsys.readouterr().err


def report_of(*results: tuple[str, OmnigetError | None]) -> Report:
    rs = []
    for name, error in results:
        item = Item(download_url=f"https://example.com/{name}")
        status: Status = "failed" if error else "ok"
        rs.append(FileResult(item, Path.cwd() / name, status, size=MiB, fetched=MiB, error=error))
    return Report(results=rs, elapsed=1.0)


def test_report_failures_give_first_code_and_lines(
    api: FakeAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    api.behaviour = lambda items, kw: report_of(
        ("ok.bin", None), ("x.bin", IntegrityError("sha256 mismatch")), ("y.bin", NotFound("404"))
    )
    assert main([URL]) == 4
    err = capsys.readouterr().err.splitlines()
    assert "omniget: error: x.bin: sha256 mismatch" in err
    assert "omniget: error: y.bin: 404" in err
    assert err[-1] == "1 file ok, 0 skipped, 2 failed, 3.0 MiB in 1.0s (3.0 MiB/s)"


def test_a_failure_line_names_its_file_unless_its_message_does(
    api: FakeAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    """Was: ``omniget: error: it already exists and its sha256 does not match`` for a file
    named ``s`` (the name was taken as said, being in a word of the message)."""
    api.behaviour = lambda items, kw: report_of(
        ("s", IntegrityError("it already exists and its sha256 does not match")),
        ("t.bin", IntegrityError("sha256 mismatch for t.bin: expected a, got b")),
        ("u.bin", NotFound("not found (HTTP 404 from https://example.com/u.bin)")),
    )
    assert main([URL]) == 4
    err = capsys.readouterr().err.splitlines()
    assert err[:3] == [
        "omniget: error: s: it already exists and its sha256 does not match",
        "omniget: error: sha256 mismatch for t.bin: expected a, got b",
        "omniget: error: not found (HTTP 404 from https://example.com/u.bin)",
    ], err


def test_cancelled_report_is_130(api: FakeAPI, capsys: pytest.CaptureFixture[str]) -> None:
    api.behaviour = lambda items, kw: report_of(("a.bin", Cancelled("cancelled")))
    assert main([URL]) == 130
    err = capsys.readouterr().err
    assert "interrupted; run the same command again to resume" in err
    assert "a.bin: cancelled" not in err


@pytest.mark.parametrize("stopped", [False, True], ids=["all-done", "list-cut"])
def test_a_stop_once_every_file_was_done_is_no_interruption(
    api: FakeAPI, capsys: pytest.CaptureFixture[str], stopped: bool
) -> None:
    """Ctrl+C while the last file was being checked or renamed: it still ended, and so did
    the run (before: exit 130 and "run the same command again to resume", nothing to
    resume). A run stopped before the end of its list is interrupted whatever its files."""

    def behaviour(items: list[Any], kw: dict[str, Any]) -> Report:
        kw["cancel"].set()  # (as the signal handler does)
        report = report_of(("a.bin", None))
        report.stopped = stopped
        return report

    api.behaviour = behaviour
    assert main([URL]) == (130 if stopped else 0)
    err = capsys.readouterr().err
    assert ("interrupted; run the same command again to resume" in err) == stopped


def test_download_gets_settings_dest_and_options(
    api: FakeAPI, capsys: pytest.CaptureFixture[str], tmp_path: Path, site_source: type[object]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text('retries = 1\n[site]\ntoken = "tok-in-config"\n')
    assert main(["--config", str(config), "-o", "out", "-N", "2", "--source", "http", URL]) == 0
    call = api.downloads[0]
    assert call["items"] == [URL]
    assert call["dest"] == Path("out")
    assert call["settings"].connections_per_host == 2
    assert call["settings"].retries == 1
    assert call["source"] == "http"
    assert call["source_options"] == {"site": {"token": "tok-in-config"}}
    assert isinstance(call["cancel"], threading.Event)
    assert callable(call["on_event"])
    assert "0 files ok" in capsys.readouterr().err


def quit_process(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """The process end of a second signal, recorded (it returns here); and a wait for it
    (the signal thread's, as the run goes on)."""
    from omniget.cli import signals

    exits: list[int] = []
    monkeypatch.setattr(signals, "end_process", exits.append)

    def ended() -> None:
        for _ in range(3000):
            if exits:
                break
            threading.Event().wait(0.01)
        assert exits == [130]

    return ended


def test_signals_set_cancel_then_quit(api: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    before = signal.getsignal(signal.SIGINT)
    seen: dict[str, Any] = {}
    ended = quit_process(monkeypatch)

    def behaviour(items: list[Any], kw: dict[str, Any]) -> Report:
        handler = signal.getsignal(signal.SIGINT)
        assert callable(handler)
        handler(signal.SIGINT, None)
        seen["cancelled"] = kw["cancel"].is_set()
        handler(signal.SIGINT, None)  # (raises nothing: the signal thread ends the process)
        ended()
        return Report(stopped=True)  # (as the engine's: cancelled before its list ended)

    api.behaviour = behaviour
    assert main(["-q", URL]) == 130
    assert seen == {"cancelled": True}
    assert signal.getsignal(signal.SIGINT) is before


class _Bars:
    """A display whose taking down gets a Ctrl+C (typed again, or as the run ended)."""

    def __init__(self) -> None:
        self.down = False

    def __call__(self, event: object) -> None:
        pass

    def __enter__(self) -> _Bars:
        return self

    def __exit__(self, *exc: object) -> None:
        handler = signal.getsignal(signal.SIGINT)
        assert callable(handler)
        handler(signal.SIGINT, None)
        self.down = True

    def quit_with(self, text: str | Callable[[], str], then: Callable[[], object]) -> None:
        sys.stderr.write(text if isinstance(text, str) else text())
        then()


@pytest.mark.parametrize("stopped", [True, False], ids=["ctrl-c-thrice", "as-the-run-ended"])
def test_a_signal_as_the_run_ends_cuts_short_neither_the_display_nor_its_last_lines(
    api: FakeAPI, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    stopped: bool,
) -> None:
    """A third Ctrl+C, or one once the download was over, came as the bars were erased:
    the handler was Python's own again there (or raised again), and its KeyboardInterrupt
    left the run's bar on the screen. (After a second one the signal thread has the last
    word: its exit returns here.)"""
    bars = _Bars()
    monkeypatch.setattr("omniget.cli.commands.make_progress", lambda *a, **kw: bars)
    before = signal.getsignal(signal.SIGINT)
    ended = quit_process(monkeypatch)

    def behaviour(items: list[Any], kw: dict[str, Any]) -> Report:
        if stopped:
            handler = signal.getsignal(signal.SIGINT)
            assert callable(handler)
            handler(signal.SIGINT, None)
            handler(signal.SIGINT, None)  # (its thread has the last word: the process ends)
            ended()
        return Report(results=[FileResult(items[0], Path("a.bin"), "ok", size=1)])

    api.behaviour = behaviour
    assert main([URL]) == (130 if stopped else 0)
    assert bars.down and signal.getsignal(signal.SIGINT) is before
    last = capsys.readouterr().err.splitlines()[-1]
    if stopped:
        assert last == "omniget: error: interrupted; run the same command again to resume"
    else:
        assert last.startswith("1 file ok, "), last


def test_json_events_on_stdout(api: FakeAPI, capsys: pytest.CaptureFixture[str]) -> None:
    item = Item(download_url="https://user:pw1234@example.com/a.bin")

    def behaviour(items: list[Any], kw: dict[str, Any]) -> Report:
        on_event = kw["on_event"]
        on_event(Started(item, None, size=4, resumed=0))
        on_event(Progress(item, None, done=2, size=4))
        on_event(Finished(item, Path("a.bin"), size=4, verified="size", fetched=4))
        on_event(Failed(item, None, error=AuthRequired("token tok-secret-1 refused")))
        return Report(results=[FileResult(item, Path("a.bin"), "ok", size=4, fetched=4)])

    api.behaviour = behaviour
    main(["--json", "-H", "X-Api-Key: tok-secret-1", URL])
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert [d["event"] for d in lines] == ["started", "progress", "finished", "failed", "summary"]
    assert lines[2]["path"] == "a.bin" and lines[2]["size"] == 4
    assert "pw1234" not in out and "tok-secret-1" not in out
    assert lines[-1]["ok"] == 1
    assert "files ok" not in err


def test_quiet_success_prints_nothing(api: FakeAPI, capsys: pytest.CaptureFixture[str]) -> None:
    api.behaviour = lambda items, kw: report_of(("ok.bin", None))
    assert main(["-q", URL]) == 0
    assert capsys.readouterr() == ("", "")


def test_plain_progress_and_summary(api: FakeAPI, capsys: pytest.CaptureFixture[str]) -> None:
    def behaviour(items: list[Any], kw: dict[str, Any]) -> Report:
        item = Item(download_url=URL)
        kw["on_event"](Finished(item, Path.cwd() / "a.bin", size=MiB, verified=None, fetched=MiB))
        return report_of(("a.bin", None))

    api.behaviour = behaviour
    summary = "1 file ok, 0 skipped, 0 failed, 1.0 MiB in 1.0s (1.0 MiB/s)"
    assert main([URL]) == 0
    # (lines per file: -v; a run of one file says where it went)
    assert capsys.readouterr().err.splitlines() == ["saved a.bin", summary]
    assert main(["-v", URL]) == 0
    assert capsys.readouterr().err.splitlines() == ["done a.bin (1.0 MiB)", summary]


def test_secrets_never_printed(api: FakeAPI, capsys: pytest.CaptureFixture[str]) -> None:
    api.behaviour = raising(AuthRequired("login refused for https://bob:hunter22@example.com/"))
    argv = ["--user", "bob:hunter22", "-H", "Authorization: Bearer abc123xyz", "-v", URL]
    assert main(argv) == 5
    out, err = capsys.readouterr()
    assert "hunter22" not in out + err
    assert main(["--user", "bob:hunter22", "--limit-rate", "5Q", URL]) == 2
    assert main(["-H", "Cookie: sid=abc123xyz", "--nope", URL]) == 2
    out, err = capsys.readouterr()
    assert "hunter22" not in err and "abc123xyz" not in err


def test_insecure_warns(api: FakeAPI, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "--insecure", URL]) == 0
    err = capsys.readouterr().err
    assert err == "omniget: warning: TLS certificates are not verified (--insecure)\n"
    assert api.downloads[0]["settings"].network.insecure is True


def test_config_error_exits_2(api: FakeAPI, capsys: pytest.CaptureFixture[str],
                              tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("speed = 3\n")
    assert main(["--config", str(config), URL]) == 2
    err = capsys.readouterr().err
    assert str(config) in err and "'speed'" in err and err.count("\n") == 1
    assert api.downloads == []


@pytest.mark.parametrize("setting", ["file", "env"])
def test_a_source_option_no_source_takes_exits_2(
    api: FakeAPI, capsys: pytest.CaptureFixture[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, setting: str,
) -> None:
    """Was: ``[http] foo = 1`` or OMNIGET_HTTP_FOO=1 accepted, and silently unused."""
    args = ["list", URL]
    if setting == "file":
        (tmp_path / "c.toml").write_text("[http]\nfoo = 1\n")
        args = ["--config", str(tmp_path / "c.toml"), *args]
    else:
        monkeypatch.setenv("OMNIGET_HTTP_FOO", "1")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown option 'foo' (the http source takes: none)" in err
    assert api.extracts == []


def test_include_exclude_filter_items(api: FakeAPI, capsys: pytest.CaptureFixture[str]) -> None:
    album = "https://example.com/album"
    api.items[album] = [
        Item(download_url=f"https://cdn.example.com/{n}", collection_name="al")
        for n in ("a.jpg", "b.mp4", "c.mp4", "skip.mp4")
    ]
    assert main(["--include", "*.mp4", "--exclude", "skip.*", album]) == 0
    got = [i.output_path for i in api.downloads[0]["items"]]
    assert got == ["al/b.mp4", "al/c.mp4"]
    assert "2 skipped" in capsys.readouterr().err  # the filtered ones


def test_extraction_failure_is_reported_and_others_go_on(
    api: FakeAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    api.extract_error = NotFound("album removed")
    assert main(["--exclude", "*.txt", "https://example.com/gone"]) == 6
    err = capsys.readouterr().err
    assert "omniget: error: https://example.com/gone: album removed" in err
    assert api.downloads[0]["items"] == []


def test_output_file(api: FakeAPI, tmp_path: Path) -> None:
    assert main(["-q", "-O", "sub/named.bin", URL]) == 0
    call = api.downloads[0]
    assert call["dest"] == Path("sub")
    (item,) = call["items"]
    assert item.output_path == "named.bin" and item.download_url == URL


def test_output_file_needs_one_item(api: FakeAPI, capsys: pytest.CaptureFixture[str]) -> None:
    api.items[URL] = [Item(download_url=URL + "1"), Item(download_url=URL + "2")]
    assert main(["-O", "x.bin", URL]) == 2
    assert "gives several" in capsys.readouterr().err


def test_output_to_stdout(api: FakeAPI, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-O", "-", URL]) == 0
    out, err = capsys.readouterr()
    assert out == "streamed bytes"
    assert api.streamed[0].download_url == URL
    assert api.downloads == [] and err == ""


def test_dry_run(api: FakeAPI, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    api.items[URL] = [Item(download_url=URL, size_bytes=MiB, collection_name="set")]
    assert main(["--dry-run", "-o", "dl", URL]) == 0
    out, err = capsys.readouterr()
    assert out == f"{Path('dl/set/a.bin')}\t1.0 MiB\t{URL}\n"
    assert err == "1 file, 1.0 MiB would be written to dl\n"
    assert api.downloads == [] and not (tmp_path / "dl").exists()


def test_list_json_and_plain(api: FakeAPI, capsys: pytest.CaptureFixture[str]) -> None:
    api.items[URL] = [Item(download_url=URL, size_bytes=5, headers={"Cookie": "sid=zz9"})]
    assert main(["list", "--json", URL]) == 0
    line, summary = capsys.readouterr().out.splitlines()
    assert json.loads(summary) == {"event": "summary", "items": 1, "skipped": 0, "failed": 0,
                                   "exit_code": 0}
    d = json.loads(line)
    assert d["download_url"] == URL and d["size_bytes"] == 5 and d["headers"] == {"Cookie": "***"}
    assert main(["list", URL]) == 0
    assert capsys.readouterr().out == f"a.bin\t5\thttp\t{URL}\n"
    assert api.downloads == []


def test_list_passes_source_options(
    api: FakeAPI, monkeypatch: pytest.MonkeyPatch, site_source: type[object]
) -> None:
    monkeypatch.setenv("OMNIGET_SITE_MAX_PAGES", "2")
    assert main(["list", "https://site.test/a", URL]) == 0
    (url, kw), (url2, kw2) = api.extracts
    assert url == "https://site.test/a" and kw["max_pages"] == "2" and kw["source"] is None
    assert url2 == URL and "max_pages" not in kw2  # (the http source's table is empty)


def test_list_failure(api: FakeAPI, capsys: pytest.CaptureFixture[str]) -> None:
    api.extract_error = AuthRequired("needs a token")
    assert main(["list", URL]) == 5
    assert capsys.readouterr().err == f"omniget: error: {URL}: needs a token\n"


def test_python_dash_m_version() -> None:
    src = Path(omniget.__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(src)}
    done = subprocess.run([sys.executable, "-m", "omniget", "--version"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0
    assert done.stdout.strip() == f"omniget {omniget.__version__}"


def test_the_command_sets_its_garbage_collector_for_long_runs() -> None:
    """The console script (not the library) freezes what start-up made and widens the
    young generation (see ``cli._tune_gc``)."""
    code = (
        "import gc, sys\n"
        "from omniget import cli\n"
        "gc.disable()\n"  # (as the command does while the CLI loads: on again for the run)
        "cli.main = lambda: print(gc.get_threshold()[0], gc.get_freeze_count() > 0,"
        " gc.isenabled()) or 3\n"
        "cli.run()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.split()) == (3, ["50000", "True", "True"]), done.stderr
    import gc

    assert gc.get_threshold()[0] != 50_000  # (this process only imported omniget)


def test_the_command_loads_the_cli_without_a_collection() -> None:
    """The console script's run (``omniget.__main__``) loads the CLI's modules, the types
    of ``import omniget`` among them, with the collector off (each collection there walked
    what they had made so far, all of which lives to the end); the command then runs as
    before."""
    code = (
        "import gc, os, sys\n"
        "def seen(phase, info):\n"
        "    cli = sys.modules.get('omniget.cli')\n"
        "    if phase == 'start' and 'omniget.model' in sys.modules and not hasattr(cli, 'main'):\n"
        "        os.write(2, b'collected while loading\\n')\n"
        "gc.callbacks.append(seen)\n"
        "from omniget.__main__ import run\n"
        "sys.argv = ['omniget', '--version']\n"
        "run()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"omniget {omniget.__version__}"
    assert "collected while loading" not in done.stderr


_EARLY_TERM = """
import os, signal, sys
import omniget.__main__ as command
SIGNAL = getattr(signal, sys.argv[2])
if sys.argv[1] == "imports":  # (as the command's modules load)
    later = command._asyncio_without_its_tls
    def load() -> None:
        os.kill(os.getpid(), SIGNAL)
        later()
    command._asyncio_without_its_tls = load
else:  # (as its arguments are read)
    import omniget.cli as cli
    parse = cli.parse_args
    def parse_args(argv):
        os.kill(os.getpid(), SIGNAL)
        return parse(argv)
    cli.parse_args = parse_args
sys.argv[1:] = ["http://127.0.0.1:9/a.bin"]
command.run()
"""


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])
@pytest.mark.parametrize("when", ["imports", "arguments"])
def test_a_sigterm_during_start_up_exits_130_as_later(
    tmp_path: Path, when: str, name: str
) -> None:
    """Before the run's handlers were set, SIGTERM killed the process (143) with no
    word, and so did SIGHUP (129); once set, they exit 130: the same code whenever they
    come."""
    proc = subprocess.run([sys.executable, "-c", _EARLY_TERM, when, name], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 130, (proc.returncode, proc.stderr)
    assert proc.stderr == "omniget: error: interrupted\n" and proc.stdout == ""
    assert list(tmp_path.iterdir()) == []
