"""What building and verifying a manifest costs, against I/O floors measured in the same run.

Two measurements:

* **Scale of the table** (no episode files needed): synthetic stores whose ``index.parquet``
  and ``curation.parquet`` describe ``--episodes`` episodes over 7 datasets and several
  embodiments each. ``build`` and ``verify`` without file hashing (split rule, counts,
  exact probability and share recomputation, regenerated card/plot/Croissant, Croissant
  validation) are timed against the floor: reading those tables and writing the episode
  table with pyarrow.
* **File hashing** on real stores (``--stores``, e.g. ``data/converted`` after ``make
  repro``): full ``verify`` against the floor of sha256-ing the same episode files.

Usage::

    python benchmarks/manifest_cost.py --episodes 100000
    python benchmarks/manifest_cost.py --episodes 2000 --stores data/converted
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DATASETS = {"droid": 1, "agibot": 3, "robocoin": 15, "robomind": 8, "gm100": 3, "robochallenge": 4, "inhouse": 3}


def write_synthetic_stores(root: Path, episodes: int, seed: int = 0) -> list[Path]:
    """Index and curation tables only, with the real schemas; episode files are never opened."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.episode_store.index import CURATION_SCHEMA, INDEX_SCHEMA, CurationStatus
    from pipelines.episode_store.layout import episode_id, episode_relpath

    rng = np.random.default_rng(seed)
    per_dataset = episodes // len(DATASETS)
    stores = []
    for dataset, n_embodiments in DATASETS.items():
        index, curation = [], []
        lengths = rng.integers(50, 2000, per_dataset)
        embodiments = rng.integers(0, n_embodiments, per_dataset)
        for i in range(per_dataset):
            eid = episode_id(dataset, f"task_{i % 50}/episode_{i:07d}")
            n = int(lengths[i])
            start, stop = int(n * 0.1), int(n * 0.95)
            emb = f"{dataset}_robot{embodiments[i]}"
            index.append({"episode_id": eid, "source": dataset, "source_version": "1", "source_episode":
                          f"task_{i % 50}/episode_{i:07d}", "embodiment": emb, "robot_type": emb,
                          "instruction": f"do task {i % 50}", "num_frames": n, "duration_s": n / 15,
                          "control_hz": 15.0, "cameras": ["front", "wrist"], "state_dim": 8, "action_dim": 8,
                          "action_kind": "joint_position", "converter_version": "1", "format_version": 1,
                          "path": episode_relpath(eid), "size_bytes": n * 20000,
                          "sha256": hashlib.sha256(eid.encode()).hexdigest()})
            curation.append({"episode_id": eid, "source": dataset, "embodiment": emb, "status": CurationStatus.KEPT.value,
                             "reason": None, "message": "", "frames_in": n, "frames_kept": stop - start,
                             "kept_ranges": [{"start": start, "stop": stop}],
                             "removed_ranges": [{"start": 0, "stop": start, "reason": "idle_prefix", "message": ""},
                                                {"start": stop, "stop": n, "reason": "idle_suffix", "message": ""}],
                             "content_sha256": hashlib.sha256(f"c{eid}".encode()).hexdigest()})
        store = root / dataset
        store.mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(index, schema=INDEX_SCHEMA), store / "index.parquet", compression="zstd")
        pq.write_table(pa.Table.from_pylist(curation, schema=CURATION_SCHEMA), store / "curation.parquet",
                       compression="zstd")
        stores.append(store)
    return stores


def io_floor(stores: list[Path], out: Path) -> float:
    """Read every store's two tables and write one table of the same rows: what any build must do."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    t0 = time.perf_counter()
    tables = [pq.read_table(s / "index.parquet") for s in stores]
    for s in stores:
        pq.read_table(s / "curation.parquet")
    pq.write_table(pa.concat_tables(tables), out, compression="zstd")
    return time.perf_counter() - t0


def hash_floor(files: list[Path]) -> float:
    t0 = time.perf_counter()
    for f in files:
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=100_000)
    ap.add_argument("--stores", nargs="*", default=[], help="converted stores (or their directory) for the hashing run")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)

    from pipelines.manifest.build import ManifestParams, build_manifest, resolve_stores
    from pipelines.manifest.verify import verify_manifest

    figures: dict = {}
    params = ManifestParams(name="bench", validation_fraction=0.05)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        stores = write_synthetic_stores(tmp / "stores", args.episodes)
        floor = min(io_floor(stores, tmp / f"floor{i}.parquet") for i in range(3))
        t0 = time.perf_counter()
        manifest = build_manifest(stores, tmp / "m", params)
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        problems = verify_manifest(tmp / "m", stores, check_files=False)
        verify_s = time.perf_counter() - t0
        assert not problems, problems[:5]
        n = manifest["table"]["rows"]
        figures["table"] = {"episodes": n, "io_floor_s": round(floor, 3), "build_s": round(build_s, 3),
                            "verify_without_files_s": round(verify_s, 3),
                            "build_over_floor": round(build_s / floor, 2),
                            "verify_over_floor": round(verify_s / floor, 2)}
        print(f"table: {n} episodes, 7 datasets, {sum(DATASETS.values())} embodiments")
        print(f"  I/O floor (read index+curation, write table)  {floor:8.3f} s")
        print(f"  build                                          {build_s:8.3f} s   RATIO build / floor {build_s / floor:.2f}")
        print(f"  verify (no file hashing)                       {verify_s:8.3f} s   RATIO verify / floor {verify_s / floor:.2f}")

        if args.stores:
            real = resolve_stores(args.stores)
            build_manifest(real, tmp / "real", ManifestParams(name="bench"))
            rows = json.loads((tmp / "real" / "manifest.json").read_text())["files"]
            by_name = {s.name: s for s in real}
            files = [by_name[k.split("/", 1)[0]] / k.split("/", 1)[1] for k in rows]
            floor = min(hash_floor(files) for _ in range(3))
            t0 = time.perf_counter()
            problems = verify_manifest(tmp / "real", real)
            verify_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            verify_manifest(tmp / "real", real, check_files=False)
            fixed_s = time.perf_counter() - t0
            assert not problems, problems[:5]
            size = sum(f.stat().st_size for f in files)
            per_file = verify_s - fixed_s
            figures["files"] = {"episodes": len(files), "bytes": size, "sha256_floor_s": round(floor, 3),
                                "verify_s": round(verify_s, 3), "verify_fixed_s": round(fixed_s, 3),
                                "per_file_part_over_floor": round(per_file / floor, 2)}
            print(f"files: {len(files)} episode files, {size / 2**20:.1f} MiB")
            print(f"  sha256 floor                                   {floor:8.3f} s")
            print(f"  verify                                         {verify_s:8.3f} s   "
                  f"(fixed part {fixed_s:.3f} s: probabilities, derived files, Croissant validation)")
            print(f"  RATIO per-file part of verify / sha256 floor {per_file / floor:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
