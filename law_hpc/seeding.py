"""Stable seeds: every random stream of a run derives from the base seed and its own coordinates."""
from __future__ import annotations

import hashlib

import torch


def derive_seed(*parts) -> int:
    """A 63-bit seed from any printable parts, stable across processes, runs and Python versions.

    derive_seed(cfg.seed, "init", rank, episode) is the seed of a searcher's classifier
    initialisation in that episode; every stream names its purpose so streams never collide.
    """
    text = "/".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") >> 1


def rng_states() -> dict:
    """The global RNG states a checkpoint holds (torch's CPU generator, and CUDA's where present): dropout
    draws from them; batches, augmentation and exploration draw from generators seeded by derive_seed."""
    states = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    """Restore what `rng_states` returned (CUDA's only where CUDA is present)."""
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
