"""omniget's one error tree. Behaviour is data: ``retryable``, ``retry_after``,
``max_retries``, ``exit_code``.

::

    OmnigetError                 exit 1
    ├── UsageError               exit 2: bad arguments or config
    ├── SourceError              .source, .url
    │   ├── UnsupportedURL       exit 2: no source matched
    │   ├── NotFound             exit 6: removed, expired, 404
    │   ├── AuthRequired         exit 5: login, token, password or cookie needed or wrong;
    │   │                        also HTTP 401/403/407 (raised at the transport edge)
    │   ├── RateLimited          exit 3 once retries run out; retryable
    │   ├── Refused              exit 8: DRM, live without --live, unsafe target
    │   └── ParseError           exit 1: the site or manifest changed shape
    ├── TransferError            .item, .piece, .status (HTTP)
    │   ├── TransientError       exit 3: timeouts, resets, 5xx, 429, short bodies (retryable)
    │   ├── RemoteError          exit 3: permanent 4xx, refused redirect, TLS failure
    │   │   └── RemoteNotFound   exit 6: 404 / 410 (also a NotFound)
    │   └── IntegrityError       exit 4: digest or size mismatch (see below)
    ├── StorageError             exit 7: disk full, permissions, journal problems
    └── Cancelled                exit 130: interrupted; state saved

An IntegrityError is retryable. A piece (or an encoded body that fails its own check or
the server's digest of it) is fetched again as any retryable error is, within
``--retries``; an answer whose size is not the file's, once more. A whole file that
misses its size or digest is downloaded again at most twice, never past ``--retries``;
one whose download hashes as the one before it (the same digest wanted, the same got)
fails at once, as the server sends those bytes. A file that misses its digest keeps its
bytes in its part file for a rerun (see ``engine/finish.py``).

The exit-code table is these classes' ``exit_code``: the CLI and ``Report.exit_code`` read
it.

Foreign exceptions (pycurl's, ftplib's, OSError) are translated at the transport and
file edges only; the retry policy asks nothing but ``retryable``, ``retry_after`` and
``max_retries``.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable
from typing import Any, ClassVar

from .masks import mask_secrets

__all__ = [
    "AuthRequired",
    "Cancelled",
    "IntegrityError",
    "NotFound",
    "OmnigetError",
    "ParseError",
    "RateLimited",
    "Refused",
    "RemoteError",
    "RemoteNotFound",
    "SourceError",
    "StorageError",
    "TransferError",
    "TransientError",
    "UnsupportedURL",
    "UsageError",
]

#: The longest ``retry_after`` taken as said (100 years): a longer one (a Retry-After of
#: 400 digits: a float too large, infinity) means the same, "not within any budget", and
#: stays a number a message can say.
LONGEST_RETRY_AFTER = 100 * 365.25 * 86400


class OmnigetError(Exception):
    """Base of every error omniget raises on purpose. Its message has the secrets of the
    URLs it names masked (``?token=***``, ``user:***@``, see :mod:`omniget.masks`): a
    program may log ``str(exc)``. The URL as given is the item's ``download_url`` (and a
    SourceError's ``url``)."""

    exit_code: ClassVar[int] = 1
    retryable: bool = False
    #: At most this many retries for this error, whatever the policy allows (None: no cap).
    max_retries: int | None = None
    #: What the error says that many files may share, naming none of them (a host found
    #: down, a proxy that takes no connection), as ``failed: ...`` or ``not tried: ...``:
    #: the CLI says it once, ``N files failed: ...``. None: the file's own.
    shared: str | None = None
    #: The try reached no server: its name did not resolve, nobody took the connection,
    #: or none was made within the connect timeout (its host may be down: see
    #: ``engine/downhosts.py``).
    unreached: bool = False

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        message = mask_secrets(message)
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message


class UsageError(OmnigetError):
    exit_code = 2

    def __init__(
        self, message: str, *, setting: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        #: The option (``ca-cert``) whose value it is about, when found once the settings
        #: were made: the command says where that value was set (a config file's line, a
        #: variable).
        self.setting = setting


class SourceError(OmnigetError):
    def __init__(
        self,
        message: str,
        *,
        source: str = "",
        url: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.source = source
        self.url = url


class UnsupportedURL(SourceError):
    exit_code = 2


class NotFound(SourceError):
    exit_code = 6


class AuthRequired(SourceError):
    exit_code = 5


class RateLimited(SourceError):
    exit_code = 3
    retryable = True


class Refused(SourceError):
    exit_code = 8


class ParseError(SourceError):
    exit_code = 1


class TransferError(OmnigetError):
    exit_code = 3

    def __init__(
        self,
        message: str,
        *,
        item: Any = None,
        piece: Any = None,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.item = item
        self.piece = piece
        self.status = status


class TransientError(TransferError):
    retryable = True


class RemoteError(TransferError):
    pass


class RemoteNotFound(RemoteError, NotFound):
    """A 404 or 410: a transfer error, and a :class:`NotFound` like a source's (with the
    ``url`` asked, as given: its message masks that URL's secrets)."""

    exit_code = 6

    def __init__(
        self,
        message: str,
        *,
        url: str = "",
        item: Any = None,
        piece: Any = None,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message, item=item, piece=piece, retry_after=retry_after, status=status)
        self.url = url


class IntegrityError(TransferError):
    exit_code = 4
    retryable = True


class StorageError(OmnigetError):
    exit_code = 7
    #: The output folder that could not be made (see engine.outputs.folder_error), else None;
    #: ``within``: the other path its message names (the file in its way), else None.
    folder: str | None = None
    within: str | None = None


class Cancelled(OmnigetError):
    exit_code = 130


def write_error(
    exc: OSError, where: str = "the output", *, what: str | None = "file"
) -> StorageError:
    """One clear line for a failed write to ``where``: its reader went away, or the disk
    under it is full. ``what`` was being written there (None: say nothing of it)."""
    if isinstance(exc, BrokenPipeError):
        return StorageError(f"{where} closed before the whole {what or 'output'} was written")
    why = "disk full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else exc.strerror or str(exc)
    tail = f" (the {what} there is incomplete)" if what else ""
    return StorageError(f"cannot write to {where}: {why}{tail}")


def nearest(word: str, choices: Iterable[str], cutoff: float = 0.75) -> str | None:
    """The choice closest to a mistyped ``word``, if one is close enough (for "did you
    mean" in an error)."""
    import difflib  # (only on an error)

    near = difflib.get_close_matches(word, list(choices), n=1, cutoff=cutoff)
    return near[0] if near else None
