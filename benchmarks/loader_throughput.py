"""Training-loader throughput against the JPEG-decode ceiling, and worker memory as episodes grow.

What is measured
----------------
The benchmark writes its own curated store: episodes of ``--frames`` frames with three
cameras stored as 224x224 JPEG (q90, the store's default), camera-like content (the
gradients, shapes, arm and sensor noise of ``convert_throughput.py``), 14-dimensional
bimanual state and action, and a manifest over it (``pipelines.manifest.build``).

For each episode count in ``--episodes`` it then measures, in the same run:

1. **Ceiling**: the exact frames the loader will decode (the same draws of the same
   manifest sampler, three cameras per sample) are read into memory first, then only
   decoded to pixel arrays (``decode_fitted`` + ``np.asarray``: PIL decode at the input
   size, which is all a sample's image work is at 224 stored -> 224 input), in one process (the ceiling for 0 loader
   workers) and in a pool of two (for 2 workers). Samples/s = samples / decode time.
2. **Loader**: ``ManifestLoader`` over the manifest, batch ``--batch``, chunk
   ``--chunk``, image 224x224, with 0 and 2 workers, without augmentation (the same
   image work as the ceiling) and with A1's augmentation (p = 0.5 erase or sharpen, +0.3
   the other). The first batch (worker start-up) is timed separately; samples/s is over
   the rest.
3. **Memory**: peak RSS (``VmHWM``) of each loader worker process and of the main
   process, as the number of episodes grows. Episode readers live in a bounded LRU
   (``open_episodes``), so worker memory should stay flat; with more episodes than the
   LRU holds, nearly every sample opens an episode file, so the "many episodes" rows
   also show what a cold open costs.

Ratios loader / ceiling are the figures to compare across machines; absolute numbers
are printed for information. Goal (issue 10): >= 0.5 of the ceiling. For scale only,
LeRobot's ``LeRobotDataset`` (video-backed) was measured on this machine at about 80
samples/s with 0 workers and 107 with 2 for a 2-camera, chunk-50, batch-32 load.

Usage::

    python benchmarks/loader_throughput.py                           # 16, 256 and 1024 episodes
    python benchmarks/loader_throughput.py --episodes 16 --batches 40 --json out.json
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: spinning OpenMP threads stall a shared core

import argparse
import json
import multiprocessing as mp
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
for path in (REPO, REPO / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

CAMERAS = ("cam_high", "cam_left_wrist", "cam_right_wrist")
NAMES = ([f"left_joint{i}" for i in range(1, 7)] + ["left_gripper"]
         + [f"right_joint{i}" for i in range(1, 7)] + ["right_gripper"])


# --- the store --------------------------------------------------------------------------------------


def _write_episodes(task: tuple[str, int, int, int, int]) -> int:
    from convert_throughput import render_frame

    from pipelines.episode_store import ActionKind, CameraStream, Episode
    from pipelines.episode_store.images import ImageConfig
    from pipelines.episode_store.writer import write_episode

    root, first, count, frames, size = task
    config = ImageConfig(height=size, width=size, resize="pad", quality=90)
    for e in range(first, first + count):
        rng = np.random.default_rng(e)
        t = np.arange(frames)[:, None] / 15.0
        state = np.sin(t * rng.uniform(0.2, 1.0, len(NAMES)) + rng.uniform(0, 6, len(NAMES))).astype(np.float32)
        cams = {c: CameraStream.from_array(c, [render_frame(0, e % 64, k, i, size, size, 3.0) for i in range(frames)])
                for k, c in enumerate(CAMERAS)}
        write_episode(Episode(
            source_episode=f"task_{e % 10}/episode_{e}.hdf5", embodiment="aloha", robot_type="aloha",
            control_hz=15.0, timestamp=t[:, 0], state=state, state_names=NAMES,
            action=np.roll(state, -1, axis=0), action_names=NAMES, action_kind=ActionKind.JOINT_POSITION,
            instruction=f"do task {e % 10}", instruction_alternatives=[], subtasks=None, cameras=cams, extras={},
            extra_names={}, metadata={"sim": True}, source="inhouse", source_version="bench",
            converter_version="bench"), root, config)
    return count


def build_store(base: Path, episodes: int, frames: int, size: int, processes: int) -> tuple[Path, Path, float]:
    """A curated store of ``episodes`` and a manifest over it; returns (data dir, manifest dir, seconds)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.episode_store.index import CURATION_SCHEMA, CurationStatus, rebuild_index_and_stats
    from pipelines.episode_store.reader import EpisodeStore
    from pipelines.manifest.build import ManifestParams, build_manifest

    started = time.perf_counter()
    store = base / "data" / "inhouse"
    EpisodeStore.create(store)
    step = -(-episodes // processes)
    tasks = [(str(store), first, min(step, episodes - first), frames, size) for first in range(0, episodes, step)]
    with mp.get_context("fork").Pool(processes) as pool:
        pool.map(_write_episodes, tasks)
    rebuild_index_and_stats(store)
    rows = []
    for r in EpisodeStore(store).index().to_pylist():  # every frame kept: the loader sees the whole store
        rows.append({"episode_id": r["episode_id"], "source": r["source"], "embodiment": r["embodiment"],
                     "status": CurationStatus.KEPT.value, "reason": None, "message": "", "frames_in": r["num_frames"],
                     "frames_kept": r["num_frames"], "kept_ranges": [{"start": 0, "stop": r["num_frames"]}],
                     "removed_ranges": [], "content_sha256": r["sha256"]})
    pq.write_table(pa.Table.from_pylist(rows, schema=CURATION_SCHEMA), store / "curation.parquet")
    build_manifest([store], base / "manifest", ManifestParams(name="bench", validation_fraction=0.0))
    return base / "data", base / "manifest", time.perf_counter() - started


# --- ceiling ----------------------------------------------------------------------------------------

_FRAMES: list[bytes] = []


def _decode_range(bounds: tuple[int, int, int]) -> int:
    from training.data.images import decode_into

    lo, hi, size = bounds
    out = np.empty((size, size, 3), dtype=np.uint8)
    for data in _FRAMES[lo:hi]:
        decode_into(data, out)
    return hi - lo


def ceiling(data, batches: int, size: int) -> dict:
    """Decode-only samples/s of exactly the frames the loader's first ``batches`` batches decode."""
    from pipelines.episode_store.reader import EpisodeReader

    global _FRAMES
    config = data.config
    draws = data.sampler.epoch(0)[: batches * config.batch_size]
    _FRAMES = []
    for row, frame in draws.tolist():
        with EpisodeReader(data.episode_paths[row]) as ep:
            _FRAMES += [ep.encoded_frame(c, frame) for c in CAMERAS]
    samples = len(draws)
    started = time.perf_counter()
    _decode_range((0, len(_FRAMES), size))
    one = time.perf_counter() - started
    chunk = 3 * 8
    with mp.get_context("fork").Pool(2) as pool:
        pool.map(_decode_range, [(i, i + 1, size) for i in range(2)])  # warm both processes
        started = time.perf_counter()
        pool.map(_decode_range, [(i, min(i + chunk, len(_FRAMES)), size) for i in range(0, len(_FRAMES), chunk)])
        two = time.perf_counter() - started
    return {"samples": samples, "frame_bytes_mean": int(np.mean([len(f) for f in _FRAMES])),
            "one_process": samples / one, "two_processes": samples / two}


# --- loader -----------------------------------------------------------------------------------------


def _peak_rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def run_loader(data, workers: int, batches: int) -> dict:
    from training.data import ManifestLoader

    loader = ManifestLoader(data, num_workers=workers)
    worker_peak: dict[int, int] = {}
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for child in _children(os.getpid()):
                worker_peak[child] = max(worker_peak.get(child, 0), _peak_rss_kb(child))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started = time.perf_counter()
    first = None
    n = samples = 0
    for batch in loader:
        n += 1
        if first is None:
            first = time.perf_counter() - started
            started = time.perf_counter()
        else:
            samples += batch["size"]
        if n == batches + 1:
            break
    elapsed = time.perf_counter() - started
    for child in _children(os.getpid()):
        worker_peak[child] = max(worker_peak.get(child, 0), _peak_rss_kb(child))
    stop.set()
    watcher.join()
    peaks = sorted(worker_peak.values())
    return {"workers": workers, "batches": n - 1, "samples": samples, "first_batch_s": round(first or 0.0, 3),
            "samples_per_s": samples / elapsed if elapsed else 0.0,
            "worker_peak_rss_mib": [round(p / 1024, 1) for p in peaks[-workers:]] if workers else [],
            "decode_errors": loader.decode_errors}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--episodes", default="16,256,1024", help="comma-separated episode counts")
    p.add_argument("--frames", type=int, default=24, help="frames per episode")
    p.add_argument("--size", type=int, default=224, help="stored and model input size (square)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--chunk", type=int, default=50)
    p.add_argument("--batches", type=int, default=12, help="timed batches per run (after the first)")
    p.add_argument("--workers", default="0,2", help="comma-separated loader worker counts")
    p.add_argument("--open-episodes", type=int, default=32, help="episode files each worker keeps open")
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import torch

    from training.config import AugmentConfig, DataConfig
    from training.data import ManifestData

    args = parse_args(argv)
    torch.set_num_threads(1)
    counts = [int(c) for c in args.episodes.split(",")]
    workers = [int(w) for w in args.workers.split(",")]
    base = args.workdir or Path(tempfile.mkdtemp(prefix="a1pipe-loader-bench-"))
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    results = {"machine": {"cpus": os.cpu_count()}, "settings": settings | {"workdir": str(base)}, "runs": []}
    print(f"loader throughput: 3 cameras {args.size}x{args.size}, chunk {args.chunk}, batch {args.batch}, "
          f"{args.frames} frames per episode, open_episodes {args.open_episodes}")
    try:
        for episodes in counts:
            root = base / f"e{episodes}"
            data_dir, manifest, build_s = build_store(root, episodes, args.frames, args.size, processes=2)
            row = {"episodes": episodes, "store_build_s": round(build_s, 1)}
            for augment in (False, True):
                config = DataConfig(data_root=str(data_dir), batch_size=args.batch, chunk=args.chunk,
                                    image_size=(args.size, args.size), open_episodes=args.open_episodes,
                                    augment=AugmentConfig(enabled=augment), max_action_dim=32, max_state_dim=32,
                                    layouts=str(REPO / "training" / "data" / "layouts.yaml"))
                data = ManifestData(manifest, config)
                if not augment:
                    row["ceiling"] = ceiling(data, args.batches + 1, args.size)
                for w in workers:
                    r = run_loader(data, w, args.batches)
                    ref = row["ceiling"]["one_process" if w == 0 else "two_processes"]
                    r["ratio_to_ceiling"] = r["samples_per_s"] / ref
                    row[f"loader_w{w}_{'augment' if augment else 'plain'}"] = r
            results["runs"].append(row)
            c = row["ceiling"]
            print(f"\n{episodes} episodes (store built in {build_s:.0f} s; mean JPEG {c['frame_bytes_mean']} B)")
            print(f"  ceiling (decode only): {c['one_process']:.0f} samples/s in 1 process, "
                  f"{c['two_processes']:.0f} in 2")
            for key, r in row.items():
                if key.startswith("loader_"):
                    rss = f", worker peak RSS {r['worker_peak_rss_mib']} MiB" if r["worker_peak_rss_mib"] else ""
                    print(f"  {key[7:]:<12} {r['samples_per_s']:7.1f} samples/s  ratio {r['ratio_to_ceiling']:.2f}  "
                          f"(first batch {r['first_batch_s']} s{rss})")
        results["main_peak_rss_mib"] = round(_peak_rss_kb(os.getpid()) / 1024, 1)
        print(f"\nmain process peak RSS {results['main_peak_rss_mib']} MiB")
    finally:
        if args.workdir is None:
            shutil.rmtree(base, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
