"""The conversion pipeline: discover -> read -> curate -> write, as an Apache Beam pipeline.

``a1pipe convert`` builds one pipeline per source. Work units (files, shards)
are distributed over workers; each worker converts its units episode by
episode, publishes each episode atomically and emits an *outcome* (converted or
quarantined with a reason code). Outcomes and mergeable statistics are written
by Beam as sharded files under ``STORE/.work/<run>/``; the driver then writes
``index.parquet``, ``stats.json`` and ``conversion_report.json``. The same code
runs on Beam's local multi-process runner (default) and on Flink, Spark or
Dataflow: extra Beam options pass straight through.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
import threading
import time
import traceback
import uuid
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from converters import get_converter
from pipelines import storage
from pipelines.curation import (
    BoundsAccumulator,
    CurationConfig,
    CurationOutcome,
    LowDim,
    curate,
    summarize,
)
from pipelines.episode_store.errors import EpisodeError, Reason
from pipelines.episode_store.images import ImageConfig
from pipelines.episode_store.index import (
    CURATION_SCHEMA,
    CorruptDerivedFile,
    read_index_rows,
    rebuild_index_and_stats,
    summarize_episode_file,
    write_index,
)
from pipelines.episode_store.layout import (
    CURATION_FILE,
    CURATION_REPORT_FILE,
    EPISODES_DIR,
    INDEX_FILE,
    LOCK_FILE,
    REPORT_FILE,
    STATS_FILE,
    TMP_DIR,
    WORK_DIR,
    episode_id,
    episode_relpath,
)
from pipelines.episode_store.reader import EpisodeStore
from pipelines.episode_store.record import MAX_ABS_VALUE
from pipelines.episode_store.stats import EpisodeSetStats, build_stats_document, stats_document
from pipelines.episode_store.writer import write_episode

log = logging.getLogger("a1pipe.convert")


@dataclass(frozen=True)
class ConvertConfig:
    source: str
    input_root: str
    store_root: str
    image: ImageConfig = field(default_factory=ImageConfig)
    converter_options: dict[str, Any] = field(default_factory=dict)
    curation: dict[str, Any] = field(default_factory=dict)
    #: the converter to read ``input_root`` with, when it is not ``source``'s own: another dataset in
    #: an existing converter's layout (``sources.<name>.converter``); ``source`` names the dataset
    converter: str | None = None
    #: plausibility bound on every state and action value (``implausible_values`` beyond it)
    max_abs_value: float = MAX_ABS_VALUE

    def __post_init__(self) -> None:
        if not self.max_abs_value > 0:
            raise ValueError(f"max_abs_value must be positive, got {self.max_abs_value}")

    @property
    def converter_name(self) -> str:
        return self.converter or self.source

    def make_converter(self):
        converter = get_converter(self.converter_name)(self.input_root, self.converter_options)
        if self.converter:
            converter.dataset_name = self.source
        converter.max_abs_value = self.max_abs_value
        return converter


# ------------------------------------------------------------------------------ worker side


class UnitWorker:
    """The Beam worker's job for one work unit: run the source's converter (``converters/``) over
    the unit's episodes, write and curate them, and record each outcome. Used inside the Beam DoFn,
    and directly in tests."""

    def __init__(self, config: ConvertConfig, progress_path: str | None = None):
        self.config = config
        self.converter = config.make_converter()
        self.remote = storage.is_remote(config.store_root)
        self.progress_path = progress_path
        self.image_signal = CurationConfig.from_params(config.curation).uses_images
        self._published: dict[str, tuple[str, int, str]] | None = None

    def _recorded_sha256(self, eid: str, rel: str) -> str | None:
        """The digest the store's index records for a published episode file, when the file is the one
        it describes (same path and size): resume trusts it rather than hashing every file again. The
        index is written atomically after the files it lists; a file written since has no row."""
        if self.remote:
            return None
        if self._published is None:
            try:
                rows = read_index_rows(self.config.store_root)
            except CorruptDerivedFile:
                rows = []  # rebuilt from the files at the end of the run; nothing to trust meanwhile
            self._published = {r["episode_id"]: (r["path"], int(r["size_bytes"]), r["sha256"]) for r in rows}
        recorded = self._published.get(eid)
        if recorded is None or recorded[0] != rel:
            return None
        try:
            size = os.path.getsize(os.path.join(self.config.store_root, rel))
        except OSError:
            return None
        return recorded[2] if size == recorded[1] else None

    def convert_unit(self, unit: str) -> Iterator[dict[str, Any]]:
        try:
            for source_episode, opener in self.converter.episodes(unit):
                yield self.convert_episode(source_episode, opener)
        except EpisodeError as exc:
            yield _quarantine(unit, None, exc.reason, exc.message)
        except Exception as exc:  # a bug or an unforeseen failure must not end the run
            log.error("unit %s failed:\n%s", unit, traceback.format_exc())
            yield _quarantine(unit, None, Reason.CONVERTER_ERROR, f"{type(exc).__name__}: {exc}")
        finally:
            self._progress(unit)

    def convert_episode(self, source_episode: str, opener) -> dict[str, Any]:
        eid = episode_id(self.config.source, source_episode)
        rel = episode_relpath(eid)
        final = storage.join(self.config.store_root, rel)
        if storage.exists(final):
            try:
                outcome = self._converted(source_episode, eid, rel, resumed=True)
            except Exception as exc:  # damaged published file: convert it again
                log.warning("re-converting %s: published file unreadable (%s)", eid, exc)
            else:
                outdated = self._outdated(outcome)
                if outdated is None:
                    return outcome
                log.info("re-converting %s: %s", eid, outdated)
        try:
            with self.converter.read(opener) as episode:
                if self.remote:
                    return self._write_remote(episode, source_episode, eid, rel)
                write_episode(episode, self.config.store_root, self.config.image,
                              max_abs_value=self.config.max_abs_value)
            return self._converted(source_episode, eid, rel, resumed=False)
        except EpisodeError as exc:
            return _quarantine(source_episode, eid, exc.reason, exc.message)
        except Exception as exc:
            log.error("episode %s failed:\n%s", source_episode, traceback.format_exc())
            return _quarantine(source_episode, eid, Reason.CONVERTER_ERROR, f"{type(exc).__name__}: {exc}")

    def _write_remote(self, episode, source_episode: str, eid: str, rel: str) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="a1pipe-stage-") as staging:
            write_episode(episode, staging, self.config.image, max_abs_value=self.config.max_abs_value)
            outcome = self._summarize(staging, source_episode, eid, rel, resumed=False)
            storage.upload(os.path.join(staging, rel), storage.join(self.config.store_root, rel))
        return outcome

    def _outdated(self, outcome: dict[str, Any]) -> str | None:
        """Why a published episode is not what this run would write (None if it is): resuming
        must never keep episodes from another converter version or other image settings."""
        written = outcome["index_row"]["converter_version"]
        if written != self.converter.converter_version:
            return f"written by converter version {written}, now {self.converter.converter_version}"
        image = self.config.image
        for name, cam in sorted(outcome["cameras"].items()):
            settings = (cam.get("quality"), cam.get("resize"))
            if settings != (image.quality, image.resize):
                return f"camera '{name}' stored with quality/resize {settings}, now {(image.quality, image.resize)}"
            if image.resize != "none" and (cam.get("height"), cam.get("width")) != (image.height, image.width):
                return f"camera '{name}' stored at {cam.get('height')}x{cam.get('width')}, now {image.height}x{image.width}"
        return None

    def _converted(self, source_episode: str, eid: str, rel: str, resumed: bool) -> dict[str, Any]:
        if not self.remote:
            return self._summarize(self.config.store_root, source_episode, eid, rel, resumed)
        with tempfile.TemporaryDirectory(prefix="a1pipe-read-") as staging:
            local = os.path.join(staging, rel)
            os.makedirs(os.path.dirname(local))
            storage.download(storage.join(self.config.store_root, rel), local)
            return self._summarize(staging, source_episode, eid, rel, resumed)

    def _summarize(self, root: str, source_episode: str, eid: str, rel: str, resumed: bool) -> dict[str, Any]:
        known = self._recorded_sha256(eid, rel) if resumed else None
        row, low = summarize_episode_file(root, rel, image_change=self.image_signal, sha256=known)
        stats = EpisodeSetStats.of_episode(low["arrays"], low["names"])
        low_dim = LowDim(
            episode_id=eid, source=row["source"], embodiment=row["embodiment"], control_hz=low["control_hz"],
            timestamp=low["timestamp"], state=low["arrays"]["state"], action=low["arrays"]["action"],
            state_names=low["names"]["state"], action_names=low["names"]["action"],
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

    def _progress(self, unit: str) -> None:
        if self.progress_path is None:
            return
        with contextlib.suppress(OSError):
            fd = os.open(self.progress_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, (json.dumps(unit) + "\n").encode())
            finally:
                os.close(fd)


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


# ------------------------------------------------------------------------------ Beam graph


def _beam():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import apache_beam as beam
    return beam


def build_pipeline(pipeline, config: ConvertConfig, units: list[str], work_dir: str, progress_path: str | None):
    beam = _beam()

    class ConvertUnitFn(beam.DoFn):
        def __init__(self, cfg: ConvertConfig, progress: str | None):
            self.cfg = cfg
            self.progress = progress
            self.worker: UnitWorker | None = None

        def setup(self):
            self.worker = UnitWorker(self.cfg, self.progress)

        def process(self, unit: str):
            yield from self.worker.convert_unit(unit)

    class MergeFn(beam.CombineFn):
        """Combines mergeable accumulators (``add``/``merge`` methods) such as stats and bounds sketches."""

        def __init__(self, make, add):
            self.make, self.add = make, add

        def create_accumulator(self):
            return self.make()

        def add_input(self, acc, value):
            return self.add(acc, value)

        def merge_accumulators(self, accs):
            accs = iter(accs)
            first = next(accs)
            for acc in accs:
                first.merge(acc)
            return first

        def extract_output(self, acc):
            return acc

    curation = CurationConfig.from_params(config.curation).with_declared_limits(
        get_converter(config.converter_name).physical_limits
    )

    outcomes = (
        pipeline
        | "Units" >> beam.Create(units, reshuffle=False)
        | "Distribute" >> beam.Reshuffle()
        | "Convert" >> beam.ParDo(ConvertUnitFn(config, progress_path))
    )
    (
        outcomes
        | "OutcomeJson" >> beam.Map(
            lambda o: json.dumps({k: v for k, v in o.items() if k not in ("stats", "low_dim")}, sort_keys=True)
        )
        | "WriteOutcomes" >> beam.io.WriteToText(storage.join(work_dir, "outcomes"), file_name_suffix=".jsonl")
    )
    (
        outcomes
        | "Converted" >> beam.Filter(lambda o: o["status"] == "converted")
        | "KeyStats" >> beam.Map(lambda o: (tuple(o["stats_key"]), o["stats"]))
        | "MergeStats" >> beam.CombinePerKey(MergeFn(EpisodeSetStats, EpisodeSetStats.merge))
        # the sketches stay inside Beam: what reaches the work dir is each source's finished entry,
        # as JSON, so the driver never unpickles a file
        | "BySource" >> beam.Map(lambda kv: (kv[0][0], kv))
        | "GroupSource" >> beam.GroupByKey()
        | "SourceStats" >> beam.Map(
            lambda kv: json.dumps({kv[0]: build_stats_document(dict(kv[1]))["sources"][kv[0]]}))
        | "WriteStats" >> beam.io.WriteToText(storage.join(work_dir, "stats"), file_name_suffix=".jsonl")
    )
    converted = outcomes | "ForCuration" >> beam.Filter(lambda o: o["status"] == "converted")
    bounds = (
        converted
        | "KeyLowDim" >> beam.Map(lambda o: ((o["low_dim"].source, o["low_dim"].embodiment), o["low_dim"]))
        | "Bounds" >> beam.CombinePerKey(MergeFn(BoundsAccumulator, BoundsAccumulator.add))
        | "BoundValues" >> beam.Map(lambda kv: (kv[0], kv[1].bounds(curation.outliers)))
    )
    (
        converted
        | "Curate" >> beam.Map(
            lambda o, b: dict(
                curate(o["low_dim"], curation, b.get((o["low_dim"].source, o["low_dim"].embodiment))).to_row(),
                content_sha256=o["content_sha256"],
            ),
            b=beam.pvalue.AsDict(bounds),
        )
        | "CurationJson" >> beam.Map(lambda row: json.dumps(row, sort_keys=True))
        | "WriteCuration" >> beam.io.WriteToText(storage.join(work_dir, "curation"), file_name_suffix=".jsonl")
    )


#: work units that make another local worker process pay for its start-up (~4 s of Beam harness and
#: imports; a sample-sized unit converts in well under a second)
UNITS_PER_AUTO_WORKER = 32


def auto_workers(units: int, cores: int | None = None) -> int:
    """``workers: 0``: one process per core, but no more than the units keep busy."""
    cores = cores or os.cpu_count() or 1
    return max(1, min(cores, -(-units // UNITS_PER_AUTO_WORKER)))


def pipeline_options(workers: int, beam_args: list[str], units: int | None = None):
    """Default: Beam's local runner, one process per core (``workers`` 0; fewer for a handful of
    ``units``). Any ``--runner`` in ``beam_args`` wins."""
    beam = _beam()
    args = list(beam_args)
    if not any(a.startswith("--runner") for a in args):
        workers = workers or (auto_workers(units) if units is not None else os.cpu_count() or 1)
        mode = "in_memory" if workers == 1 else "multi_processing"
        args = [
            "--runner=DirectRunner",
            f"--direct_num_workers={workers}",
            f"--direct_running_mode={mode}",
            "--default_sdk_harness_log_level=WARNING",
            *args,
        ]
    return beam.options.pipeline_options.PipelineOptions(args)


# ------------------------------------------------------------------------------ driver


@contextlib.contextmanager
def _store_lock(store_root: str):
    if storage.is_remote(store_root):
        yield
        return
    Path(store_root).mkdir(parents=True, exist_ok=True)
    with open(Path(store_root) / LOCK_FILE, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise RuntimeError(f"another conversion is writing to {store_root}") from exc
        yield


def run_conversion(
    config: ConvertConfig,
    *,
    workers: int = 0,
    beam_args: list[str] | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Convert one source into a store; return the published conversion report plus ``run``: this
    run's wall time and throughput, which are not published in the store."""
    beam = _beam()
    started = time.time()
    converter = config.make_converter()
    if not Path(config.input_root).exists() and not storage.is_remote(config.input_root):
        raise FileNotFoundError(f"input root {config.input_root} does not exist")
    with _store_lock(config.store_root):
        _prepare_store(config.store_root)
        units = converter.discover()
        log.info("%s: %d work units under %s", config.source, len(units), config.input_root)
        run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        work_dir = storage.join(config.store_root, WORK_DIR, run_id)
        progress_path = None
        if not storage.is_remote(config.store_root):
            Path(work_dir).mkdir(parents=True)
            progress_path = os.path.join(work_dir, "progress.log")
        options = pipeline_options(workers, beam_args or [], units=len(units))
        with _ProgressBar(progress_path, len(units), config.source, enabled=show_progress), _private_tmpdir(work_dir):
            with beam.Pipeline(options=options) as pipeline:
                build_pipeline(pipeline, config, units, work_dir, progress_path)
        report = _finalize(config, converter, units, work_dir, started, options)
        storage.delete_tree(work_dir)
        if not storage.is_remote(config.store_root):
            for name in (WORK_DIR, TMP_DIR):
                with contextlib.suppress(OSError):
                    (Path(config.store_root) / name).rmdir()
    return report


@contextlib.contextmanager
def _private_tmpdir(work_dir: str):
    """Point TMPDIR (inherited by local Beam workers) into the run's work dir, removed afterwards.

    Beam's local runner leaves empty temporary directories behind in TMPDIR on every run.
    """
    if storage.is_remote(work_dir):
        yield
        return
    private = os.path.join(work_dir, "tmp")
    os.makedirs(private, exist_ok=True)
    saved_env, saved_tempdir = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"], tempfile.tempdir = private, None
    try:
        yield
    finally:
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
        tempfile.tempdir = saved_tempdir


def _prepare_store(store_root: str) -> None:
    if storage.is_remote(store_root):
        marker = storage.join(store_root, "a1pipe_store.json")
        if not storage.exists(marker):
            with tempfile.TemporaryDirectory() as tmp:
                EpisodeStore.create(tmp)
                storage.upload(os.path.join(tmp, "a1pipe_store.json"), marker)
        return
    EpisodeStore.create(store_root)
    # Leftovers of a killed run: private temporaries, never visible as episodes, and the temporary
    # of a published file whose rename never happened (the published file itself is whole).
    storage.delete_tree(os.path.join(store_root, TMP_DIR))
    storage.delete_tree(os.path.join(store_root, WORK_DIR))
    for leftover in Path(store_root).glob(".*" + storage.PUBLISH_TMP_MARK + "*"):
        if leftover.is_file():
            leftover.unlink()


def _load_outcomes(work_dir: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The run's outcomes and its sources' ``stats.json`` entries, both plain JSON lines."""
    outcomes = []
    for path in storage.glob(storage.join(work_dir, "outcomes*.jsonl")):
        outcomes += [json.loads(line) for line in storage.read_text(path).splitlines() if line.strip()]
    stats: dict[str, Any] = {}
    for path in storage.glob(storage.join(work_dir, "stats*.jsonl")):
        for line in storage.read_text(path).splitlines():
            if line.strip():
                stats.update(json.loads(line))
    return outcomes, stats


def _finalize(config: ConvertConfig, converter, units: list[str], work_dir: str, started: float, options) -> dict[str, Any]:
    outcomes, stats = _load_outcomes(work_dir)
    outcomes.sort(key=lambda o: (o["source_episode"], o["episode_id"] or ""))
    converted = [o for o in outcomes if o["status"] == "converted"]
    stale = _retire_stale(config, {o["episode_id"] for o in converted})

    with tempfile.TemporaryDirectory() as tmp:
        remote = storage.is_remote(config.store_root)
        local_root = tmp if remote else config.store_root
        if remote:
            _fetch_optional(storage.join(config.store_root, INDEX_FILE), os.path.join(tmp, INDEX_FILE))
            _fetch_optional(storage.join(config.store_root, STATS_FILE), os.path.join(tmp, STATS_FILE))
        # the index and the statistics are derived from the episode files: a torn or garbled one (a
        # killed run of an older version, a disk error) is rebuilt from the episodes, never fatal
        corrupt: list[str] = []
        try:
            rows = [r for r in read_index_rows(local_root) if r["source"] != config.source]
        except CorruptDerivedFile as exc:
            corrupt.append(str(exc))
            rows = []
        rows += [o["index_row"] for o in converted]
        write_index(rows, local_root)
        stats_doc = stats_document(stats)
        old_stats = os.path.join(local_root, STATS_FILE)
        if os.path.exists(old_stats):
            try:
                previous = json.loads(Path(old_stats).read_text())["sources"]
                others = {name: entry for name, entry in previous.items() if name != config.source}
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                corrupt.append(f"{old_stats}: unreadable ({type(exc).__name__}: {exc})")
                others = {}
            for name, entry in others.items():
                stats_doc["sources"].setdefault(name, entry)
            stats_doc["sources"] = dict(sorted(stats_doc["sources"].items()))
        storage.write_text(old_stats, json.dumps(stats_doc, indent=1, sort_keys=False) + "\n")
        if corrupt and not remote:
            for problem in corrupt:
                log.warning("%s; rebuilding the index and statistics from the episode files", problem)
            rebuild_index_and_stats(local_root)
        elif corrupt:
            for problem in corrupt:
                log.warning("%s; other sources' entries are dropped until their conversion runs again", problem)
        if remote:
            _fetch_optional(storage.join(config.store_root, CURATION_FILE), os.path.join(tmp, CURATION_FILE))
        curation_summary = _write_curation(config, work_dir, local_root)
        if remote:
            storage.upload(os.path.join(tmp, INDEX_FILE), storage.join(config.store_root, INDEX_FILE))
            storage.upload(old_stats, storage.join(config.store_root, STATS_FILE))
            for name in (CURATION_FILE, CURATION_REPORT_FILE):
                storage.upload(os.path.join(tmp, name), storage.join(config.store_root, name))

    wall = time.time() - started
    frames = sum(o["num_frames"] for o in converted)
    camera_frames = sum(o["camera_frames"] for o in converted)
    reasons = Counter(o["reason"] for o in outcomes if o["status"] == "quarantined")
    report = {
        "source": config.source,
        "source_version": converter.source_version,
        "converter_version": converter.converter_version,
        "input": str(config.input_root),
        "store": str(config.store_root),
        "image": config.image.to_dict(),
        "runner": options.get_all_options().get("runner") or "DirectRunner",
        "counts": {
            "units": len(units),
            "episodes": len(outcomes),
            "converted": len(converted),
            "resumed": sum(1 for o in converted if o["resumed"]),
            "quarantined": len(outcomes) - len(converted),
            "quarantined_by_reason": dict(sorted(reasons.items())),
            "stale_removed": len(stale),
        },
        "frames": frames,
        "camera_frames": camera_frames,
        "episodes": [
            {
                "source_episode": o["source_episode"],
                "episode_id": o["episode_id"],
                "status": o["status"],
                "reason": o["reason"],
                "message": o["message"],
                "num_frames": o["num_frames"],
            }
            for o in outcomes
        ],
        "stale_episodes": stale,
        "curation": {
            name: {k: v[k] for k in ("episodes_in", "episodes_kept", "frames_in", "frames_kept", "kept_fraction")}
            for name, v in ((n, s["total"]) for n, s in curation_summary["sources"].items())
        },
    }
    # The published report is a function of the input, the code and the settings only, so a store
    # converted twice (or on another machine) is byte-identical and DVC's lock stays as committed;
    # how long this run took is returned beside it (``a1pipe convert --metrics`` writes it apart).
    storage.write_text(storage.join(config.store_root, REPORT_FILE), json.dumps(report, indent=1) + "\n")
    run = {
        "wall_time_s": round(wall, 3),
        "frames_per_s": round(frames / wall, 2) if wall > 0 else None,
        "camera_frames_per_s": round(camera_frames / wall, 2) if wall > 0 else None,
    }
    log.info(
        "%s: %d converted (%d resumed), %d quarantined, %d frames in %.1fs",
        config.source, len(converted), report["counts"]["resumed"], report["counts"]["quarantined"], frames, wall,
    )
    return {**report, "run": run}




def _write_curation(config: ConvertConfig, work_dir: str, local_root: str) -> dict[str, Any]:
    """``curation.parquet`` (one row per published episode) and ``curation_report.json``.

    Exact duplicates inside the store are found here, where every digest is in one place:
    the smallest episode id of a group is kept, the others quarantined naming it.
    """
    from pipelines.curation_rules import CurationReason, duplicates

    rows: list[dict[str, Any]] = []
    for path in storage.glob(storage.join(work_dir, "curation*.jsonl")):
        rows += [json.loads(line) for line in storage.read_text(path).splitlines() if line.strip()]
    existing = Path(local_root) / CURATION_FILE
    if existing.is_file():
        try:
            rows += [r for r in pq.read_table(existing).to_pylist() if r["source"] != config.source]
        except (OSError, ValueError, pa.ArrowException) as exc:
            # curation is not derivable from the episode files alone (each source's settings made it)
            others = sorted({r["source"] for r in read_index_rows(local_root)} - {config.source})
            log.warning("%s: unreadable (%s: %s); rewritten with %s only: convert %s again to curate them",
                        existing, type(exc).__name__, exc, config.source, ", ".join(others) or "no other source")
    twins = duplicates({r["episode_id"]: r["content_sha256"] for r in rows})
    for r in rows:
        if r["episode_id"] in twins:
            message = f"same content (sha256 {r['content_sha256'][:16]}...) as {twins[r['episode_id']]}"
            r.update(status="quarantined", reason=str(CurationReason.DUPLICATE_EPISODE), message=message,
                     frames_kept=0, kept_ranges=[],
                     removed_ranges=[{"start": 0, "stop": r["frames_in"], "reason": str(CurationReason.DUPLICATE_EPISODE),
                                      "message": message}])
    rows.sort(key=lambda r: (r["source"], r["episode_id"]))
    table = pa.Table.from_pylist(rows, schema=CURATION_SCHEMA)
    storage.publish_local(existing, lambda tmp: pq.write_table(table, tmp, compression="zstd"))
    outcomes = [
        CurationOutcome(r["episode_id"], r["source"], r["embodiment"], r["status"], r["reason"], r["message"] or "",
                        r["frames_in"], [(k["start"], k["stop"]) for k in r["kept_ranges"]], r["removed_ranges"])
        for r in rows
    ]
    summary = summarize(outcomes)
    summary["parameters"] = config.curation
    storage.write_text(os.path.join(local_root, CURATION_REPORT_FILE), json.dumps(summary, indent=1) + "\n")
    return summary


def _fetch_optional(src: str, dest: str) -> None:
    if storage.exists(src):
        storage.download(src, dest)


def _retire_stale(config: ConvertConfig, current: set[str]) -> list[dict[str, str]]:
    """Published episodes of this source that the input no longer has are moved to ``.stale/``.

    They are listed in the report (never silently dropped) and kept on disk for
    inspection, outside ``episodes/`` so the store stays consistent.
    """
    if storage.is_remote(config.store_root):
        return []
    base = Path(config.store_root) / EPISODES_DIR / config.source
    stale = []
    for path in sorted(base.glob("*/*.zarr.zip")) if base.is_dir() else []:
        eid = path.name[: -len(".zarr.zip")]
        if eid not in current:
            dest = Path(config.store_root) / ".stale" / path.relative_to(config.store_root)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)
            stale.append({"episode_id": eid, "moved_to": dest.relative_to(config.store_root).as_posix()})
            log.warning("episode %s is no longer in the input; moved to %s", eid, dest)
    return stale


class _ProgressBar:
    """Shows units finished / total by following the workers' progress log (local runs)."""

    def __init__(self, path: str | None, total: int, label: str, enabled: bool):
        self.path, self.total, self.label = path, total, label
        self.enabled = enabled and path is not None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self):
        if self.enabled:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _count(self) -> int:
        try:
            with open(self.path, "rb") as fh:
                return fh.read().count(b"\n")
        except OSError:
            return 0

    def _run(self) -> None:
        from tqdm import tqdm

        with tqdm(total=self.total, desc=f"convert {self.label}", unit="unit", mininterval=1.0) as bar:
            while not self._stop.wait(0.5):
                bar.update(self._count() - bar.n)
            bar.update(self._count() - bar.n)
