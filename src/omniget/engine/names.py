"""Safe file names: every name the remote side chooses passes through here.

Names come from Content-Disposition, URL paths, API fields, FTP listings and manifests;
none of them may climb out of the output folder, hide text with invisible or bidi
characters, hit a Windows device name, or overflow the file system's name limit.
"""

from __future__ import annotations

import codecs
import errno
import functools
import os
import posixpath
import re
import stat
import string
import sys
import unicodedata
from collections.abc import Callable, Container, Mapping
from pathlib import Path
from urllib.parse import unquote_to_bytes

from ..errors import Refused, UsageError

__all__ = [
    "MAX_NAME_BYTES",
    "PART_SUFFIX",
    "TEMPLATE_FIELDS",
    "contain",
    "contain_text",
    "expand_template",
    "filename_from_content_disposition",
    "is_part_name",
    "safe_relpath",
    "sanitize_component",
    "unique_path",
]

#: File systems allow 255 bytes; we keep room for ``_N`` and ``.omniget-part``.
MAX_NAME_BYTES = 240
PART_SUFFIX = ".omniget-part"
_ON_WINDOWS = os.name == "nt"

# C0, DEL, C1, path separators, line/paragraph separators: replaced with "_".
_REPLACE = {c: "_" for c in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]}
_REPLACE.update({ord("/"): "_", ord("\\"): "_"})
# Characters Windows refuses in names (":" would even open an alternate data stream).
_REPLACE_WINDOWS = {**_REPLACE, **{ord(c): "_" for c in '<>:"|?*'}}

_DEVICES = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{p}{d}" for p in ("COM", "LPT") for d in "0123456789\u00b9\u00b2\u00b3"]
)

_MAX_EXT_BYTES = 16


def _clean_char(c: str) -> str:
    cat = unicodedata.category(c)
    if cat == "Cf":  # bidi overrides/isolates, zero-width, BOM, tags: invisible, dropped
        return ""
    if cat == "Cs":  # lone surrogates (undecodable bytes): not encodable, replaced
        return "_"
    return c


#: The encoding of file names here: UTF-8 but in a locale of another (latin-1, ASCII),
#: where a character it has none for cannot be in a name at all.
_FS_ENCODING = codecs.lookup(sys.getfilesystemencoding()).name


def _writable(s: str) -> str:
    """``s`` with each character the file names' encoding has none for replaced."""
    try:
        s.encode(_FS_ENCODING)
    except UnicodeEncodeError:
        return "".join(c if _encodes(c) else "_" for c in s)
    return s


def _encodes(c: str) -> bool:
    try:
        c.encode(_FS_ENCODING)
    except UnicodeEncodeError:
        return False
    return True


def _trim(s: str) -> str:
    return s.lstrip(" ").rstrip(". ")


def _is_device(s: str) -> bool:
    return s.split(".", 1)[0].rstrip(" ").upper() in _DEVICES


def _cut(s: str, limit: int) -> str:
    """The longest prefix of ``s`` of at most ``limit`` UTF-8 bytes (whole characters)."""
    return s.encode()[: max(0, limit)].decode(errors="ignore")


def _truncate(s: str, max_bytes: int) -> str:
    if len(s.encode()) <= max_bytes:
        return s
    dot = s.rfind(".")
    ext = s[dot:] if dot > 0 else ""
    ext_len = len(ext.encode())
    if ext_len > min(_MAX_EXT_BYTES, max_bytes // 2):
        ext, ext_len = "", 0
    stem = s[: len(s) - len(ext)]
    return _cut(stem, max_bytes - ext_len).rstrip(". ") + ext


def sanitize_component(
    name: str, max_bytes: int = MAX_NAME_BYTES, *, windows: bool = _ON_WINDOWS
) -> str:
    """One safe path component for ``name``.

    Separators and control characters become ``_``, and so do characters that the file
    names' encoding has none for (in a locale of latin-1 or ASCII); invisible format characters
    (bidi, zero-width, BOM) are dropped; the result is NFC, has no leading spaces and no
    trailing dots or spaces, is never empty, ``.`` or ``..``, never a Windows device
    name, never ends in ``.omniget-part`` (the name of another's part file: ``_`` is
    added), and at most ``max_bytes`` of UTF-8 (the extension is kept when short).
    ``windows`` also replaces the characters Windows forbids (``<>:"|?*``).
    """
    if max_bytes < 1:
        raise ValueError("max_bytes must be >= 1")
    s = unicodedata.normalize("NFC", name)
    s = s.translate(_REPLACE_WINDOWS if windows else _REPLACE)
    if not s.isascii():
        s = "".join(map(_clean_char, s))
        if _FS_ENCODING != "utf-8":
            s = _writable(s)
    s = _trim(s)
    if _is_device(s):
        s = "_" + s
    s = _trim(_truncate(s, max_bytes))
    if not s or s in (".", "..") or _is_device(s):
        s = "_"
    if is_part_name(s):  # (another file's part file would be written in its place)
        stem = _cut(s[: -len(PART_SUFFIX)], max_bytes - len(PART_SUFFIX) - 1)
        s = f"{stem}{s[-len(PART_SUFFIX):]}_"
        if len(s.encode()) > max_bytes:
            s = "_"
    return s


def is_part_name(s: str) -> bool:
    """``s`` ends as omniget's part files do, in any case (some file systems ignore it)."""
    return s[-len(PART_SUFFIX):].lower() == PART_SUFFIX


_DRIVE = r"^[A-Za-z]:"  # (compiled by re when first used)
# A name that sanitising leaves unchanged on every platform (device names aside).
_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.,+=@#$%&!~()\[\]{}' -]{0,199}")


def _safe_parts(path: str, windows: bool) -> list[str]:
    parts: list[str] = []
    for i, part in enumerate(re.split(r"[/\\]", path)):
        if i == 0:
            part = re.sub(_DRIVE, "", part)
        if part not in ("", "."):
            parts.append(sanitize_component(part, windows=windows))
    return parts


def safe_relpath(path: str, *, windows: bool = _ON_WINDOWS) -> str:
    """A relative ``/``-separated path that cannot climb: each part sanitised.

    Splits on ``/`` and ``\\``; empty and ``.`` parts are dropped, ``..`` becomes ``_``,
    absolute paths and drive letters become relative. Never empty (``download``).
    """
    if (
        _PLAIN.fullmatch(path) and path[-1] not in ". " and not _is_device(path)
        and not is_part_name(path)
    ):
        return path  # the common case: one short, boring ASCII name
    out = "/".join(_safe_parts(path, windows)) or "download"
    again = "/".join(_safe_parts(out, windows)) or "download"
    # sanitising can uncover a drive letter ("A\x00:" -> "A:"): apply until it is stable
    return out if again == out else safe_relpath(again, windows=windows)


def contain(root: Path, rel: str) -> Path:
    """``root / safe_relpath(rel)`` with symlinks resolved; :class:`Refused` if it leaves root.

    Only the components below ``root`` are looked at (one ``lstat`` each, stopping at the
    first that does not exist); a symlink among them triggers a full resolve and check.
    """
    return contain_text(root, rel)[0]


def contain_text(root: Path, rel: str) -> tuple[Path, str]:
    """:func:`contain`'s path, and that path as a string, made without ``str()`` of the
    Path: the first ``str()`` of a Path costs an exception inside pathlib (~10 K
    instructions, once per file of a run)."""
    global _last_root
    last = _last_root
    if last is not None and root is last[0]:  # (a run's root, file after file: no hash)
        base, cur, top = last[1]
    else:
        # absolute: the cache outlives chdir (an absolute Path, as a run's, is its own
        # key: no abspath per file)
        key = root if root.is_absolute() else os.path.abspath(root)
        base, cur, top = _resolved_root(key)
        if key is root:  # (held here: no other object can take its identity)
            _last_root = (root, (base, cur, top))
    safe = safe_relpath(rel)
    for part in safe.split("/"):
        parent, cur = cur, f"{cur}/{part}"
        if _missing(cur, parent):  # (a new file, as a rule: no lstat and its exception)
            break
        try:
            st = os.lstat(cur)
        except (FileNotFoundError, NotADirectoryError):  # (a file where a folder must
            break  # be: no way out, and making the folder says what is in the way)
        except OSError as e:
            raise Refused(f"unsafe output path {rel!r}: {e}") from e
        if stat.S_ISLNK(st.st_mode):
            try:
                target = _resolve(base / safe)
            except (OSError, RuntimeError) as e:  # symlink loops
                raise Refused(f"unsafe output path {rel!r}: {e}") from e
            if target == base or not target.is_relative_to(base):
                raise Refused(
                    f"unsafe output path {rel!r}: it resolves to {target}, outside {base}"
                )
            return target, str(target)
    # (``safe`` has no empty, "." or ".." part: pathlib joins it as it is)
    # (``/`` parses only ``safe``: cheaper than Path(f"{base}/{safe}"); one name, the
    # usual file, not even that)
    path = (
        _child(base, safe) if _child is not None and top and "/" not in safe else base / safe
    )
    return path, f"{top}{safe}" if top else str(path)


#: pathlib's own child of a Path for one name that needs no parsing (as its iterdir
#: makes them), once per file of a run. Python 3.11: ~5 K instructions where ``/`` parses
#: the name again, ~15 K. 3.12: ~16 K, as ``/`` (which defers its parse to the path's
#: first use), but made parsed. 3.13 has none: ``/`` there (~13 K, parse deferred).
_child: Callable[[Path, str], Path] | None = getattr(Path, "_make_child_relpath", None)


#: ``os.access`` tells, as ``lstat`` does, whether a name is there (not on Windows).
_ACCESS_TELLS = os.access in os.supports_follow_symlinks and os.access in os.supports_effective_ids


def _missing(path: str, parent: str) -> bool:
    """``path`` is not there, told without lstat's exception (~10 K instructions, once per
    file of a run): access to it fails while its folder ``parent`` is a directory one may
    look in, so nothing but its absence can be why (no other error that lstat would
    report hides behind it). False: lstat tells."""
    return (
        _ACCESS_TELLS
        and len(path) < 1024  # (far below PATH_MAX: never too long a path)
        and not os.access(path, os.F_OK, follow_symlinks=False, effective_ids=True)
        # (a trailing slash resolves only to a directory)
        and os.access(f"{parent}/", os.X_OK, effective_ids=True)
    )


def _resolve(path: Path) -> Path:
    """``path.resolve()``, a symlink loop on the way an error on every Python: pathlib raised
    RuntimeError for one until 3.13, which leaves the looping link in the path instead."""
    target = path.resolve()
    try:
        os.stat(target)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise
    return target


#: The absolute root contain_text() saw last, and its _resolved_root().
_last_root: tuple[Path, tuple[Path, str, str]] | None = None


@functools.lru_cache(maxsize=64)
def _resolved_root(root: str | Path) -> tuple[Path, str, str]:
    """The root resolved, as a string, and what a path below it begins with as pathlib
    writes it ("" where its separator is not "/")."""
    resolved = Path(root).resolve()
    text = str(resolved)
    top = "" if os.sep != "/" else text if text.endswith("/") else f"{text}/"
    return resolved, text, top


# --- Content-Disposition (RFC 6266, RFC 5987 / 8187) ---


def _cd_params(value: str) -> list[tuple[str, str]]:
    """``(name, value)`` pairs after the disposition type; tolerant of junk."""
    n = len(value)
    semi = value.find(";")
    first = value[: semi if semi >= 0 else n]
    i = 0 if "=" in first else (semi + 1 if semi >= 0 else n)
    out: list[tuple[str, str]] = []
    while i < n:
        while i < n and value[i] in " \t;":
            i += 1
        j = i
        while j < n and value[j] not in "=;":
            j += 1
        name = value[i:j].strip().lower()
        if j >= n or value[j] == ";":
            i = j
            continue
        j += 1
        while j < n and value[j] in " \t":
            j += 1
        if j < n and value[j] == '"':
            buf: list[str] = []
            j += 1
            while j < n and value[j] != '"':
                if value[j] == "\\" and j + 1 < n:
                    j += 1
                buf.append(value[j])
                j += 1
            val = "".join(buf)
            j += 1
        else:
            k = value.find(";", j)
            k = n if k < 0 else k
            val = value[j:k].strip()
            j = k
        if name:
            out.append((name, val))
        i = j
    return out


def _ext_value(value: str) -> str | None:
    """Decode an RFC 5987 ``charset'lang'pct-encoded`` value, or None."""
    charset, sep1, rest = value.strip().strip('"').partition("'")
    _, sep2, encoded = rest.partition("'")
    if not (sep1 and sep2):
        return None
    codec = {"utf-8": "utf-8", "utf8": "utf-8", "iso-8859-1": "latin-1", "latin1": "latin-1"}
    name = codec.get(charset.strip().lower())
    if name is None:
        return None
    try:
        return unquote_to_bytes(encoded).decode(name)
    except UnicodeDecodeError:
        return None


def _fix_mojibake(s: str) -> str:
    """Raw UTF-8 bytes in a plain ``filename`` arrive as Latin-1 text: decode them back."""
    if s.isascii():
        return s
    try:
        return s.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return s


def _basename(s: str) -> str | None:
    name = re.split(r"[/\\]", s)[-1].strip()
    return None if name in ("", ".", "..") else name


def filename_from_content_disposition(value: str) -> str | None:
    """The file name a Content-Disposition header suggests (basename only), or None.

    ``filename*`` wins over ``filename``. The result still needs sanitising.
    """
    try:
        params = _cd_params(value)
    except Exception:  # defensive: header values are hostile input
        return None
    for name, val in params:
        if name == "filename*":
            decoded = _ext_value(val)
            if decoded is not None and (base := _basename(decoded)) is not None:
                return base
    for name, val in params:
        if name == "filename":
            return _basename(_fix_mojibake(val))
    return None


# --- on-exists=rename ---


def _split_ext(name: str) -> tuple[str, str]:
    low = name.lower()
    dot = low.rfind(".tar.")
    if dot > 0 and "." not in low[dot + 5 :]:
        return name[:dot], name[dot:]
    stem, ext = posixpath.splitext(name)
    return stem, ext


def unique_path(path: Path, taken: Container[Path] = ()) -> Path:
    """A free ``stem_N.ext`` beside ``path`` (N = 1, 2, ...): the first, when the names
    taken so far are ``_1`` to ``_K`` (as this function gives them out).

    Free means neither the name nor its ``.omniget-part`` exists, and it is not in
    ``taken``. The name is kept within :data:`MAX_NAME_BYTES` by shortening the stem.
    N is found by doubling, then halving: a few looks, however many are taken (trying
    1, 2, 3, ... in turn took minutes for a few thousand files of one name).
    """
    stem, ext = _split_ext(path.name)

    def free(n: int) -> Path | None:
        tail = f"_{n}{ext}"
        name = _cut(stem, MAX_NAME_BYTES - len(tail.encode())) + tail
        candidate = path.with_name(name)
        if candidate in taken:
            return None
        if os.path.lexists(candidate) or os.path.lexists(path.with_name(name + PART_SUFFIX)):
            return None
        return candidate

    low, high = 0, 1  # low: taken (0: the name itself); high: to look at
    while (found := free(high)) is None:
        low, high = high, high * 2
    while high - low > 1:  # the lowest free one above the taken run, if they are a run
        mid = (low + high) // 2
        if (got := free(mid)) is None:
            low = mid
        else:
            high, found = mid, got
    return found


# --- layout templates ---

TEMPLATE_FIELDS = frozenset(
    [
        "collection", "filename", "name", "stem", "ext", "source", "id", "index",
        "path", "dir", "dirs", "parent", "host",
    ]
)  # fmt: skip
_PATH_FIELDS = frozenset(["path", "dir"])
_INDEXED = r"^(\w+)(?:\[(-?\d+)\])?$"  # (compiled by re when first used)


def _derive(fields: Mapping[str, str | int]) -> dict[str, str | int]:
    """Fill the fields that follow from others: name/filename, stem/ext, dir/parent."""
    f: dict[str, str | int] = dict(fields)
    if "filename" in f:
        f.setdefault("name", f["filename"])
    elif "name" in f:
        f["filename"] = f["name"]
    fname = str(f.get("filename", ""))
    stem, ext = _split_ext(fname)
    f.setdefault("stem", stem)
    f.setdefault("ext", ext[1:])
    if "dir" not in f and "path" in f:
        f["dir"] = posixpath.dirname(str(f["path"]).replace("\\", "/"))
    f.setdefault("parent", posixpath.basename(str(f.get("dir", "")).replace("\\", "/")))
    return f


def _dirs(f: Mapping[str, str | int]) -> list[str]:
    return [p for p in re.split(r"[/\\]", str(f.get("dir", ""))) if p not in ("", ".")]


def _render(value: str | int, spec: str, conversion: str | None, field: str) -> str:
    if spec and isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)  # "{index:03}" with an index given as text
    if conversion:
        raise UsageError(f"template field {{{field}}}: conversions (!{conversion}) not supported")
    try:
        return format(value, spec)
    except (ValueError, TypeError) as e:
        raise UsageError(f"template field {{{field}}}: bad format {spec!r}: {e}") from e


def expand_template(template: str, fields: Mapping[str, str | int]) -> str:
    """Expand a layout template into a safe relative path.

    Known fields missing from ``fields`` expand to nothing (their empty path parts are
    dropped). Values are sanitised as single components, except ``{path}`` and
    ``{dir}`` which keep their structure (sanitised part by part). ``{dirs[N]}``
    indexes the parts of ``{dir}`` (negative N counts from the end). Format specs
    work: ``{index:03}``. Unknown fields raise :class:`UsageError`.
    """
    f = _derive(fields)
    out: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise UsageError(f"bad template {template!r}: {e}") from e
    for literal, field, spec, conversion in parsed:
        out.append(literal)
        if field is None:
            continue
        m = re.match(_INDEXED, field)
        if not m or m.group(1) not in TEMPLATE_FIELDS:
            known = ", ".join(sorted(TEMPLATE_FIELDS))
            raise UsageError(f"unknown template field {{{field}}} (known: {known})")
        key, index = m.group(1), m.group(2)
        if (key == "dirs") != (index is not None):
            raise UsageError(f"template field {{{field}}}: only {{dirs[N]}} takes an index")
        if key == "dirs":
            parts = _dirs(f)
            i = int(index or 0)
            value: str | int = parts[i] if -len(parts) <= i < len(parts) else ""
        else:
            value = f.get(key, "")
        text = _render(value, spec or "", conversion, field)
        if not text:
            continue
        if key in _PATH_FIELDS:
            out.append("/".join(_safe_parts(text, _ON_WINDOWS)))
        else:
            out.append(sanitize_component(text))
    return safe_relpath("".join(out))
