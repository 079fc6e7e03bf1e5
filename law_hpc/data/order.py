"""Which samples a rank trains on, and in what order: a pure function of (stream_seed, epoch).

Every epoch is one permutation of the whole training split, shared by all ranks and cut into
`num_shards` equal contiguous shards (shard = global rank). Each rank gets the same number of full
batches; the few samples left over (< num_shards x batch) change with the permutation every epoch.
"""
from __future__ import annotations

import numpy as np

from ..seeding import derive_seed


class EpochOrder:
    def __init__(self, num_samples: int, batch_size: int, shard: tuple[int, int] = (0, 1)):
        self.num_samples, self.batch_size = num_samples, batch_size
        self.shard_id, self.num_shards = shard
        self.per_shard = num_samples // self.num_shards
        self.batches_per_epoch = self.per_shard // batch_size
        if self.batches_per_epoch == 0:
            raise ValueError(f"{num_samples} training images make no full batch of {batch_size} per rank "
                             f"({self.num_shards} ranks)")

    def permutation(self, stream_seed: int, epoch: int) -> np.ndarray:
        """The epoch's order of the whole split (before sharding)."""
        return np.random.default_rng(derive_seed(stream_seed, "order", epoch)).permutation(self.num_samples)

    def epoch_order(self, stream_seed: int, epoch: int) -> np.ndarray:
        """This shard's positions in the training split for `epoch`."""
        start = self.shard_id * self.per_shard
        return self.permutation(stream_seed, epoch)[start:start + self.per_shard]
