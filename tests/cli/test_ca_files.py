"""A CA file that is not there: ``--ca-cert``, or ``CURL_CA_BUNDLE``, ``SSL_CERT_FILE``
naming something missing, a folder, or a file with no certificate in it; a ``--ca-cert``
folder whose names OpenSSL cannot look up (not hashed). A run that needs TLS stops with
one error before any transfer; a run of http:// URLs only is not touched by a stale
variable (curl ignores them there too).
A missing ``SSL_CERT_DIR`` folder adds nothing, as in curl, and stops nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from tests.servers.httpd import HTTPServer

from omniget import download
from omniget.cli import main
from omniget.errors import UsageError
from omniget.settings import NetworkSettings, Settings

VARIABLES = ("CURL_CA_BUNDLE", "SSL_CERT_FILE")
DATA = b"0123456789" * 100


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in [v for v in os.environ if v.startswith("OMNIGET_")]:
        monkeypatch.delenv(var)
    for var in (*VARIABLES, "SSL_CERT_DIR", "http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")


def served(server: HTTPServer, count: int = 3) -> list[str]:
    return [server.add(server.new_path(f"f{n}.bin"), DATA) for n in range(count)]


def said(name: str, missing: Path) -> str:
    return (f"omniget: error: {name}={missing}: no such file (it names the CA certificates"
            f" to trust for https://; fix or unset it)\n")


@pytest.mark.parametrize("name", VARIABLES)
def test_a_missing_ca_file_in_the_environment_is_one_error_before_any_transfer(
    httpsd: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], name: str,
) -> None:
    """Before: each file failed on its own (exit 3), "could not load CA certificates for
    URL: error adding trust anchors from file"."""
    missing = tmp_path / "gone" / "ca.pem"
    monkeypatch.setenv(name, str(missing))
    assert main(["-q", *served(httpsd), "-o", "out"]) == 2
    assert capsys.readouterr().err == said(name, missing)
    assert not Path("out").exists()


@pytest.mark.parametrize("name", VARIABLES)
def test_a_stale_variable_does_not_touch_a_run_of_http_urls(
    httpd: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], name: str,
) -> None:
    monkeypatch.setenv(name, str(tmp_path / "gone.pem"))
    assert main(["-q", *served(httpd), "-o", "out"]) == 0
    assert capsys.readouterr().err == ""
    assert sorted(os.listdir("out")) == ["f0.bin", "f1.bin", "f2.bin"]


def test_the_variable_is_not_needed_with_ca_cert_or_insecure(
    httpsd: HTTPServer, tls_ca_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As curl: --cacert (or -k) and the variables are not read."""
    monkeypatch.setenv("CURL_CA_BUNDLE", str(tmp_path / "gone.pem"))
    urls = served(httpsd, 1)
    assert main(["-q", *urls, "-o", "a", "--ca-cert", str(tls_ca_path)]) == 0
    assert main(["-q", *urls, "-o", "b", "--insecure"]) == 0


def test_a_missing_ca_cert_is_one_usage_error(
    httpsd: HTTPServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "gone.pem"
    assert main(["-q", *served(httpsd), "-o", "out", "--ca-cert", str(missing)]) == 2
    assert capsys.readouterr().err == (
        f"omniget: error: --ca-cert {missing}: no such file or folder\n")


@pytest.mark.parametrize("kind", ["key", "empty", "device"])
def test_a_ca_cert_with_no_certificate_is_one_usage_error(
    httpsd: HTTPServer, httpd: HTTPServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    kind: str,
) -> None:
    """A private key given for the CA file (or an empty file): before, every https://
    file failed with "could not load CA certificates" (exit 3), then a summary; /dev/null
    was "no such file or folder". A run of http:// URLs does not read the file, as curl
    does not."""
    given = Path("/dev/null") if kind == "device" else tmp_path / f"{kind}.pem"
    if kind == "key":
        given.write_text("-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBg==\n"
                         "-----END PRIVATE KEY-----\n")
    elif kind == "empty":
        given.write_bytes(b"")
    urls = served(httpsd)
    assert main(["--ca-cert", str(given), "-o", "out", *urls]) == 2
    why = ("not a file or folder" if kind == "device"
           else "no certificate in it (a PEM file of CA certificates is wanted)")
    assert capsys.readouterr().err == f"omniget: error: --ca-cert {given}: {why}\n"
    assert httpsd.requests == []
    if kind != "device":
        assert main(["-q", "--ca-cert", str(given), "-o", "out", *served(httpd, 1)]) == 0


@pytest.mark.parametrize("name", VARIABLES)
def test_a_redirect_to_https_says_which_variable(
    httpd: HTTPServer, httpsd: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], name: str,
) -> None:
    """A run of http:// URLs that meets https:// later (a redirect) fails that file, with
    the same words (before: libcurl's)."""
    missing = tmp_path / "gone"
    monkeypatch.setenv(name, str(missing))
    [there] = served(httpsd, 1)
    plain = served(httpd, 1)
    moved = httpd.url("/moved", redirect=there)
    assert main(["-q", *plain, moved, "-o", "out"]) == 2
    err = capsys.readouterr().err
    assert err == said(name, missing).replace("error: ", "error: out/moved: ", 1)
    assert os.listdir("out") == ["f0.bin"]


def test_the_library_raises_it_before_any_transfer(
    httpsd: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "gone.pem"))
    with pytest.raises(UsageError, match=r"^SSL_CERT_FILE=.*gone\.pem: no such file"):
        download(served(httpsd), tmp_path / "out", settings=Settings(state_dir=tmp_path / "s"))
    insecure = Settings(state_dir=tmp_path / "s", network=NetworkSettings(insecure=True))
    assert download(served(httpsd, 1), tmp_path / "out", settings=insecure).ok == 1


@pytest.mark.parametrize("cert_dir", ["gone", "gone:also-gone"])
def test_a_missing_cert_dir_adds_nothing_and_stops_nothing(
    httpsd: HTTPServer, tls_ca_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], cert_dir: str,
) -> None:
    """As curl: the file still counts (OpenSSL also takes a list of folders there)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_ca_path))
    monkeypatch.setenv("SSL_CERT_DIR", ":".join(str(tmp_path / d) for d in cert_dir.split(":")))
    assert main(["-q", *served(httpsd), "-o", "out"]) == 0
    assert capsys.readouterr().err == ""
    assert sorted(os.listdir("out")) == ["f0.bin", "f1.bin", "f2.bin"]


@pytest.mark.parametrize("kind", ["empty", "key", "folder"])
@pytest.mark.parametrize("name", VARIABLES)
def test_a_variable_naming_no_ca_file_is_one_error_before_any_transfer(
    httpsd: HTTPServer, httpd: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], name: str, kind: str,
) -> None:
    """As a --ca-cert with no certificate: before, each https:// file failed on its own
    (exit 3: "could not load CA certificates", or "not trusted, pass --ca-cert FILE"), and
    a folder was "no such file"."""
    given = tmp_path / f"{kind}.pem"
    if kind == "folder":
        given.mkdir()
    else:
        key = "-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBg==\n-----END PRIVATE KEY-----\n"
        given.write_text("" if kind == "empty" else key)
    monkeypatch.setenv(name, str(given))
    assert main(["-q", *served(httpsd), "-o", "out"]) == 2
    why = "a folder, not a file" if kind == "folder" else "no certificate in it"
    assert capsys.readouterr().err == said(name, given).replace("no such file", why)
    assert httpsd.requests == [] and not Path("out").exists()
    assert main(["-q", *served(httpd, 1), "-o", "out"]) == 0  # (http:// does not read it)


def _hashed(folder: Path) -> bool:
    openssl = shutil.which("openssl")
    if openssl is None:
        return False
    return subprocess.run([openssl, "rehash", str(folder)], capture_output=True).returncode == 0


def test_a_ca_cert_folder_must_be_hashed(
    httpsd: HTTPServer, tls_ca_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """OpenSSL looks a folder's CAs up by their hashed names only: a folder of PEM files
    never made so trusted nothing, and every file failed "not trusted; pass --ca-cert FILE"
    (exit 3). A hashed one is taken, as curl's --capath."""
    folder = tmp_path / "cas"
    folder.mkdir()
    shutil.copy(tls_ca_path, folder / "test-ca.pem")
    urls = served(httpsd)
    assert main(["-q", "--ca-cert", str(folder), "-o", "out", *urls]) == 2
    assert capsys.readouterr().err == (
        f"omniget: error: --ca-cert {folder}: no hashed certificate names in this folder,"
        " where OpenSSL looks its CAs up (run openssl rehash on it, or give a PEM file)\n")
    assert httpsd.requests == []
    if not _hashed(folder):
        pytest.skip("no openssl command to hash the folder with")
    assert main(["-q", "--ca-cert", str(folder), "-o", "out", *urls]) == 0
    assert sorted(os.listdir("out")) == ["f0.bin", "f1.bin", "f2.bin"]
