"""From a released manifest to model-ready samples.

Training reads only released manifests: which episodes, which kept frame ranges, with
which probabilities, from which checksummed files. :class:`ManifestData` resolves a
manifest split against the stores before the first batch and refuses to start when
anything the manifest recorded no longer holds (a missing store, an index that changed
since the manifest was built, a missing episode file, an embodiment without a layout, a
stored dimension the layout does not place). :class:`ManifestDataset` then turns the
sampler's draws into batches.

Why an ``IterableDataset`` over whole batches rather than a map-style dataset with a
sampler: the manifest sampler already defines each epoch as one sequence of draws cut
into batches, and each loader worker produces whole batches of its own share
(:meth:`ManifestSampler.batches`). A worker keeps its episode files open across samples
(a bounded LRU cache), a batch is collated where it is read (one transfer per batch),
and the rank receives batches ``0, 1, 2, ...`` in the same order for any number of
workers, so a run resumes at a batch index and sees exactly the samples it would have
seen. Every random choice of a sample (state masking, augmentation) is keyed by
``(seed, epoch, draw position)``, never by the worker that happens to load it.

A frame that fails to decode is reported with its episode and frame and its sample is
left out of the batch (the batch is one sample smaller); nothing is substituted in its
place, unlike A1's readers, which return sample 0 or a black frame.
"""

from __future__ import annotations

import hashlib
import logging
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from pipelines import storage
from pipelines.episode_store.layout import INDEX_FILE, STATS_FILE, STORE_MARKER
from pipelines.episode_store.reader import EpisodeReader, StoreError
from pipelines.episode_store.schema import (
    ACTION,
    ACTION_PADDED_EXTRA,
    STATE,
    VECTORS,
    MetaKey,
)
from pipelines.manifest.format import ManifestError, file_sha256, load_manifest
from pipelines.manifest.sampler import ManifestSampler
from training.config import DataConfig
from training.data.images import Augmenter, decode_into
from training.data.layouts import LayoutError, LayoutTable, VectorLayout
from training.data.normalize import NormalizationError, Normalizer
from training.data.spec import DataSpec, EmbodimentCodec

log = logging.getLogger("a1pipe.training.data")

#: errors a bad frame or episode file can raise while being read and decoded
READ_ERRORS = (OSError, ValueError, StoreError, SyntaxError, EOFError, KeyError, struct.error, zipfile.BadZipFile)
_MAX_LISTED = 20
#: episode files downloaded at once from an object store (each mostly waits on the network)
_DOWNLOADS = 8


class TrainingDataError(RuntimeError):
    """Training cannot start (or continue) on this data; the message names every problem found."""


def _fail(problems: list[str], what: str) -> None:
    if problems:
        listed = "\n  ".join(problems[:_MAX_LISTED])
        more = f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
        raise TrainingDataError(f"{what}:\n  {listed}{more}")


class ManifestData:
    """A manifest split resolved against the stores, checked before any training step."""

    def __init__(self, manifest_dir: str | Path, config: DataConfig, *, split: str = "train"):
        self.manifest_dir = Path(manifest_dir)
        self.config = config
        self.split = split
        try:
            self.manifest, _ = load_manifest(self.manifest_dir)
            self.sampler = ManifestSampler.from_manifest(self.manifest_dir, split=split, seed=config.seed,
                                                         samples_per_epoch=config.samples_per_epoch)
        except (ManifestError, OSError, ValueError) as exc:
            raise TrainingDataError(f"manifest {self.manifest_dir}: {exc}") from exc
        self.rows: list[dict[str, Any]] = self.sampler.rows or []
        #: where the stores are: a directory, or an object-store prefix (``s3://``, ``gs://``) whose
        #: files are read through copies on this machine's disk (``training.data.cache_dir``)
        self.data_root = storage.at(config.data_root)
        self.stores = self._check_stores()
        #: each row's episode file on this machine's disk
        self.episode_paths = self._check_files()
        try:
            self.table = LayoutTable.load(config.layouts, camera_slots=config.camera_slots,
                                          max_state_dim=config.max_state_dim, max_action_dim=config.max_action_dim)
        except LayoutError as exc:
            raise TrainingDataError(str(exc)) from exc
        self.groups = sorted({(r["dataset"], r["embodiment"]) for r in self.rows})
        try:
            self.normalizer = Normalizer.from_stores(config.normalization, config.normalization_scope,
                                                     self.stores.values(), self.groups)
        except NormalizationError as exc:
            raise TrainingDataError(f"manifest {self.manifest_dir}: {exc}") from exc
        self._codecs: dict[tuple[str, str], EmbodimentCodec] = {}
        keys = self._check_layouts()
        self.spec = DataSpec.from_config(config, self.table, keys, self.normalizer, {
            "name": self.manifest["name"], "split": split, "table_sha256": self.manifest["table"]["sha256"],
            "episodes": len(self.rows), "frames_kept": int(sum(r["frames_kept"] for r in self.rows)),
        })

    def _check_stores(self) -> dict[str, Path]:
        """Each store's directory on this machine's disk (for its index and statistics)."""
        recorded = {i["store"]: i for i in self.manifest["inputs"]}
        problems, stores = [], {}
        for name in sorted({r["store"] for r in self.rows}):
            where = self.data_root.child(name)
            entry = recorded.get(name)
            if entry is None:
                problems.append(f"store {name}: referenced by the table but not among the manifest's inputs")
            elif (path := self._store_files(where)) is None:
                problems.append(f"store {name}: not found at {where.root} "
                                f"(training.data.data_root is {self.data_root.root})")
            elif (digest := file_sha256(path / INDEX_FILE)) != entry["index_sha256"]:
                problems.append(f"store {name}: {INDEX_FILE} sha256 {digest[:12]}... differs from the "
                                f"{entry['index_sha256'][:12]}... the manifest was built from; the store was "
                                f"re-converted or edited since (rebuild the manifest, or restore the store)")
            else:
                stores[name] = path
        _fail(problems, f"manifest {self.manifest_dir} does not match the stores under {self.data_root.root}")
        return stores

    def _store_files(self, where: storage.Storage) -> Path | None:
        """The store's directory, or None when it is not a store. Of a store on object storage, its
        marker, index and statistics are downloaded anew into the cache (small, and they must be the
        store's current ones: the index is checked against the manifest)."""
        if where.local is not None:
            found = (where.local / STORE_MARKER).is_file() and (where.local / INDEX_FILE).is_file()
            return where.local if found else None
        if where.present(STORE_MARKER, INDEX_FILE) != [STORE_MARKER, INDEX_FILE]:
            return None
        local = Path(self.config.cache_dir, "stores", hashlib.sha256(where.root.encode()).hexdigest()[:16], where.name)
        present = where.present(STORE_MARKER, INDEX_FILE, STATS_FILE)
        for name in (STORE_MARKER, INDEX_FILE, STATS_FILE):
            if name in present:
                storage.publish_local(local / name, lambda tmp, name=name: where.download(name, tmp))
            else:  # never an earlier run's copy in its place
                (local / name).unlink(missing_ok=True)
        return local

    def _check_files(self) -> list[Path]:
        """Each row's episode file on this machine's disk; episode files on object storage are
        downloaded into the cache (several at a time) unless it has them already."""
        stores = {name: self.data_root.child(name) for name in {r["store"] for r in self.rows}}
        if self.data_root.local is None:
            with ThreadPoolExecutor(_DOWNLOADS) as pool:
                located = list(pool.map(lambda r: self._locate(r, stores[r["store"]]), self.rows))
        else:
            located = [self._locate(r, stores[r["store"]]) for r in self.rows]
        _fail([problem for _, problem in located if problem], f"manifest {self.manifest_dir}: episode files")
        return [path for path, _ in located]

    def _locate(self, r: dict[str, Any], store: storage.Storage) -> tuple[Path | None, str | None]:
        """(the row's episode file on disk, None), or (None, what is wrong with it)."""
        try:
            path = store.local_file(r["path"], r["sha256"], self.config.cache_dir)
        except FileNotFoundError:
            return None, f"{r['episode_id']}: episode file missing ({store.path(r['path'])})"
        except ValueError as exc:  # a download whose digest is not the manifest's
            return None, f"{r['episode_id']}: {exc}"
        if not path.is_file():
            return None, f"{r['episode_id']}: episode file missing ({path})"
        if self.config.verify_files and file_sha256(path) != r["sha256"]:
            return None, f"{r['episode_id']}: {path} sha256 differs from the manifest"
        return path, None

    def _check_layouts(self) -> list[str]:
        """Every (dataset, embodiment) has a layout that places or drops each dimension its store records."""
        problems, keys = [], set()
        names = self._stored_names()
        for dataset, embodiment in self.groups:
            try:
                entry = self.table.entry(dataset, embodiment)
                keys.add(entry.key)
                for field in VECTORS:
                    self.table.vector(entry, field, names[(dataset, embodiment)][field])
            except LayoutError as exc:
                problems.append(str(exc))
        _fail(problems, "camera and dimension layouts (training.data.layouts) do not fit the manifest's embodiments")
        return sorted(keys)

    def _stored_names(self) -> dict[tuple[str, str], dict[str, list[str]]]:
        import json

        out: dict[tuple[str, str], dict[str, list[str]]] = {}
        for path in self.stores.values():
            sources = json.loads((path / STATS_FILE).read_text()).get("sources", {})
            for dataset, embodiment in self.groups:
                entry = sources.get(dataset, {}).get("embodiments", {}).get(embodiment)
                if entry is not None and (dataset, embodiment) not in out:
                    out[(dataset, embodiment)] = {f: list(entry[f]["names"]) for f in VECTORS}
        return out

    def codec(self, dataset: str, embodiment: str) -> EmbodimentCodec:
        """One codec per embodiment for the whole run: it caches the resolved layouts."""
        key = (dataset, embodiment)
        if key not in self._codecs:
            self._codecs[key] = self.spec.codec(dataset, embodiment)
        return self._codecs[key]

    def batches_per_epoch(self, world_size: int = 1) -> int:
        return self.sampler.batches_per_epoch(self.config.batch_size, world_size)


@dataclass
class FrameError(Exception):
    """One frame (or a whole episode file) could not be read; its sample is skipped."""

    episode_id: str
    frame: int
    camera: str | None
    message: str
    position: int = -1

    def record(self) -> dict[str, Any]:
        return {"episode_id": self.episode_id, "frame": self.frame, "camera": self.camera,
                "message": self.message, "position": self.position}


class _OpenEpisode:
    """An open episode file with everything a sample needs precomputed once."""

    def __init__(self, reader: EpisodeReader, row: dict[str, Any], codec: EmbodimentCodec, slots: tuple[str, ...],
                 subtasks: bool):
        self.reader = reader
        meta = reader.meta
        self.state_names, self.action_names = list(meta[MetaKey.STATE_NAMES]), list(meta[MetaKey.ACTION_NAMES])
        self.state_layout: VectorLayout = codec.layout(STATE, self.state_names)
        self.action_layout: VectorLayout = codec.layout(ACTION, self.action_names)
        self.state = codec.normalizer.normalize(codec.norm_key, STATE, reader.state, self.state_names)
        self.action = codec.normalizer.normalize(codec.norm_key, ACTION, reader.action, self.action_names)
        cameras = set(meta[MetaKey.CAMERAS])
        self.slot_cameras = [codec.entry.camera_for(s) if codec.entry.camera_for(s) in cameras else None
                             for s in slots]
        self.ranges = np.array([(k["start"], k["stop"]) for k in row["kept_ranges"]], dtype=np.int64).reshape(-1, 2)
        valid = np.ones(reader.num_frames, dtype=bool)
        if ACTION_PADDED_EXTRA in meta.get(MetaKey.EXTRAS, {}):
            valid &= ~(np.asarray(reader.extra(ACTION_PADDED_EXTRA)).reshape(reader.num_frames, -1)[:, 0] > 0.5)
        self.action_valid = valid
        self.subtasks = reader.subtasks() if subtasks else None  # read only when the prompt uses them

    def range_end(self, frame: int) -> int:
        i = int(np.searchsorted(self.ranges[:, 1], frame, side="right"))
        if i >= len(self.ranges) or not self.ranges[i, 0] <= frame < self.ranges[i, 1]:
            raise IndexError(f"frame {frame} is outside the kept ranges {self.ranges.tolist()}")
        return int(self.ranges[i, 1])


class _EpisodeCache:
    """Open episodes of one worker, least recently used closed first (memory flat at any dataset size)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.items: OrderedDict[int, _OpenEpisode] = OrderedDict()

    def get(self, key: int, opener) -> _OpenEpisode:
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        item = opener()
        self.items[key] = item
        while len(self.items) > self.capacity:
            _, old = self.items.popitem(last=False)
            old.reader.close()
        return item

    def close(self) -> None:
        for item in self.items.values():
            item.reader.close()
        self.items.clear()


class ManifestDataset(IterableDataset):
    """Batches of one rank for one epoch, starting at ``start_batch`` (see the module docstring)."""

    def __init__(self, data: ManifestData, *, epoch: int = 0, start_batch: int = 0, rank: int = 0,
                 world_size: int = 1):
        super().__init__()
        self.data = data
        self.config = data.config
        self.epoch, self.start_batch, self.rank, self.world_size = epoch, start_batch, rank, world_size
        self.augmenter = Augmenter(self.config.augment, self.config.image_size)
        self._random = self.config.state_mask_prob > 0 or self.config.augment.enabled
        self._cache: _EpisodeCache | None = None
        #: shared-memory image buffers each loader worker cycles through; 0: a new buffer per batch. Only
        #: safe when the consumer copies a batch's images out before asking for ``shared_buffers - 1``
        #: more batches of the same worker (:class:`ManifestLoader` copies on arrival)
        self.shared_buffers = 0
        self._served = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        self._cache = _EpisodeCache(self.config.open_episodes)
        # Images are decoded straight into the batch's buffer (no per-sample array to stack). A loader
        # worker cycles through buffers in shared memory, allocated once: handing a batch to the
        # training process then copies nothing, and no fresh shared pages fault in per batch (about
        # half the cost of decoding the batch here). The loader copies each batch out as it arrives.
        ring = ([torch.empty((self.config.batch_size,) + self.image_shape, dtype=torch.uint8).share_memory_()
                 for _ in range(self.shared_buffers)] if info is not None and self.shared_buffers else [])
        try:
            for index, positions, draws in self.data.sampler.batches(
                    self.epoch, self.config.batch_size, rank=self.rank, world_size=self.world_size, worker=worker,
                    num_workers=num_workers, start=self.start_batch):
                images = self._image_buffer(ring, len(positions))
                buffer = images.numpy()
                samples, errors = [], []
                for position, (row, frame) in zip(positions.tolist(), draws.tolist()):
                    try:
                        samples.append(self.sample(row, frame, position, images=buffer[len(samples)]))
                    except FrameError as exc:
                        exc.position = position
                        errors.append(exc.record())
                        buffer[len(samples)] = 0
                yield collate(samples, errors=errors, batch_index=index, epoch=self.epoch,
                              images=images[: len(samples)])
        finally:
            self._cache.close()

    def _image_buffer(self, ring: list[torch.Tensor], size: int) -> torch.Tensor:
        if ring:
            self._served += 1
            return ring[(self._served - 1) % len(ring)][:size]
        return torch.empty((size,) + self.image_shape, dtype=torch.uint8)

    @property
    def image_shape(self) -> tuple[int, int, int, int]:
        """(slots, height, width, 3): channels last, as decoded; the model moves channels on its device."""
        height, width = self.config.image_size
        return (len(self.config.camera_slots), height, width, 3)

    def _open(self, row_index: int) -> _OpenEpisode:
        row = self.data.rows[row_index]
        path = self.data.episode_paths[row_index]
        try:
            reader = EpisodeReader(path)
        except READ_ERRORS as exc:
            raise FrameError(row["episode_id"], -1, None, f"episode file unreadable: {exc}") from exc
        try:
            return _OpenEpisode(reader, row, self.data.codec(row["dataset"], row["embodiment"]),
                                self.config.camera_slots, subtasks=self.config.prompt != "instruction")
        except (LayoutError, NormalizationError) as exc:
            reader.close()
            raise TrainingDataError(f"{row['episode_id']} ({path}): {exc}") from exc
        except READ_ERRORS as exc:
            reader.close()
            raise FrameError(row["episode_id"], -1, None, f"episode arrays unreadable: {exc}") from exc

    def sample(self, row_index: int, frame: int, position: int, *, images: np.ndarray | None = None) -> dict[str, Any]:
        """One sample: the draw ``(row_index, frame)`` at ``position`` of the epoch's sequence.

        ``images`` (slots, H, W, 3) is filled in place when given (a row of a batch buffer).
        """
        if self._cache is None:
            self._cache = _EpisodeCache(self.config.open_episodes)
        c = self.config
        row = self.data.rows[row_index]
        try:
            ep = self._cache.get(row_index, lambda: self._open(row_index))
        except FrameError as exc:
            exc.frame = frame
            raise
        # every random choice of a sample comes from a generator keyed by its draw position
        rng = np.random.default_rng((c.seed, self.epoch, int(position), 1)) if self._random else None
        state_dropped = bool(rng.random() < c.state_mask_prob) if rng is not None else False
        plan = self.augmenter.plan(rng) if rng is not None else None

        if images is None:
            images = np.zeros(self.image_shape, dtype=np.uint8)
        image_mask = np.zeros(len(c.camera_slots), dtype=bool)
        for s, camera in enumerate(ep.slot_cameras):
            if camera is None or not c.images:
                images[s] = 0  # buffers are reused: a missing (or withheld) camera must read as black
                continue
            try:
                decode_into(ep.reader.encoded_frame(camera, frame), images[s])
            except READ_ERRORS as exc:
                raise FrameError(row["episode_id"], frame, camera, f"{type(exc).__name__}: {exc}") from exc
            if plan:
                self.augmenter.apply(plan, images[s], rng)
            image_mask[s] = True

        state = ep.state_layout.pack(ep.state[frame])
        if state_dropped:
            state[:] = 0.0
        stop = min(frame + c.chunk, ep.range_end(frame))
        action = np.zeros((c.chunk, c.max_action_dim), dtype=np.float32)
        action[: stop - frame] = ep.action_layout.pack(ep.action[frame:stop])
        time_mask = np.zeros(c.chunk, dtype=bool)
        time_mask[: stop - frame] = ep.action_valid[frame:stop]
        action[~time_mask] = 0.0

        instruction = row["instruction"]
        subtask = ep.subtasks[frame] if ep.subtasks is not None else None
        return {
            "images": images, "image_mask": image_mask,
            "state": state, "state_mask": ep.state_layout.mask, "state_dropped": state_dropped,
            "action": action, "action_mask": ep.action_layout.mask, "action_time_mask": time_mask,
            "text": prompt_text(c.prompt, instruction, subtask), "instruction": instruction, "subtask": subtask,
            "dataset": row["dataset"], "embodiment": row["embodiment"], "episode_id": row["episode_id"],
            "frame": frame, "position": position,
        }


def prompt_text(prompt: str, instruction: str, subtask: str | None) -> str:
    """The text a sample carries (``training.data.prompt``)."""
    if prompt == "instruction" or not subtask:
        return instruction
    if prompt == "subtask":
        return subtask
    return f"{instruction.rstrip(' .')}. {subtask}"


_TENSORS = {"images": torch.uint8, "image_mask": torch.bool, "state": torch.float32, "state_mask": torch.bool,
            "state_dropped": torch.bool, "action": torch.float32, "action_mask": torch.bool,
            "action_time_mask": torch.bool, "frame": torch.int64, "position": torch.int64}
_LISTS = ("text", "instruction", "subtask", "dataset", "embodiment", "episode_id")


def collate(samples: list[dict[str, Any]], *, errors: list[dict[str, Any]], batch_index: int, epoch: int,
            images: torch.Tensor | None = None) -> dict[str, Any]:
    """Stack samples into a batch (tensors for arrays, lists for text and ids); may hold fewer samples
    than ``batch_size`` when frames failed to decode (``errors`` says which). ``images``: the batch's
    image buffer the samples were decoded into, used as is."""
    batch: dict[str, Any] = {"batch_index": batch_index, "epoch": epoch, "errors": errors, "size": len(samples)}
    for key, dtype in _TENSORS.items():
        if key == "images" and images is not None:
            batch[key] = images
        elif samples:
            batch[key] = torch.from_numpy(np.stack([np.asarray(s[key]) for s in samples])).to(dtype)
        else:
            batch[key] = torch.zeros((0,), dtype=dtype)
    for key in _LISTS:
        batch[key] = [s[key] for s in samples]
    return batch
