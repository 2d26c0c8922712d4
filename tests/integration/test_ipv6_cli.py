"""The CLI against servers on the IPv6 loopback (``http://[::1]:PORT/...``), as a user of
curl, wget or aria2 would run it: one file, a split large file, many small files (the
pipelined path over http://, HTTP/2 over https://), the progress and summary lines, the
JSON events, ``list`` and ``--dry-run``. The brackets of the address never reach a file
name. Skipped where ::1 cannot be bound."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.integration._cli import omniget, start
from tests.servers.checks import wait_for
from tests.servers.h2d import H2Server
from tests.servers.httpd import HTTPServer
from tests.servers.tls import TLSFiles

MiB = 1024 * 1024
SMALL = 50


@pytest.fixture(params=["http", "https"])
def server(request: pytest.FixtureRequest) -> HTTPServer:
    """The IPv6 server, plain or over TLS."""
    name = "httpd6" if request.param == "http" else "httpsd6"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


def run(*args: str, tmp_path: Path, ca: Path) -> tuple[int, str, str]:
    done = omniget(*args, "--ca-cert", str(ca), state=tmp_path / "state")
    return done.returncode, done.stdout, done.stderr


def all_names(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def small(i: int) -> bytes:
    return f"small file {i}\n".encode() * (30 + i)


def test_one_file(server: HTTPServer, tmp_path: Path, tls_ca_path: Path,
                  payload: Callable[..., bytes]) -> None:
    data = payload(300_000, 61)
    url = server.add(server.new_path("one.bin"), data)
    assert url.startswith(f"{server.scheme}://[::1]:")
    out = tmp_path / "out"
    code, stdout, stderr = run(url, "-o", str(out), "-v", tmp_path=tmp_path, ca=tls_ca_path)
    assert code == 0, stderr
    assert all_names(out) == ["one.bin"]
    assert (out / "one.bin").read_bytes() == data
    lines = (stdout + stderr).splitlines()
    assert f"start {out}/one.bin (293.0 KiB)" in lines, lines
    assert f"done {out}/one.bin (293.0 KiB, size ok)" in lines, lines
    assert any(line.startswith("1 file ok, 0 skipped, 0 failed, 293.0 KiB in ") for line in lines)
    assert {r.headers["host"] for r in server.requests} == {f"[::1]:{server.port}"}


def test_a_split_file(server: HTTPServer, tmp_path: Path, tls_ca_path: Path,
                      payload: Callable[..., bytes]) -> None:
    data = payload(6 * MiB, 62)
    path = server.new_path("big.bin")
    server.add(path, data)
    url = server.url(path, hold="first", times=1)  # (the first answer waits: others split)
    out = tmp_path / "out"
    proc = start(url, "-o", str(out), "--split", "4", "-q", "--ca-cert", str(tls_ca_path),
                 state=tmp_path / "state")
    try:
        wait_for(lambda: len({r.conn_id for r in server.requests_to(path)
                              if r.header("range")}) >= 2)
    finally:
        server.release("first")
        _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert all_names(out) == ["big.bin"]
    assert (out / "big.bin").read_bytes() == data
    assert {r.headers["host"] for r in server.requests} == {f"[::1]:{server.port}"}


def test_many_small_files(server: HTTPServer, tmp_path: Path, tls_ca_path: Path) -> None:
    urls = [server.add(server.new_path(f"f{i}.txt"), small(i)) for i in range(SMALL)]
    (tmp_path / "list.txt").write_text("\n".join(urls) + "\n")
    out = tmp_path / "out"
    code, _, stderr = run("-i", str(tmp_path / "list.txt"), "-o", str(out), "--debug",
                          tmp_path=tmp_path, ca=tls_ca_path)
    assert code == 0, stderr
    assert all_names(out) == sorted(f"f{i}.txt" for i in range(SMALL))
    assert all((out / f"f{i}.txt").read_bytes() == small(i) for i in range(SMALL))
    assert f"{SMALL} files ok, 0 skipped, 0 failed" in stderr
    if server.scheme == "http":  # (the pool's own connections took most of them)
        assert stderr.count(" (pipelined)") + stderr.count(" (kept connection)") >= SMALL // 2
    assert {r.headers["host"] for r in server.requests} == {f"[::1]:{server.port}"}
    assert len(server.requests) == SMALL


def test_many_small_files_over_http2(tls_files: TLSFiles, tmp_path: Path) -> None:
    from tests.servers.httpd import ipv6_loopback

    if not ipv6_loopback():
        pytest.skip("no IPv6 loopback (::1) here")
    with H2Server(tls_files, host="::1") as h2:
        urls = [h2.add(f"/t{i}.txt", small(i)) for i in range(SMALL)]
        (tmp_path / "list.txt").write_text("\n".join(urls) + "\n")
        out = tmp_path / "out"
        code, _, stderr = run("-i", str(tmp_path / "list.txt"), "-o", str(out), "-q",
                              tmp_path=tmp_path, ca=tls_files.ca_path)
        assert code == 0, stderr
        assert all_names(out) == sorted(f"t{i}.txt" for i in range(SMALL))
        assert all((out / f"t{i}.txt").read_bytes() == small(i) for i in range(SMALL))
        assert sum(r.protocol == "h2" for r in h2.requests) >= SMALL // 2


def test_json_events(server: HTTPServer, tmp_path: Path, tls_ca_path: Path) -> None:
    url = server.add(server.new_path("j.bin"), b"j" * 5000)
    out = tmp_path / "out"
    code, stdout, stderr = run(url, "-o", str(out), "--json", tmp_path=tmp_path, ca=tls_ca_path)
    assert code == 0, stderr
    events = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    kinds = [e["event"] for e in events]
    assert "started" in kinds and "finished" in kinds, kinds
    for e in events:
        if "url" in e:
            assert e["url"] == url
        if "path" in e:
            assert e["path"] == f"{out}/j.bin"
    assert all_names(out) == ["j.bin"]


@pytest.mark.parametrize(("path", "name"), [("/d/l.bin", "l.bin"), ("/", "index.html"),
                                            ("", "index.html")])
def test_list_and_dry_run(server: HTTPServer, tmp_path: Path, tls_ca_path: Path,
                          path: str, name: str) -> None:
    url = f"{server.base_url}{path}"
    code, stdout, stderr = run("list", url, tmp_path=tmp_path, ca=tls_ca_path)
    assert code == 0, stderr
    assert stdout.split("\t")[0] == name and stdout.rstrip("\n").endswith(url), stdout
    out = tmp_path / "out"
    code, stdout, stderr = run("--dry-run", url, "-o", str(out), tmp_path=tmp_path,
                               ca=tls_ca_path)
    assert code == 0, stderr
    assert stdout.startswith(f"{out}/{name}\t"), stdout
    assert "[" not in stdout.split("\t")[0]
    assert not out.exists()
    assert server.requests == []  # (neither asks the server anything)


@pytest.mark.parametrize("entry", ["dual.test:{port}:[::1],127.0.0.1",
                                   "+dual.test:{port}:::1,127.0.0.1"])
def test_resolve_with_an_ipv6_address_and_another(httpd6: HTTPServer, tmp_path: Path,
                                                  tls_ca_path: Path, entry: str) -> None:
    """curl's form: several addresses, an IPv6 one in brackets (or not)."""
    urls = [httpd6.url(httpd6.new_path(f"r{i}.txt"), host="dual.test") for i in range(SMALL)]
    for i, url in enumerate(urls):
        httpd6.add(url.split(str(httpd6.port), 1)[1], small(i))
    (tmp_path / "list.txt").write_text("\n".join(urls) + "\n")
    out = tmp_path / "out"
    code, _, stderr = run("-i", str(tmp_path / "list.txt"), "-o", str(out), "-q",
                          "--resolve", entry.format(port=httpd6.port),
                          tmp_path=tmp_path, ca=tls_ca_path)
    assert code == 0, stderr
    assert all((out / f"r{i}.txt").read_bytes() == small(i) for i in range(SMALL))
    assert {r.headers["host"] for r in httpd6.requests} == {f"dual.test:{httpd6.port}"}



@pytest.mark.parametrize(
    ("host", "said"),
    [("[fe80::1%25nosuchif0]", "no network interface 'nosuchif0'"),
     ("[fe80::1%nosuchif0]", "no network interface 'nosuchif0'"),
     ("[fe80::1%25999999]", "no network interface 999999"),
     ("[::1%25]", "an empty zone id"),
     ("[::1%25lo%25x]", "not a valid URL")],
)
def test_a_zone_id_that_cannot_work_is_refused_at_once(tmp_path: Path, tls_ca_path: Path,
                                                       host: str, said: str) -> None:
    """A link-local address needs its zone (the interface): one that names none would
    leave libcurl to pick an interface of its own and wait for its connect timeout."""
    url = f"http://{host}:8/f.txt"
    for args in ([url, "-o", str(tmp_path / "out")], ["list", url]):
        code, _, stderr = run(*args, tmp_path=tmp_path, ca=tls_ca_path)
        assert code == 2, stderr
        assert len(stderr.splitlines()) == 1 and said in stderr, stderr
    assert not (tmp_path / "out").exists()
