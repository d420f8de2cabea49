"""A released manifest's report: its composition and shares, what curation and selection left out, and
frames from its episodes.

The manifest's own files say what it is: ``manifest.json`` (counts, declared shares, what was left
out and why, input checksums), the episode table (episodes, kept frames) and ``composition.svg``.
The stores it was built from, where given, add why frames were removed (their
``curation.parquet``) and the frames themselves; a store whose tables no longer have the checksums
the manifest recorded is flagged, since its reasons may not be the ones the manifest was built on.
Every number links to the file it was read or counted from.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipelines.episode_store.layout import CURATION_FILE, INDEX_FILE
from pipelines.manifest.format import MANIFEST_FILE, file_sha256, load_manifest
from pipelines.manifest.compare import composition
from pipelines.manifest.release import PLOT_FILE
from pipelines.report.page import Chart, Cited, Note, Page, Section, Table, count, percent
from pipelines.report.sections import Curated, curation_section, frames_section


def manifest_page(manifest_dir: str | Path, stores: dict[str, Path]) -> Page:
    """``stores``: store directories by name (a manifest names its stores by directory name)."""
    manifest_dir = Path(manifest_dir)
    manifest, rows = load_manifest(manifest_dir)
    mfile, tfile = manifest_dir / MANIFEST_FILE, manifest_dir / manifest["table"]["file"]
    inputs = {i["store"]: i for i in manifest.get("inputs", [])}
    found = {name: stores[name] for name in inputs if name in stores}
    removed = {name: _removed_ranges(root) for name, root in found.items()}
    curated = [Curated(r["episode_id"], f"{r['dataset']} / {r['embodiment']}", r["num_frames"],
                       [(k["start"], k["stop"]) for k in r["kept_ranges"]],
                       removed[r["store"]].get(r["episode_id"]) if r["store"] in found else None,
                       found[r["store"]] / r["path"] if r["store"] in found else None,
                       tfile, found[r["store"]] / CURATION_FILE if r["store"] in found else None) for r in rows]
    excluded = manifest.get("excluded", {})
    stats = [("episodes", Cited(count(manifest["table"]["rows"]), mfile, "table.rows"), "stat-episodes"),
             ("datasets", Cited(count(len({r["dataset"] for r in rows})), tfile, "distinct dataset"), "stat-datasets")]
    for split, c in manifest["counts"].items():
        stats += [(f"{split} episodes", Cited(count(c["episodes"]), mfile, f"counts.{split}.episodes"),
                   f"stat-{split}-episodes"),
                  (f"{split} kept frames", Cited(count(c["frames_kept"]), mfile, f"counts.{split}.frames_kept"),
                   f"stat-{split}-frames-kept")]
    missing = sorted(set(inputs) - set(found))
    sections = [_composition(manifest, rows, manifest_dir, mfile, tfile),
                curation_section(curated, "Within the manifest's episodes, the frames outside their kept ranges "
                                          f"({tfile.name}) were removed by curation; the reasons come from the "
                                          f"stores' {CURATION_FILE}."
                                 + (f" Not given: {', '.join(missing)}, so their reasons are n/a." if missing else "")),
                _left_out(excluded, mfile),
                _inputs(inputs, found, mfile),
                frames_section([c for c in curated if c.episode_file is not None],
                               "Frames drawn evenly over the kept frames of each dataset and embodiment (the "
                               "stored JPEGs, as training reads them)."
                               + (f" Stores not given: {', '.join(missing)}." if missing else ""))]
    description = manifest["parameters"].get("description") or ""
    return Page("manifest", manifest["name"], manifest_dir,
                f"Manifest {manifest['name']}, built by {manifest['code_version']}. {description}".strip(),
                stats, sections)


def _removed_ranges(store: Path) -> dict[str, list[tuple[int, int, str]]]:
    path = store / CURATION_FILE
    if not path.is_file():
        return {}
    table = pq.read_table(path, columns=["episode_id", "removed_ranges"]).to_pylist()
    return {c["episode_id"]: [(k["start"], k["stop"], k["reason"]) for k in c["removed_ranges"]] for c in table}


def _composition(manifest: dict[str, Any], rows: list[dict[str, Any]], manifest_dir: Path, mfile: Path,
                 tfile: Path) -> Section:
    section = Section("Composition and sampling shares", "composition",
                      "Sampling share: the probability that a drawn frame comes from that dataset and embodiment "
                      f"(declared in {MANIFEST_FILE}, recomputed from the table by `a1pipe manifest verify`). Share "
                      "of kept frames: what sampling in proportion to the data would draw.")
    for split, c in composition(manifest, rows).items():
        table = []
        for d in c["datasets"]:
            where = f"shares.{split}.datasets.{d['dataset']}"
            for e in d["embodiments"]:
                label = f"{d['dataset']} / {e['embodiment']} in {split}"
                table.append([d["dataset"], e["embodiment"],
                              Cited(count(e["episodes"]), tfile, f"rows of {label}"),
                              Cited(count(e["frames_kept"]), tfile, f"frames_kept of {label}"),
                              Cited(percent(e["share"]), mfile, f"{where}.embodiments.{e['embodiment']}.share"),
                              Cited(percent(e["natural_share"]), tfile, f"frames_kept of {label} / of {split}")])
            table.append([d["dataset"], "(all)", Cited(count(d["episodes"]), tfile, f"rows of {d['dataset']}"),
                          Cited(count(d["frames_kept"]), tfile, f"frames_kept of {d['dataset']}"),
                          Cited(percent(d["share"]), mfile, f"{where}.share"),
                          Cited(percent(d["natural_share"]), tfile, f"frames_kept of {d['dataset']} / of {split}")])
        section.blocks.append(Table(["dataset", "embodiment", "episodes", "kept frames", "sampling share",
                                     "share of kept frames"], table, "llrrrr", f"composition-{split}",
                                    caption=f"{split}: {c['episodes']} episodes, {c['frames_kept']} kept frames"))
    plot = manifest_dir / PLOT_FILE
    if plot.is_file():
        uri = "data:image/svg+xml;base64," + base64.b64encode(plot.read_bytes()).decode("ascii")
        section.blocks.append(Chart(uri, "the manifest's composition plot",
                                    Cited(PLOT_FILE, plot, "the released plot")))
    return section


def _left_out(excluded: dict[str, Any], mfile: Path) -> Section:
    section = Section("Left out: quarantine, curation and selection", "left-out",
                      f"Episodes of the input stores that are not in the manifest, and why ({MANIFEST_FILE}).")
    for key, caption in (("conversion_quarantine", "Quarantined at conversion"),
                         ("curation_removed", "Quarantined by curation")):
        reasons = excluded.get(key) or {}
        section.blocks.append(Table(["reason", "episodes"], [
            [r, Cited(count(n), mfile, f"excluded.{key}.{r}")] for r, n in sorted(reasons.items())] or [["none", "0"]],
            "lr", f"left-out-{key.replace('_', '-')}", caption=caption))
    dups = excluded.get("cross_store_duplicates") or []
    section.blocks.append(Table(["left out", "episodes"], [
        ["not selected by the include filters", Cited(count(excluded.get("not_included", 0)), mfile,
                                                      "excluded.not_included")],
        ["duplicates of a kept episode in another store", Cited(count(len(dups)), mfile,
                                                                "excluded.cross_store_duplicates")]],
        "lr", "left-out-other", caption="Kept episodes left out"))
    return section


def _inputs(inputs: dict[str, dict[str, Any]], found: dict[str, Path], mfile: Path) -> Section:
    rows = []
    for name, entry in sorted(inputs.items()):
        if name not in found:
            status = "store not given"
        else:
            same = all((found[name] / f).is_file() and file_sha256(found[name] / f) == entry[key]
                       for key, f in (("index_sha256", INDEX_FILE), ("curation_sha256", CURATION_FILE)))
            status = "tables match" if same else "tables differ from the ones the manifest was built from"
        rows.append([name, entry.get("source", ""),
                     Cited(entry["index_sha256"][:12], mfile, f"inputs[{name}].index_sha256"),
                     Cited(entry["curation_sha256"][:12], mfile, f"inputs[{name}].curation_sha256"), status])
    blocks: list[Any] = [Table(["store", "source", "index sha256", "curation sha256", "stores given"], rows,
                               "lllll", "inputs")]
    if not rows:
        blocks = [Note("No input stores recorded.")]
    return Section("Inputs", "inputs", f"The stores the manifest was built from, with the checksums of their index "
                                       f"and curation tables as {MANIFEST_FILE} records them, checked against the "
                                       "stores given to this report. `a1pipe manifest verify` checks everything "
                                       "else.", blocks)
