"""The driver's end of a run: from the workers' outcomes to the store's published derived files.

Once the Beam graph (``graph.py``) has finished, everything the run learnt is in JSON lines under
its work directory. Here, in one process, the store's files that describe all of it are written:
``index.parquet`` and ``stats.json`` (this source's rows and entry merged with the other sources'),
``curation.parquet`` and ``curation_report.json`` (with exact duplicates found across the whole
store, the one place where every content digest meets), and ``conversion_report.json``. Published
episodes whose source episode is gone from the input are retired first, so the index never lists
them.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import storage
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


def _load_outcomes(work_dir: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The run's outcomes and its sources' ``stats.json`` entries, both plain JSON lines."""
    work = storage.at(work_dir)
    outcomes = []
    for name in work.glob("outcomes*.jsonl"):
        outcomes += [json.loads(line) for line in work.read_text(name).splitlines() if line.strip()]
    stats: dict[str, Any] = {}
    for name in work.glob("stats*.jsonl"):
        for line in work.read_text(name).splitlines():
            if line.strip():
                stats.update(json.loads(line))
    return outcomes, stats


def finalize_run(
    config: ConvertConfig, converter, units: list[str], work_dir: str, started: float, options
) -> dict[str, Any]:
    """Publish the store's derived files and the conversion report; return the report plus ``run``
    (this run's wall time and throughput, which the store never holds)."""
    store = storage.at(config.store_root)
    outcomes, stats = _load_outcomes(work_dir)
    outcomes.sort(key=lambda o: (o["source_episode"], o["episode_id"] or ""))
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
        curation_summary = _write_curation(config, work_dir, local_root)

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
    store.write_text(REPORT_FILE, json.dumps(report, indent=1) + "\n")
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


def _write_curation(config: ConvertConfig, work_dir: str, local_root: Path) -> dict[str, Any]:
    """``curation.parquet`` (one row per published episode) and ``curation_report.json``.

    Exact duplicates inside the store are found here, where every digest is in one place:
    the smallest episode id of a group is kept, the others quarantined naming it.
    """
    from pipelines.curation_rules import CurationReason, duplicates

    work = storage.at(work_dir)
    rows: list[dict[str, Any]] = []
    for name in work.glob("curation*.jsonl"):
        rows += [json.loads(line) for line in work.read_text(name).splitlines() if line.strip()]
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
    inspection, outside ``episodes/`` so the store stays consistent.

    Only in a store on this machine's disk, where a move is one rename: an object store has no
    rename (a move is a copy and a delete per episode), and there stale episodes are not retired.
    """
    root = storage.at(config.store_root).local
    if root is None:
        return []
    base = root / EPISODES_DIR / config.source
    stale = []
    for path in sorted(base.glob("*/*.zarr.zip")) if base.is_dir() else []:
        eid = path.name[: -len(".zarr.zip")]
        if eid not in current:
            dest = root / ".stale" / path.relative_to(root)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)
            stale.append({"episode_id": eid, "moved_to": dest.relative_to(root).as_posix()})
            log.warning("episode %s is no longer in the input; moved to %s", eid, dest)
    return stale
