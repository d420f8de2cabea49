"""Verify a manifest against the data: every mismatch, named, or nothing.

Verification never trusts the manifest's own numbers: it re-hashes every file, re-reads
every episode's length, compares each kept range with the store's curation table,
recomputes every split, probability and share from the table with the builder's rules,
and regenerates the derived files.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import __version__, storage
from pipelines.episode_store.index import CurationStatus
from pipelines.episode_store.layout import CURATION_FILE, INDEX_FILE
from pipelines.episode_store.reader import EpisodeReader
from pipelines.episode_store.schema import MetaKey
from pipelines.manifest.build import ManifestParams, assign_probabilities, on_disk, resolve_stores, split_of
from pipelines.manifest.croissant import validate_croissant
from pipelines.manifest.format import (
    CHECKSUMS_FILE,
    CROISSANT_FILE,
    DERIVED_FILES,
    MANIFEST_FILE,
    PLOT_FILE,
    TABLE_FILE,
    ManifestError,
    file_sha256,
    load_manifest,
    parameters_of,
    splits_of,
)
from pipelines.manifest.release import plot_labels, write_derived_files


def verify_manifest(manifest_dir: str | Path, stores: list[str | Path], *, check_files: bool = True) -> list[str]:
    """Every mismatch between a manifest and the data, or [] when everything checks out."""
    manifest_dir = Path(manifest_dir)
    checksums = _verify_checksums(manifest_dir) if manifest_dir.is_dir() else []
    try:
        manifest, rows = load_manifest(manifest_dir)
    except (ManifestError, OSError, ValueError, KeyError, pa.ArrowException) as exc:
        return checksums + [f"{manifest_dir}: cannot read the manifest: {type(exc).__name__}: {exc}"]
    problems: list[str] = list(checksums)
    table_path = manifest_dir / manifest["table"]["file"]
    if file_sha256(table_path) != manifest["table"]["sha256"]:
        problems.append(f"{table_path.name}: sha256 differs from the one in {MANIFEST_FILE}")
    if len(rows) != manifest["table"]["rows"]:
        problems.append(f"{table_path.name}: {len(rows)} rows, {MANIFEST_FILE} records {manifest['table']['rows']}")
    problems += _verify_accounting(manifest, rows)
    try:
        given = {s.name: s for s in resolve_stores(stores)}
    except ManifestError as exc:
        return problems + [str(exc)]
    curated: dict[str, dict[str, dict[str, Any]]] = {}
    wanted = [given[entry["store"]] for entry in manifest["inputs"] if entry["store"] in given]
    with on_disk(wanted, INDEX_FILE, CURATION_FILE) as local:
        tables = {s.name: directory for s, directory in zip(wanted, local)}
        for entry in manifest["inputs"]:
            store = tables.get(entry["store"])
            if store is None:
                problems.append(f"input store {entry['store']} is not among the given data ({', '.join(given) or 'none'})")
                continue
            for key, name in (("index_sha256", INDEX_FILE), ("curation_sha256", CURATION_FILE)):
                if not (store / name).is_file() or file_sha256(store / name) != entry[key]:
                    problems.append(f"store {entry['store']}: {name} differs from the one the manifest was built from")
            if (store / CURATION_FILE).is_file():
                try:
                    curated[entry["store"]] = {c["episode_id"]: c
                                               for c in pq.read_table(store / CURATION_FILE).to_pylist()}
                except (OSError, ValueError, KeyError, pa.ArrowException) as exc:
                    problems.append(f"store {entry['store']}: {CURATION_FILE} unreadable ({type(exc).__name__}: {exc})")
    if check_files:
        for r in rows:
            if r["store"] in given:
                problems += _verify_episode(r, given[r["store"]], manifest, curated.get(r["store"], {}))
    problems += _verify_probabilities(manifest, rows)
    problems += _verify_derived_files(manifest_dir, manifest, rows)
    return problems


def _verify_checksums(manifest_dir: Path) -> list[str]:
    """Every released file against ``SHA256SUMS``; a file it does not list, or a line it cannot parse,
    is a finding too."""
    path = manifest_dir / CHECKSUMS_FILE
    if not path.is_file():
        return [f"{CHECKSUMS_FILE}: missing, so {MANIFEST_FILE} and the other files are not checksummed "
                "(rebuild the manifest)"]
    problems, listed = [], set()
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or "/" in name or not name:
            problems.append(f"{CHECKSUMS_FILE}:{number}: not a '<sha256>  <file>' line: {line[:80]!r}")
            continue
        listed.add(name)
        if not (manifest_dir / name).is_file():
            problems.append(f"{name}: listed in {CHECKSUMS_FILE} but missing")
        elif file_sha256(manifest_dir / name) != digest:
            problems.append(f"{name}: sha256 differs from {CHECKSUMS_FILE} (edited or damaged)")
    for extra in sorted(p.name for p in manifest_dir.iterdir() if p.is_file() and p.name != CHECKSUMS_FILE):
        if extra not in listed:
            problems.append(f"{extra}: not listed in {CHECKSUMS_FILE}")
    return problems


def _verify_accounting(manifest: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    problems = []
    for split in splits_of(manifest):
        members = [r for r in rows if r["split"] == split]
        recorded = manifest["counts"][split]
        found = {"episodes": len(members), "frames_kept": sum(r["frames_kept"] for r in members)}
        if found != recorded:
            problems.append(f"{split}: table has {found}, {MANIFEST_FILE} records {recorded}")
    params = parameters_of(manifest)
    for r in rows:
        expected = split_of(r["episode_id"], params["split_seed"], params["validation_fraction"],
                            params.get("calibration_fraction", 0.0))
        if r["split"] != expected:
            problems.append(f"{r['episode_id']}: split {r['split']!r}, the split rule gives {expected!r}")
    listed = {f"{r['store']}/{r['path']}": r["sha256"] for r in rows}
    if listed != manifest["files"]:
        for key in sorted(set(listed) | set(manifest["files"])):
            if listed.get(key) != manifest["files"].get(key):
                problems.append(f"{key}: table sha256 {listed.get(key)} but {MANIFEST_FILE} lists "
                                f"{manifest['files'].get(key)}")
    return problems


def _ranges(ranges: list[dict[str, int]]) -> list[tuple[int, int]]:
    return [(k["start"], k["stop"]) for k in ranges]


def _verify_episode(r: dict[str, Any], store: storage.Storage, manifest: dict[str, Any],
                    curation: dict[str, dict[str, Any]]) -> list[str]:
    """One row against its episode file (on object storage: downloaded to a temporary file, one at a
    time) and the store's curation table."""
    where = f"{r['episode_id']} ({r['store']}/{r['path']})"
    if not store.exists(r["path"]):
        return [f"{where}: episode file missing"]
    with store.working_copy(fetch=[r["path"]]) as local:
        path = local / r["path"]
        if file_sha256(path) != r["sha256"]:
            return [f"{where}: sha256 does not match the manifest"]
        try:
            with EpisodeReader(path) as ep:
                num_frames, stored_id = ep.num_frames, ep.meta.get(MetaKey.EPISODE_ID)
        except Exception as exc:  # a file whose bytes match but cannot be opened is still a finding
            return [f"{where}: cannot be read: {exc}"]
    problems = []
    if stored_id != r["episode_id"]:
        problems.append(f"{where}: the file holds episode {stored_id}")
    if num_frames != r["num_frames"]:
        problems.append(f"{where}: {num_frames} frames, manifest records {r['num_frames']}")
    ranges = _ranges(r["kept_ranges"])
    previous = 0
    for start, stop in ranges:
        if not (previous <= start < stop <= num_frames):
            problems.append(f"{where}: kept range {start}..{stop} is outside 0..{num_frames}, empty or out of order")
        previous = stop
    if sum(stop - start for start, stop in ranges) != r["frames_kept"]:
        problems.append(f"{where}: kept ranges add up to {sum(b - a for a, b in ranges)} frames, "
                        f"manifest records frames_kept {r['frames_kept']}")
    c = curation.get(r["episode_id"])
    if c is None or c["status"] != CurationStatus.KEPT:
        problems.append(f"{where}: the store's {CURATION_FILE} no longer keeps this episode"
                        + (f" ({c['reason']})" if c else ""))
    elif _ranges(c["kept_ranges"]) != ranges:
        problems.append(f"{where}: kept ranges {ranges} differ from the store's {CURATION_FILE} "
                        f"{_ranges(c['kept_ranges'])}")
    return problems


def _verify_probabilities(manifest: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """Recompute every probability and share from the table and the recorded parameters."""
    problems = []
    try:
        params = ManifestParams.from_json(parameters_of(manifest))
        fresh = [dict(r) for r in rows]
        shares = assign_probabilities(fresh, params)
    except (ManifestError, KeyError, TypeError) as exc:
        return [f"probabilities cannot be recomputed: {exc}"]
    for old, new in zip(rows, fresh):
        if old["probability"] != new["probability"]:
            problems.append(f"{old['episode_id']}: probability {old['probability']!r}, "
                            f"recomputed {new['probability']!r}")
    if shares != manifest["shares"]:
        problems.append(f"declared shares in {MANIFEST_FILE} differ from the shares the table gives: "
                        f"{json.dumps(manifest['shares'], sort_keys=True)} vs {json.dumps(shares, sort_keys=True)}")
    return problems


def _verify_plot(have: Path, fresh: Path) -> list[str]:
    """The plot shows the names and shares the table gives; its drawing (bytes) is matplotlib's."""
    try:
        labels = plot_labels(have.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        return [f"{have.name}: unreadable ({exc})"]
    expected = plot_labels(fresh.read_text(encoding="utf-8"))
    if labels == expected:
        return []
    missing = sorted(set(expected) - set(labels))[:3]
    extra = sorted(set(labels) - set(expected))[:3]
    return [f"{have.name}: its labels are not what {MANIFEST_FILE} and {TABLE_FILE} give (edited or stale; "
            f"expected but absent {missing}, present but not expected {extra})"]


def _verify_derived_files(manifest_dir: Path, manifest: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    problems = [f"{CROISSANT_FILE}: {e}" for e in validate_croissant(manifest_dir / CROISSANT_FILE)]
    if manifest["code_version"] != f"a1pipe {__version__}":
        # Cards and plots may legitimately render differently in another release of the code;
        # the checksummed table and manifest.json are what an older manifest is held to.
        return problems
    with tempfile.TemporaryDirectory() as tmp:
        write_derived_files(Path(tmp), manifest, rows)
        for name in DERIVED_FILES:
            have = manifest_dir / name
            if not have.is_file():
                problems.append(f"{name}: missing")
            elif name == PLOT_FILE:
                problems += _verify_plot(have, Path(tmp) / name)
            elif have.read_bytes() != (Path(tmp) / name).read_bytes():
                problems.append(f"{name}: not what {MANIFEST_FILE} and {TABLE_FILE} generate (edited or stale)")
    return problems
