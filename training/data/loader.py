"""The training loop's view of the data: batches in a fixed order, a position to save, errors counted.

:class:`ManifestLoader` runs a :class:`ManifestDataset` through a PyTorch ``DataLoader``
(worker processes, prefetching, optional pinned memory) and keeps the position, epoch and
batch index, that a checkpoint saves. Restoring it reproduces the exact batch sequence,
for any number of loader workers (the sampler shards by whole batches).

Frames that fail to decode arrive as error records in their batch. The loader reports each
one (episode, frame, camera) and stops the run with :class:`TrainingDataError` once more
than ``max_decode_errors`` have failed; the count is part of the saved position, so a
resumed run keeps counting.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader

from training.data.dataset import ManifestData, ManifestDataset, TrainingDataError

log = logging.getLogger("a1pipe.training.data")

STATE_VERSION = 1
#: error records kept for the run's report (the count is exact; the list is bounded)
MAX_ERROR_RECORDS = 1000


def _worker_init(_: int) -> None:
    # Each worker decodes on one core; more threads per worker only contend with the others.
    torch.set_num_threads(1)


class ManifestLoader:
    """Iterate one epoch per ``for`` loop, from the saved position; epochs advance by themselves."""

    def __init__(self, data: ManifestData, *, rank: int = 0, world_size: int = 1, num_workers: int | None = None,
                 pin_memory: bool = False):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.data = data
        self.rank, self.world_size = rank, world_size
        self.num_workers = data.config.num_workers if num_workers is None else num_workers
        self.pin_memory = pin_memory
        self.epoch = 0
        self.batch = 0
        self.decode_errors = 0
        self.error_records: list[dict[str, Any]] = []

    @property
    def batches_per_epoch(self) -> int:
        return self.data.batches_per_epoch(self.world_size)

    def __len__(self) -> int:
        """Batches left in the current epoch."""
        return self.batches_per_epoch - self.batch

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self.batches_per_epoch == 0:
            raise TrainingDataError(
                f"manifest {self.data.manifest_dir} split {self.data.split!r}: {self.data.sampler.samples_per_epoch} "
                f"samples per epoch make no whole batch of {self.data.config.batch_size} x {self.world_size} ranks")
        dataset = ManifestDataset(self.data, epoch=self.epoch, start_batch=self.batch, rank=self.rank,
                                  world_size=self.world_size)
        if self.num_workers == 0:
            batches: Any = iter(dataset)
        else:
            # A worker gets its next task only when the batch it sent prefetch_factor tasks ago has been
            # taken here, so prefetch_factor + 2 buffers per worker are never overwritten before the copy below.
            prefetch = self.data.config.prefetch_factor
            dataset.shared_buffers = prefetch + 2
            batches = iter(DataLoader(dataset, batch_size=None, num_workers=self.num_workers,
                                      prefetch_factor=prefetch, worker_init_fn=_worker_init))
        for batch in batches:
            if batch["batch_index"] != self.batch or batch["epoch"] != self.epoch:
                raise RuntimeError(f"loader out of order: got epoch {batch['epoch']} batch {batch['batch_index']}, "
                                   f"expected epoch {self.epoch} batch {self.batch}")
            if self.num_workers:  # out of the worker's reused buffer, before another batch is asked for
                batch["images"] = batch["images"].pin_memory() if self.pin_memory else batch["images"].clone()
            elif self.pin_memory:
                batch["images"] = batch["images"].pin_memory()
            self.batch += 1
            self._account(batch["errors"])
            if batch["size"]:
                yield batch
        self.epoch += 1
        self.batch = 0

    def _account(self, errors: list[dict[str, Any]]) -> None:
        limit = self.data.config.max_decode_errors
        for e in errors:
            self.decode_errors += 1
            if len(self.error_records) < MAX_ERROR_RECORDS:
                self.error_records.append(dict(e, epoch=self.epoch))
            where = f"{e['episode_id']} frame {e['frame']}" + (f" camera {e['camera']}" if e["camera"] else "")
            log.warning("skipped a sample: %s failed to read: %s (%d of at most %d)", where, e["message"],
                        self.decode_errors, limit)
            if self.decode_errors > limit:
                raise TrainingDataError(
                    f"{self.decode_errors} frames failed to decode, more than training.data.max_decode_errors="
                    f"{limit}; the last: {where}: {e['message']}")

    # --- the position a checkpoint saves ------------------------------------------------------------

    def _identity(self) -> dict[str, Any]:
        c = self.data.config
        return {"manifest_table_sha256": self.data.manifest["table"]["sha256"], "split": self.data.split,
                "seed": c.seed, "batch_size": c.batch_size, "world_size": self.world_size,
                "samples_per_epoch": self.data.sampler.samples_per_epoch}

    def state_dict(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "epoch": self.epoch, "batch": self.batch,
                "decode_errors": self.decode_errors, **self._identity()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved position; refuse one saved for another manifest, seed or batch layout."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"loader state version {state.get('version')!r}, this a1pipe reads {STATE_VERSION}")
        mine = self._identity()
        differ = {k: (state.get(k), v) for k, v in mine.items() if state.get(k) != v}
        if differ:
            detail = ", ".join(f"{k}: saved {a!r}, now {b!r}" for k, (a, b) in sorted(differ.items()))
            raise ValueError(f"cannot resume the data position: the run's data settings changed ({detail})")
        if not 0 <= state["batch"] <= self.batches_per_epoch:
            raise ValueError(f"saved batch {state['batch']} outside 0..{self.batches_per_epoch}")
        self.epoch, self.batch, self.decode_errors = int(state["epoch"]), int(state["batch"]), int(state["decode_errors"])
