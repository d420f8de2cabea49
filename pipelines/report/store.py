"""A store's report: what it holds, what curation kept and removed, what was quarantined, and frames.

Read from the store's own files only: ``index.parquet`` (what is published), ``curation.parquet``
(kept and removed ranges, curation quarantine) and ``conversion_report.json`` (episodes the
conversion could not publish). Each number links to the one it was read from.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipelines.episode_store.index import CurationStatus
from pipelines.episode_store.layout import CURATION_FILE, INDEX_FILE, REPORT_FILE
from pipelines.episode_store.reader import EpisodeStore
from pipelines.report.page import Cited, Note, Page, Section, Table, count, fraction, percent
from pipelines.report.sections import Curated, curation_section, frames_section

#: quarantined episodes listed by name (the counts by reason are complete)
LISTED = 50


def store_page(root: str | Path) -> Page:
    store = EpisodeStore(root)
    index_file, curation_file, report_file = (store.root / n for n in (INDEX_FILE, CURATION_FILE, REPORT_FILE))
    index = store.index().to_pylist()
    curation = pq.read_table(curation_file).to_pylist() if curation_file.is_file() else None
    report = json.loads(report_file.read_text()) if report_file.is_file() else None
    by_id = {r["episode_id"]: r for r in index}
    kept = [c for c in curation or [] if c["status"] == CurationStatus.KEPT and c["episode_id"] in by_id]
    curated = [Curated(c["episode_id"], f"{c['source']} / {c['embodiment']}", c["frames_in"],
                       [(k["start"], k["stop"]) for k in c["kept_ranges"]],
                       [(k["start"], k["stop"], k["reason"]) for k in c["removed_ranges"]],
                       store.root / by_id[c["episode_id"]]["path"], curation_file, curation_file) for c in kept]
    frames = sum(r["num_frames"] for r in index)
    frames_kept = sum(c["frames_kept"] for c in kept)
    stats = [("episodes", Cited(count(len(index)), index_file, "rows"), "stat-episodes"),
             ("frames", Cited(count(frames), index_file, "sum of num_frames"), "stat-frames"),
             ("duration", Cited(_duration(sum(r["duration_s"] for r in index)), index_file, "sum of duration_s"),
              "stat-duration")]
    if curation is not None:
        stats += [("kept frames", Cited(count(frames_kept), curation_file, "frames_kept of kept episodes"),
                   "stat-frames-kept"),
                  ("kept", Cited(percent(fraction(frames_kept, frames)), curation_file,
                                 "frames_kept of kept episodes / frames"), "stat-kept-fraction")]
    if report is not None:
        stats.append(("quarantined at conversion", Cited(count(report["counts"]["quarantined"]), report_file,
                                                         "counts.quarantined"), "stat-quarantined-conversion"))
    if curation is not None:
        stats.append(("quarantined by curation", Cited(count(sum(c["status"] != CurationStatus.KEPT for c in curation)),
                                                       curation_file, "rows whose status is not kept"),
                      "stat-quarantined-curation"))
    sections = [_composition(index, index_file, curation, curation_file)]
    if curation is None:
        sections.append(Section("Curation", "curation", blocks=[Note(f"No {CURATION_FILE}: this store was converted "
                                                                      "without curation.")]))
    else:
        sections.append(curation_section(curated, f"Kept episodes keep their frame ranges; the rest of their frames "
                                                   f"were removed with a reason code ({CURATION_FILE})."))
    sections.append(_quarantine(report, report_file, curation, curation_file))
    sections.append(frames_section(curated, "Frames drawn evenly over the kept frames of each source and embodiment "
                                            "(the stored JPEGs, as training reads them)."))
    sources = ", ".join(sorted({r["source"] for r in index})) or "no episodes"
    return Page("store", store.root.name, store.root,
                f"Episode store {store.root.name} ({sources}), format version {store.info['format_version']}.",
                stats, sections)


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def _composition(index: list[dict[str, Any]], index_file: Path, curation: list[dict[str, Any]] | None,
                 curation_file: Path) -> Section:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in index:
        groups[(r["source"], r["embodiment"])].append(r)
    kept_frames: Counter[tuple[str, str]] = Counter()
    for c in curation or []:
        if c["status"] == CurationStatus.KEPT:
            kept_frames[(c["source"], c["embodiment"])] += c["frames_kept"]
    total_kept = sum(kept_frames.values())
    rows = []
    for (source, embodiment), rs in sorted(groups.items()):
        label = f"{source} / {embodiment}"
        row = [source, embodiment, Cited(count(len(rs)), index_file, f"rows of {label}"),
               Cited(count(sum(r["num_frames"] for r in rs)), index_file, f"num_frames of {label}")]
        if curation is not None:
            row += [Cited(count(kept_frames[(source, embodiment)]), curation_file, f"frames_kept of {label}"),
                    Cited(percent(fraction(kept_frames[(source, embodiment)], total_kept)), curation_file,
                          f"frames_kept of {label} / all kept frames")]
        row += ["/".join(f"{h:g}" for h in sorted({r["control_hz"] for r in rs})),
                ", ".join(sorted({c for r in rs for c in r["cameras"]})),
                ", ".join(sorted({f"{r['action_kind']}[{r['action_dim']}]" for r in rs}))]
        rows.append(row)
    header = ["source", "embodiment", "episodes", "frames"]
    header += ["kept frames", "share of kept frames"] if curation is not None else []
    header += ["Hz", "cameras", "action"]
    return Section("Composition", "composition",
                   "Published episodes per source and embodiment. The share of kept frames is what sampling in "
                   "proportion to the data would draw; a manifest sets its own sampling shares.",
                   [Table(header, rows, "llrr" + ("rr" if curation is not None else "") + "rll", "composition")])


def _quarantine(report: dict[str, Any] | None, report_file: Path, curation: list[dict[str, Any]] | None,
                curation_file: Path) -> Section:
    section = Section("Quarantine: episodes left out whole", "quarantine",
                      "At conversion, episodes that could not be read or failed the format checks are not "
                      f"published ({REPORT_FILE}); curation quarantines published episodes that are corrupt, "
                      f"implausible, motionless or duplicated ({CURATION_FILE}).")
    listed: list[list[Any]] = []
    if report is None:
        section.blocks.append(Note(f"No {REPORT_FILE}."))
    else:
        by_reason = report["counts"].get("quarantined_by_reason", {})
        section.blocks.append(Table(["reason", "episodes"], [
            [reason, Cited(count(n), report_file, f"counts.quarantined_by_reason.{reason}")]
            for reason, n in sorted(by_reason.items())] or [["none", "0"]], "lr", "quarantine-conversion",
            caption="At conversion"))
        listed += [["conversion", e["source_episode"], Cited(e["reason"], report_file, "episodes[].reason"),
                    e.get("message") or ""] for e in report.get("episodes", []) if e["status"] == "quarantined"]
    if curation is not None:
        by_reason = Counter(c["reason"] for c in curation if c["status"] != CurationStatus.KEPT)
        section.blocks.append(Table(["reason", "episodes"], [
            [reason, Cited(count(n), curation_file, f"rows with status quarantined and reason {reason}")]
            for reason, n in sorted(by_reason.items())] or [["none", "0"]], "lr", "quarantine-curation",
            caption="By curation"))
        listed += [["curation", c["episode_id"], Cited(c["reason"], curation_file, "reason"), c["message"] or ""]
                   for c in sorted(curation, key=lambda c: c["episode_id"]) if c["status"] != CurationStatus.KEPT]
    if listed:
        more = f" (the first {LISTED} of {len(listed)})" if len(listed) > LISTED else ""
        section.blocks.append(Table(["stage", "episode", "reason", "message"], listed[:LISTED], "llll",
                                    "quarantine-episodes", caption=f"Quarantined episodes{more}"))
    return section
