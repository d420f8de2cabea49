"""Build and verify a manifest: exactly which frames a model trains on, and how often.

A manifest is a directory ``manifests/<name>/`` with ``episodes.parquet`` (one row per
episode: identity, store, file checksum, kept frame ranges, split, probability) and
``manifest.json`` (parameters, code version, input store ids, counts, declared shares,
sha256 of every referenced episode file and of the table). The same inputs and
parameters give byte-identical files: rows are sorted, nothing time-dependent is written.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import __version__
from pipelines.manifest.weights import episode_probabilities

MANIFEST_FORMAT = 1
TABLE_FILE = "episodes.parquet"
MANIFEST_FILE = "manifest.json"
_RANGE = pa.struct([("start", pa.int64()), ("stop", pa.int64())])
TABLE_SCHEMA = pa.schema(
    [
        ("episode_id", pa.string()),
        ("dataset", pa.string()),
        ("source", pa.string()),
        ("embodiment", pa.string()),
        ("store_id", pa.string()),
        ("path", pa.string()),
        ("sha256", pa.string()),
        ("num_frames", pa.int64()),
        ("frames_kept", pa.int64()),
        ("kept_ranges", pa.list_(_RANGE)),
        ("split", pa.string()),
        ("probability", pa.float64()),
    ]
)


@dataclass(frozen=True)
class ManifestParams:
    name: str
    within: str = "frames"
    validation_fraction: float = 0.05
    seed: int = 0
    dataset_weights: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "within": self.within, "validation_fraction": self.validation_fraction,
                "seed": self.seed, "dataset_weights": dict(sorted(self.dataset_weights.items()))}


def store_id(store: str | Path) -> str:
    """A store's identity: the sha256 of its index (which holds every episode file's sha256)."""
    return _sha256(Path(store) / "index.parquet")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def split_of(episode_id: str, seed: int, validation_fraction: float) -> str:
    """Deterministic per-episode split: depends only on the id and the seed, not on the other episodes."""
    u = int(hashlib.sha256(f"{seed}:{episode_id}".encode()).hexdigest()[:15], 16) / 16**15
    return "validation" if u < validation_fraction else "train"


def build_manifest(stores: list[str | Path], out_dir: str | Path, params: ManifestParams) -> dict[str, Any]:
    from pipelines.curation import cross_store_duplicates

    excluded = {d["episode_id"] for d in cross_store_duplicates([str(s) for s in stores])}
    rows: list[dict[str, Any]] = []
    inputs = []
    for store in sorted(Path(s) for s in stores):
        sid = store_id(store)
        inputs.append({"store": store.name, "store_id": sid})
        index = {r["episode_id"]: r for r in pq.read_table(store / "index.parquet").to_pylist()}
        for c in pq.read_table(store / "curation.parquet").to_pylist():
            if c["status"] != "kept" or c["episode_id"] in excluded:
                continue
            r = index[c["episode_id"]]
            rows.append({
                "episode_id": r["episode_id"], "dataset": r["source"], "source": r["source"],
                "embodiment": r["embodiment"], "store_id": sid, "path": r["path"], "sha256": r["sha256"],
                "num_frames": r["num_frames"], "frames_kept": c["frames_kept"],
                "kept_ranges": [{"start": k["start"], "stop": k["stop"]} for k in c["kept_ranges"]],
                "split": split_of(r["episode_id"], params.seed, params.validation_fraction),
            })
    rows.sort(key=lambda r: (r["dataset"], r["embodiment"], r["episode_id"]))
    shares = {}
    for split in ("train", "validation"):
        members = [r for r in rows if r["split"] == split]
        if not members:
            continue
        weights = params.dataset_weights if split == "train" and params.dataset_weights else None
        if weights:
            weights = {d: w for d, w in weights.items() if any(m["dataset"] == d for m in members)}
        probs, shares[split] = episode_probabilities(members, dataset_weights=weights, within=params.within)
        for r, p in zip(members, probs):
            r["probability"] = p
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table_path = out / TABLE_FILE
    tmp = table_path.with_name(TABLE_FILE + ".tmp")
    pq.write_table(pa.Table.from_pylist(rows, schema=TABLE_SCHEMA), tmp, compression="zstd")
    os.replace(tmp, table_path)
    manifest = {
        "format_version": MANIFEST_FORMAT,
        "name": params.name,
        "parameters": params.to_json(),
        "code_version": f"a1pipe {__version__}",
        "inputs": inputs,
        "excluded_cross_store_duplicates": sorted(excluded),
        "counts": {
            split: {"episodes": sum(r["split"] == split for r in rows),
                    "frames_kept": sum(r["frames_kept"] for r in rows if r["split"] == split)}
            for split in ("train", "validation")
        },
        "shares": shares,
        "table": {"file": TABLE_FILE, "sha256": _sha256(table_path)},
        "files": {f"{r['store_id'][:12]}/{r['path']}": r["sha256"] for r in rows},
    }
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def verify_manifest(manifest_dir: str | Path, stores: list[str | Path]) -> list[str]:
    """Every mismatch between a manifest and the data, or [] when everything checks out."""
    from pipelines.episode_store.reader import EpisodeReader

    manifest_dir = Path(manifest_dir)
    problems: list[str] = []
    manifest = json.loads((manifest_dir / MANIFEST_FILE).read_text())
    table_path = manifest_dir / manifest["table"]["file"]
    if _sha256(table_path) != manifest["table"]["sha256"]:
        problems.append(f"{table_path.name}: sha256 differs from manifest.json")
    by_id = {store_id(s): Path(s) for s in stores}
    for entry in manifest["inputs"]:
        if entry["store_id"] not in by_id:
            problems.append(f"input store {entry['store']} ({entry['store_id'][:12]}) not among the given stores")
    for r in pq.read_table(table_path).to_pylist():
        store = by_id.get(r["store_id"])
        where = f"{r['episode_id']} ({r['path']})"
        if store is None:
            continue
        path = store / r["path"]
        if not path.is_file():
            problems.append(f"{where}: episode file missing")
            continue
        if _sha256(path) != r["sha256"] or manifest["files"].get(f"{r['store_id'][:12]}/{r['path']}") != r["sha256"]:
            problems.append(f"{where}: sha256 does not match the manifest")
            continue
        with EpisodeReader(path) as ep:
            if ep.num_frames != r["num_frames"]:
                problems.append(f"{where}: {ep.num_frames} frames, manifest records {r['num_frames']}")
        for k in r["kept_ranges"]:
            if not 0 <= k["start"] < k["stop"] <= r["num_frames"]:
                problems.append(f"{where}: kept range {k['start']}..{k['stop']} outside 0..{r['num_frames']}")
        if sum(k["stop"] - k["start"] for k in r["kept_ranges"]) != r["frames_kept"]:
            problems.append(f"{where}: kept ranges do not add up to frames_kept {r['frames_kept']}")
    return problems
