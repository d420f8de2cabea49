"""Build a manifest: exactly which frames a model trains on, and how often.

A manifest is a directory ``manifests/<name>/`` with ``episodes.parquet`` (one row per
episode: identity, store, file checksum, kept frame ranges, split, probability) and
``manifest.json`` (parameters, code version, input stores with the checksums of their
index and curation tables, counts, what was left out and why, declared shares, sha256 of
every referenced episode file and of the table), plus the derived ``croissant.json``,
``MANIFEST.md`` and ``composition.svg`` (``release``) and ``SHA256SUMS``. The same inputs and
parameters give byte-identical files: rows are sorted, nothing time- or path-dependent is
written. The file names and the table's schema are ``format``'s; ``verify`` checks a release
against the data with this module's rules (selection, split, probabilities).
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import re
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import __version__, storage
from pipelines.curation import cross_store_duplicates
from pipelines.episode_store.index import CurationStatus
from pipelines.episode_store.layout import CURATION_FILE, INDEX_FILE, REPORT_FILE
from pipelines.manifest import release
from pipelines.manifest.format import (
    CHECKSUMS_FILE,
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    SPLITS,
    TABLE_FILE,
    TABLE_SCHEMA,
    ManifestError,
    file_sha256,
    manifest_json_text,
)
from pipelines.manifest.weights import WITHIN, episode_probabilities


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
    #: seeds the episode-id hash that assigns splits (``split_of``); what a sampler draws is seeded by
    #: training's own ``seed``, so the two are named apart
    split_seed: int = 0
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
        if "seed" in conf:  # one name, one meaning: training's seed is the sampler's draw seed
            raise ManifestError(f"manifests.{name}.seed is now manifests.{name}.split_seed (the seed of the "
                                "episode-id hash that assigns each episode its split)")
        unknown = set(conf) - {"within", "validation_fraction", "calibration_fraction", "split_seed",
                               "dataset_weights", "include", "description"}
        if unknown:
            raise ManifestError(f"manifests.{name}: unknown keys {sorted(unknown)}")
        return cls(
            name=name,
            within=str(conf.get("within", "frames")),
            validation_fraction=float(conf.get("validation_fraction", 0.05)),
            calibration_fraction=float(conf.get("calibration_fraction", 0.0)),
            split_seed=int(conf.get("split_seed", 0)),
            dataset_weights={str(k): float(v) for k, v in (conf.get("dataset_weights") or {}).items()},
            include=Include.from_params(conf.get("include")),
            description=str(conf.get("description") or "").strip(),
        )

    def to_json(self) -> dict[str, Any]:
        out = {"name": self.name, "within": self.within, "validation_fraction": self.validation_fraction,
               "split_seed": self.split_seed, "dataset_weights": dict(sorted(self.dataset_weights.items())),
               "include": self.include.to_json(), "description": self.description}
        if self.calibration_fraction:
            out["calibration_fraction"] = self.calibration_fraction
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ManifestParams:
        """From manifest.json's parameters as ``format.parameters_of`` names them."""
        return cls(name=data["name"], within=data["within"], validation_fraction=data["validation_fraction"],
                   calibration_fraction=data.get("calibration_fraction", 0.0),
                   split_seed=data["split_seed"], dataset_weights=dict(data["dataset_weights"]),
                   include=Include(**{k: tuple(v) for k, v in data["include"].items()}),
                   description=data.get("description", ""))


def resolve_stores(paths: Iterable[str | Path]) -> list[storage.Storage]:
    """Stores named directly, or every store one level under a data directory (``data/converted``),
    on disk or on object storage."""
    stores: list[storage.Storage] = []
    for p in paths:
        where = storage.at(p)
        if where.exists(INDEX_FILE):
            stores.append(where)
        elif found := sorted({rel.split("/")[0] for rel in where.glob(f"*/{INDEX_FILE}")}):
            stores.extend(where.child(name) for name in found)
        else:
            raise ManifestError(f"{where.root}: not a store (no {INDEX_FILE}) and no stores under it")
    names = Counter(s.name for s in stores)
    if clash := sorted(n for n, c in names.items() if c > 1):
        raise ManifestError(f"two stores share a directory name {clash}: a manifest names stores by it")
    return sorted(set(stores), key=lambda s: s.name)


@contextlib.contextmanager
def on_disk(stores: list[storage.Storage], *files: str) -> Iterator[list[Path]]:
    """Each store's directory, holding those of ``files`` it has: a store on disk as it is; of one
    on object storage, a temporary copy of just these files, in a directory of the store's name."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(s.working_copy(fetch=s.present(*files))) for s in stores]


def split_of(episode_id: str, split_seed: int, validation_fraction: float, calibration_fraction: float = 0.0) -> str:
    """Deterministic per-episode split: depends only on the id and the split seed, not on the other episodes.

    One uniform number per episode: below ``validation_fraction`` validation, then the next
    ``calibration_fraction`` calibration, else train. Adding a calibration fraction therefore
    never moves a validation episode, only takes training episodes.
    """
    u = int(hashlib.sha256(f"{split_seed}:{episode_id}".encode()).hexdigest()[:15], 16) / 16**15
    if u < validation_fraction:
        return "validation"
    return "calibration" if u < validation_fraction + calibration_fraction else "train"


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


def _select(located: list[storage.Storage], stores: list[Path], params: ManifestParams
            ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """The manifest's inputs, rows and what was left out, from each store's index, curation table and
    conversion report (``stores``: their files on disk, in the order of ``located``, the stores)."""
    where = {local: s.root for s, local in zip(located, stores)}
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
            raise ManifestError(f"{where[store]}: no {CURATION_FILE}; convert with curation enabled first")
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
            if c["status"] != CurationStatus.KEPT:
                key = c["reason"] or c["status"]
                excluded["curation_removed"][key] = excluded["curation_removed"].get(key, 0) + 1
                continue
            if c["episode_id"] in duplicate_ids:
                continue
            r = index.get(c["episode_id"])
            if r is None:
                raise ManifestError(f"{where[store]}: {c['episode_id']} is in {CURATION_FILE} but not in {INDEX_FILE}")
            if not params.include.admits(r):
                excluded["not_included"] += 1
                continue
            rows.append({
                "episode_id": r["episode_id"], "dataset": r["source"], "embodiment": r["embodiment"],
                "robot_type": r["robot_type"], "store": store.name, "path": r["path"], "sha256": r["sha256"],
                "source_episode": r["source_episode"], "instruction": r["instruction"],
                "num_frames": r["num_frames"], "frames_kept": c["frames_kept"],
                "kept_ranges": [{"start": k["start"], "stop": k["stop"]} for k in c["kept_ranges"]],
                "split": split_of(r["episode_id"], params.split_seed, params.validation_fraction,
                                  params.calibration_fraction),
            })
    for key in ("conversion_quarantine", "curation_removed"):
        excluded[key] = dict(sorted(excluded[key].items()))
    return inputs, rows, excluded


def build_manifest(stores: list[str | Path], out_dir: str | Path, params: ManifestParams) -> dict[str, Any]:
    """Write ``out_dir`` atomically (a temp directory swapped into place) and return manifest.json's
    content. A manifest names its stores by directory name only, so one built from stores on object
    storage is the same as one built from copies of them on disk."""
    located = resolve_stores(stores)
    with on_disk(located, INDEX_FILE, CURATION_FILE, REPORT_FILE) as local:
        inputs, rows, excluded = _select(located, local, params)
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
    pq.write_table(pa.Table.from_pylist(rows, schema=TABLE_SCHEMA), tmp / TABLE_FILE, compression="zstd")
    manifest = {
        "format_version": MANIFEST_FORMAT,
        "name": params.name,
        "parameters": params.to_json(),
        "code_version": f"a1pipe {__version__}",
        "renderer": release.renderer_version(),
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
    release.write_derived_files(tmp, manifest, rows)
    _write_checksums(tmp)
    return manifest


def _write_checksums(directory: Path) -> None:
    names = sorted(p.name for p in directory.iterdir() if p.is_file() and p.name != CHECKSUMS_FILE)
    lines = [f"{file_sha256(directory / name)}  {name}" for name in names]
    (directory / CHECKSUMS_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")


def _swap_into_place(tmp: Path, out: Path) -> None:
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
