"""Deterministic test payloads, fast at any size.

``payload(n, seed)`` returns ``n`` bytes that depend only on ``(n's prefix, seed)``:
``payload(a, s)`` is a prefix of ``payload(b, s)`` for ``a < b``. It is one random 1 MiB
block per seed, rotated by a different offset for each MiB, so no two MiB blocks are equal
and nothing compresses; 64 MiB takes a few tens of milliseconds.
"""

from __future__ import annotations

import functools
import random

__all__ = ["payload"]

_BLOCK = 1 << 20


@functools.lru_cache(maxsize=8)
def _double_block(seed: int) -> memoryview:
    block = random.Random(seed).randbytes(_BLOCK)
    return memoryview(block + block)  # any rotation of the block is one slice of this


def payload(n: int, seed: int = 0) -> bytes:
    """``n`` deterministic pseudo-random bytes for ``seed``."""
    if n < 0:
        raise ValueError("n must be >= 0")
    double = _double_block(seed)
    parts = []
    for i, start in enumerate(range(0, n, _BLOCK)):
        r = (i * 7919 * 61) % _BLOCK
        parts.append(double[r : r + min(_BLOCK, n - start)])
    return b"".join(parts)
