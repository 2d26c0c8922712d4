"""Deterministic benchmark data, generated once into a cache directory, with sha256 manifests.

A data set is ``count`` files of ``size`` bytes each, in ``<www>/<name>/``, where the name
encodes both numbers so that a ``--quick`` set never collides with a full one. File contents
are seeded pseudo-random bytes (incompressible, the same on every machine).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

_CHUNK = 1 << 20


@dataclass(frozen=True)
class DataSet:
    name: str
    root: Path  # directory holding the files, served as /<name>/
    files: dict[str, str]  # file name -> sha256 hex
    size: int  # bytes per file

    @property
    def total_bytes(self) -> int:
        return self.size * len(self.files)


def dataset_name(count: int, size: int) -> str:
    return f"n{count}x{size}"


def _file_name(index: int, count: int) -> str:
    if count == 1:
        return "blob.bin"
    return f"f{index:05d}.bin"


def _write_file(path: Path, size: int, seed: int) -> str:
    rng = random.Random(seed)
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            block = rng.randbytes(min(_CHUNK, left))
            digest.update(block)
            f.write(block)
            left -= len(block)
    return digest.hexdigest()


def ensure_dataset(www: Path, count: int, size: int, log: bool = True) -> DataSet:
    """Return the data set, generating it (and its manifest) if the cache lacks it."""
    name = dataset_name(count, size)
    root = www / name
    manifest = www / f"{name}.sha256.json"
    if manifest.is_file():
        files: dict[str, str] = json.loads(manifest.read_text())
        if len(files) == count and all((root / n).is_file() for n in files):
            return DataSet(name, root, files, size)
    if log:
        print(f"  generating {name} ({count} x {size} bytes) ...", flush=True)
    if root.exists():
        shutil.rmtree(root)
    tmp = www / f".{name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    files = {}
    for i in range(count):
        fname = _file_name(i, count)
        files[fname] = _write_file(tmp / fname, size, seed=(count * 1_000_003 + size) ^ i)
    os.rename(tmp, root)
    manifest.write_text(json.dumps(files, indent=0, sort_keys=True))
    return DataSet(name, root, files, size)


def warm_page_cache(ds: DataSet) -> None:
    """Read every source file once so that no timed run pays for disk reads on the server."""
    for fname in ds.files:
        with open(ds.root / fname, "rb") as f:
            while f.read(8 * _CHUNK):
                pass


def verify_output(out_dir: Path, ds: DataSet) -> str | None:
    """Check every expected file in out_dir (at any depth) against its sha256.

    Returns None when all files are present, correct and nothing else was left behind,
    else a short reason.
    """
    found: dict[str, list[Path]] = {}
    extra: list[str] = []
    for dirpath, _dirs, names in os.walk(out_dir):
        for n in names:
            p = Path(dirpath) / n
            if n in ds.files:
                found.setdefault(n, []).append(p)
            else:
                extra.append(str(p.relative_to(out_dir)))
    missing = [n for n in ds.files if n not in found]
    if missing:
        return f"{len(missing)} of {len(ds.files)} files missing (e.g. {missing[0]})"
    dup = [n for n, ps in found.items() if len(ps) > 1]
    if dup:
        return f"{len(dup)} files saved more than once (e.g. {dup[0]})"
    bad = 0
    first_bad = ""
    for n, expected in ds.files.items():
        path = found[n][0]
        if path.stat().st_size != ds.size:
            bad += 1
            first_bad = first_bad or f"{n}: size {path.stat().st_size} != {ds.size}"
            continue
        with open(path, "rb") as f:
            got = hashlib.file_digest(f, "sha256").hexdigest()
        if got != expected:
            bad += 1
            first_bad = first_bad or f"{n}: sha256 mismatch"
    if bad:
        return f"{bad} files wrong ({first_bad})"
    if extra:
        return f"{len(extra)} unexpected files left behind (e.g. {extra[0]})"
    return None
