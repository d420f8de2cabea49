"""What a Beam worker does with one work unit: episodes in, published episode files and outcomes out.

Kept apart from the Beam graph (``graph.py``) so that it runs, and is tested, without Beam: a
worker needs only the run's :class:`~pipelines.convert.ConvertConfig`. It is the one place that
writes episode files; every episode leaves it as an *outcome*, converted (with the index row,
statistics and low-dimensional data the driver and curation need) or quarantined with a reason.
"""

from __future__ import annotations

import logging
import os
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines import storage
from pipelines.convert.progress import record_unit
from pipelines.curation import CurationConfig, LowDim
from pipelines.episode_store.errors import EpisodeError, Reason
from pipelines.episode_store.index import CorruptDerivedFile, read_index_rows, summarize_episode_file
from pipelines.episode_store.layout import episode_id, episode_relpath
from pipelines.episode_store.schema import ACTION, STATE, CameraKey
from pipelines.episode_store.stats import EpisodeSetStats
from pipelines.episode_store.writer import write_episode

if TYPE_CHECKING:
    from pipelines.convert import ConvertConfig

log = logging.getLogger("a1pipe.convert")


def apply_worker_settings(tmpdir: str | None) -> None:
    """The process settings a conversion worker needs, applied in the worker itself (``DoFn.setup``):
    a worker on another machine, or started by a worker pool, does not inherit the driver's
    environment.

    - ``HDF5_USE_FILE_LOCKING=FALSE`` (unless the deployment set it): inputs are only read, and
      HDF5's lock fails on filesystems without locks (NFS, many FUSE mounts) and on read-only ones.
    - ``TMPDIR``: the run's private temporary directory (``tmpdir``; None where the workers do not
      share the store's disk, and keep their own), removed with the run's work dir, so that nothing
      the worker leaves there (Beam leaves empty directories) outlives the run.
    """
    os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")
    if tmpdir is not None:
        os.makedirs(tmpdir, exist_ok=True)
        os.environ["TMPDIR"], tempfile.tempdir = tmpdir, None


class UnitWorker:
    """The Beam worker's job for one work unit: run the source's converter (``converters/``) over
    the unit's episodes, write and curate them, and record each outcome. Used inside the Beam DoFn,
    and directly in tests."""

    def __init__(self, config: ConvertConfig, progress_path: str | None = None):
        self.config = config
        self.converter = config.make_converter()
        self.store = storage.at(config.store_root)
        self.progress_path = progress_path
        self.image_signal = CurationConfig.from_params(config.curation).uses_images
        self._published: dict[str, tuple[str, int, str]] | None = None

    def _recorded_sha256(self, eid: str, rel: str) -> str | None:
        """The digest the store's index records for a published episode file, when the file is the one
        it describes (same path and size): resume trusts it rather than hashing every file again. The
        index is written atomically after the files it lists; a file written since has no row.

        Only for a store on this machine's disk: from an object store the episode is downloaded to be
        summarised anyway, and hashing that copy costs little beside the download."""
        if self.store.local is None:
            return None
        if self._published is None:
            try:
                rows = read_index_rows(self.store.local)
            except CorruptDerivedFile:
                rows = []  # rebuilt from the files at the end of the run; nothing to trust meanwhile
            self._published = {r["episode_id"]: (r["path"], int(r["size_bytes"]), r["sha256"]) for r in rows}
        recorded = self._published.get(eid)
        if recorded is None or recorded[0] != rel:
            return None
        try:
            size = os.path.getsize(self.store.local / rel)
        except OSError:
            return None
        return recorded[2] if size == recorded[1] else None

    def convert_unit(self, unit: str) -> Iterator[dict[str, Any]]:
        """The unit's outcomes, each naming the unit: the driver counts them against the unit's record."""
        try:
            for source_episode, opener in self.converter.episodes(unit):
                yield {**self.convert_episode(source_episode, opener), "unit": unit}
        except EpisodeError as exc:
            yield {**_quarantine(unit, None, exc.reason, exc.message), "unit": unit}
        except Exception as exc:  # a bug or an unforeseen failure must not end the run
            log.error("unit %s failed:\n%s", unit, traceback.format_exc())
            yield {**_quarantine(unit, None, Reason.CONVERTER_ERROR, f"{type(exc).__name__}: {exc}"), "unit": unit}
        finally:
            if self.progress_path is not None:
                record_unit(self.progress_path, unit)

    def convert_episode(self, source_episode: str, opener) -> dict[str, Any]:
        eid = episode_id(self.config.source, source_episode)
        rel = episode_relpath(eid)
        if self.store.exists(rel):
            try:
                with self.store.working_copy(fetch=[rel]) as root:
                    outcome = self._summarize(root, source_episode, eid, rel, resumed=True)
            except Exception as exc:  # damaged published file: convert it again
                log.warning("re-converting %s: published file unreadable (%s)", eid, exc)
            else:
                outdated = self._outdated(outcome)
                if outdated is None:
                    return outcome
                log.info("re-converting %s: %s", eid, outdated)
        try:
            # the episode is summarised from the file as written, so the index describes what is stored
            with self.store.working_copy(publish=[rel]) as root:
                with self.converter.read(opener) as episode:
                    write_episode(episode, root, self.config.image, max_abs_value=self.config.max_abs_value)
                return self._summarize(root, source_episode, eid, rel, resumed=False)
        except EpisodeError as exc:
            return _quarantine(source_episode, eid, exc.reason, exc.message)
        except Exception as exc:
            log.error("episode %s failed:\n%s", source_episode, traceback.format_exc())
            return _quarantine(source_episode, eid, Reason.CONVERTER_ERROR, f"{type(exc).__name__}: {exc}")

    def _outdated(self, outcome: dict[str, Any]) -> str | None:
        """Why a published episode is not what this run would write (None if it is): resuming
        must never keep episodes from another converter version or other image settings."""
        written = outcome["index_row"]["converter_version"]
        if written != self.converter.converter_version:
            return f"written by converter version {written}, now {self.converter.converter_version}"
        image = self.config.image
        for name, cam in sorted(outcome["cameras"].items()):
            settings = (cam.get(CameraKey.QUALITY), cam.get(CameraKey.RESIZE))
            if settings != (image.quality, image.resize):
                return f"camera '{name}' stored with quality/resize {settings}, now {(image.quality, image.resize)}"
            if image.resize != "none" and (cam.get(CameraKey.HEIGHT), cam.get(CameraKey.WIDTH)) != (image.height, image.width):
                return f"camera '{name}' stored at {cam.get(CameraKey.HEIGHT)}x{cam.get(CameraKey.WIDTH)}, now {image.height}x{image.width}"
        return None

    def _summarize(self, root: Path, source_episode: str, eid: str, rel: str, resumed: bool) -> dict[str, Any]:
        known = self._recorded_sha256(eid, rel) if resumed else None
        row, low = summarize_episode_file(root, rel, image_change=self.image_signal, sha256=known)
        stats = EpisodeSetStats.of_episode(low["arrays"], low["names"], eid)
        low_dim = LowDim(
            episode_id=eid, source=row["source"], embodiment=row["embodiment"], control_hz=low["control_hz"],
            timestamp=low["timestamp"], state=low["arrays"][STATE], action=low["arrays"][ACTION],
            state_names=low["names"][STATE], action_names=low["names"][ACTION],
            image_change=low.get("image_change"),
            success=low["success"] if isinstance(low.get("success"), bool) else None,
        )
        return {
            "source_episode": source_episode,
            "episode_id": eid,
            "status": "converted",
            "reason": None,
            "message": "already in store (resumed)" if resumed else "",
            "resumed": resumed,
            "num_frames": row["num_frames"],
            "camera_frames": row["num_frames"] * len(row["cameras"]),
            "index_row": row,
            "stats_key": [row["source"], row["embodiment"]],
            "stats": stats,
            "low_dim": low_dim,
            "content_sha256": low["content_sha256"],
            "cameras": low["cameras"],
        }


def _quarantine(source_episode: str, eid: str | None, reason: Reason | str, message: str) -> dict[str, Any]:
    log.warning("quarantined %s [%s] %s", source_episode, reason, message)
    return {
        "source_episode": source_episode,
        "episode_id": eid,
        "status": "quarantined",
        "reason": str(Reason(reason)),
        "message": message,
        "resumed": False,
        "num_frames": 0,
        "camera_frames": 0,
    }
