"""Check a store against every rule of docs/episode_format.md and report *all* violations.

Each violation has a stable ``code`` (listed in ``RULES`` and in the spec), the
place it was found and a message naming the episode, field and value.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import zarr
from PIL import Image

from pipelines import storage

from .digest import content_digest
from .index import INDEX_SCHEMA, CurationStatus, index_row
from .layout import (
    CURATION_FILE,
    EPISODE_ID_RE,
    EPISODE_SUFFIX,
    EPISODES_DIR,
    INDEX_FILE,
    STATS_FILE,
    STORE_MARKER,
    episode_id,
    episode_relpath,
)
from .reader import EpisodeReader
from .record import MAX_ABS_VALUE
from .schema import (
    ACTION,
    EPISODE_ATTR,
    FORMAT_VERSION,
    LOW_DIM_ARRAYS,
    NO_SUBTASK,
    REQUIRED_CAMERA_KEYS,
    REQUIRED_METADATA,
    REQUIRED_SUBKEYS,
    STAT_KEYS,
    STATE,
    SUBTASK_INDEX,
    SUBTASK_TEXTS_ATTR,
    TIMESTAMP,
    VECTORS,
    ActionKind,
    CameraKey,
    CameraSourceKey,
    LanguageKey,
    MetaKey,
    SourceKey,
    TimestampOrigin,
    extra_array,
    image_array,
)
from .stats import QUANTILE_EPSILON
from .digest import file_sha256

RULES: dict[str, str] = {
    "store_marker": f"{STORE_MARKER} exists, is JSON and has format_version {FORMAT_VERSION}",
    "index_missing": f"{INDEX_FILE} exists and is readable with pyarrow",
    "index_schema": "the index has every column of the index schema with its type",
    "index_duplicate": "episode ids are unique in the index",
    "index_orphan": "every index row points at an existing episode file",
    "unindexed_episode": "every published episode file has an index row",
    "index_mismatch": "index row fields (ids, embodiment, length, cameras, checksum, size...) match the episode file",
    "stray_file": f"episodes/ holds only <source>/<2 hex>/<episode_id>{EPISODE_SUFFIX} files (no partial writes)",
    "episode_unreadable": "each episode file is a ZIP holding a zarr v3 group",
    "episode_metadata": f"the '{EPISODE_ATTR}' attribute has every required key with the right type",
    "episode_id": "episode id = source + sha256(source, source episode); file name and location follow from it",
    "array_missing": "timestamp, state, action and images/<camera> arrays exist for every declared camera",
    "array_dtype": "timestamp is float64, state/action float32, images variable-length bytes",
    "array_shape": "every per-frame array has num_frames rows; state/action widths equal their name lists",
    "dimension_names": "state_names/action_names are unique non-empty strings",
    "timestamps": "timestamps are finite and strictly increasing",
    "non_finite": "state and action contain no NaN or infinity",
    "implausible": "no state or action value is beyond the plausibility bound (convert.max_abs_value, 1e6 by "
                   "default): garbage read as numbers",
    "image_chunking": "image arrays have one frame per chunk (random access without decoding other frames)",
    "image_frame": "every frame is a JPEG of the camera's declared height x width",
    "language": "the instruction is non-empty; sub-task indices point into their text table",
    "embodiment_consistency": "episodes of one (source, embodiment) share state and action names",
    "stats_missing": f"{STATS_FILE} exists with an entry for every source and embodiment in the index",
    "stats_mismatch": "stored statistics agree with the data (counts, min, max, mean, std exactly; q01/q99 within "
                      "the data's range and rank error)",
    "content_digest": "if the metadata records content_sha256, it is the digest of the stored timestamps, "
    "state, action and frames",
    "curation": f"if {CURATION_FILE} exists: one row per published episode, frames_in = its length, "
    "kept and removed ranges tile [0, frames_in), frames_kept = kept length, quarantined rows keep nothing",
}

@dataclass
class Violation:
    code: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"[{self.code}] {self.where}: {self.message}"


@dataclass
class _DimCheck:
    """Exact recomputation of one dimension's statistics, plus rank counts at stored quantiles."""

    values_count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float = float("inf")
    max: float = float("-inf")
    below: dict[str, int] = field(default_factory=lambda: {"q01": 0, "q99": 0})
    at_or_below: dict[str, int] = field(default_factory=lambda: {"q01": 0, "q99": 0})

    def add(self, values: np.ndarray, quantiles: dict[str, float]) -> None:
        values = values.astype(np.float64)
        n = values.size
        if n == 0:
            return
        mean = float(values.mean())
        m2 = float(((values - mean) ** 2).sum())
        total = self.values_count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.values_count * n / total
        self.values_count = total
        self.min = min(self.min, float(values.min()))
        self.max = max(self.max, float(values.max()))
        for key, q in quantiles.items():
            self.below[key] += int((values < q).sum())
            self.at_or_below[key] += int((values <= q).sum())


@dataclass
class ValidationReport:
    root: str
    episodes: int = 0
    frames: int = 0
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: list[Violation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def add(self, code: str, where: str, message: str) -> None:
        assert code in RULES, code
        self.errors.append(Violation(code, where, message))

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "store": self.root,
            "episodes": self.episodes,
            "frames": self.frames,
            "sources": self.sources,
            "errors": [asdict(e) for e in self.errors],
        }


def validate_store(root: str | Path, *, decode_frames: bool = False,
                   max_abs_value: float = MAX_ABS_VALUE) -> ValidationReport:
    """Validate one store, a directory or an object-store prefix. ``decode_frames`` fully decodes
    every JPEG (default: header and size only); ``max_abs_value``: the plausibility bound the store
    was converted with (``convert.max_abs_value``).

    A store on object storage is read one episode file at a time, each downloaded to a temporary
    file and checked there, so validating it needs local room for one episode, not the store."""
    store = storage.at(root)
    report = ValidationReport(root=store.root)
    with store.working_copy(fetch=store.present(STORE_MARKER, INDEX_FILE, STATS_FILE, CURATION_FILE)) as local:
        _check_marker(local, report)
        index_rows = _read_index(local, report)
        stats_doc = _read_stats(local, report)
        _check_episodes(store, index_rows, stats_doc, report, decode_frames, max_abs_value)
        _check_curation(local, {r.get("episode_id"): r.get("num_frames") for r in index_rows}, report)
    return report


def _check_episodes(store: storage.Storage, index_rows: list[dict[str, Any]], stats_doc: dict[str, Any] | None,
                    report: ValidationReport, decode_frames: bool, max_abs_value: float) -> None:
    """Every published episode file against its index row and the format; the statistics against
    the data of all of them."""
    files = _published_files(store, report)

    by_id: dict[str, dict[str, Any]] = {}
    for row in index_rows:
        eid = row.get("episode_id")
        if eid in by_id:
            report.add("index_duplicate", INDEX_FILE, f"episode id {eid} appears more than once")
        by_id[eid] = row
    for eid, row in by_id.items():
        if row.get("path") not in files:
            report.add("index_orphan", INDEX_FILE, f"row {eid} points at missing file {row.get('path')}")
    indexed_paths = {row.get("path") for row in index_rows}
    for rel in sorted(files):
        if rel not in indexed_paths:
            report.add("unindexed_episode", rel, "published episode file has no index row")

    names_seen: dict[tuple[str, str], dict[str, list[str]]] = {}
    checks: dict[tuple[str, str], dict[str, dict[str, _DimCheck]]] = defaultdict(
        lambda: {f: defaultdict(_DimCheck) for f in VECTORS}
    )
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    source_checks: dict[str, dict[str, dict[str, _DimCheck]]] = defaultdict(
        lambda: {f: defaultdict(_DimCheck) for f in VECTORS}
    )

    row_by_path = {row.get("path"): row for row in index_rows}
    for rel in sorted(files):
        row = row_by_path.get(rel)
        with store.working_copy(fetch=[rel]) as local:
            result = _check_episode(local, rel, row, report, decode_frames, max_abs_value)
        if result is None:
            continue
        meta, state, action = result
        source, emb = meta[MetaKey.SOURCE][SourceKey.NAME], meta[MetaKey.EMBODIMENT]
        key = (source, emb)
        names = {STATE: list(meta[MetaKey.STATE_NAMES]), ACTION: list(meta[MetaKey.ACTION_NAMES])}
        if key in names_seen and names_seen[key] != names:
            report.add(
                "embodiment_consistency",
                rel,
                f"{source}/{emb}: names differ from earlier episodes of the embodiment",
            )
        names_seen.setdefault(key, names)
        counts[key][0] += 1
        counts[key][1] += len(state)
        report.episodes += 1
        report.frames += len(state)
        src = report.sources.setdefault(source, {"episodes": 0, "frames": 0, "embodiments": [], "cameras": [],
                                                 "camera_sources": {}})
        src["episodes"] += 1
        src["frames"] += len(state)
        src["embodiments"] = sorted(set(src["embodiments"]) | {emb})
        src["cameras"] = sorted(set(src["cameras"]) | set(meta[MetaKey.CAMERAS]))
        _merge_camera_sources(src["camera_sources"], {cam: [_camera_source(cam, info)]
                                                      for cam, info in meta[MetaKey.CAMERAS].items()})
        for f, values in ((STATE, state), (ACTION, action)):
            for j, name in enumerate(names[f]):
                q_emb = _stored_quantiles(stats_doc, source, emb, f, name)
                checks[key][f][name].add(values[:, j], q_emb)
                source_checks[source][f][name].add(values[:, j], _stored_quantiles(stats_doc, source, None, f, name))

    if stats_doc is not None:
        _check_stats(stats_doc, checks, counts, source_checks, report)


def _check_curation(root: Path, lengths: dict[str, int], report: ValidationReport) -> None:
    path = root / CURATION_FILE
    if not path.is_file():
        return
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several types for damaged files
        report.add("curation", CURATION_FILE, f"unreadable: {exc}")
        return
    seen = set()
    for r in rows:
        eid = r.get("episode_id")
        where = f"{CURATION_FILE}:{eid}"
        seen.add(eid)
        if eid not in lengths:
            report.add("curation", where, "row for an episode that is not in the index")
            continue
        n = r.get("frames_in")
        if n != lengths[eid]:
            report.add("curation", where, f"frames_in {n} but the episode has {lengths[eid]} frames")
            continue
        spans = sorted([(k["start"], k["stop"]) for k in r["kept_ranges"]] + [(k["start"], k["stop"]) for k in r["removed_ranges"]])
        tiles = bool(spans) and spans[0][0] == 0 and spans[-1][1] == n and all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
        if not tiles or any(a >= b for a, b in spans):
            report.add("curation", where, f"kept and removed ranges do not tile [0, {n}): {spans}")
        kept = sum(k["stop"] - k["start"] for k in r["kept_ranges"])
        if kept != r.get("frames_kept") or (r.get("status") == CurationStatus.QUARANTINED and kept):
            report.add("curation", where, f"frames_kept {r.get('frames_kept')} vs kept ranges {kept} (status {r.get('status')})")
    for eid in sorted(set(lengths) - seen):
        report.add("curation", CURATION_FILE, f"episode {eid} has no curation row")


def validate_path(path: str | Path, *, decode_frames: bool = False,
                  max_abs_value: float = MAX_ABS_VALUE) -> list[ValidationReport]:
    """Validate a store, or every store directly under a directory of stores (either on disk or on
    object storage)."""
    where = storage.at(path)
    options = {"decode_frames": decode_frames, "max_abs_value": max_abs_value}
    if where.exists(STORE_MARKER):
        return [validate_store(path, **options)]
    children = sorted({rel.split("/")[0] for rel in where.glob(f"*/{STORE_MARKER}")})
    if not children:
        return [validate_store(path, **options)]
    return [validate_store(where.path(child), **options) for child in children]


def _camera_source(name: str, info: dict[str, Any]) -> str:
    """The source's own name of a stored camera (stores written before it was recorded: the name)."""
    source = info.get(CameraKey.SOURCE) or {}
    return source.get(CameraSourceKey.NAME) or name


def _merge_camera_sources(into: dict[str, list[str]], new: dict[str, list[str]]) -> None:
    """canonical camera -> every source name it was converted from, sorted (one source may name a
    slot differently per embodiment or release, e.g. ``cam_main`` from two RealSense streams)."""
    for cam, names in new.items():
        into[cam] = sorted(set(into.get(cam, [])) | set(names))


def merge_reports(reports: list[ValidationReport]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "stores": [r.root for r in reports],
        "episodes": 0,
        "frames": 0,
        "sources": {},
        "errors": [],
    }
    for r in reports:
        doc = r.to_json()
        out["episodes"] += doc["episodes"]
        out["frames"] += doc["frames"]
        for name, s in doc["sources"].items():
            cur = out["sources"].setdefault(name, {"episodes": 0, "frames": 0, "embodiments": [], "cameras": [],
                                                   "camera_sources": {}})
            cur["episodes"] += s["episodes"]
            cur["frames"] += s["frames"]
            cur["embodiments"] = sorted(set(cur["embodiments"]) | set(s["embodiments"]))
            cur["cameras"] = sorted(set(cur["cameras"]) | set(s["cameras"]))
            _merge_camera_sources(cur["camera_sources"], s.get("camera_sources", {}))
        out["errors"] += [dict(e, store=r.root) for e in doc["errors"]]
    return out


# ---------------------------------------------------------------------------- helpers


def _check_marker(root: Path, report: ValidationReport) -> None:
    marker = root / STORE_MARKER
    try:
        info = json.loads(marker.read_text())
    except FileNotFoundError:
        report.add("store_marker", report.root, f"{STORE_MARKER} missing: not an a1pipe store")
        return
    except (OSError, json.JSONDecodeError) as exc:
        report.add("store_marker", STORE_MARKER, f"unreadable: {exc}")
        return
    if info.get("format_version") != FORMAT_VERSION:
        report.add("store_marker", STORE_MARKER, f"format_version is {info.get('format_version')!r}, expected {FORMAT_VERSION}")


def _read_index(root: Path, report: ValidationReport) -> list[dict[str, Any]]:
    path = root / INDEX_FILE
    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        report.add("index_missing", INDEX_FILE, "episode index missing")
        return []
    except Exception as exc:  # pyarrow raises several types for corrupt files
        report.add("index_missing", INDEX_FILE, f"unreadable: {exc}")
        return []
    for f in INDEX_SCHEMA:
        if f.name not in table.schema.names:
            report.add("index_schema", INDEX_FILE, f"column '{f.name}' missing")
        elif not table.schema.field(f.name).type.equals(f.type):
            report.add("index_schema", INDEX_FILE, f"column '{f.name}' is {table.schema.field(f.name).type}, expected {f.type}")
    return table.to_pylist()


def _read_stats(root: Path, report: ValidationReport) -> dict[str, Any] | None:
    try:
        return json.loads((root / STATS_FILE).read_text())
    except FileNotFoundError:
        report.add("stats_missing", STATS_FILE, "statistics file missing")
    except (OSError, json.JSONDecodeError) as exc:
        report.add("stats_missing", STATS_FILE, f"unreadable: {exc}")
    return None


def _published_files(store: storage.Storage, report: ValidationReport) -> set[str]:
    files: set[str] = set()
    for rel in sorted(store.glob(f"{EPISODES_DIR}/**"), key=lambda r: r.split("/")):
        parts = rel.split("/")[1:]
        name = parts[-1]
        ok = (
            len(parts) == 3
            and name.endswith(EPISODE_SUFFIX)
            and EPISODE_ID_RE.match(name[: -len(EPISODE_SUFFIX)]) is not None
        )
        if ok:
            files.add(rel)
        else:
            report.add("stray_file", rel, "not a published episode file (partial write or foreign file)")
    return files


def _check_episode(
    root: Path, rel: str, row: dict[str, Any] | None, report: ValidationReport, decode_frames: bool,
    max_abs_value: float = MAX_ABS_VALUE,
) -> tuple[dict[str, Any], np.ndarray, np.ndarray] | None:
    path = root / rel
    try:
        reader = EpisodeReader(path)
    except Exception as exc:  # zipfile/zarr/json raise many types for a damaged file
        report.add("episode_unreadable", rel, f"{type(exc).__name__}: {exc}")
        return None
    with reader:
        meta = reader.meta
        bad_meta = False
        for key, typ in REQUIRED_METADATA.items():
            if key not in meta:
                report.add("episode_metadata", rel, f"missing key '{key}'")
                bad_meta = True
            elif not isinstance(meta[key], typ) or (typ is int and isinstance(meta[key], bool)):
                report.add("episode_metadata", rel, f"'{key}' has type {type(meta[key]).__name__}")
                bad_meta = True
        if bad_meta:
            return None
        if meta[MetaKey.FORMAT_VERSION] != FORMAT_VERSION:
            report.add("episode_metadata", rel, f"format_version {meta[MetaKey.FORMAT_VERSION]} != {FORMAT_VERSION}")
        for sub, keys in REQUIRED_SUBKEYS.items():
            for k in keys:
                if k not in meta[sub]:
                    report.add("episode_metadata", rel, f"missing key '{sub}.{k}'")
                    return None
        for label, enum in ((MetaKey.ACTION_KIND, ActionKind), (MetaKey.TIMESTAMP_ORIGIN, TimestampOrigin)):
            value = meta[label]
            if value not in {e.value for e in enum}:
                report.add("episode_metadata", rel, f"{label} {value!r} is not one of {[e.value for e in enum]}")
        if not (meta[MetaKey.CONTROL_HZ] > 0):
            report.add("episode_metadata", rel, f"control_hz must be > 0, got {meta[MetaKey.CONTROL_HZ]}")

        eid = meta[MetaKey.EPISODE_ID]
        source = meta[MetaKey.SOURCE][SourceKey.NAME]
        try:
            expected = episode_id(source, meta[MetaKey.SOURCE][SourceKey.EPISODE])
        except ValueError as exc:
            report.add("episode_id", rel, str(exc))
            expected = None
        if expected is not None and eid != expected:
            report.add("episode_id", rel, f"id {eid} but source identity gives {expected}")
        try:
            if episode_relpath(eid) != rel:
                report.add("episode_id", rel, f"episode {eid} belongs at {episode_relpath(eid)}")
        except ValueError as exc:
            report.add("episode_id", rel, str(exc))

        n = meta[MetaKey.NUM_FRAMES]
        arrays = {}
        for name, dtype in LOW_DIM_ARRAYS.items():
            if name not in reader.group:
                report.add("array_missing", rel, f"array '{name}' missing")
                continue
            arr = reader.group[name]
            if arr.dtype != dtype:
                report.add("array_dtype", rel, f"'{name}' is {arr.dtype}, expected {dtype}")
            arrays[name] = arr[:]
        if len(arrays) < len(LOW_DIM_ARRAYS):
            return None
        t, state, action = arrays[TIMESTAMP], arrays[STATE], arrays[ACTION]
        ok = True
        if n <= 0:
            report.add("array_shape", rel, f"num_frames is {n}; episodes must have frames")
            ok = False
        if t.ndim != 1 or len(t) != n:
            report.add("array_shape", rel, f"timestamp shape {t.shape}, expected ({n},)")
            ok = False
        for name, arr, names in ((STATE, state, meta[MetaKey.STATE_NAMES]),
                                 (ACTION, action, meta[MetaKey.ACTION_NAMES])):
            if arr.ndim != 2 or arr.shape[0] != n or arr.shape[1] != len(names):
                report.add("array_shape", rel, f"'{name}' shape {arr.shape}, expected ({n}, {len(names)})")
                ok = False
            if len(set(names)) != len(names) or not all(isinstance(x, str) and x for x in names):
                report.add("dimension_names", rel, f"{name}_names must be unique non-empty strings: {names}")
            if arr.size and not np.all(np.isfinite(arr)):
                bad = np.argwhere(~np.isfinite(arr))[0]
                report.add("non_finite", rel, f"'{name}' has non-finite values, first at frame {bad[0]}")
                ok = False
            elif arr.size and np.abs(arr).max() > max_abs_value:
                bad = np.argwhere(np.abs(arr) > max_abs_value)[0]
                report.add("implausible", rel, f"'{name}' has values beyond +-{max_abs_value:g}, first at frame "
                                               f"{bad[0]}: {arr[bad[0], bad[1]]:g}")
                ok = False
        if t.ndim == 1 and len(t):
            if not np.all(np.isfinite(t)):
                report.add("timestamps", rel, "timestamp has non-finite values")
                ok = False
            elif len(t) > 1 and not np.all(np.diff(t) > 0):
                i = int(np.argmax(np.diff(t) <= 0))
                report.add("timestamps", rel, f"not strictly increasing at frame {i + 1}: {t[i]} -> {t[i + 1]}")
                ok = False
        lang = meta[MetaKey.LANGUAGE]
        instruction = lang[LanguageKey.INSTRUCTION]
        if not isinstance(instruction, str) or not instruction.strip():
            report.add("language", rel, "instruction is empty")
        if lang[LanguageKey.HAS_SUBTASKS]:
            try:
                sub = reader.group[SUBTASK_INDEX]
                idx = sub[:]
                texts = list(sub.attrs[SUBTASK_TEXTS_ATTR])
                if len(idx) != n or (idx.size and (idx.max() >= len(texts) or idx.min() < NO_SUBTASK)):
                    report.add("language", rel, f"subtask_index has {len(idx)} rows or indices outside 0..{len(texts) - 1}")
            except KeyError:
                report.add("array_missing", rel, f"has_subtasks is true but {SUBTASK_INDEX} is missing")
        for key in meta[MetaKey.EXTRAS]:
            try:
                if reader.group[extra_array(key)].shape[0] != n:
                    report.add("array_shape", rel, f"extra '{key}' does not have {n} rows")
            except KeyError:
                report.add("array_missing", rel, f"extra '{key}' declared but missing")
        if not meta[MetaKey.CAMERAS]:
            report.add("array_missing", rel, "episode declares no camera")
        frame_digests: list[bytes] = []
        for cam, info in sorted(meta[MetaKey.CAMERAS].items()):
            frame_digests += _check_camera(reader, rel, cam, info, n, report, decode_frames)
        recorded = meta.get(MetaKey.CONTENT_SHA256)
        if recorded is not None and ok and len(frame_digests) == n * len(meta[MetaKey.CAMERAS]):
            actual = content_digest(t, state, action, frame_digests)
            if recorded != actual:
                report.add("content_digest", rel, f"metadata content_sha256 {str(recorded)[:16]}... but the stored "
                           f"timestamps, state, action and frames give {actual[:16]}...")

        if row is not None:
            _check_row(path, rel, row, reader, report)
        return (meta, state, action) if ok else None


def _check_camera(reader: EpisodeReader, rel: str, cam: str, info: dict[str, Any], n: int,
                  report: ValidationReport, decode_frames: bool) -> list[bytes]:
    """Check one camera's frames; returns the sha256 of each (empty when the array is unusable)."""
    key = image_array(cam)
    try:
        arr = reader.group[key]
    except KeyError:
        report.add("array_missing", rel, f"camera '{cam}' declared but '{key}' missing")
        return []
    if not isinstance(arr.metadata.data_type, zarr.dtype.VariableLengthBytes):
        report.add("array_dtype", rel, f"'{key}' is {arr.metadata.data_type}, expected variable-length bytes")
    if arr.shape != (n,):
        report.add("array_shape", rel, f"'{key}' shape {arr.shape}, expected ({n},)")
        return []
    if tuple(arr.chunks) != (1,):
        report.add("image_chunking", rel, f"'{key}' chunks {arr.chunks}, expected (1,)")
    if not set(REQUIRED_CAMERA_KEYS) <= set(info):
        report.add("episode_metadata", rel, f"camera '{cam}' metadata lacks {'/'.join(REQUIRED_CAMERA_KEYS)}")
        return []
    expected = (info[CameraKey.HEIGHT], info[CameraKey.WIDTH])
    problems = 0
    digests = []
    for i, data in enumerate(reader.encoded_frames(cam, 0, n, block=256)):
        digests.append(hashlib.sha256(data).digest())
        msg = _check_jpeg(data, expected, decode_frames)
        if msg:
            problems += 1
            if problems <= 5:
                report.add("image_frame", rel, f"camera '{cam}' frame {i}: {msg}")
    if problems > 5:
        report.add("image_frame", rel, f"camera '{cam}': {problems - 5} more bad frames")
    return digests


def _check_jpeg(data: bytes, expected_hw: tuple[int, int], decode: bool) -> str | None:
    if not data.startswith(b"\xff\xd8"):
        return f"not a JPEG ({len(data)} bytes)"
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format != "JPEG":
                return f"encoded as {im.format}, expected JPEG"
            if (im.height, im.width) != tuple(expected_hw):
                return f"size {im.height}x{im.width}, declared {expected_hw[0]}x{expected_hw[1]}"
            if decode:
                im.load()
    except Exception as exc:  # PIL raises OSError/SyntaxError/ValueError for damaged data
        return f"undecodable: {exc}"
    return None


def _check_row(path: Path, rel: str, row: dict[str, Any], reader: EpisodeReader, report: ValidationReport) -> None:
    expected = index_row(reader, rel, path.stat().st_size, file_sha256(path))
    for key, value in expected.items():
        if key in row and row[key] != value:
            report.add("index_mismatch", rel, f"index '{key}' = {row[key]!r}, episode file gives {value!r}")


def _stored_quantiles(stats_doc: dict[str, Any] | None, source: str, emb: str | None, f: str, name: str) -> dict[str, float]:
    entry = _stats_entry(stats_doc, source, emb)
    if entry is None or f not in entry or name not in entry[f].get("names", []):
        return {}
    j = entry[f]["names"].index(name)
    return {k: entry[f][k][j] for k in ("q01", "q99") if k in entry[f]}


def _stats_entry(stats_doc: dict[str, Any] | None, source: str, emb: str | None) -> dict[str, Any] | None:
    if not stats_doc:
        return None
    src = stats_doc.get("sources", {}).get(source)
    if src is None or emb is None:
        return src
    return src.get("embodiments", {}).get(emb)


def _check_stats(stats_doc, checks, counts, source_checks, report: ValidationReport) -> None:
    for (source, emb), per_field in sorted(checks.items()):
        where = f"{STATS_FILE}:{source}/{emb}"
        entry = _stats_entry(stats_doc, source, emb)
        if entry is None:
            report.add("stats_missing", where, "no statistics for this embodiment")
            continue
        episodes, frames = counts[(source, emb)]
        if entry.get("episodes") != episodes or entry.get("frames") != frames:
            report.add("stats_mismatch", where, f"episodes/frames {entry.get('episodes')}/{entry.get('frames')}, data has {episodes}/{frames}")
        _compare_fields(entry, per_field, where, report)
    for source, per_field in sorted(source_checks.items()):
        where = f"{STATS_FILE}:{source}"
        entry = _stats_entry(stats_doc, source, None)
        if entry is None:
            report.add("stats_missing", where, "no statistics for this source")
            continue
        _compare_fields(entry, per_field, where, report)


def _compare_fields(entry, per_field, where: str, report: ValidationReport) -> None:
    for f, dims in per_field.items():
        stored = entry.get(f)
        if not stored or "names" not in stored:
            report.add("stats_missing", where, f"no '{f}' statistics")
            continue
        for name, check in dims.items():
            if name not in stored["names"]:
                report.add("stats_missing", where, f"{f} dimension '{name}' has no statistics")
                continue
            j = stored["names"].index(name)
            try:
                got = {k: stored[k][j] for k in STAT_KEYS}
            except (KeyError, IndexError):
                report.add("stats_missing", where, f"{f} '{name}' lacks a statistic")
                continue
            n = check.values_count
            exact = {"count": n, "min": check.min, "max": check.max, "mean": check.mean,
                     "std": float(np.sqrt(check.m2 / n)) if n else float("nan")}
            scale = max(abs(check.min), abs(check.max), 1e-12)
            for k, v in exact.items():
                if not np.isclose(got[k], v, rtol=1e-6, atol=1e-9 * scale):
                    report.add("stats_mismatch", where, f"{f} '{name}' {k} = {got[k]}, data gives {v}")
            slack = QUANTILE_EPSILON + 1.0 / max(n, 1)
            for qk, target in (("q01", 0.01), ("q99", 0.99)):
                # a quantile is a value of the data (or between two): outside [min, max] it is wrong at any
                # length, where the rank test below allows anything past the ends of a short dimension
                if got[qk] < check.min - 1e-9 * scale or got[qk] > check.max + 1e-9 * scale:
                    report.add("stats_mismatch", where, f"{f} '{name}' {qk} = {got[qk]} is outside the data's range "
                                                        f"[{check.min}, {check.max}]")
                    continue
                lo, hi = check.below[qk] / n, check.at_or_below[qk] / n
                if hi < target - slack or lo > target + slack:
                    report.add("stats_mismatch", where, f"{f} '{name}' {qk} = {got[qk]} sits at rank {lo:.4f}..{hi:.4f}, expected {target}")
