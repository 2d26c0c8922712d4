"""What a whole run prints, against the local server: its ``--json`` events against its
summary, and against the counts line the same run says without ``--json``."""

from __future__ import annotations

import datetime
import json
import re
import ssl
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from tests.servers.httpd import HTTPServer

from omniget.cli import main

pytestmark = pytest.mark.isolated(work=True)

ENDS = ("finished", "failed", "skipped")


def strict(line: str) -> dict[str, Any]:
    """One JSON line, refused if it holds what JSON has not (NaN, Infinity)."""
    def refuse(name: str) -> None:
        raise ValueError(f"not JSON: {name}")

    record = json.loads(line, parse_constant=refuse)
    assert isinstance(record, dict), line
    return record


def a_mix(httpd: HTTPServer, folder: str) -> list[str]:
    """The arguments of a run of every kind of file: fetched whole, after a 503 and after a
    reset (resumed), from a mirror, chunked, named by the server in CJK, not found, left
    out by --exclude, there already, and named as an earlier one."""
    data = bytes(range(256)) * 200
    urls = {name: httpd.add(httpd.new_path(name), data) for name in
            ("plain.bin", "busy.bin", "cut.bin", "chunked.bin", "cd.bin", "same.bin",
             "there.bin", "left.out")}
    gone = httpd.url(httpd.new_path("gone.bin"))
    mirror = httpd.add(httpd.new_path("mirror.bin"), data)
    Path(folder).mkdir()
    Path(folder, "there.bin").write_bytes(b"mine")
    Path(f"{folder}.txt").write_text(f"{httpd.url(httpd.new_path('mirror.bin'))}\t{mirror}\n")
    other = httpd.add(httpd.new_path("same.bin"), data)
    return ["-o", folder, "-i", f"{folder}.txt", "--exclude", "*.out", "--retries", "3",
            urls["plain.bin"], urls["busy.bin"] + "?status=503&times=1",
            urls["cut.bin"] + "?reset=20000&times=1", urls["chunked.bin"] + "?chunked=1",
            urls["cd.bin"] + "?cd=%E6%97%A5%E6%9C%AC.bin", urls["same.bin"], other,
            urls["there.bin"], urls["left.out"], gone]


def test_every_file_of_a_mixed_run_ends_once_and_the_summary_counts_the_events(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--json", *a_mix(httpd, "json")])
    out, err = capsys.readouterr()
    events = [strict(line) for line in out.splitlines()]  # (nothing else on stdout)
    summary = events.pop()
    assert summary["event"] == "summary" and summary["exit_code"] == code == 6, events
    started = Counter(e["url"] for e in events if e["event"] == "started")
    ended = Counter(e["url"] for e in events if e["event"] in ENDS)
    assert set(started) <= set(ended) and set(ended.values()) == {1}, (started, ended)
    assert len(ended) == 11, ended
    assert "json/日本.bin" in {e["path"] for e in events if e["event"] == "finished"}
    kinds = Counter(e["event"] for e in events if e["event"] in ENDS)
    assert (kinds["finished"], kinds["skipped"], kinds["failed"]) == (
        summary["ok"], summary["skipped"], summary["failed"]) == (7, 3, 1), events
    fetched = sum(e["fetched"] for e in events if e["event"] == "finished")
    assert summary["fetched"] == fetched >= 7 * 51200, (summary, fetched)
    assert err.count("omniget: error: ") == 1, err

    # the same run without --json: the same counts, and stderr alone
    assert main(a_mix(httpd, "plain")) == 6
    out, err = capsys.readouterr()
    assert out == ""
    last = err.splitlines()[-1]
    assert re.fullmatch(r"7 files ok, 3 skipped, 1 failed, \d+\.\d KiB in [0-9.]+s "
                        r"\([0-9.]+ [KM]iB/s\)", last), err


def test_quiet_says_only_the_failure_of_a_mixed_run(
    httpd: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """-q: no retry, skip, mirror or counts line; the one failure alone, exit code as
    without it."""
    assert main(["-q", *a_mix(httpd, "quiet")]) == 6
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("omniget: error: ") and err.count("\n") == 1, err
    assert "gone.bin" in err


def a_server_named(tmp_path: Path, common_name: str) -> tuple[ssl.SSLContext, Path]:
    """A TLS server's context whose certificate has ``common_name`` and no other name,
    signed by a CA of its own, and that CA's file (to trust: the name check fails then)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "omniget test CA")])

    def cert(name: x509.Name, public: Any, serial: int) -> x509.CertificateBuilder:
        return (x509.CertificateBuilder().subject_name(name).issuer_name(ca_name)
                .public_key(public).serial_number(serial)
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=1)))

    ca = cert(ca_name, ca_key.public_key(), 1).add_extension(
        x509.BasicConstraints(ca=True, path_length=None), critical=True
    ).sign(ca_key, hashes.SHA256())
    leaf = cert(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]),
                key.public_key(), 2).sign(ca_key, hashes.SHA256())
    pem = serialization.Encoding.PEM
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(pem))
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(pem))
    (tmp_path / "leaf.key").write_bytes(key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    return ctx, tmp_path / "ca.pem"


def test_a_server_s_control_characters_never_reach_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A certificate's name (its common name, quoted by libcurl's error) with an escape
    sequence and a BEL: the error line wrote them as they were, and the terminal took
    them for its own (here red text and a bell; others set its title or clipboard)."""
    ctx, ca = a_server_named(tmp_path, "evil\x1b[31mRED\x07")
    with HTTPServer(tls=ctx) as server:
        url = server.add("/a.bin", b"a" * 100)
        for flags in ([], ["-v"], ["--debug"]):
            assert main([*flags, "--ca-cert", str(ca), "-o", "out", url]) == 3
            err = capsys.readouterr().err
            assert "evil\\x1b[31mRED\\x07" in err, err
            assert not any(c in err for c in "\x1b\x07"), (flags, err)
