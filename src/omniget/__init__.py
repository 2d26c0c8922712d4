"""omniget: get files from wherever they live — fast, resumable, verified.

>>> import omniget
>>> for item in omniget.extract("https://example.com/file.zip"):   # lazy, no request yet
...     print(item.filename)
>>> report = omniget.download(["https://example.com/file.zip"], "downloads")
"""

from collections.abc import Mapping as _Mapping
from pathlib import Path as _Path

from .api import adownload, aextract, download, extract, stream
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


def load_settings(
    config: _Path | None = None,
    environ: _Mapping[str, str] | None = None,
    flags: _Mapping[str, object] | None = None,
) -> tuple[Settings, dict[str, dict[str, object]]]:
    """The settings the CLI would use (config file, environment, flags) and the per-source
    option tables; pass them to :func:`download` / :func:`extract` yourself."""
    from .cli.config import load_settings as _load

    return _load(config, environ, flags)


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
    "__version__",
    "adownload",
    "aextract",
    "download",
    "extract",
    "load_settings",
    "stream",
]
