"""What ``omniget`` does at import: as little as a run needs (every class, method and
module made there is paid by every start)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.servers.httpd import HTTPServer

from omniget.engine import events
from omniget.model import Item


def _item() -> Item:
    return Item(download_url="http://h/a", filename="a")


@pytest.mark.parametrize("name", events.__all__)
def test_events_have_no_generated_comparison_or_freezing(name: str) -> None:
    cls = getattr(events, name)
    if not isinstance(cls, type):
        return  # (EventHandler: a type alias)
    assert dataclasses.is_dataclass(cls)
    generated = {"__eq__", "__hash__", "__setattr__", "__delattr__"} & set(cls.__dict__)
    assert not generated


def test_no_event_or_record_has_a_repr_or_eq_compiled_for_it() -> None:
    # (dataclasses compiles each __repr__ and __eq__ it writes from source, for each class
    # at every start: those of the events and records made at every start are closures)
    from omniget._frozen import compared_dataclass, plain_dataclass
    from omniget.cli.args import Command
    from omniget.cli.config import Config
    from omniget.cli.options import Option
    from omniget.cli.progress import _Seen
    from omniget.cli.tally import Tracked
    from omniget.engine.context import RunContext
    from omniget.engine.journal.records import FileRecord
    from omniget.engine.report import Report
    from omniget.engine.splitter import Span
    from omniget.engine.transports.base import Head
    from omniget.sources.base import SourceContext

    closure = plain_dataclass(type("Made", (), {"__annotations__": {"a": "int"}})).__repr__
    classes = [getattr(events, n) for n in events.__all__ if isinstance(getattr(events, n), type)]
    classes += [Command, Config, Option, _Seen, Tracked, RunContext, Span, Head]
    for cls in classes:
        assert cls.__repr__.__code__ is closure.__code__, cls
    compared = compared_dataclass(type("Made", (), {"__annotations__": {"a": "int"}})).__eq__
    for cls in (Report, FileRecord, SourceContext):  # (and their __eq__; Report: its own repr)
        assert cls.__eq__.__code__ is compared.__code__, cls
        assert cls.__repr__.__code__ is closure.__code__ or "__repr__" in vars(cls)


def test_events_are_occurrences_compared_by_identity() -> None:
    item = _item()
    a = events.Skipped(item, None, reason="exists")
    b = events.Skipped(item, None, reason="exists")
    assert a == a and a != b
    assert len({a, b}) == 2
    assert repr(a).startswith("Skipped(item=Item(")  # (still shown by its fields)


# Records which patterns omniget's own modules compile while the modules a download uses
# are imported.
_RECORD_COMPILES = """
import re, sys
seen = []
compile = re.compile
def recording(pattern, flags=0):
    caller = sys._getframe(1).f_globals.get("__name__", "")
    if caller.startswith("omniget"):
        seen.append(caller)
    return compile(pattern, flags)
re.compile = recording
import omniget.cli, omniget.api, omniget.listing
import omniget.engine.plain, omniget.engine.transports.http
print(" ".join(sorted(seen)))
"""


def test_import_compiles_only_the_patterns_every_file_needs() -> None:
    # Compiling a pattern at import costs every start (one, IGNORECASE with \w, ~10 M
    # instructions): those most runs never use are compiled by re when first used.
    out = subprocess.run(
        [sys.executable, "-c", _RECORD_COMPILES], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["omniget.engine.names"]  # (safe_relpath's plain names: every file)


# Lists the dataclasses of omniget's modules once the modules a download uses are imported.
_RECORD_DATACLASSES = """
import dataclasses, sys
import omniget.cli, omniget.api, omniget.listing, omniget.sources.http
import omniget.engine.plain, omniget.engine.transports.http
made = {
    name
    for module in list(sys.modules.values())
    if module.__name__.startswith("omniget")
    for name, value in vars(module).items()
    if isinstance(value, type) and dataclasses.is_dataclass(value)
    and value.__module__ == module.__name__
}
print(" ".join(sorted(made)))
"""


def test_import_makes_no_dataclass_a_plain_download_never_uses() -> None:
    # Making a dataclass costs every start ~1-2 M instructions (its methods are compiled
    # from source): those only --dry-run, pieces, a source's own requests, a file left
    # unsynced by a power loss, or credentials use are made when first used.
    made = subprocess.run(
        [sys.executable, "-c", _RECORD_DATACLASSES], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "Item" in made  # (the recording sees them)
    assert not {"ChunkSource", "Creds", "DryRun", "Mark", "Response"} & set(made)


_LOADED = """
import sys
import omniget.cli
code = omniget.cli.main(sys.argv[1:])
heavy = ("asyncio", "pycurl", "sqlite3", "omniget.api", "omniget.engine.core")
print(code, *sorted(m for m in sys.modules if m in heavy))
"""


# A plain download, run as the console script runs it: which of the modules only some runs
# need it loaded.
_DOWNLOADED = """
import sys
import omniget.cli
code = omniget.cli.main(sys.argv[1:])
lazy = ("hashlib", "random")
print(code, *sorted(m for m in sys.modules if m in lazy))
"""


def test_a_plain_download_loads_no_module_only_some_runs_need(
    httpd: HTTPServer, tmp_path: Path
) -> None:
    # (hashlib and OpenSSL's hashes: ~5.6 M instructions of every start, for a digest that
    # a plain download of a server that sends none never computes)
    url = httpd.add(httpd.new_path("a.bin"), b"x" * 5000)
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    argv = [url, "-o", str(tmp_path / "out"), "-q", "--state-dir", str(tmp_path / "state")]
    out = subprocess.run(
        [sys.executable, "-c", _DOWNLOADED, *argv],
        capture_output=True, text=True, check=True, env=env, timeout=120,
    ).stdout.split()
    assert out == ["0"]
    assert (tmp_path / "out" / "a.bin").read_bytes() == b"x" * 5000


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["get", "--help"]])
def test_help_and_version_load_no_engine(argv: list[str]) -> None:
    # (the engine, asyncio, pycurl and SQLite cost ~90 M instructions of a ~330 M start)
    out = subprocess.run(
        [sys.executable, "-c", _LOADED, *argv], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[-1] == "0"


def test_package_names_are_imported_when_first_used() -> None:
    code = (
        "import sys, omniget\n"
        "print('omniget.api' in sys.modules, 'asyncio' in sys.modules)\n"
        "from omniget import download, Engine, Item\n"
        "from omniget.engine import Report\n"
        "print(download.__module__, Engine.__module__, Item.__module__, Report.__module__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == [
        "False False", "omniget.api omniget.engine.core omniget.model omniget.engine.report"
    ]


def test_every_public_name_resolves() -> None:
    import omniget
    import omniget.engine

    for module in (omniget, omniget.engine):
        for name in module.__all__:
            assert getattr(module, name) is not None
            assert name in dir(module)
        with pytest.raises(AttributeError, match="no attribute 'nothing'"):
            module.nothing  # noqa: B018
    assert omniget.download is omniget.api.download
    assert omniget.Engine is omniget.engine.core.Engine


def test_subpackages_are_still_attributes_of_the_package() -> None:
    # (documented: ``adownload(..., engine=omniget.engine.Engine(settings))``)
    code = (
        "import omniget\n"
        "print(omniget.engine.Engine.__name__, omniget.api.download is omniget.download,"
        " omniget.sources.find_source.__name__)\n"
        "import omniget.engine.transports.base as light\n"  # (loads no engine yet)
        "print(omniget.engine.events.Started.__name__, omniget.engine.job.__name__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["Engine", "True", "find_source", "Started", "omniget.engine.job"]


@pytest.mark.parametrize(
    "module",
    ["job", "existing", "resume", "finish", "plain", "pieces", "piecesink", "stream", "core"],
)
def test_the_modules_of_a_file_job_import_in_any_order(module: str) -> None:
    # (job.py and the modules its FileJob is cut into import one another: whichever one
    # a program imports first, none finds another half made)
    subprocess.run([sys.executable, "-c", f"import omniget.engine.{module}"], check=True)


def _internal_classes() -> list[type]:
    from omniget.cli.args import Command
    from omniget.cli.config import Config, Option
    from omniget.cli.progress import _Seen
    from omniget.cli.tally import Tracked
    from omniget.engine.context import RunContext
    from omniget.engine.pieces import ChunkSource
    from omniget.engine.transports.base import Head
    from omniget.engine.transports.outgoing import Ask

    return [Command, Config, Option, _Seen, Tracked, ChunkSource, RunContext, Head, Ask]


@pytest.mark.parametrize("cls", _internal_classes(), ids=lambda c: c.__name__)
def test_internal_records_have_no_comparison_or_freezing(cls: type) -> None:
    # Nothing compares these run-internal records, nor would assign to a field it should
    # not: the methods that would do either are compiled at every start for nothing.
    assert dataclasses.is_dataclass(cls)
    assert not {"__eq__", "__hash__", "__setattr__", "__delattr__"} & set(cls.__dict__)


def test_a_source_imports_response_from_the_sources_base_as_before() -> None:
    import omniget.sources.base as base
    from omniget.sources.base import Response
    from omniget.sources.response import Response as loaded

    assert Response is loaded and "Response" in base.__all__
    assert Response(200, "http://h/a", {}, b'{"a": 1}').json() == {"a": 1}
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        base.Nothing  # noqa: B018


def test_a_download_s_arguments_are_parsed_without_asking_the_terminal_per_option() -> None:
    # (argparse's help formatter, made for every option added, asks shutil for the
    # terminal's width each time; importing shutil loads its archive modules: ~5 M
    # instructions of every start, for help that a download never prints)
    code = (
        "import sys\n"
        "from omniget.cli.args import parse_args\n"
        "parse_args(['-q', '-o', 'd', 'http://h/x'])\n"
        "print('shutil' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False"]


def test_a_download_s_arguments_are_parsed_without_laying_out_the_usage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # (argparse's intermixed parsing lays out the whole usage first, for error messages
    # that ArgumentParser.error never shows: ~2.5 M instructions of every start)
    import argparse

    from omniget.cli.args import build_parser, parse_args

    def laid_out(self: argparse.ArgumentParser) -> str:
        raise AssertionError("the usage was laid out")

    parser = build_parser("get")
    monkeypatch.setattr(argparse.ArgumentParser, "format_usage", laid_out)
    ns = parse_args(["-q", "-o", "d", "http://h/x", "--retries", "2"])
    assert (ns.urls, ns.output, ns.retries) == (["http://h/x"], "d", 2)
    assert parser.usage is None


@pytest.mark.parametrize("argv", [["get", "-h"], ["-qh", "x"], ["x", "--help"], ["get", "-vh"]])
def test_a_get_s_help_still_shows_its_usage_whole(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from omniget.cli.args import parse_args

    with pytest.raises(SystemExit) as done:
        parse_args(argv)
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: omniget get ") and "[URL ...]" in out.split("\n\n")[0]


@pytest.mark.parametrize("columns", [60, 200])
def test_help_is_laid_out_for_the_terminal_s_width(columns: int) -> None:
    code = "from omniget.cli.args import build_parser\nprint(build_parser('get').format_help())\n"
    env = {**os.environ, "COLUMNS": str(columns)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout.splitlines()
    widest = max(len(line) for line in out if "[" not in line)  # (usage lines never wrap)
    assert min(columns - 20, 80) < widest <= columns - 2


# The console script's own start (omniget.__main__.run), then which modules the run loaded.
_AS_THE_COMMAND = """
import os, sys
import omniget.cli
ends = []
def ended(code):
    ends.append(code)
    print(code, "ssl" in sys.modules, flush=True)
    raise SystemExit(0)
os._exit = ended
from omniget.__main__ import run
run()
"""


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_the_command_downloads_without_python_s_tls_module(
    httpd: HTTPServer, httpsd: HTTPServer, tls_ca_path: Path, tmp_path: Path, tls: bool
) -> None:
    # (asyncio's ``import ssl``: ~20 M instructions of every start, for TLS that libcurl
    # does; the command loads asyncio without it)
    server = httpsd if tls else httpd
    url = server.add(server.new_path("a.bin"), b"x" * 5000)
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    argv = [url, "-o", str(tmp_path / "out"), "-q", "--state-dir", str(tmp_path / "state"),
            "--ca-cert", str(tls_ca_path)]
    out = subprocess.run(
        [sys.executable, "-c", _AS_THE_COMMAND, *argv],
        capture_output=True, text=True, check=True, env=env, timeout=120,
    ).stdout.split()
    assert out == ["0", "False"]
    assert (tmp_path / "out" / "a.bin").read_bytes() == b"x" * 5000


def test_a_program_that_imports_omniget_keeps_asyncio_s_tls() -> None:
    code = (
        "import omniget.api, asyncio.sslproto, asyncio.base_events\n"
        "print(asyncio.sslproto.ssl is not None, asyncio.base_events.ssl is not None)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["True", "True"]


def test_the_default_ca_places_are_those_ssl_names(monkeypatch: pytest.MonkeyPatch) -> None:
    import ssl

    from omniget.engine.transports.trust import _openssl_defaults

    paths = ssl.get_default_verify_paths()
    for var in (paths.openssl_cafile_env, paths.openssl_capath_env):
        monkeypatch.delenv(var, raising=False)
    assert _openssl_defaults() == (paths.openssl_cafile, paths.openssl_capath)
    monkeypatch.setenv(paths.openssl_cafile_env, "/nowhere/ca.pem")
    monkeypatch.setenv(paths.openssl_capath_env, "/nowhere/certs")
    assert _openssl_defaults() == ("/nowhere/ca.pem", "/nowhere/certs")


# A plugin source that makes its own TLS connection with asyncio (aiohttp and httpx do):
# it reports the error type of a handshake that cannot finish (nothing answers it).
_TLS_PLUGIN = '''
import asyncio, socket, ssl
from omniget.errors import UsageError
from omniget.sources.base import Source


class TlsSource(Source):
    name = "tlsplug"
    patterns = (r"^tlsplug:",)

    async def items(self):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        try:
            await asyncio.open_connection(
                "127.0.0.1", listener.getsockname()[1], ssl=ssl.create_default_context(),
                server_hostname="localhost", ssl_handshake_timeout=0.1,
            )
            why = "connected"
        except Exception as exc:
            why = type(exc).__name__
        finally:
            listener.close()
        raise UsageError(f"tlsplug: {why}")
        yield
'''


def test_a_plugin_source_has_asyncio_s_tls_in_the_command(tmp_path: Path) -> None:
    """The command loads asyncio without ssl (start-up time): a plugin's own asyncio TLS
    connection failed there with 'stdlib ssl module not available', and only there."""
    (tmp_path / "tlsplug.py").write_text(_TLS_PLUGIN)
    info = tmp_path / "tlsplug-1.0.dist-info"
    info.mkdir()
    (info / "entry_points.txt").write_text("[omniget.sources]\ntls = tlsplug:TlsSource\n")
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "PYTHONPATH": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-c", "from omniget.__main__ import run; run()", "tlsplug:x",
         "-o", str(tmp_path / "out"), "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert "tlsplug: " in run.stderr, run.stderr
    assert "tlsplug: RuntimeError" not in run.stderr
