"""Throughput of ``a1pipe convert`` on in-house recordings, against the image-work ceiling.

What is measured
----------------
The benchmark writes its own input: in-house (ALOHA/ACT HDF5) episodes in the exact
layout ``converters/inhouse.py`` reads (``<root>/<task>/metadata.json`` +
``episode_<n>.hdf5``), with camera frames stored as JPEG, by default padded
``uint8 [T, L]`` rows plus ``/compress_len`` as ALOHA's recorder writes them
(``--layout vlen`` for variable-length bytes). The frames look like camera images:
smooth gradients, a low-frequency table texture, moving shapes and an "arm", plus
mild sensor noise, so a 480x640 frame is a JPEG of roughly 30-60 KB, not pure noise
(which would make decoding unrealistically slow) nor a flat colour (unrealistically
fast).

It then measures, in the same run and on the same encoded frames:

1. **Ceiling**: the encoded frames are read out of the generated HDF5 files (timed
   separately, reported as information), and a ``multiprocessing`` pool with the
   same number of processes as the conversion runs only the per-frame image work of
   the conversion: ``decode_image_bytes`` (PIL decode, what the converter calls),
   ``resize_frame`` and ``encode_jpeg`` with the same ``ImageConfig``. Frames are
   handed out in small chunks so every process stays busy even for one long
   episode. Wall-clock time of the pool run -> camera-frames/s. Per-stage times
   (decode / resize / encode, ms per frame on one core) are reported too.
2. **Conversion**: ``run_conversion`` (Beam local runner, same worker count) into a
   fresh store, in a child process. Camera-frames/s from our own wall-clock timing
   around the call, and the figure the conversion report gives.
3. **Resumed conversion**: the same call again on the finished store (everything
   is already published), showing what a no-op re-run costs.
4. **Peak memory** of the conversion: the child process tree is polled from
   ``/proc`` every 50 ms; each process's ``VmHWM`` (the kernel's own peak-RSS
   high-water mark, so short spikes between polls are not missed) is recorded, for
   the driver and for the Beam worker processes separately, along with the peak of
   the summed ``VmRSS`` of the whole tree (this sum counts shared pages once per
   process). As a cross-check the child also reports ``getrusage`` ``ru_maxrss`` of
   itself and of its waited-for children.
5. **Bytes written** per camera frame (the published ``.zarr.zip`` files), next to
   the bytes of the re-encoded JPEGs alone from the ceiling run.

Why the ceiling is the baseline
-------------------------------
Per camera frame the conversion must decode the source JPEG, resize it and encode
the stored JPEG; at 480x640 this is by far the largest cost, and everything else
the pipeline does (HDF5 reads, zarr/zip writing, fsync, Beam scheduling, index and
statistics) is overhead on top of it. So the best any implementation of this
conversion can do on this machine with these worker processes is to keep every
process busy with exactly that image work. Measuring that ceiling in the same run
on the same frames makes the ratio ``conversion / ceiling`` independent of the
machine (CPU speed, libjpeg build, core count): 1.0 means the pipeline adds no
overhead, 0.5 means half of the time goes to something other than image work or
processes sit idle. Absolute frames/s are printed for information only; this
script asserts nothing about speed.

Usage::

    python benchmarks/convert_throughput.py                 # 6 episodes x 300 frames x 3 cameras
    python benchmarks/convert_throughput.py --long          # 1 episode x 3000 frames x 3 cameras
    python benchmarks/convert_throughput.py --json out.json --workers 4

Linux only for the memory figures (``/proc``); everything else runs anywhere
``multiprocessing`` does.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import multiprocessing as mp
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CHILD_MODE = "_convert_child"
TASK_FOLDER = "bench_pick_place"
DEFAULT_CAMERAS = ("cam_high", "cam_left_wrist", "cam_right_wrist", "cam_low")
ARM_JOINTS = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper")
JOINT_NAMES = tuple(f"{side}_{j}" for side in ("left", "right") for j in ARM_JOINTS)
FPS = 50.0
GEN_CHUNK = 50  # frames per generation task
POLL_S = 0.05


# ======================================================================================
# Input generation: realistic camera frames, written in the in-house HDF5 layout
# ======================================================================================

_GEN: dict = {}  # per-process caches (backgrounds, noise bank)


def camera_names(count: int) -> list[str]:
    names = list(DEFAULT_CAMERAS[:count])
    names += [f"cam_{i}" for i in range(len(names), count)]
    return names


def _background(seed: int, episode: int, camera: int, h: int, w: int) -> np.ndarray:
    key = ("bg", seed, episode, camera, h, w)
    if key not in _GEN:
        rng = np.random.default_rng([seed, episode, camera, 1])
        y = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
        x = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
        tint = rng.uniform(-25, 25, 3).astype(np.float32)
        bg = np.empty((h, w, 3), np.float32)
        bg[..., 0] = 95 + 60 * y + 30 * x + tint[0]
        bg[..., 1] = 85 + 45 * y - 20 * x + tint[1]
        bg[..., 2] = 75 + 50 * (1 - y) + 15 * np.sin(6 * x + tint[2] / 10) + tint[2]
        # a table in the lower part with a low-frequency wood grain, and a soft vignette
        horizon = rng.uniform(0.45, 0.6)
        grain = 14 * np.sin(45 * y + 3 * np.sin(7 * x + rng.uniform(0, 6))) + 6 * np.sin(90 * x * y)
        table = (y > horizon).astype(np.float32)
        bg += (table * (grain - 20))[..., None]
        bg *= (1.0 - 0.35 * ((x - 0.5) ** 2 + (y - 0.5) ** 2))[..., None]
        _GEN[key] = np.clip(bg, 0, 255).astype(np.uint8)
    return _GEN[key]


def _noise(seed: int, sigma: float, h: int, w: int, index: int) -> np.ndarray:
    key = ("noise", seed, sigma, h, w)
    if key not in _GEN:
        rng = np.random.default_rng([seed, 2])
        _GEN[key] = [np.rint(rng.normal(0.0, sigma, (h, w, 3))).astype(np.int16) for _ in range(8)]
    return _GEN[key][index % 8]


def render_frame(seed: int, episode: int, camera: int, t: int, h: int, w: int, sigma: float) -> np.ndarray:
    """One HxWx3 uint8 RGB frame: gradient background, moving objects and arm, sensor noise."""
    from PIL import Image, ImageDraw

    im = Image.fromarray(_background(seed, episode, camera, h, w))
    draw = ImageDraw.Draw(im)
    rng = np.random.default_rng([seed, episode, camera, 3])  # per camera: fixed object set
    phase = t / FPS * (0.6 + 0.4 * camera) + rng.uniform(0, 2 * math.pi)
    scale = min(h, w) / 480.0
    for k in range(5):
        colour = tuple(int(c) for c in rng.integers(30, 230, 3))
        fx, fy, px, py = rng.uniform(0.3, 1.2), rng.uniform(0.3, 1.0), rng.uniform(0, 6), rng.uniform(0, 6)
        cx = w * (0.5 + 0.32 * math.sin(phase * fx + px))
        cy = h * (0.6 + 0.22 * math.cos(phase * fy + py))
        r = (22 + 9 * k) * scale
        box = [cx - r, cy - 0.7 * r, cx + r, cy + 0.7 * r]
        if k % 2:
            draw.ellipse(box, fill=colour, outline=(20, 20, 20), width=max(1, int(2 * scale)))
        else:
            draw.rectangle(box, fill=colour)
    # an arm reaching in from the top, with a gripper
    base = (w * (0.3 + 0.4 * (camera % 2)), 0)
    elbow = (w * (0.5 + 0.2 * math.sin(phase * 0.7)), h * (0.3 + 0.08 * math.cos(phase)))
    tip = (w * (0.5 + 0.3 * math.sin(phase * 0.9 + 1)), h * (0.62 + 0.15 * math.cos(phase * 0.8)))
    draw.line([base, elbow, tip], fill=(55, 58, 66), width=max(2, int(26 * scale)), joint="curve")
    g = 14 * scale
    draw.rectangle([tip[0] - g, tip[1] - g, tip[0] + g, tip[1] + g], fill=(35, 35, 40))
    frame = np.asarray(im).astype(np.int16)
    frame += _noise(seed, sigma, h, w, t * 7 + camera * 3 + episode)
    return np.clip(frame, 0, 255).astype(np.uint8)


def _generate_chunk(task: tuple) -> tuple[int, int, int, list[bytes]]:
    """Pool task: JPEG bytes of frames [start, stop) of one camera of one episode."""
    from PIL import Image

    seed, episode, camera, start, stop, h, w, sigma, quality = task
    out = []
    for t in range(start, stop):
        buf = io.BytesIO()
        Image.fromarray(render_frame(seed, episode, camera, t, h, w, sigma)).save(buf, format="JPEG", quality=quality)
        out.append(buf.getvalue())
    return episode, camera, start, out


def _trajectories(seed: int, episode: int, frames: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([seed, episode, 4])
    t = np.arange(frames, dtype=np.float64)[:, None] / FPS
    d = len(JOINT_NAMES)
    amp, freq, off = rng.uniform(0.05, 0.6, d), rng.uniform(0.05, 0.4, d), rng.uniform(-1, 1, d)
    qpos = off + amp * np.sin(2 * np.pi * freq * t + rng.uniform(0, 6, d))
    qvel = np.gradient(qpos, axis=0) * FPS
    action = np.vstack([qpos[1:], qpos[-1:]]) + rng.normal(0, 0.002, qpos.shape)
    effort = 0.5 * qvel + rng.normal(0, 0.05, qpos.shape)
    return {k: v.astype(np.float32) for k, v in
            {"qpos": qpos, "qvel": qvel, "effort": effort, "action": action}.items()}


def _write_camera(f, cam: str, blobs: list[bytes], layout: str) -> np.ndarray:
    import h5py

    lengths = np.array([len(b) for b in blobs], dtype=np.int64)
    images = f.require_group("observations/images")
    if layout == "vlen":
        ds = images.create_dataset(cam, (len(blobs),), dtype=h5py.vlen_dtype(np.uint8))
        for start in range(0, len(blobs), 64):
            block = np.empty(min(64, len(blobs) - start), dtype=object)
            for i in range(len(block)):
                block[i] = np.frombuffer(blobs[start + i], dtype=np.uint8)
            ds[start : start + len(block)] = block
    else:  # ALOHA: zero-padded to the longest frame, one chunk per frame
        padded = int(lengths.max())
        ds = images.create_dataset(cam, (len(blobs), padded), dtype=np.uint8, chunks=(1, padded))
        for start in range(0, len(blobs), 64):
            stop = min(start + 64, len(blobs))
            rows = np.zeros((stop - start, padded), dtype=np.uint8)
            for i in range(start, stop):
                rows[i - start, : lengths[i]] = np.frombuffer(blobs[i], dtype=np.uint8)
            ds[start:stop] = rows
    return lengths


def generate_input(root: Path, args, cams: list[str], workers: int) -> dict:
    """Write ``args.episodes`` episode files + metadata.json under ``root/TASK_FOLDER``."""
    import h5py

    folder = root / TASK_FOLDER
    folder.mkdir(parents=True)
    (folder / "metadata.json").write_text(json.dumps({
        "format_version": 1,
        "instruction": "pick up the cube and place it in the bin",
        "instruction_alternatives": ["put the cube in the bin"],
        "robot_type": "aloha",
        "fps": FPS,
        "camera_names": cams,
        "joint_names": list(JOINT_NAMES),
        "action_kind": "joint_position",
        "image_channel_order": "RGB",
        "extra": {"generator": "benchmarks/convert_throughput.py"},
    }, indent=1) + "\n")

    tasks = [
        (args.seed, e, c, s, min(s + GEN_CHUNK, args.frames), args.height, args.width, args.noise, args.source_quality)
        for e in range(args.episodes) for c in range(len(cams)) for s in range(0, args.frames, GEN_CHUNK)
    ]
    sizes: list[int] = []
    pending: dict[tuple[int, int], dict[int, list[bytes]]] = {}
    open_files: dict[int, tuple] = {}
    chunks_per_camera = math.ceil(args.frames / GEN_CHUNK)
    with _pool(workers) as pool:
        for e, c, start, blobs in pool.imap(_generate_chunk, tasks, chunksize=1):
            if e not in open_files:
                f = h5py.File(folder / f"episode_{e}.hdf5", "w")
                f.attrs["sim"] = False
                f.attrs["compress"] = True
                for key, values in _trajectories(args.seed, e, args.frames).items():
                    (f if key == "action" else f.require_group("observations")).create_dataset(key, data=values)
                open_files[e] = (f, np.zeros((len(cams), args.frames), dtype=np.float32), set())
            part = pending.setdefault((e, c), {})
            part[start] = blobs
            if len(part) == chunks_per_camera:  # camera complete: write it, free its bytes
                all_blobs = [b for s in sorted(part) for b in part[s]]
                del pending[(e, c)]
                f, compress_len, done = open_files[e]
                compress_len[c] = _write_camera(f, cams[c], all_blobs, args.layout)
                sizes += [len(b) for b in all_blobs]
                done.add(c)
                if len(done) == len(cams):
                    if args.layout == "padded":
                        f.create_dataset("compress_len", data=compress_len)  # float32 [C, T], as ALOHA
                    f.close()
                    del open_files[e]
    sizes_arr = np.array(sizes)
    return {
        "camera_frames": int(sizes_arr.size),
        "source_jpeg_bytes": int(sizes_arr.sum()),
        "source_jpeg_kb_mean": round(float(sizes_arr.mean()) / 1024, 1),
        "source_jpeg_kb_min": round(float(sizes_arr.min()) / 1024, 1),
        "source_jpeg_kb_max": round(float(sizes_arr.max()) / 1024, 1),
        "hdf5_bytes": sum(p.stat().st_size for p in folder.glob("*.hdf5")),
    }


# ======================================================================================
# Ceiling: decode + resize + encode of the same frames, same process count
# ======================================================================================

_CEIL: dict = {}


def _ceiling_init(frames: list[bytes], image_config) -> None:
    _CEIL["frames"] = frames
    _CEIL["config"] = image_config


def _ceiling_ready(_: int) -> int:
    time.sleep(0.1)
    return os.getpid() if "frames" in _CEIL else -1


def _ceiling_chunk(bounds: tuple[int, int]) -> tuple[int, int, float, float, float]:
    from pipelines.episode_store.images import encode_jpeg, resize_frame
    from pipelines.episode_store.record import decode_image_bytes

    frames, config = _CEIL["frames"], _CEIL["config"]
    out_bytes, t_dec, t_res, t_enc = 0, 0.0, 0.0, 0.0
    for i in range(*bounds):
        a = time.perf_counter()
        frame = decode_image_bytes(frames[i], channel_order="RGB")
        b = time.perf_counter()
        im = resize_frame(frame, config)
        c = time.perf_counter()
        out_bytes += len(encode_jpeg(im, config.quality))
        d = time.perf_counter()
        t_dec += b - a
        t_res += c - b
        t_enc += d - c
    return bounds[1] - bounds[0], out_bytes, t_dec, t_res, t_enc


def read_encoded_frames(root: Path) -> list[bytes]:
    """Every camera frame's JPEG bytes, read back from the HDF5 files as the converter finds them."""
    import h5py

    from converters.inhouse import InhouseConverter

    frames: list[bytes] = []
    conv = InhouseConverter(root)
    for ref in conv.discover():
        meta = conv.task_metadata(ref)
        with h5py.File(root / ref, "r") as f:
            lengths = f["compress_len"][()].astype(np.int64) if "compress_len" in f else None
            for k, cam in enumerate(meta.camera_names):
                ds = f[f"observations/images/{cam}"]
                for start in range(0, ds.shape[0], 64):
                    rows = ds[start : start + 64]
                    for j, row in enumerate(rows):
                        row = np.asarray(row, dtype=np.uint8)
                        n = int(lengths[k, start + j]) if (lengths is not None and row.ndim == 1 and ds.ndim == 2) else len(row)
                        frames.append(row[:n].tobytes())
    return frames


def run_ceiling(frames: list[bytes], image_config, workers: int) -> dict:
    # Small chunks keep every process busy (also for a single long episode).
    chunk = max(1, min(50, math.ceil(len(frames) / (8 * workers))))
    bounds = [(s, min(s + chunk, len(frames))) for s in range(0, len(frames), chunk)]
    with _pool(workers, initializer=_ceiling_init, initargs=(frames, image_config)) as pool:
        for _ in range(20):  # make sure every process is up before the clock starts
            if len(set(pool.map(_ceiling_ready, range(4 * workers), chunksize=1)) - {-1}) >= workers:
                break
        t0 = time.perf_counter()
        results = pool.map(_ceiling_chunk, bounds, chunksize=1)
        wall = time.perf_counter() - t0
    n = sum(r[0] for r in results)
    out_bytes = sum(r[1] for r in results)
    t_dec, t_res, t_enc = (sum(r[i] for r in results) for i in (2, 3, 4))
    busy = t_dec + t_res + t_enc
    return {
        "camera_frames": n,
        "wall_s": round(wall, 3),
        "camera_frames_per_s": round(n / wall, 1),
        "per_core_camera_frames_per_s": round(n / busy, 1),
        "parallel_efficiency": round(busy / (wall * workers), 3),
        "decode_ms_per_frame": round(1000 * t_dec / n, 3),
        "resize_ms_per_frame": round(1000 * t_res / n, 3),
        "encode_ms_per_frame": round(1000 * t_enc / n, 3),
        "output_jpeg_bytes_per_frame": round(out_bytes / n, 1),
        "tasks": len(bounds),
        "frames_per_task": chunk,
    }


def _pool(workers: int, **kwargs):
    methods = mp.get_all_start_methods()
    ctx = mp.get_context("fork") if "fork" in methods else mp.get_context()
    return ctx.Pool(workers, **kwargs)


def _generic_ceiling_unit(task: tuple) -> tuple[int, int, float, float, float]:
    """Ceiling work for any source: decode through the converter's own camera streams, resize, encode."""
    from converters import get_converter
    from pipelines.episode_store.images import encode_jpeg, resize_frame

    source, root, unit, camera_index, config = task
    converter = get_converter(source)(root)
    n, out_bytes, t_dec, t_res, t_enc = 0, 0, 0.0, 0.0, 0.0
    for _, opener in converter.episodes(unit):
        with converter.read(opener) as episode:
            names = sorted(episode.cameras)
            for cam in [episode.cameras[names[camera_index]]] if camera_index < len(names) else []:
                frames = cam.open_frames()
                while True:
                    a = time.perf_counter()
                    frame = next(frames, None)
                    b = time.perf_counter()
                    if frame is None:
                        break
                    im = resize_frame(frame, config)
                    c = time.perf_counter()
                    out_bytes += len(encode_jpeg(im, config.quality))
                    d = time.perf_counter()
                    n += 1
                    t_dec, t_res, t_enc = t_dec + (b - a), t_res + (c - b), t_enc + (d - c)
    return n, out_bytes, t_dec, t_res, t_enc


def _camera_count(task: tuple) -> int:
    from converters import get_converter

    source, root, unit = task
    converter = get_converter(source)(root)
    for _, opener in converter.episodes(unit):
        with converter.read(opener) as episode:
            return len(episode.cameras)
    return 0


def run_generic_ceiling(source: str, root: Path, image_config, workers: int) -> dict:
    """Same worker count as the conversion; one task per (work unit, camera).

    The writer encodes an episode's cameras on parallel threads, so the ceiling may
    spread one unit's cameras over processes too: a single long episode keeps every
    core busy in both.
    """
    from converters import get_converter

    units = get_converter(source)(root).discover()
    with _pool(workers) as pool:
        cameras = pool.map(_camera_count, [(source, str(root), unit) for unit in units], chunksize=1)
    tasks = [(source, str(root), unit, k, image_config) for unit, count in zip(units, cameras) for k in range(count)]
    with _pool(workers) as pool:
        t0 = time.perf_counter()
        results = pool.map(_generic_ceiling_unit, tasks, chunksize=1)
        wall = time.perf_counter() - t0
    n = sum(r[0] for r in results)
    t_dec, t_res, t_enc = (sum(r[i] for r in results) for i in (2, 3, 4))
    busy = t_dec + t_res + t_enc
    return {
        "camera_frames": n,
        "wall_s": round(wall, 3),
        "camera_frames_per_s": round(n / wall, 1),
        "per_core_camera_frames_per_s": round(n / busy, 1),
        "parallel_efficiency": round(busy / (wall * workers), 3),
        "decode_ms_per_frame": round(1000 * t_dec / n, 3),
        "resize_ms_per_frame": round(1000 * t_res / n, 3),
        "encode_ms_per_frame": round(1000 * t_enc / n, 3),
        "output_jpeg_bytes_per_frame": round(sum(r[1] for r in results) / n, 1),
        "tasks": len(tasks),
        "frames_per_task": round(n / max(1, len(tasks)), 1),
        "hdf5_read_s_single_process": 0.0,
    }


def generate_synthetic(source: str, root: Path, args) -> dict:
    from pipelines.samples import generator

    generator(source).write_synthetic(
        root, episodes=args.episodes, frames=args.frames, height=args.height, width=args.width, seed=args.seed
    )
    return {"source_bytes": _dir_bytes(root)}


# ======================================================================================
# Conversion, in a child process whose process tree is watched through /proc
# ======================================================================================


def _convert_child(argv: list[str]) -> None:
    """Child entry point: run one conversion, write timing + report + rusage as JSON."""
    import logging
    import warnings

    logging.basicConfig(level=logging.ERROR)
    warnings.simplefilter("ignore")
    spec = json.loads(argv[0])
    from pipelines.convert import ConvertConfig, run_conversion
    from pipelines.episode_store.images import ImageConfig

    config = ConvertConfig(
        spec["source"], spec["input"], spec["store"],
        image=ImageConfig(height=spec["size"], width=spec["size"], resize=spec["resize"], quality=spec["quality"]),
    )
    t0 = time.perf_counter()
    report = run_conversion(config, workers=spec["workers"], show_progress=False)
    wall = time.perf_counter() - t0
    kb = 1 if sys.platform != "darwin" else 1 / 1024  # ru_maxrss: KiB on Linux, bytes on macOS
    result = {
        "wall_s": wall,
        "report": {**{k: report.get(k) for k in ("camera_frames", "frames", "counts")},
                   **{k: report["run"][k] for k in ("wall_time_s", "camera_frames_per_s")}},
        "ru_maxrss_self_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * kb,
        "ru_maxrss_children_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * kb,
    }
    Path(spec["result"]).write_text(json.dumps(result))


def _proc_children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def _proc_cpu_s(pid: int) -> float | None:
    """utime + stime of a process in seconds (its own threads, not its children)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
        fields = stat[stat.rfind(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _proc_mem_kb(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) of a process in KiB, or None if it is gone / a zombie."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            fields = dict(line.split(":", 1) for line in fh if ":" in line)
        return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])
    except (OSError, KeyError, ValueError):
        return None


def _proc_cmd(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            parts = [p.decode(errors="replace") for p in fh.read().split(b"\0") if p]
    except OSError:
        return "?"
    mod = next((parts[i + 1] for i, p in enumerate(parts[:-1]) if p == "-m"), None)
    return mod or " ".join(Path(p).name for p in parts[:2])


def run_conversion_child(input_root: Path, store: Path, args, workers: int, label: str, workdir: Path) -> dict:
    result_path = workdir / f"{label}.result.json"
    spec = {"source": args.source, "input": str(input_root), "store": str(store), "size": args.image_size, "resize": args.resize,
            "quality": args.quality, "workers": workers, "result": str(result_path)}
    log_path = workdir / f"{label}.log"
    watch = os.path.isdir("/proc/self")
    peaks: dict[int, int] = {}  # pid -> peak VmHWM (KiB)
    cpu: dict[int, float] = {}  # pid -> last seen utime+stime (s)
    cmds: dict[int, str] = {}
    tree_peak_kb, samples = 0, 0
    started = time.perf_counter()
    with open(log_path, "w") as log:
        child = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), CHILD_MODE, json.dumps(spec)],
                                 stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO))
        while child.poll() is None:
            if watch:
                children = _proc_children()
                tree, todo = [], [child.pid]
                while todo:
                    pid = todo.pop()
                    tree.append(pid)
                    todo += children.get(pid, [])
                total = 0
                for pid in tree:
                    mem = _proc_mem_kb(pid)
                    if mem is None:
                        continue
                    total += mem[0]
                    peaks[pid] = max(peaks.get(pid, 0), mem[1])
                    cpu[pid] = _proc_cpu_s(pid) or cpu.get(pid, 0.0)
                    if pid not in cmds:
                        cmds[pid] = _proc_cmd(pid)
                tree_peak_kb = max(tree_peak_kb, total)
                samples += 1
            time.sleep(POLL_S)
    process_wall = time.perf_counter() - started
    if child.returncode != 0 or not result_path.exists():
        tail = log_path.read_text(errors="replace")[-4000:]
        raise SystemExit(f"conversion child ({label}) failed with exit code {child.returncode}:\n{tail}")
    result = json.loads(result_path.read_text())
    result["process_wall_s"] = process_wall
    workers_kb = {pid: kb for pid, kb in peaks.items() if pid != child.pid}
    result["memory"] = {
        "method": ("/proc polling every %.0f ms of the conversion child's process tree (%d samples): per-process "
                   "VmHWM peak; tree = peak of summed VmRSS (shared pages counted per process)" % (POLL_S * 1000, samples))
        if watch else "no /proc: only getrusage figures",
        "driver_peak_rss_mb": round(peaks.get(child.pid, 0) / 1024, 1) if watch else None,
        "worker_peak_rss_mb": round(max(workers_kb.values()) / 1024, 1) if workers_kb else None,
        "worker_processes_seen": len(workers_kb),
        "worker_commands": dict(sorted(Counter(cmds.get(p, "?") for p in workers_kb).items())),
        "tree_peak_rss_mb": round(tree_peak_kb / 1024, 1) if watch else None,
        "cpu_s_driver": round(cpu.get(child.pid, 0.0), 2) if watch else None,
        "cpu_s_workers": round(sum(v for p, v in cpu.items() if p != child.pid), 2) if watch else None,
        "getrusage_driver_maxrss_mb": round(result["ru_maxrss_self_kb"] / 1024, 1),
        "getrusage_children_maxrss_mb": round(result["ru_maxrss_children_kb"] / 1024, 1),
    }
    return result


# ======================================================================================
# Driver
# ======================================================================================


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", default="inhouse",
                   help="source to benchmark (default inhouse); other sources generate input with their "
                        "sample generator's write_synthetic and measure the ceiling through its own camera streams")
    p.add_argument("--episodes", type=int, help="episode files (default 6; 1 with --long)")
    p.add_argument("--frames", type=int, help="frames per episode (default 300; 3000 with --long)")
    p.add_argument("--cameras", type=int, default=3, help="cameras per episode (default 3)")
    p.add_argument("--height", type=int, default=480, help="source frame height (default 480)")
    p.add_argument("--width", type=int, default=640, help="source frame width (default 640)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes (default: os.cpu_count())")
    p.add_argument("--image-size", type=int, default=224, help="stored frame size, square (default 224)")
    p.add_argument("--resize", default="pad", choices=("pad", "stretch", "none"), help="ImageConfig.resize (default pad)")
    p.add_argument("--quality", type=int, default=90, help="stored JPEG quality (default 90)")
    p.add_argument("--source-quality", type=int, default=90, help="JPEG quality of the generated source frames")
    p.add_argument("--noise", type=float, default=3.0, help="sensor-noise sigma of the generated frames (default 3)")
    p.add_argument("--layout", default="padded", choices=("padded", "vlen"),
                   help="source image layout: ALOHA padded uint8 [T,L] + /compress_len, or vlen bytes")
    p.add_argument("--long", action="store_true", help="one long episode (3000 frames) to check memory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", help="create the temporary directory here (default: system temp)")
    p.add_argument("--keep", action="store_true", help="keep the generated input and store")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")
    args = p.parse_args(argv)
    if args.episodes is None:
        args.episodes = 1 if args.long else 6
    if args.frames is None:
        args.frames = 3000 if args.long else 300
    for name in ("episodes", "frames", "cameras", "height", "width", "workers", "image_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def _dir_bytes(path: Path, pattern: str = "*") -> int:
    return sum(p.stat().st_size for p in path.rglob(pattern) if p.is_file() and ".stale" not in p.parts)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from PIL import __version__ as pil_version
    from PIL import features

    from pipelines.episode_store.images import ImageConfig

    bench_start = time.perf_counter()
    workers = args.workers
    cams = camera_names(args.cameras)
    image_config = ImageConfig(height=args.image_size, width=args.image_size, resize=args.resize, quality=args.quality)
    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="a1pipe-bench-", dir=args.workdir))
    input_root, store = workdir / "input", workdir / "store"
    expected = args.episodes * args.frames * len(cams)
    shape = f"{args.episodes} episode(s) x {args.frames} frames x {len(cams)} cameras @ {args.height}x{args.width}"
    inhouse = args.source == "inhouse"
    if not inhouse:  # the source's own layout fixes its camera count; counts come from the ceiling run
        expected = None
        shape = f"{args.episodes} episode(s) x {args.frames} frames @ {args.height}x{args.width} (cameras: source layout)"
    label = f"in-house ({args.layout} JPEG)" if inhouse else f"{args.source} (native layout via write_synthetic)"
    print(f"a1pipe convert throughput: {label}, {shape} = {expected or 'all'} camera frames")
    print(f"  stored as {image_config.height}x{image_config.width} ({image_config.resize}) JPEG q{image_config.quality}; "
          f"{workers} worker process(es); os.cpu_count()={os.cpu_count()}; workdir {workdir}")
    try:
        # 1. input
        t0 = time.perf_counter()
        if inhouse:
            gen = generate_input(input_root, args, cams, workers)
            gen["wall_s"] = round(time.perf_counter() - t0, 2)
            print(f"  generated input in {gen['wall_s']:.1f} s: {gen['source_jpeg_bytes'] / 2**20:.1f} MiB of source JPEG, "
                  f"mean {gen['source_jpeg_kb_mean']} KiB/frame (min {gen['source_jpeg_kb_min']}, max {gen['source_jpeg_kb_max']})")
        else:
            gen = generate_synthetic(args.source, input_root, args)
            gen["wall_s"] = round(time.perf_counter() - t0, 2)
            print(f"  generated input in {gen['wall_s']:.1f} s: {gen['source_bytes'] / 2**20:.1f} MiB")

        # 2. ceiling (before anything imports Beam in this process, so forking is clean)
        if inhouse:
            t0 = time.perf_counter()
            frames = read_encoded_frames(input_root)
            read_s = time.perf_counter() - t0
            ceiling = run_ceiling(frames, image_config, workers)
            ceiling["hdf5_read_s_single_process"] = round(read_s, 3)
            del frames
        else:
            ceiling = run_generic_ceiling(args.source, input_root, image_config, workers)
            expected = ceiling["camera_frames"]
            gen["camera_frames"] = expected
        print(f"  ceiling done in {ceiling['wall_s']:.1f} s", flush=True)

        # 3. conversion + resumed conversion, each in a watched child process
        conv = run_conversion_child(input_root, store, args, workers, "convert", workdir)
        print(f"  conversion done in {conv['wall_s']:.1f} s", flush=True)
        resumed = run_conversion_child(input_root, store, args, workers, "resume", workdir)
        print(f"  resumed conversion done in {resumed['wall_s']:.1f} s", flush=True)

        episode_bytes = _dir_bytes(store / "episodes", "*.zarr.zip")
        store_bytes = _dir_bytes(store)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    counts = conv["report"]["counts"]
    converted_frames = conv["report"]["camera_frames"] or 0
    problems = []
    if counts["converted"] != args.episodes or counts["quarantined"]:
        problems.append(f"expected {args.episodes} converted episodes, report counts: {counts}")
    if converted_frames != expected:
        problems.append(f"expected {expected} camera frames, report says {converted_frames}")
    if resumed["report"]["counts"]["resumed"] != args.episodes:
        problems.append(f"resumed run did not resume every episode: {resumed['report']['counts']}")

    c_fps = ceiling["camera_frames_per_s"]
    own_fps = converted_frames / conv["wall_s"]
    rep_fps = conv["report"]["camera_frames_per_s"] or 0.0
    res_fps = (resumed["report"]["camera_frames"] or 0) / resumed["wall_s"]
    mem = conv["memory"]
    figures = {
        "config": {
            "source": args.source, "episodes": args.episodes, "frames": args.frames, "cameras": cams if inhouse else None, "height": args.height,
            "width": args.width, "layout": args.layout, "source_quality": args.source_quality, "noise": args.noise,
            "workers": workers, "image": image_config.to_dict(), "long": args.long, "seed": args.seed,
        },
        "environment": {
            "cpu_count": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "pillow": pil_version, "libjpeg_turbo": bool(features.check_feature("libjpeg_turbo")),
        },
        "input": gen,
        "ceiling": ceiling,
        "conversion": {
            "camera_frames": converted_frames,
            "wall_s": round(conv["wall_s"], 3),
            "camera_frames_per_s": round(own_fps, 1),
            "report_wall_time_s": conv["report"]["wall_time_s"],
            "report_camera_frames_per_s": rep_fps,
            "child_process_wall_s": round(conv["process_wall_s"], 3),
            "counts": counts,
            "ratio_to_ceiling": round(own_fps / c_fps, 3),
            "report_ratio_to_ceiling": round(rep_fps / c_fps, 3),
            "memory": mem,
        },
        "resumed": {
            "wall_s": round(resumed["wall_s"], 3),
            "report_wall_time_s": resumed["report"]["wall_time_s"],
            "camera_frames_per_s": round(res_fps, 1),
            "fraction_of_first_run": round(resumed["wall_s"] / conv["wall_s"], 3),
            "counts": resumed["report"]["counts"],
            "memory": resumed["memory"],
        },
        "bytes": {
            "episode_files_bytes": episode_bytes,
            "episode_bytes_per_camera_frame": round(episode_bytes / max(1, converted_frames), 1),
            "store_bytes": store_bytes,
            "jpeg_only_bytes_per_camera_frame": ceiling["output_jpeg_bytes_per_frame"],
            "source_bytes_per_camera_frame": round(gen.get("source_jpeg_bytes", gen.get("source_bytes", 0)) / max(1, gen["camera_frames"]), 1),
        },
        "problems": problems,
        "benchmark_wall_s": round(time.perf_counter() - bench_start, 1),
    }

    print()
    print(f"{'':42s}{'wall s':>9s}{'camera-frames/s':>17s}{'vs ceiling':>12s}")
    rows = [
        ("ceiling: decode+resize+encode", ceiling["wall_s"], c_fps),
        ("conversion (own wall-clock)", conv["wall_s"], own_fps),
        ("conversion (report's figure)", conv["report"]["wall_time_s"], rep_fps),
        ("resumed conversion (all present)", resumed["wall_s"], res_fps),
    ]
    for name, wall, fps in rows:
        print(f"  {name:40s}{wall:9.2f}{fps:17.1f}{fps / c_fps:12.3f}")
    print(f"\n  RATIO conversion / ceiling = {own_fps / c_fps:.3f}  (report's figure: {rep_fps / c_fps:.3f})")
    print(f"  ceiling per core: {ceiling['per_core_camera_frames_per_s']:.1f} camera-frames/s "
          f"(decode {ceiling['decode_ms_per_frame']:.2f} + resize {ceiling['resize_ms_per_frame']:.2f} + encode "
          f"{ceiling['encode_ms_per_frame']:.2f} ms/frame); parallel efficiency {ceiling['parallel_efficiency']:.2f} "
          f"over {workers} process(es), {ceiling['tasks']} tasks of {ceiling['frames_per_task']} frames")
    if inhouse:
        print(f"  reading the source JPEGs out of HDF5 (not in the ceiling): {ceiling['hdf5_read_s_single_process']:.2f} s "
              f"in one process")
    else:
        print("  ceiling decodes through the converter's own camera streams (source reads included), one task per unit and camera")
    print(f"  resumed run costs {figures['resumed']['fraction_of_first_run']:.2f} x the first run's wall time; "
          f"child process wall incl. Python/Beam start-up: first {conv['process_wall_s']:.1f} s, "
          f"resumed {resumed['process_wall_s']:.1f} s")
    if mem["cpu_s_workers"] is not None:
        busy = (mem["cpu_s_workers"] + mem["cpu_s_driver"]) / (conv["process_wall_s"] * workers)
        image_cpu = converted_frames / ceiling["per_core_camera_frames_per_s"]
        print(f"  conversion CPU time (from /proc, incl. start-up): workers {mem['cpu_s_workers']:.1f} s + driver "
              f"{mem['cpu_s_driver']:.1f} s = {busy:.0%} of {workers} process(es) x child wall; the image work alone "
              f"needs {image_cpu:.1f} CPU-s (at the ceiling's per-core rate)")
    print("\n  peak RSS of the conversion run:")
    if mem["worker_processes_seen"]:
        print(f"    Beam worker processes: {mem['worker_peak_rss_mb']} MiB (max over {mem['worker_processes_seen']} "
              f"process(es): {', '.join(f'{n} x {c}' for c, n in mem['worker_commands'].items())})")
    else:
        print("    Beam worker processes: none seen (workers=1 runs in the driver process)")
    print(f"    driver process: {mem['driver_peak_rss_mb']} MiB; whole tree (summed): {mem['tree_peak_rss_mb']} MiB")
    print(f"    getrusage cross-check: driver ru_maxrss {mem['getrusage_driver_maxrss_mb']} MiB, "
          f"largest waited-for child {mem['getrusage_children_maxrss_mb']} MiB (upper bounds: Linux folds the "
          f"launching process's peak into ru_maxrss at exec, so trust the /proc figures)")
    print(f"    measured by {mem['method']}")
    b = figures["bytes"]
    print(f"\n  bytes written per camera frame: {b['episode_bytes_per_camera_frame']:.0f} (episode .zarr.zip files; "
          f"JPEG payload alone {b['jpeg_only_bytes_per_camera_frame']:.0f}; source "
          f"{b['source_bytes_per_camera_frame']:.0f}); whole store {store_bytes / 2**20:.1f} MiB")
    for problem in problems:
        print(f"\n  WARNING: {problem}")
    print(f"\n  benchmark wall time: {figures['benchmark_wall_s']:.1f} s")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
        print(f"  figures written to {args.json}")
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == CHILD_MODE:
        _convert_child(sys.argv[2:])
    else:
        sys.exit(main())
