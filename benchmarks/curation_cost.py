"""What curation costs, as a fraction of conversion time, measured in one run on the same data.

Curation runs inside ``a1pipe convert`` on every published episode: a content digest of
its stored frames (duplicate detection; the writer records it while encoding, and the
script also times the old way, reading every frame back, as the baseline), a first pass of quantile sketches per
embodiment (outlier bounds) and the per-episode rules. This script converts a source's
synthetic input (``write_synthetic`` in ``pipelines/samples/<source>.py``) with one in-process
worker, then repeats exactly the curation work on the resulting store in the same process, and prints the
ratio ``curation time / conversion time`` (conversion time includes curation). It also
prints the kept fraction.

Usage::

    python benchmarks/curation_cost.py --source inhouse --episodes 4 --frames 300
    python benchmarks/curation_cost.py --source all --episodes 2 --frames 200
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def measure(source: str, episodes: int, frames: int, height: int, width: int, workdir: Path) -> dict:
    from pipelines.convert import ConvertConfig, run_conversion
    from pipelines.curation import BoundsAccumulator, CurationConfig, LowDim, curate
    from pipelines.episode_store.images import ImageConfig
    from pipelines.episode_store.index import content_sha256
    from pipelines.episode_store.reader import EpisodeStore
    from pipelines.samples import generator

    root, store = workdir / source / "input", workdir / source / "store"
    generator(source).write_synthetic(root, episodes=episodes, frames=frames, height=height, width=width, seed=0)
    t0 = time.perf_counter()
    report = run_conversion(ConvertConfig(source, str(root), str(store), image=ImageConfig()), workers=1,
                            show_progress=False)
    convert_s = time.perf_counter() - t0

    config = CurationConfig.from_params({"outliers": {"min_frames": 1}})
    t_digest = t_bounds = t_rules = t_full_read = 0.0
    lows, bounds = [], {}
    s = EpisodeStore(store)
    for path in s.episode_files():
        with s.open_episode(path.name[: -len(".zarr.zip")]) as r:
            z = time.perf_counter()
            full = content_sha256(r, recorded=False)  # the pre-recording cost: every stored frame read back
            a = time.perf_counter()
            assert content_sha256(r) == full, "recorded digest differs from a full read"
            b = time.perf_counter()
            t_full_read += a - z
            m = r.meta
            low = LowDim(m["episode_id"], m["source"]["name"], m["embodiment"], m["control_hz"], r.timestamp,
                         r.state, r.action, list(m["state_names"]), list(m["action_names"]))
            bounds.setdefault((low.source, low.embodiment), BoundsAccumulator()).add(low)
            c = time.perf_counter()
            t_digest, t_bounds = t_digest + (b - a), t_bounds + (c - b)
            lows.append(low)
    a = time.perf_counter()
    values = {k: v.bounds(config.outliers) for k, v in bounds.items()}
    kept = total = 0
    for low in lows:
        outcome = curate(low, config, values[(low.source, low.embodiment)])
        kept += outcome.frames_kept
        total += outcome.frames_in
    t_rules = time.perf_counter() - a + t_bounds
    curation_s = t_digest + t_rules
    return {
        "source": source,
        "episodes": report["counts"]["converted"],
        "frames": report["frames"],
        "camera_frames": report["camera_frames"],
        "convert_s": round(convert_s, 3),
        "curation_s": round(curation_s, 4),
        "digest_s": round(t_digest, 4),
        "full_read_digest_s": round(t_full_read, 4),
        "curation_fraction_with_full_read_digest": round((t_full_read + t_rules) / convert_s, 4),
        "bounds_and_rules_s": round(t_rules, 4),
        "curation_fraction_of_conversion": round(curation_s / convert_s, 4),
        "kept_fraction": round(kept / total, 4) if total else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", default="inhouse", help="a source name, or 'all'")
    p.add_argument("--episodes", type=int, default=4)
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    from converters import available_sources

    sources = available_sources() if args.source == "all" else [args.source]
    workdir = Path(tempfile.mkdtemp(prefix="a1pipe-curation-bench-"))
    results = []
    try:
        for source in sources:
            r = measure(source, args.episodes, args.frames, args.height, args.width, workdir)
            results.append(r)
            print(f"{source:14s} {r['episodes']} episodes, {r['camera_frames']} camera frames: conversion "
                  f"{r['convert_s']:.2f} s, curation {r['curation_s']:.3f} s (digest {r['digest_s']:.3f} + bounds/rules "
                  f"{r['bounds_and_rules_s']:.3f}) = {100 * r['curation_fraction_of_conversion']:.1f} % of conversion "
                  f"(reading the frames back for the digest instead: {r['full_read_digest_s']:.3f} s, "
                  f"{100 * r['curation_fraction_with_full_read_digest']:.1f} %); "
                  f"kept fraction {r['kept_fraction']}", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
