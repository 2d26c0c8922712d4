from __future__ import annotations

import os
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omniget.engine import names
from omniget.engine.names import (
    MAX_NAME_BYTES,
    PART_SUFFIX,
    contain,
    expand_template,
    filename_from_content_disposition,
    safe_relpath,
    sanitize_component,
    unique_path,
)
from omniget.errors import Refused, UsageError

INVISIBLE = (
    "\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff"
)


def is_bad_char(c: str) -> bool:
    return c in "/\\" or unicodedata.category(c) in ("Cc", "Cf", "Cs") or c in "\u2028\u2029"


# --- sanitize_component ---


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", ".._.._etc_passwd"),
        ("/etc/passwd", "_etc_passwd"),
        ("C:\\Windows\\x", "C:_Windows_x"),
        ("a\\b", "a_b"),
        ("nul\x00byte", "nul_byte"),
        ("tab\there\nnewline\x7f\x85", "tab_here_newline__"),
        ("evil\u202etxt.exe", "eviltxt.exe"),
        ("zero\u200bwidth\ufeff", "zerowidth"),
        ("CON", "_CON"),
        ("con", "_con"),
        ("nul.txt", "_nul.txt"),
        ("aux.tar.gz", "_aux.tar.gz"),
        ("COM1", "_COM1"),
        ("lpt9.log", "_lpt9.log"),
        ("CON .txt", "_CON .txt"),
        ("CONSOLE", "CONSOLE"),
        ("COM10", "COM10"),
        ("name. . ", "name"),
        ("   leading", "leading"),
        ("trailing...", "trailing"),
        ("", "_"),
        (".", "_"),
        ("..", "_"),
        ("...", "_"),
        (" ", "_"),
        ("\u202e", "_"),
        (".hidden", ".hidden"),
        ("e\u0301", "\u00e9"),  # NFC
        ("line\u2028sep", "line_sep"),
        ("bad\udcffbyte", "bad_byte"),  # a surrogate escape from undecodable bytes
    ],
)
def test_sanitize_component(raw: str, want: str) -> None:
    assert sanitize_component(raw, windows=False) == want


def test_windows_forbidden_characters() -> None:
    assert sanitize_component('a<b>c:d"e|f?g*h', windows=True) == "a_b_c_d_e_f_g_h"
    assert sanitize_component("file.txt:stream", windows=True) == "file.txt_stream"
    assert sanitize_component("Re: Zero", windows=False) == "Re: Zero"


def test_long_ascii_name_keeps_extension() -> None:
    out = sanitize_component("a" * 1000 + ".tar.gz")
    assert out.endswith(".gz") and len(out.encode()) == MAX_NAME_BYTES


def test_long_multibyte_name_is_cut_on_a_character_boundary() -> None:
    out = sanitize_component("é漢😀" * 200 + ".jpeg")
    raw = out.encode()
    assert len(raw) <= MAX_NAME_BYTES and out.endswith(".jpeg")
    assert raw.decode() == out
    assert out[:-5] == ("é漢😀" * 200)[: len(out) - 5]


def test_long_extension_is_not_kept() -> None:
    out = sanitize_component("x" * 300 + "." + "y" * 100, max_bytes=50)
    assert out == "x" * 50


def test_small_limits() -> None:
    assert sanitize_component("😀😀", max_bytes=3) == "_"
    assert sanitize_component("abc", max_bytes=1) == "a"
    with pytest.raises(ValueError):
        sanitize_component("a", max_bytes=0)


@given(st.text(), st.integers(1, 300), st.booleans())
def test_sanitize_component_always_safe(name: str, max_bytes: int, windows: bool) -> None:
    out = sanitize_component(name, max_bytes, windows=windows)
    assert out not in ("", ".", "..")
    assert len(out.encode()) <= max_bytes
    assert not any(is_bad_char(c) for c in out)
    assert not out.startswith(" ") and not out.endswith((".", " "))
    assert out.split(".")[0].rstrip(" ").upper() not in ("CON", "PRN", "AUX", "NUL", "COM1")
    assert not out.lower().endswith(names.PART_SUFFIX)
    assert sanitize_component(out, max_bytes, windows=windows) == out  # idempotent


@given(st.text(alphabet=st.characters(codec="utf-8")), st.booleans())
def test_sanitize_keeps_harmless_names(name: str, windows: bool) -> None:
    out = sanitize_component(name, windows=windows)
    if out != "_" and not out.startswith("_"):
        # Nothing visible is invented: every output character was in the NFC input.
        assert set(out) - {"_"} <= set(unicodedata.normalize("NFC", name))


# --- safe_relpath ---


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("a/b/c.txt", "a/b/c.txt"),
        ("../../etc/passwd", "_/_/etc/passwd"),
        ("/etc/passwd", "etc/passwd"),
        ("C:\\Windows\\x", "Windows/x"),
        ("c:relative", "relative"),
        ("\\\\server\\share\\f", "server/share/f"),
        ("a/./b//c/", "a/b/c"),
        ("a/../../b", "a/_/_/b"),
        ("", "download"),
        ("/", "download"),
        ("./.", "download"),
        ("dir/CON/nul.txt", "dir/_CON/_nul.txt"),
        ("x/\u202egpj.exe", "x/gpj.exe"),
        ("x.omniget-part", "x.omniget-part_"),
        ("d.omniget-part/x", "d.omniget-part_/x"),
    ],
)
def test_safe_relpath(raw: str, want: str) -> None:
    assert safe_relpath(raw, windows=False) == want


@given(st.text())
def test_safe_relpath_never_climbs(raw: str) -> None:
    out = safe_relpath(raw)
    assert out and not out.startswith("/")
    assert all(part not in ("", ".", "..") for part in out.split("/"))
    assert "\\" not in out and "\x00" not in out


# --- contain ---


def test_contain_hostile_paths(tmp_path: Path) -> None:
    root = tmp_path / "out"
    root.mkdir()
    for rel in ["../../etc/passwd", "/etc/passwd", "C:\\Windows\\x", "a/../../../b", "..", ""]:
        p = contain(root, rel)
        assert p.is_relative_to(root.resolve()) and p != root.resolve()


def test_contain_takes_a_relative_root_where_it_is_now(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for d in ("a", "b"):
        (tmp_path / d / "out").mkdir(parents=True)
    (tmp_path / "a" / "out" / "x").symlink_to(tmp_path / "a" / "out" / "y")
    monkeypatch.chdir(tmp_path / "a")
    assert contain(Path("out"), "x") == tmp_path.resolve() / "a" / "out" / "y"
    monkeypatch.chdir(tmp_path / "b")  # (the same relative root is another folder now)
    assert contain(Path("out"), "x") == tmp_path.resolve() / "b" / "out" / "x"
    absolute = tmp_path / "a" / "out"
    assert contain(absolute, "z/w") == tmp_path.resolve() / "a" / "out" / "z" / "w"
    assert contain(absolute, "x") == tmp_path.resolve() / "a" / "out" / "y"


def test_contain_refuses_symlink_escape(tmp_path: Path) -> None:
    root = tmp_path / "out"
    root.mkdir()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    (root / "file-link").symlink_to(tmp_path / "victim")
    with pytest.raises(Refused, match="link/x"):
        contain(root, "link/x")
    with pytest.raises(Refused):
        contain(root, "file-link")
    (root / "inner").mkdir()
    (root / "ok-link").symlink_to(root / "inner")
    assert contain(root, "ok-link/f") == (root / "inner" / "f").resolve()


def test_contain_tells_a_new_name_without_lstat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name not there yet (every file of a fresh run) is told by access() on it and on
    its folder, not by lstat's exception; anything else is still lstat's to tell."""
    root = tmp_path / "out"
    (root / "sub").mkdir(parents=True)
    (root / "file").write_bytes(b"x")
    (root / "file").chmod(0o755)  # (searchable, were it a folder)
    (root / "link").symlink_to(tmp_path)
    base = root.resolve()
    assert contain(root, "sub") == base / "sub"  # (the root is resolved once: its lstat calls)
    looked: list[str] = []
    real = os.lstat

    def lstat(path: Any, **kw: Any) -> os.stat_result:
        looked.append(os.fspath(path))
        return real(path, **kw)

    monkeypatch.setattr(os, "lstat", lstat)
    assert contain(root, "new.bin") == base / "new.bin"
    assert contain(root, "sub/new.bin") == base / "sub" / "new.bin"
    if os.access in os.supports_follow_symlinks and os.access in os.supports_effective_ids:
        assert looked == [f"{base}/sub"]  # (there: lstat looks for a link)
    # (a file in the way, as lstat reports it, is no way out: making the folder names it)
    assert contain(root, "file/below") == base / "file" / "below"
    with pytest.raises(Refused, match="outside"):
        contain(root, "link/new.bin")
    assert contain(root / "gone", "x/y") == base / "gone" / "x" / "y"  # (no folder yet)


def test_contain_refuses_symlink_loop_and_root_itself(tmp_path: Path) -> None:
    root = tmp_path / "out"
    root.mkdir()
    (root / "loop").symlink_to(root / "loop")
    (root / "self").symlink_to(root)
    with pytest.raises(Refused):
        contain(root, "loop/x")
    with pytest.raises(Refused):
        contain(root, "self")


def test_contain_refuses_a_symlink_loop_where_resolve_keeps_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From Python 3.13, Path.resolve() leaves a looping link in the path it returns (before,
    it raised RuntimeError): a loop below the root is still refused."""
    root = tmp_path / "out"
    (root / "sub").mkdir(parents=True)
    (root / "loop").symlink_to(root / "loop")
    (root / "sub" / "ring").symlink_to(root / "sub" / "ring2")
    (root / "sub" / "ring2").symlink_to(root / "sub" / "ring")
    (root / "ok").symlink_to(root / "sub")
    monkeypatch.setattr(Path, "resolve", lambda self, strict=False: Path(os.path.realpath(self)))
    for rel in ("loop", "loop/x", "sub/ring/x", "ok/ring2"):
        with pytest.raises(Refused, match=r"symbolic links|[Ll]oop"):
            contain(root, rel)
    assert contain(root, "ok/new.bin") == root.resolve() / "sub" / "new.bin"


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=200)
@given(st.text())
def test_contain_always_inside(tmp_path: Path, rel: str) -> None:
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    try:
        p = contain(root, rel)
    except Refused:
        return
    assert p.is_relative_to(root.resolve()) and p != root.resolve()


#: One-part names pathlib could be touchy about: dots, spaces, unicode in both normal
#: forms, look-alikes of other separators and of URL syntax, and the longest we make.
AWKWARD = [
    "a.bin", ".hidden", "..x", "x..", "...", "a.tar.gz", "a b", " lead", "trail ", "é.bin",
    "e\u0301.bin", "日本語.txt", "😀", "\u202eevil", "~c", "a\\b", "a:b", "C:x", "-", "#x",
    "a?b", "%2e%2e", "x" * MAX_NAME_BYTES, "ü" * (MAX_NAME_BYTES // 2),
]


def _pathlib_view(p: Path) -> tuple[object, ...]:
    return (str(p), os.fspath(p), p.as_posix(), repr(p), p.parts, p.name, p.suffix,
            p.suffixes, p.stem, p.parent, p.anchor, hash(p))


def _check_child_is_slash(base: Path, name: str) -> None:
    if names._child is None:
        pytest.skip("this Python's pathlib has no child maker: contain uses / alone")
    made, slash = names._child(base, name), base / name
    assert made == slash and type(made) is type(slash)
    assert _pathlib_view(made) == _pathlib_view(slash)


@pytest.mark.parametrize("name", AWKWARD)
@pytest.mark.parametrize("base", ["tmp", "/"])
def test_the_child_path_is_what_slash_makes(tmp_path: Path, base: str, name: str) -> None:
    """contain_text's fast path (pathlib's private child maker, where the Python has one)
    gives the very Path that ``/`` gives, by every public measure."""
    _check_child_is_slash(tmp_path.resolve() if base == "tmp" else Path("/"), name)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=300)
@given(st.text(min_size=1).filter(lambda n: "/" not in n and n != "."))
def test_the_child_path_is_what_slash_makes_for_any_name(tmp_path: Path, name: str) -> None:
    _check_child_is_slash(tmp_path.resolve(), name)


@pytest.mark.parametrize("name", [*AWKWARD, "sub/a b.bin", "new/é/x"])
def test_contain_is_the_same_without_the_child_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """The ``/`` fallback (a Python without the child maker) gives what the fast path gives."""
    root = tmp_path / "out"
    root.mkdir()
    fast = names.contain_text(root, name)
    monkeypatch.setattr(names, "_child", None)
    slow = names.contain_text(root, name)
    assert fast == slow and fast[1] == str(fast[0])
    assert fast[0] == root.resolve() / safe_relpath(name)


# --- Content-Disposition ---


@pytest.mark.parametrize(
    ("header", "want"),
    [
        ('attachment; filename="report.pdf"', "report.pdf"),
        ("attachment; filename=report.pdf", "report.pdf"),
        ("attachment;filename=report.pdf;size=3", "report.pdf"),
        ('inline; FILENAME="a b.txt"', "a b.txt"),
        ('attachment; filename="semi;colon.txt"', "semi;colon.txt"),
        ("attachment; filename*=UTF-8''na%C3%AFve%20file.txt", "naïve file.txt"),
        ("attachment; filename*=utf-8'en'%E2%82%AC%20rates.txt", "€ rates.txt"),
        ("attachment; filename*=iso-8859-1'en'%A3%20rates.txt", "£ rates.txt"),
        (
            "attachment; filename=\"fallback.txt\"; filename*=UTF-8''%E2%82%AC.txt",
            "€.txt",
        ),
        (
            "attachment; filename*=UTF-8''%E2%82%AC.txt; filename=\"fallback.txt\"",
            "€.txt",
        ),
        ("attachment; filename=\"ok.txt\"; filename*=KOI8-R''%E2.txt", "ok.txt"),
        ("attachment; filename=\"ok.txt\"; filename*=UTF-8''%FF%FE.txt", "ok.txt"),
        ('attachment; filename="ok.txt"; filename*=garbage', "ok.txt"),
        ('attachment; filename="../../etc/passwd"', "passwd"),
        ('attachment; filename="C:\\\\Windows\\\\evil.dll"', "evil.dll"),
        ("attachment; filename*=UTF-8''..%2F..%2Fetc%2Fpasswd", "passwd"),
        ("attachment; filename=%41.txt", "%41.txt"),
        ('attachment; filename="na\u00c3\u00afve.txt"', "naïve.txt"),  # raw UTF-8 as Latin-1
        ('attachment; filename="caf\u00e9.txt"', "café.txt"),  # real Latin-1 stays
        ('filename="no-type.txt"', "no-type.txt"),
        ('attachment; filename="unterminated', "unterminated"),
        ("attachment", None),
        ("", None),
        ("attachment; filename=", None),
        ('attachment; filename=".."', None),
        ('attachment; filename="dir/"', None),
        ("attachment; name=x", None),
        (';;;==;"\\', None),
    ],
)
def test_content_disposition(header: str, want: str | None) -> None:
    assert filename_from_content_disposition(header) == want


def test_content_disposition_backslash_escapes() -> None:
    # A backslash in a quoted-string escapes the next character; the result is a
    # basename, so an escaped backslash still counts as a separator.
    assert filename_from_content_disposition('attachment; filename="a\\"b.txt"') == 'a"b.txt'
    assert filename_from_content_disposition('attachment; filename="x\\\\y.txt"') == "y.txt"


@given(st.text())
def test_content_disposition_never_raises(header: str) -> None:
    out = filename_from_content_disposition(header)
    assert out is None or (out and "/" not in out and "\\" not in out and out not in (".", ".."))


# --- unique_path ---


def test_unique_path(tmp_path: Path) -> None:
    f = tmp_path / "photo.jpg"
    f.write_bytes(b"x")
    assert unique_path(f) == tmp_path / "photo_1.jpg"
    (tmp_path / "photo_1.jpg").write_bytes(b"x")
    (tmp_path / ("photo_2.jpg" + PART_SUFFIX)).write_bytes(b"x")
    assert unique_path(f) == tmp_path / "photo_3.jpg"
    os.symlink(tmp_path / "missing", tmp_path / "photo_3.jpg")  # a dangling link is taken
    assert unique_path(f) == tmp_path / "photo_4.jpg"


def test_unique_path_looks_a_few_times_however_many_are_taken(tmp_path: Path) -> None:
    """Thousands of files of one name: each new name costs a few looks (it tried _1,
    _2, ... in turn: minutes for 3,000 such files), and is still the next of the run."""
    f = tmp_path / "same.bin"

    class Taken(set[Path]):
        looks = 0

        def __contains__(self, p: object) -> bool:
            Taken.looks += 1
            return super().__contains__(p)

    taken = Taken(tmp_path / f"same_{n}.bin" for n in range(1, 5001))
    assert unique_path(f, taken) == tmp_path / "same_5001.bin"
    assert Taken.looks <= 2 * 14  # (log2(5001) < 13: doubling, then halving)
    taken.discard(tmp_path / "same_1.bin")  # a free one below is taken first
    assert unique_path(f, taken) == tmp_path / "same_1.bin"


@pytest.mark.parametrize(
    ("name", "want"),
    [
        ("a.tar.gz", "a_1.tar.gz"),
        ("noext", "noext_1"),
        (".bashrc", ".bashrc_1"),
        ("v1.2.zip", "v1.2_1.zip"),
    ],
)
def test_unique_path_extensions(tmp_path: Path, name: str, want: str) -> None:
    assert unique_path(tmp_path / name).name == want


def test_unique_path_stays_within_the_name_limit(tmp_path: Path) -> None:
    name = sanitize_component("漢" * 200 + ".bin")
    out = unique_path(tmp_path / name)
    assert len(out.name.encode()) <= MAX_NAME_BYTES and out.name.endswith("_1.bin")
    assert len((out.name + PART_SUFFIX).encode()) <= 255


# --- expand_template ---

FIELDS: dict[str, str | int] = {
    "collection": "My Album",
    "filename": "pic 01.jpg",
    "source": "gofile",
    "id": "abc123",
    "index": 7,
    "path": "Game/bin/x64/game.exe",
    "host": "example.com",
}


@pytest.mark.parametrize(
    ("template", "want"),
    [
        ("{collection}/{filename}", "My Album/pic 01.jpg"),
        ("{collection}/{name}", "My Album/pic 01.jpg"),
        ("{source}/{id}/{stem}.{ext}", "gofile/abc123/pic 01.jpg"),
        ("{index:03} - {name}", "007 - pic 01.jpg"),
        ("{path}", "Game/bin/x64/game.exe"),
        ("{dir}/{parent}", "Game/bin/x64/x64"),
        ("{dirs[0]}/{dirs[-1]}/{dirs[9]}/{name}", "Game/x64/pic 01.jpg"),
        ("{host}/{{literal}}", "example.com/{literal}"),
        ("/abs/../{name}", "abs/_/pic 01.jpg"),
    ],
)
def test_expand_template(template: str, want: str) -> None:
    assert expand_template(template, FIELDS) == want


def test_template_values_stay_in_one_component() -> None:
    fields: dict[str, str | int] = {"collection": "../../etc", "filename": "a/b\\c.txt"}
    assert expand_template("{collection}/{filename}", fields) == ".._.._etc/a_b_c.txt"
    assert expand_template("{path}", {"path": "../../x/./y"}) == "_/_/x/y"
    assert expand_template("{collection}", {"collection": ".."}) == "_"


def test_template_missing_fields_vanish() -> None:
    assert expand_template("{collection}/{filename}", {"filename": "f.bin"}) == "f.bin"
    assert expand_template("{stem}.{ext}", {"filename": "README"}) == "README"
    assert expand_template("{collection}", {}) == "download"


@pytest.mark.parametrize(
    "template",
    ["{nope}", "{name}/{Collection}", "{dirs}", "{name[0]}", "{name!r}", "{", "{index:zz}"],
)
def test_template_errors(template: str) -> None:
    with pytest.raises(UsageError):
        expand_template(template, FIELDS)


def test_unknown_field_is_named() -> None:
    with pytest.raises(UsageError, match=r"\{bogus\}"):
        expand_template("{bogus}/{name}", FIELDS)


@given(
    st.dictionaries(
        st.sampled_from(["collection", "filename", "source", "id", "path", "dir", "host"]),
        st.text(),
    ),
    st.sampled_from(["{collection}/{filename}", "{path}", "{dir}/{stem}.{ext}", "{dirs[1]}"]),
)
def test_expand_template_is_always_a_safe_relpath(fields: dict[str, str], template: str) -> None:
    out = expand_template(template, dict(fields))
    assert out and safe_relpath(out) == out


@given(st.text(alphabet=st.sampled_from("aZ09_.,+=@#$%&!~()[]{}' -:/\\\u00e9\x00"), max_size=30))
def test_plain_name_fast_path_matches_the_full_rules(name: str) -> None:
    from omniget.engine.names import _safe_parts

    full = "/".join(_safe_parts(name, False)) or "download"
    again = "/".join(_safe_parts(full, False)) or "download"
    if again == full:  # the slow path's fixed point
        assert safe_relpath(name, windows=False) == full


@pytest.mark.parametrize("raw", ["x.omniget-part", "X.OMNIGET-Part", ".omniget-part",
                                 "y" * 300 + ".omniget-part"])
def test_a_name_of_omniget_s_own_part_files_is_never_a_file_s(raw: str) -> None:
    """An item named "x.omniget-part" beside an item "x" wrote where x's part file was:
    one was skipped as "exists" (nothing of it there), or the other failed as its part
    file replaced. Such a name (in any case: some file systems ignore it) ends in "_"."""
    out = sanitize_component(raw, windows=False)
    assert out.endswith("_") and not out.lower().endswith(names.PART_SUFFIX)
    assert out[:-1].lower().endswith(names.PART_SUFFIX)
    assert len(out.encode()) <= MAX_NAME_BYTES
    assert safe_relpath(raw, windows=False) == out
