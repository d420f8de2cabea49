"""The driver's end of a run: from the workers' outcomes to the store's published derived files.

Once the Beam graph (``graph.py``) has finished, everything the run learnt is in JSON lines under
its work directory. Here, in one process, the store's files that describe all of it are written:
``index.parquet`` and ``stats.json`` (this source's rows and entry merged with the other sources'),
``curation.parquet`` and ``curation_report.json`` (with exact duplicates found across the whole
store, the one place where every content digest meets), and ``conversion_report.json``. Published
episodes whose source episode is gone from the input are retired first, so the index never lists
them.

A run publishes only what it can account for: every work unit must have reported finishing, with
each of its outcomes, statistics and curation decisions in the work dir, or the run fails
(:class:`IncompleteRun`) before anything is retired or published. A run whose workers wrote
where this machine cannot see would otherwise publish an empty source and retire every episode
it had. For the same reason a run never retires more than ``max_retire_fraction`` of a source's
published episodes unless told to (:class:`MassRetire`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import storage
from pipelines.convert.graph import LOCAL_SIZING, UNITS
from pipelines.curation import CurationOutcome, summarize
from pipelines.episode_store.index import (
    CURATION_SCHEMA,
    CorruptDerivedFile,
    CurationStatus,
    read_index_rows,
    rebuild_index_and_stats,
    write_index,
)
from pipelines.episode_store.layout import (
    CURATION_FILE,
    CURATION_REPORT_FILE,
    EPISODES_DIR,
    INDEX_FILE,
    REPORT_FILE,
    STATS_FILE,
)
from pipelines.episode_store.stats import stats_document

if TYPE_CHECKING:
    from pipelines.convert import ConvertConfig

log = logging.getLogger("a1pipe.convert")


class IncompleteRun(RuntimeError):
    """Some work units, outcomes, statistics or curation decisions never reached the driver."""


class MassRetire(RuntimeError):
    """A run would retire more of a source's published episodes than it is allowed to."""


@dataclass
class RunRecords:
    """What the graph left in the run's work dir, every file plain JSON lines (nothing is unpickled)."""

    outcomes: list[dict[str, Any]]
    #: each source's ``stats.json`` entry
    stats: dict[str, Any]
    curation: list[dict[str, Any]]
    #: unit -> the number of outcomes it reported, for every unit that reported finishing
    units: Counter


def _load_outcomes(work_dir: str) -> RunRecords:
    work = storage.at(work_dir)

    def records(prefix: str) -> Iterator[Any]:
        for name in work.glob(f"{prefix}*.jsonl"):
            yield from (json.loads(line) for line in work.read_text(name).splitlines() if line.strip())

    stats: dict[str, Any] = {}
    for entry in records("stats"):
        stats.update(entry)
    units: Counter = Counter()
    for record in records(UNITS):
        units[record["unit"]] += record["episodes"]
    return RunRecords(list(records("outcomes")), stats, list(records("curation")), units)


def _check_complete(config: ConvertConfig, units: list[str], run: RunRecords, work_dir: str) -> None:
    """Raise :class:`IncompleteRun` unless every unit, outcome, statistic and curation decision of
    the run is in its work dir."""
    outcomes = Counter(o["unit"] for o in run.outcomes)
    problems = []
    silent = [u for u in units if u not in run.units]
    if silent:
        problems.append(f"{len(silent)} of {len(units)} work units never reported finishing ({_some(silent)})")
    short = [u for u in units if u in run.units and outcomes[u] != run.units[u]]
    if short:
        problems.append(f"outcomes missing from {len(short)} of {len(units)} work units ({_some(short)})")
    converted = {o["episode_id"] for o in run.outcomes if o["status"] == "converted"}
    covered = (run.stats.get(config.source) or {}).get("episodes", 0)
    if converted and covered != len(converted):
        problems.append(f"the statistics cover {covered} of the {len(converted)} converted episodes")
    curated = {r["episode_id"] for r in run.curation}
    if curated != converted:
        problems.append(f"{len(converted - curated)} converted episodes have no curation decision")
    if problems:
        raise IncompleteRun(
            f"{config.source}: incomplete run: {'; '.join(problems)}. Workers that write where this "
            "machine cannot see (a local --output with workers elsewhere) or lost work files look like "
            f"this. Nothing was retired or published; the run's work files stay in {work_dir} until the "
            "next run")


def _some(names: list[str], shown: int = 5) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(map(str, names[:shown])) + more


def finalize_run(
    config: ConvertConfig, converter, units: list[str], work_dir: str, started: float, runner: str,
    beam_options: dict[str, Any],
) -> dict[str, Any]:
    """Check that the run is complete, then publish the store's derived files and the conversion
    report; return the report plus ``run`` (this run's wall time, throughput and local worker
    sizing, which the store never holds). ``runner``: the runner that executed the graph;
    ``beam_options``: the options the run gave it (:func:`~pipelines.convert.graph.given_options`)."""
    store = storage.at(config.store_root)
    records = _load_outcomes(work_dir)
    _check_complete(config, units, records, work_dir)
    outcomes = sorted(records.outcomes, key=lambda o: (o["source_episode"], o["episode_id"] or ""))
    stats = records.stats
    converted = [o for o in outcomes if o["status"] == "converted"]
    stale = _retire_stale(config, {o["episode_id"] for o in converted})

    derived = [INDEX_FILE, STATS_FILE, CURATION_FILE, CURATION_REPORT_FILE]
    present = [name for name in (INDEX_FILE, STATS_FILE, CURATION_FILE) if store.exists(name)]
    with store.working_copy(fetch=present, publish=derived) as local_root:
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
        # rebuilding reads every episode file of the store: only where they are on this machine's disk
        if corrupt and store.local is not None:
            for problem in corrupt:
                log.warning("%s; rebuilding the index and statistics from the episode files", problem)
            rebuild_index_and_stats(local_root)
        elif corrupt:
            for problem in corrupt:
                log.warning("%s; other sources' entries are dropped until their conversion runs again", problem)
        curation_summary = _write_curation(config, records.curation, local_root)

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
        "runner": runner,
        "runner_options": {k: v for k, v in beam_options.items() if k not in LOCAL_SIZING},
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
    store.write_text(REPORT_FILE, json.dumps(report, indent=1) + "\n")
    run = {
        "wall_time_s": round(wall, 3),
        "frames_per_s": round(frames / wall, 2) if wall > 0 else None,
        "camera_frames_per_s": round(camera_frames / wall, 2) if wall > 0 else None,
        "runner_options": beam_options,
    }
    log.info(
        "%s: %d converted (%d resumed), %d quarantined, %d frames in %.1fs",
        config.source, len(converted), report["counts"]["resumed"], report["counts"]["quarantined"], frames, wall,
    )
    return {**report, "run": run}


def _write_curation(config: ConvertConfig, decided: list[dict[str, Any]], local_root: Path) -> dict[str, Any]:
    """``curation.parquet`` (one row per published episode: this run's ``decided`` and the other
    sources') and ``curation_report.json``.

    Exact duplicates inside the store are found here, where every digest is in one place:
    the smallest episode id of a group is kept, the others quarantined naming it.
    """
    from pipelines.curation_rules import CurationReason, duplicates

    rows = [dict(r) for r in decided]
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
            r.update(status=str(CurationStatus.QUARANTINED), reason=str(CurationReason.DUPLICATE_EPISODE), message=message,
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


def _retire_stale(config: ConvertConfig, current: set[str]) -> list[dict[str, str]]:
    """Published episodes of this source that the input no longer has are moved to ``.stale/``.

    They are listed in the report (never silently dropped) and kept on disk for
    inspection, outside ``episodes/`` so the store stays consistent. More than
    ``config.max_retire_fraction`` of the source's published episodes is refused
    (:class:`MassRetire`), moving none: an input that lost most of a dataset at once is far more
    often a mount that failed or a wrong path than a decision.

    Only in a store on this machine's disk, where a move is one rename: an object store has no
    rename (a move is a copy and a delete per episode), and there stale episodes are not retired.
    """
    root = storage.at(config.store_root).local
    if root is None:
        return []
    base = root / EPISODES_DIR / config.source
    published = sorted(base.glob("*/*.zarr.zip")) if base.is_dir() else []
    gone = [path for path in published if path.name[: -len(".zarr.zip")] not in current]
    if len(gone) > config.max_retire_fraction * len(published):
        raise MassRetire(
            f"{config.source}: refusing to retire {len(gone)} of the {len(published)} published episodes "
            f"({len(gone) / len(published):.0%}, more than the allowed {config.max_retire_fraction:.0%}): this run "
            f"did not convert them ({_some([p.name[: -len('.zarr.zip')] for p in gone], 3)}). Check the input; "
            "if it really lost them, run again with --allow-mass-retire. Nothing was retired or published")
    stale = []
    for path in gone:
        eid = path.name[: -len(".zarr.zip")]
        dest = root / ".stale" / path.relative_to(root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
        stale.append({"episode_id": eid, "moved_to": dest.relative_to(root).as_posix()})
        log.warning("episode %s is no longer in the input; moved to %s", eid, dest)
    return stale
