"""omniget: get files from wherever they live — fast, resumable, verified.

>>> import omniget
>>> for item in omniget.extract("https://example.com/file.zip"):   # lazy, no request yet
...     print(item.filename)
file.zip
>>> report = omniget.download(["https://example.com/file.zip"], "downloads")
>>> report.succeeded                     # (report.failures: each failed file's error)
True
"""

import importlib as _importlib
import os as _os
import typing as _typing
from collections.abc import Mapping as _Mapping
from pathlib import Path as _Path

from .keywords import named_keywords as _named_keywords

if _typing.TYPE_CHECKING:
    from .api import Writer, adownload, aextract, download, extract, stream
    from .engine import Engine, FileResult, Report
    from .errors import (
        AuthRequired,
        Cancelled,
        IntegrityError,
        NotFound,
        OmnigetError,
        ParseError,
        RateLimited,
        Refused,
        RemoteError,
        RemoteNotFound,
        SourceError,
        StorageError,
        TransferError,
        TransientError,
        UnsupportedURL,
        UsageError,
    )
    from .model import ByteRange, Digest, Item, LocalSlice, Piece, Transform
    from .settings import NetworkSettings, Settings

__version__ = "0.1.0"


@_named_keywords
def load_settings(
    config: str | _os.PathLike[str] | None = None,
    environ: _Mapping[str, str] | None = None,
    flags: _Mapping[str, object] | None = None,
) -> "tuple[Settings, dict[str, dict[str, object]]]":  # (Settings: loaded when used)
    """The settings the CLI would use (config file, environment, flags) and the per-source
    option tables; pass them to :func:`download` / :func:`extract` yourself.

    ``config``: the TOML file's name (default: the command's, if there is one);
    ``environ``: the environment (default ``os.environ``); ``flags``: values by the
    command's long option names (``{"connections": 8, "limit-rate": "2M"}``), which win."""
    from .cli.config import load_settings as _load

    for arg, value, what in (
        ("config", config, "is a file's name, a str or a Path (or None: the default file)"),
        ("environ", environ, "takes a mapping of strs (os.environ, a dict)"),
        ("flags", flags, "takes a mapping of the command's option names to values (a dict)"),
    ):
        if value is not None and not isinstance(
            value, str | _os.PathLike if arg == "config" else _Mapping
        ):
            from .checks import shown

            raise TypeError(f"omniget.load_settings(): {arg}= {what}, not {shown(value)}")
    return _load(None if config is None else _Path(config), environ, flags)


#: Where the package's names come from. They are imported when first used, so that
#: ``omniget --help`` or ``--version`` (and a program that only wants the model or the
#: errors) does not load the engine with asyncio, pycurl and SQLite, and so that the
#: command (``omniget.__main__``) loads even the types with its collector off.
_FROM = {
    **dict.fromkeys(["Writer", "adownload", "aextract", "download", "extract", "stream"],
                    ".api"),
    **dict.fromkeys(["Engine", "FileResult", "Report"], ".engine"),
    **dict.fromkeys(
        ["AuthRequired", "Cancelled", "IntegrityError", "NotFound", "OmnigetError",
         "ParseError", "RateLimited", "Refused", "RemoteError", "RemoteNotFound",
         "SourceError", "StorageError", "TransferError", "TransientError", "UnsupportedURL",
         "UsageError"],
        ".errors",
    ),
    **dict.fromkeys(["ByteRange", "Digest", "Item", "LocalSlice", "Piece", "Transform"], ".model"),
    **dict.fromkeys(["NetworkSettings", "Settings"], ".settings"),
}
#: The modules ``import omniget`` used to load, reachable as its attributes as before
#: (``omniget.engine.Engine``, ``omniget.errors.UsageError``).
_SUBMODULES = ("api", "engine", "errors", "model", "settings", "sources")


def __getattr__(name: str) -> object:
    if name in _SUBMODULES:
        return _importlib.import_module(f".{name}", __name__)  # (which sets the attribute)
    module = _FROM.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(module, __name__), name)
    globals()[name] = value  # (found directly from now on)
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "AuthRequired",
    "ByteRange",
    "Cancelled",
    "Digest",
    "Engine",
    "FileResult",
    "IntegrityError",
    "Item",
    "LocalSlice",
    "NetworkSettings",
    "NotFound",
    "OmnigetError",
    "ParseError",
    "Piece",
    "RateLimited",
    "Refused",
    "RemoteError",
    "RemoteNotFound",
    "Report",
    "Settings",
    "SourceError",
    "StorageError",
    "TransferError",
    "Transform",
    "TransientError",
    "UnsupportedURL",
    "UsageError",
    "Writer",
    "__version__",
    "adownload",
    "aextract",
    "download",
    "extract",
    "load_settings",
    "stream",
]
