"""The public surface: exports, laziness of extract, errors raised early."""

from __future__ import annotations

import inspect

import pytest

import omniget


def test_all_is_exact_and_sorted() -> None:
    public = {n for n in dir(omniget) if not n.startswith("_")} | {"__version__"}
    modules = {n for n in public if inspect.ismodule(getattr(omniget, n, None))}
    assert set(omniget.__all__) == public - modules
    assert omniget.__all__ == sorted(omniget.__all__)


def test_extract_is_lazy_and_megaloader_shaped() -> None:
    gen = omniget.extract("https://example.test/files/a.bin")
    assert inspect.isgenerator(gen)
    item = next(gen)
    assert (item.download_url, item.filename, item.size_bytes) == (
        "https://example.test/files/a.bin",
        "a.bin",
        None,
    )
    assert item.collection_name is None and item.source_id is None and dict(item.headers) == {}
    assert list(gen) == []


def test_extract_unknown_url_fails_at_once() -> None:
    with pytest.raises(omniget.UnsupportedURL):
        omniget.extract("not a url")


def test_error_tree_exit_codes() -> None:
    codes = {
        omniget.UsageError: 2,
        omniget.UnsupportedURL: 2,
        omniget.NotFound: 6,
        omniget.AuthRequired: 5,
        omniget.RateLimited: 3,
        omniget.Refused: 8,
        omniget.ParseError: 1,
        omniget.TransientError: 3,
        omniget.RemoteError: 3,
        omniget.RemoteNotFound: 6,
        omniget.IntegrityError: 4,
        omniget.StorageError: 7,
        omniget.Cancelled: 130,
    }
    for cls, code in codes.items():
        assert issubclass(cls, omniget.OmnigetError)
        assert cls("x").exit_code == code
    assert omniget.TransientError("x").retryable and not omniget.RemoteError("x").retryable
