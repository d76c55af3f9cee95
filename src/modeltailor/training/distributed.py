"""Embedding extraction over several processes, GPUs or nodes (`--devices N --distributed ddp`).

A linear probe's cost is the frozen forward pass; its head fits in seconds. So the probe
spreads only the extraction: Lightning Fabric starts the processes the way the Trainer does
for trained strategies (the same command line again, one process per device; multi-node
through Lightning's launchers and environment variables), each rank embeds every
`world_size`-th item that the content-keyed cache lacks and writes its own shards (uuid-named
files: ranks never write the same file), all ranks wait at a barrier, and rank 0 reads every
row from the cache and fits the head. The others stop there, as DDP workers of trained
strategies do; so rank 0's run equals a one-process run on the same cache.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Shard:
    """This process's part of an extraction: items i with i % world_size == rank."""

    rank: int = 0
    world_size: int = 1
    barrier: Any = None  # () -> None, waits for every rank; None in one process

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def take(self, indices: list[int]) -> list[int]:
        """Every world_size-th of `indices`, starting at this rank's position."""
        return indices[self.rank :: self.world_size]

    def wait(self) -> None:
        if self.barrier is not None:
            self.barrier()


ONE_PROCESS = Shard()


def extraction_shard(settings: Any) -> Shard:
    """The processes `settings` asks for (devices > 1 and a distributed strategy), started
    and joined; one process otherwise."""
    devices, strategy = settings.devices, settings.distributed
    if not strategy or not isinstance(devices, int) or devices < 2:
        return ONE_PROCESS
    from lightning.fabric import Fabric

    accelerator = "cuda" if torch.cuda.is_available() else "cpu"
    if accelerator == "cpu":  # the processes share the cores instead of oversubscribing
        torch.set_num_threads(max(1, (os.cpu_count() or 2) // devices))
    fabric = Fabric(accelerator=accelerator, devices=devices, strategy=strategy)
    fabric.launch()
    return Shard(fabric.global_rank, fabric.world_size, fabric.barrier)
