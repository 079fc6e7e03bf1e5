"""Stable seeds: every random stream of a run derives from the base seed and its own coordinates."""
from __future__ import annotations

import hashlib


def derive_seed(*parts) -> int:
    """A 63-bit seed from any printable parts, stable across processes, runs and Python versions.

    derive_seed(cfg.seed, "init", rank, episode) is the seed of a searcher's classifier
    initialisation in that episode; every stream names its purpose so streams never collide.
    """
    text = "/".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") >> 1
