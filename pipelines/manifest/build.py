"""Build and verify a manifest: exactly which frames a model trains on, and how often.

A manifest is a directory ``manifests/<name>/`` with ``episodes.parquet`` (one row per
episode: identity, store, file checksum, kept frame ranges, split, probability) and
``manifest.json`` (parameters, code version, input stores with the checksums of their
index and curation tables, counts, what was left out and why, declared shares, sha256 of
every referenced episode file and of the table), plus the derived ``croissant.json``,
``MANIFEST.md`` and ``composition.svg``. The same inputs and parameters give
byte-identical files: rows are sorted, nothing time- or path-dependent is written.

Verification never trusts the manifest's own numbers: it re-hashes every file, re-reads
every episode's length, compares each kept range with the store's curation table,
recomputes every probability and share from the table, and regenerates the derived files.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shutil
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import __version__
from pipelines.episode_store.layout import CURATION_FILE, INDEX_FILE, REPORT_FILE
from pipelines.manifest.release import plot_labels, renderer_version
from pipelines.manifest.weights import WITHIN, episode_probabilities

MANIFEST_FORMAT = 1
TABLE_FILE = "episodes.parquet"
MANIFEST_FILE = "manifest.json"
#: ``sha256sum`` lines for every other released file, manifest.json included: ``sha256sum -c`` checks
#: a release without a1pipe, and ``verify`` catches an edit to any file, whatever version wrote it
CHECKSUMS_FILE = "SHA256SUMS"
#: every split a manifest may have; ``calibration`` exists only when its fraction is non-zero, so a
#: manifest without one is byte-identical to what earlier versions wrote (see :func:`splits_of`)
SPLITS = ("train", "validation", "calibration")
_RANGE = pa.struct([("start", pa.int64()), ("stop", pa.int64())])
TABLE_SCHEMA = pa.schema(
    [
        pa.field("episode_id", pa.string(), nullable=False),
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("embodiment", pa.string(), nullable=False),
        pa.field("robot_type", pa.string(), nullable=False),
        pa.field("store", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("source_episode", pa.string(), nullable=False),
        pa.field("instruction", pa.string(), nullable=False),
        pa.field("num_frames", pa.int64(), nullable=False),
        pa.field("frames_kept", pa.int64(), nullable=False),
        pa.field("kept_ranges", pa.list_(_RANGE), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("probability", pa.float64(), nullable=False),
    ]
)


class ManifestError(ValueError):
    """A manifest cannot be built from these inputs and parameters (the message says why)."""


@dataclass(frozen=True)
class Include:
    """Which kept episodes enter the manifest; an empty list selects everything.

    Fine-tuning manifests (one benchmark, one task) are pretraining manifests with a
    narrower selection, so selection is data, not code.
    """

    sources: tuple[str, ...] = ()
    embodiments: tuple[str, ...] = ()
    instructions: tuple[str, ...] = ()  # regular expressions, any may match (re.search)
    source_episodes: tuple[str, ...] = ()  # fnmatch globs over the source-relative episode reference

    @classmethod
    def from_params(cls, conf: dict[str, Any] | None) -> Include:
        conf = dict(conf or {})
        unknown = set(conf) - {"sources", "embodiments", "instructions", "source_episodes"}
        if unknown:
            raise ManifestError(f"unknown include keys {sorted(unknown)}")
        values = {k: tuple(str(v) for v in (conf.get(k) or ())) for k in ("sources", "embodiments",
                                                                          "instructions", "source_episodes")}
        for pattern in values["instructions"]:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ManifestError(f"include.instructions: bad regular expression {pattern!r}: {exc}") from exc
        return cls(**values)

    def admits(self, row: dict[str, Any]) -> bool:
        return ((not self.sources or row["source"] in self.sources)
                and (not self.embodiments or row["embodiment"] in self.embodiments)
                and (not self.instructions or any(re.search(p, row["instruction"]) for p in self.instructions))
                and (not self.source_episodes
                     or any(fnmatch.fnmatchcase(row["source_episode"], g) for g in self.source_episodes)))

    def to_json(self) -> dict[str, list[str]]:
        return {"sources": list(self.sources), "embodiments": list(self.embodiments),
                "instructions": list(self.instructions), "source_episodes": list(self.source_episodes)}


@dataclass(frozen=True)
class ManifestParams:
    name: str
    within: str = "frames"
    validation_fraction: float = 0.05
    seed: int = 0
    #: episodes set apart for early-exit calibration (never trained on, never validated on)
    calibration_fraction: float = 0.0
    dataset_weights: dict[str, float] = field(default_factory=dict)
    include: Include = field(default_factory=Include)
    description: str = ""

    def __post_init__(self):
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.name):
            raise ManifestError(f"manifest name must be a plain file name, got {self.name!r}")
        if self.within not in WITHIN:
            raise ManifestError(f"within must be one of {WITHIN}, got {self.within!r}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ManifestError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")
        if not 0.0 <= self.calibration_fraction < 1.0 - self.validation_fraction:
            raise ManifestError(f"calibration_fraction must be in [0, 1 - validation_fraction), got "
                                f"{self.calibration_fraction}")
        bad = {d: w for d, w in self.dataset_weights.items() if not float(w) > 0}
        if bad:
            raise ManifestError(f"dataset weights must be > 0 (leave a dataset out with include.sources): {bad}")

    @classmethod
    def from_params(cls, name: str, conf: dict[str, Any] | None) -> ManifestParams:
        """From ``params.yaml``'s ``manifests.<name>`` section; unknown keys are an error, not ignored."""
        conf = dict(conf or {})
        unknown = set(conf) - {"within", "validation_fraction", "calibration_fraction", "seed", "dataset_weights",
                               "include", "description"}
        if unknown:
            raise ManifestError(f"manifests.{name}: unknown keys {sorted(unknown)}")
        return cls(
            name=name,
            within=str(conf.get("within", "frames")),
            validation_fraction=float(conf.get("validation_fraction", 0.05)),
            calibration_fraction=float(conf.get("calibration_fraction", 0.0)),
            seed=int(conf.get("seed", 0)),
            dataset_weights={str(k): float(v) for k, v in (conf.get("dataset_weights") or {}).items()},
            include=Include.from_params(conf.get("include")),
            description=str(conf.get("description") or "").strip(),
        )

    def to_json(self) -> dict[str, Any]:
        out = {"name": self.name, "within": self.within, "validation_fraction": self.validation_fraction,
               "seed": self.seed, "dataset_weights": dict(sorted(self.dataset_weights.items())),
               "include": self.include.to_json(), "description": self.description}
        if self.calibration_fraction:
            out["calibration_fraction"] = self.calibration_fraction
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ManifestParams:
        return cls(name=data["name"], within=data["within"], validation_fraction=data["validation_fraction"],
                   calibration_fraction=data.get("calibration_fraction", 0.0),
                   seed=data["seed"], dataset_weights=dict(data["dataset_weights"]),
                   include=Include(**{k: tuple(v) for k, v in data["include"].items()}),
                   description=data.get("description", ""))


def manifest_json_text(manifest: dict[str, Any]) -> str:
    """The one serialisation of manifest.json (croissant.json records its sha256)."""
    return json.dumps(manifest, indent=1, sort_keys=True) + "\n"


def resolve_stores(paths: Iterable[str | Path]) -> list[Path]:
    """Stores named directly, or every store one level under a data directory (``data/converted``)."""
    stores: list[Path] = []
    for p in map(Path, paths):
        if (p / INDEX_FILE).is_file():
            stores.append(p)
        elif p.is_dir() and (found := sorted(c for c in p.iterdir() if (c / INDEX_FILE).is_file())):
            stores.extend(found)
        else:
            raise ManifestError(f"{p}: not a store (no {INDEX_FILE}) and no stores under it")
    names = Counter(s.name for s in stores)
    if clash := sorted(n for n, c in names.items() if c > 1):
        raise ManifestError(f"two stores share a directory name {clash}: a manifest names stores by it")
    return sorted(set(stores), key=lambda s: s.name)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def split_of(episode_id: str, seed: int, validation_fraction: float, calibration_fraction: float = 0.0) -> str:
    """Deterministic per-episode split: depends only on the id and the seed, not on the other episodes.

    One uniform number per episode: below ``validation_fraction`` validation, then the next
    ``calibration_fraction`` calibration, else train. Adding a calibration fraction therefore
    never moves a validation episode, only takes training episodes.
    """
    u = int(hashlib.sha256(f"{seed}:{episode_id}".encode()).hexdigest()[:15], 16) / 16**15
    if u < validation_fraction:
        return "validation"
    return "calibration" if u < validation_fraction + calibration_fraction else "train"


def splits_of(manifest: dict[str, Any]) -> tuple[str, ...]:
    """The splits a manifest has: train and validation, and calibration when it was built with one."""
    return tuple(s for s in SPLITS if s != "calibration" or "calibration" in manifest.get("counts", {}))


def assign_probabilities(rows: list[dict[str, Any]], params: ManifestParams) -> dict[str, Any]:
    """Set each row's ``probability`` (per split) and return the declared shares per split.

    Both splits use the same mixture, so a validation loss measures the distribution
    training samples from.
    """
    shares: dict[str, Any] = {}
    for split in SPLITS:
        members = [r for r in rows if r["split"] == split]
        if not members:
            continue
        present = {m["dataset"] for m in members}
        weights = {d: w for d, w in params.dataset_weights.items() if d in present} or None
        try:
            probs, shares[split] = episode_probabilities(members, dataset_weights=weights, within=params.within)
        except ValueError as exc:
            raise ManifestError(f"{split} split: {exc}") from exc
        for r, p in zip(members, probs):
            r["probability"] = p
    return shares


def _select(stores: list[Path], params: ManifestParams) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                                  dict[str, Any]]:
    from pipelines.curation import cross_store_duplicates

    inputs, rows = [], []
    excluded: dict[str, Any] = {"conversion_quarantine": {}, "curation_removed": {}, "not_included": 0,
                                "cross_store_duplicates": []}
    indexes = {s: pq.read_table(s / INDEX_FILE).to_pylist() for s in stores}
    sources = {s: ",".join(sorted({r["source"] for r in rows_} or {s.name})) for s, rows_ in indexes.items()}
    wanted = set(params.include.sources)
    used = [s for s in stores if not wanted or wanted & set(sources[s].split(","))]
    unknown = wanted - {name for s in stores for name in sources[s].split(",")}
    if unknown:
        raise ManifestError(f"include.sources names {sorted(unknown)}, which none of the given stores holds")
    duplicates = cross_store_duplicates([str(s) for s in used])
    duplicate_ids = {d["episode_id"] for d in duplicates}
    excluded["cross_store_duplicates"] = [
        {"episode_id": d["episode_id"], "store": Path(d["store"]).name, "duplicate_of": d["duplicate_of"],
         "duplicate_of_store": Path(d["duplicate_of_store"]).name} for d in duplicates]
    for store in used:
        if not (store / CURATION_FILE).is_file():
            raise ManifestError(f"{store}: no {CURATION_FILE}; convert with curation enabled first")
        inputs.append({"store": store.name, "source": sources[store],
                       "index_sha256": file_sha256(store / INDEX_FILE),
                       "curation_sha256": file_sha256(store / CURATION_FILE)})
        report = store / REPORT_FILE
        if report.is_file():
            quarantined = json.loads(report.read_text()).get("counts", {}).get("quarantined_by_reason", {})
            for reason, n in quarantined.items():
                excluded["conversion_quarantine"][reason] = excluded["conversion_quarantine"].get(reason, 0) + n
        index = {r["episode_id"]: r for r in indexes[store]}
        for c in pq.read_table(store / CURATION_FILE).to_pylist():
            if c["status"] != "kept":
                key = c["reason"] or c["status"]
                excluded["curation_removed"][key] = excluded["curation_removed"].get(key, 0) + 1
                continue
            if c["episode_id"] in duplicate_ids:
                continue
            r = index.get(c["episode_id"])
            if r is None:
                raise ManifestError(f"{store}: {c['episode_id']} is in {CURATION_FILE} but not in {INDEX_FILE}")
            if not params.include.admits(r):
                excluded["not_included"] += 1
                continue
            rows.append({
                "episode_id": r["episode_id"], "dataset": r["source"], "embodiment": r["embodiment"],
                "robot_type": r["robot_type"], "store": store.name, "path": r["path"], "sha256": r["sha256"],
                "source_episode": r["source_episode"], "instruction": r["instruction"],
                "num_frames": r["num_frames"], "frames_kept": c["frames_kept"],
                "kept_ranges": [{"start": k["start"], "stop": k["stop"]} for k in c["kept_ranges"]],
                "split": split_of(r["episode_id"], params.seed, params.validation_fraction,
                                  params.calibration_fraction),
            })
    for key in ("conversion_quarantine", "curation_removed"):
        excluded[key] = dict(sorted(excluded[key].items()))
    return inputs, rows, excluded


def build_manifest(stores: list[str | Path], out_dir: str | Path, params: ManifestParams) -> dict[str, Any]:
    """Write ``out_dir`` atomically (a temp directory swapped into place) and return manifest.json's content."""
    inputs, rows, excluded = _select(resolve_stores(stores), params)
    if not rows:
        raise ManifestError(f"manifest {params.name!r}: no kept episode matches include {params.include.to_json()}")
    rows.sort(key=lambda r: (r["dataset"], r["embodiment"], r["episode_id"]))
    shares = assign_probabilities(rows, params)
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        manifest = _write_release(tmp, params, inputs, excluded, rows, shares)
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a failed build leaves neither half a release nor its scratch
        raise
    return manifest


def _write_release(tmp: Path, params: ManifestParams, inputs, excluded, rows, shares) -> dict[str, Any]:
    from pipelines.manifest.release import write_derived_files

    pq.write_table(pa.Table.from_pylist(rows, schema=TABLE_SCHEMA), tmp / TABLE_FILE, compression="zstd")
    manifest = {
        "format_version": MANIFEST_FORMAT,
        "name": params.name,
        "parameters": params.to_json(),
        "code_version": f"a1pipe {__version__}",
        "renderer": renderer_version(),
        "inputs": inputs,
        "excluded": excluded,
        "counts": {split: {"episodes": sum(r["split"] == split for r in rows),
                           "frames_kept": sum(r["frames_kept"] for r in rows if r["split"] == split)}
                   for split in SPLITS if split != "calibration" or params.calibration_fraction},
        "shares": shares,
        "table": {"file": TABLE_FILE, "rows": len(rows), "sha256": file_sha256(tmp / TABLE_FILE)},
        "files": {f"{r['store']}/{r['path']}": r["sha256"] for r in rows},
    }
    (tmp / MANIFEST_FILE).write_text(manifest_json_text(manifest), encoding="utf-8")
    write_derived_files(tmp, manifest, rows)
    _write_checksums(tmp)
    return manifest


def _write_checksums(directory: Path) -> None:
    names = sorted(p.name for p in directory.iterdir() if p.is_file() and p.name != CHECKSUMS_FILE)
    lines = [f"{file_sha256(directory / name)}  {name}" for name in names]
    (directory / CHECKSUMS_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")


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


def _swap_into_place(tmp: Path, out: Path) -> None:
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def load_manifest(manifest_dir: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    manifest_dir = Path(manifest_dir)
    path = manifest_dir / MANIFEST_FILE
    if not path.is_file():
        raise ManifestError(f"{manifest_dir}: no {MANIFEST_FILE}")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("format_version") != MANIFEST_FORMAT:
        raise ManifestError(f"{path}: format_version {manifest.get('format_version')!r}, "
                            f"this a1pipe reads {MANIFEST_FORMAT}")
    return manifest, pq.read_table(manifest_dir / manifest["table"]["file"]).to_pylist()


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
    for entry in manifest["inputs"]:
        store = given.get(entry["store"])
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


def _verify_accounting(manifest: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    problems = []
    for split in splits_of(manifest):
        members = [r for r in rows if r["split"] == split]
        recorded = manifest["counts"][split]
        found = {"episodes": len(members), "frames_kept": sum(r["frames_kept"] for r in members)}
        if found != recorded:
            problems.append(f"{split}: table has {found}, {MANIFEST_FILE} records {recorded}")
    params = manifest["parameters"]
    for r in rows:
        expected = split_of(r["episode_id"], params["seed"], params["validation_fraction"],
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


def _verify_episode(r: dict[str, Any], store: Path, manifest: dict[str, Any],
                    curation: dict[str, dict[str, Any]]) -> list[str]:
    from pipelines.episode_store.reader import EpisodeReader

    where = f"{r['episode_id']} ({r['store']}/{r['path']})"
    problems = []
    path = store / r["path"]
    if not path.is_file():
        return [f"{where}: episode file missing"]
    if file_sha256(path) != r["sha256"]:
        return [f"{where}: sha256 does not match the manifest"]
    try:
        with EpisodeReader(path) as ep:
            num_frames, stored_id = ep.num_frames, ep.meta.get("episode_id")
    except Exception as exc:  # a file whose bytes match but cannot be opened is still a finding
        return [f"{where}: cannot be read: {exc}"]
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
    if c is None or c["status"] != "kept":
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
        params = ManifestParams.from_json(manifest["parameters"])
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
    import tempfile

    from pipelines.manifest.release import DERIVED_FILES, PLOT_FILE, validate_croissant, write_derived_files

    problems = [f"croissant.json: {e}" for e in validate_croissant(manifest_dir / "croissant.json")]
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
