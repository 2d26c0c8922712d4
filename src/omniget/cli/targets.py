"""The steps the commands share: the URLs a command is given (arguments and ``-i``
files), their items as the sources give them (``--include``/``--exclude`` applied), the
one-line report of each failure, and the paths the user gave."""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from fnmatch import fnmatchcase
from pathlib import Path

from ..errors import Cancelled, OmnigetError, UsageError
from ..model import Item, unextracted
from ..userfiles import NotText, read_text
from .args import CURL_O, argv_url, controls_encoded, guess_scheme, parse_input
from .config import Config
from .options import ArgumentError, expand_path
from .output import Masker, naming, print_error

Failure = tuple[str, OmnigetError]  # (what failed, shown to the user; the error)


def bind_user(cfg: Config, targets: list[str | Item]) -> Config:
    """``--user`` is for the first URL's server only: never sent to the others."""
    net = cfg.settings.network
    if net.user is None or net.user_origin is not None or not targets:
        return cfg
    first = targets[0]
    url = first if isinstance(first, str) else first.download_url
    network = dataclasses.replace(net, user_origin=url)
    return dataclasses.replace(cfg, settings=dataclasses.replace(cfg.settings, network=network))


def collect(ns: argparse.Namespace) -> list[str | Item]:
    """URLs from the command line, then from each ``-i`` in turn."""
    targets: list[str | Item] = [guess_scheme(controls_encoded(argv_url(u))) for u in ns.urls]
    empty = ""  # why the last list read gave no URL
    for file in ns.input_file or ():
        name = "stdin" if file == "-" else f"input file {file}"
        try:
            if file == "-":
                if sys.stdin is None:
                    raise UsageError("cannot read stdin (-i -): it is closed")
                text = _read_stdin()
            else:
                text = _read_list(given_path(file, "-i"))
        except OSError as e:
            why = e.strerror or str(e)
            if "://" in file:  # (-i URL: a URL is no file of URLs)
                why += f" (-i reads URLs from a file; to download {file}, leave out -i)"
            raise UsageError(f"cannot read {name}: {why}") from None
        except NotText as e:
            raise UsageError(f"cannot read {name}: {e}") from None
        text = text.removeprefix("\ufeff")  # (a BOM: Windows editors write one)
        found = parse_input(text, name)
        if not found:
            why = "it is empty" if not text.strip() else "only blank lines and comments"
            empty = f"no URL in {name}: {why}"
        targets += found
    taken = _url_taken(ns)
    if not targets and empty:  # (the list's fault, not the arguments')
        raise UsageError(empty)
    if not targets:
        taken = taken or _url_taken(ns, none_left=True)
        raise ArgumentError(f"no URL given{': ' + taken if taken else ''} "
                            "(see 'omniget --help')")
    if taken:  # (-o URL URL2: never a folder named http:)
        raise ArgumentError(taken)
    if ns.source:  # (a name that is no source's: before any URL fails for it)
        from ..sources import find_source

        try:
            find_source("", ns.source)
        except UsageError as e:
            raise ArgumentError(str(e)) from None
    return targets


def once(targets: Sequence[str | Item]) -> tuple[list[str | Item], dict[str, int]]:
    """Each entry once, in the order first given, and how many times each URL given more
    than once was (wget and curl fetch such a URL again, one copy beside the other or over
    it; the run is one file's, done once). An entry is the same when its URL and its
    mirrors are, as given; two URLs that give one name are two entries."""
    first: dict[tuple[str, ...], str | Item] = {}
    times: Counter[tuple[str, ...]] = Counter()
    for target in targets:
        key = (target,) if isinstance(target, str) else (target.download_url, *target.mirrors)
        first.setdefault(key, target)
        times[key] += 1
    if len(first) == len(targets):
        return list(targets), {}
    again = {key[0] if len(key) == 1 else f"{key[0]} (with its mirrors)": n
             for key, n in times.items() if n > 1}
    return list(first.values()), again


def _read_list(path: Path) -> str:
    """A list file's text: UTF-8, or UTF-16 with its BOM (what Windows PowerShell's ``>``
    and Notepad's "Unicode" write). NotText as soon as it shows it is no list (a binary
    file, a disk image: never read whole)."""
    with open(path, "rb") as f:
        return read_text(f, utf16=True)


def _read_stdin() -> str:
    """``-i -``: stdin's text, read as a list file is."""
    raw = getattr(sys.stdin, "buffer", None)
    if raw is None:  # (a text stream put in its place)
        return str(sys.stdin.read())
    return read_text(raw, utf16=True)


#: Options whose value is never a URL (dest: flag, what it wants): ``-o URL`` is a URL
#: that the option took, its own value left out.
_NOT_URLS = {
    "output": ("-o", "a folder"), "output_file": ("-O", "a file name"),
    "source": ("--source", "a source's name"), "state_dir": ("--state-dir", "a folder"),
    "cookies": ("--cookies", "a file"), "ca_cert": ("--ca-cert", "a file"),
    "config": ("--config", "a file"),
}

#: Options whose value may hold a URL (a bot's User-Agent names its page): one that is a
#: URL alone is said to have taken it only when no URL is left.
_MAYBE_URLS = {"user_agent": ("--user-agent", "the User-Agent's text")}


def _url_taken(ns: argparse.Namespace, none_left: bool = False) -> str:
    """``-o took 'URL' ...`` when such an option took a URL for its value, else ''
    (``none_left``: no URL is left, and an option that may hold one took one alone)."""
    options = {**_NOT_URLS, **_MAYBE_URLS} if none_left else _NOT_URLS
    for dest, (flag, what) in options.items():
        value = getattr(ns, dest, None)
        if isinstance(value, list):  # (--config, given again)
            value = next((v for v in value if "://" in v), None)
        if dest in _MAYBE_URLS and isinstance(value, str) and not re.fullmatch(
                r"[A-Za-z][A-Za-z0-9+.-]*://\S+", value):
            continue
        if isinstance(value, str) and "://" in value:
            return f"{flag} took {value!r} for its value ({flag} wants {what} before the URL" + (
                f"{CURL_O})" if flag == "-O" else ")")
    return ""


def _wanted(path: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """Globs match the relative output path; a glob without ``/`` also matches the name."""
    name = path.rsplit("/", 1)[-1]

    def hit(glob: str) -> bool:
        return fnmatchcase(path, glob) or ("/" not in glob and fnmatchcase(name, glob))

    if include and not any(hit(g) for g in include):
        return False
    return not any(hit(g) for g in exclude)


def item_filter(
    ns: argparse.Namespace, on_filtered: Callable[[Item], None]
) -> Callable[[Item], bool] | None:
    """``--include``/``--exclude`` as a test of an item (which reports those left out);
    None without them."""
    include, exclude = ns.include or [], ns.exclude or []
    if not include and not exclude:
        return None

    def keep(item: Item) -> bool:
        if _wanted(item.output_path, include, exclude):
            return True
        on_filtered(item)
        return False

    return keep


def extract_items(
    targets: Sequence[str | Item],
    ns: argparse.Namespace,
    cfg: Config,
    on_failure: Callable[[str, Item, OmnigetError], None],
    on_filtered: Callable[[Item], None],
) -> Iterator[Item]:
    """Extract every URL lazily; extraction failures are reported and the rest goes on.
    (One loop and one set of transports serve the whole list: not one per URL.) What
    fails a download as a whole before its first request (a CA file or a proxy that
    cannot be used, transports that cannot be made) fails this too, raised once."""
    from ..engine.transports.outgoing import check_proxy
    from ..engine.transports.trust import check_ca
    from ..listing import extract_each

    network = cfg.settings.network
    check_ca(network, targets)  # (as download() checks them: list and --dry-run too)
    check_proxy(network.proxy, targets)
    keep = item_filter(ns, on_filtered)
    found = extract_each(targets, source=ns.source, settings=cfg.settings,
                         source_options=cfg.sources)
    try:
        for target, got in found:
            if isinstance(got, OmnigetError):
                if isinstance(target, Item):
                    on_failure(target.download_url, target, got)
                else:
                    on_failure(target, unextracted(target), got)
            elif keep is None or keep(got):
                yield got
    finally:  # (left mid-way: no request after, as the reader went away)
        found.close()


def report_failures(failures: Sequence[Failure], mask: Masker) -> None:
    """One line per failure (cancelled items are covered by the "interrupted" line); a
    cause several files share (:attr:`OmnigetError.shared`: a host found down, a proxy
    down) is one line with their count, where the first of them is (200 files of a
    dead host were 200 lines)."""
    shared = Counter(e.shared for _, e in failures if e.shared and not isinstance(e, Cancelled))
    for label, error in failures:
        if isinstance(error, Cancelled):
            continue
        if error.shared and shared[error.shared] > 1:
            count = shared.pop(error.shared)  # (said at the first: the others say nothing)
            print_error(mask(f"{count} files {error.shared}"))
            continue
        if error.shared and error.shared not in shared:
            continue
        said = str(error)  # (one that names its URL or file already: not twice)
        print_error(mask(said) if names(said, label) else naming(mask(label), mask(said)))


def names(text: str, label: str) -> bool:
    """Whether ``text`` names ``label`` (a file or a URL): has it whole, not as a piece
    of a word or a longer name (the file ``s`` is not in ``it exists``)."""
    return re.search(rf"(?<![\w.-]){re.escape(label)}(?![\w.-])", text) is not None


def given_path(text: str, flag: str) -> Path:
    """A path the user gave, ``~`` expanded: ArgumentError if it names nobody."""
    try:
        return expand_path(text)
    except ValueError as e:
        raise ArgumentError(f"{flag} {text}: {e}") from None
