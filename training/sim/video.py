"""Rollout videos of the closed-loop evaluation, with what the paper's Figures 4 and 6 draw on each frame.

A recorded episode (``rollout(..., frames=[])``) becomes ``<row>/<task>_seed<seed>.mp4``: the
cameras the policy saw side by side, under a caption band with the instruction, the row, the step,
the exit layer in force and whether the task is solved yet. Beside it ``<task>_seed<seed>.json``
records the same per frame (step, exit layer, success, whether the policy was queried on it) and
where the exit layer is drawn, so a reader (or a test) gets the numbers without reading pixels, and
``index.json`` lists every video of the folder (empty for an open-loop evaluation, so the folder is
always there for DVC to track).

The frames are the observations the policy was given, kept by reference during the rollout: no
extra rendering, so the episode's wall time and the policy time are what they are without videos;
the caption is drawn and the video encoded after the episode, outside both. The renders are small
(the model's input size), so each camera is enlarged by a whole factor (nearest neighbour: pixels
stay pixels) to at least ``min_height`` rows, which keeps the caption's text legible beside it.

The text uses Pillow's built-in font (no font file, nothing downloaded). Encoding is H.264 in
yuv420p through PyAV on one thread, so a re-run writes the same bytes, and every file is published
atomically (``training/io.py``).
"""

from __future__ import annotations

import functools
import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.config import ConfigError
from training.io import publishing, write_json
from training.sim.metaworld import CAMERAS
from training.sim.rollout import EpisodeResult, Frame

FORMAT_VERSION = 1
#: caption colours: the band, plain text, the exit layer (green, as the paper's figures number exits),
#: and the success flag once the task is solved
BAND_RGB = (24, 24, 24)
TEXT_RGB = (235, 235, 235)
EXIT_RGB = (90, 220, 110)
SOLVED_RGB = (90, 220, 110)
#: libx264 at this quality keeps the caption's text legible at about 100 kB for a 100-step video
_ENCODER = {"preset": "veryfast", "crf": "23", "threads": "1"}


@dataclass(frozen=True)
class VideoConfig:
    """``sim.eval.videos``: which rollouts become videos and how they look.

    The first ``per_task`` seeds of each task (0: no videos) of each row in ``rows`` (None: every
    row), showing ``cameras`` side by side at ``fps`` frames a second (Meta-World steps at 80 Hz, so
    the default 20 plays at a quarter speed), each enlarged to at least ``min_height`` pixels.
    """

    per_task: int = 2
    rows: tuple[str, ...] | None = None
    cameras: tuple[str, ...] = CAMERAS
    fps: int = 20
    min_height: int = 224

    def __post_init__(self) -> None:
        where = "sim.eval.videos"
        if self.per_task < 0:
            raise ConfigError(f"{where}.per_task must be >= 0, got {self.per_task}")
        if not self.cameras or len(set(self.cameras)) != len(self.cameras):
            raise ConfigError(f"{where}.cameras must be non-empty and unique, got {list(self.cameras)}")
        unknown = [c for c in self.cameras if c not in CAMERAS]
        if unknown:
            raise ConfigError(f"{where}.cameras: {unknown} are not cameras the policy sees (those: {list(CAMERAS)})")
        if not 1 <= self.fps <= 240:
            raise ConfigError(f"{where}.fps must be in 1..240, got {self.fps}")
        if not 16 <= self.min_height <= 2160:
            raise ConfigError(f"{where}.min_height must be in 16..2160, got {self.min_height}")
        if self.rows is not None and not self.rows:
            raise ConfigError(f"{where}.rows is empty; leave it out for every row, or set per_task: 0 for no videos")

    @classmethod
    def from_params(cls, raw: dict[str, Any] | None, known_rows: set[str]) -> VideoConfig:
        """``sim.eval.videos`` (None: the defaults); ``known_rows`` are the row names the evaluation
        settings can produce, so a misspelt row stops the run before any rollout."""
        raw = dict(raw or {})
        fields = {"per_task", "rows", "cameras", "fps", "min_height"}
        unknown = sorted(set(raw) - fields)
        if unknown:
            raise ConfigError(f"sim.eval.videos: unknown keys {unknown} (known: {sorted(fields)})")
        for key in ("rows", "cameras"):
            if isinstance(raw.get(key), str):
                raise ConfigError(f"sim.eval.videos.{key} is a list, got the string {raw[key]!r}")
        rows = raw.get("rows")
        config = cls(per_task=int(raw.get("per_task", cls.per_task)),
                     rows=None if rows is None else tuple(str(r) for r in rows),
                     cameras=tuple(raw.get("cameras", cls.cameras)), fps=int(raw.get("fps", cls.fps)),
                     min_height=int(raw.get("min_height", cls.min_height)))
        bad = sorted(set(config.rows or ()) - known_rows)
        if bad:
            raise ConfigError(f"sim.eval.videos.rows: {bad} are not rows of this evaluation (rows: {sorted(known_rows)})")
        return config

    def wants(self, row: str, seed_index: int) -> bool:
        """Whether the rollout of the ``seed_index``-th seed of a task in ``row`` is recorded."""
        return seed_index < self.per_task and (self.rows is None or row in self.rows)


def row_folder(row: str) -> str:
    """A row's folder name: its name with anything but letters, digits, ``.``, ``-`` made ``_``
    (``itfm c=0.7`` -> ``itfm_c_0.7``); the sidecars and the index keep the real name."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", row)


@functools.cache
def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


class _Caption:
    """The caption band of one video. Its layout is fixed for the whole video (every field sits where
    its widest value fits), so the text does not jump between frames and the exit layer is always in
    one box a reader can find. Each distinct text is drawn once, on a patch of its box's size, and
    pasted: text is the costly part of a frame."""

    def __init__(self, width: int, font_size: int, *, instruction: str, row: str, max_steps: int,
                 layers: int | None):
        self.font_size = font_size
        self.font = _font(font_size)
        self.line = font_size + max(4, font_size // 3)
        pad = max(4, font_size // 2)
        self.max_steps, self.layers = max_steps, layers
        texts = {"instruction": [self._fit(instruction, width - 2 * pad)], "row": [row],
                 "step": [self.step_text(s) for s in range(max_steps + 1)],
                 "exit": [] if layers is None else [self.exit_text(k) for k in range(layers)],
                 "success": [self.success_text(s) for s in (False, True)]}
        x, y = pad, pad
        self.boxes: dict[str, tuple[int, int, int, int]] = {}
        for name, values in texts.items():
            if not values:
                continue
            w = math.ceil(max(self.font.getlength(t) for t in values))  # the widest value fits its box
            if name == "row" or (x > pad and x + w > width - pad):  # the instruction has its own line
                x, y = pad, y + self.line
            self.boxes[name] = (x, y, min(x + w, width), y + self.line)
            x += w + 2 * font_size
        self.height = y + self.line + pad
        self._patches: dict[tuple[str, tuple[int, int, int]], np.ndarray] = {}
        self.band = np.empty((self.height, width, 3), dtype=np.uint8)
        self.band[:] = BAND_RGB
        self._paste(self.band, "instruction", texts["instruction"][0], TEXT_RGB)
        self._paste(self.band, "row", row, TEXT_RGB)

    def _fit(self, text: str, width: int) -> str:
        if self.font.getlength(text) <= width:
            return text
        while text and self.font.getlength(text + "...") > width:
            text = text[:-1]
        return text.rstrip() + "..."

    def step_text(self, step: int) -> str:
        return f"step {step}/{self.max_steps}"

    def exit_text(self, layer: int) -> str:
        """The exit layer as the evaluation counts it: its 0-based index, over the LLM's layer count
        (full depth is ``N-1 / N``)."""
        return f"exit layer {layer} / {self.layers}"

    @staticmethod
    def success_text(success: bool) -> str:
        return "success: yes" if success else "success: no"

    def _paste(self, out: np.ndarray, field: str, text: str, colour: tuple[int, int, int]) -> None:
        x0, y0, x1, y1 = self.boxes[field]
        patch = self._patches.get((text, colour))
        if patch is None:
            patch = self._patches[text, colour] = label(text, (x1 - x0, y1 - y0), self.font_size, colour)
        out[y0:y1, x0:x1] = patch

    def paint(self, out: np.ndarray, frame: Frame) -> None:
        """The caption of ``frame`` into the top rows of ``out``."""
        out[:self.height] = self.band
        self._paste(out, "step", self.step_text(frame.step), TEXT_RGB)
        self._paste(out, "success", self.success_text(frame.success), SOLVED_RGB if frame.success else TEXT_RGB)
        if frame.exit_layer is not None and "exit" in self.boxes:
            self._paste(out, "exit", self.exit_text(frame.exit_layer), EXIT_RGB)


def label(text: str, size: tuple[int, int], font_size: int, colour: tuple[int, int, int]) -> np.ndarray:
    """``text`` in Pillow's built-in font at ``font_size`` px, drawn from the top left of a
    ``size`` = (width, height) patch of the caption band: what a caption field shows."""
    from PIL import Image, ImageDraw

    canvas = Image.new("RGB", size, BAND_RGB)
    ImageDraw.Draw(canvas).text((0, 0), text, font=_font(font_size), fill=colour)
    return np.asarray(canvas)


def _even(n: int) -> int:
    return n + n % 2


class EpisodeVideo:
    """How the frames of one episode are drawn: the cameras enlarged side by side under the caption."""

    def __init__(self, config: VideoConfig, *, image_size: int, instruction: str, row: str, max_steps: int,
                 layers: int | None):
        self.config = config
        self.scale = max(1, math.ceil(config.min_height / image_size))
        panel = image_size * self.scale
        self.width = _even(panel * len(config.cameras))
        self.caption = _Caption(self.width, max(12, panel // 16), instruction=instruction, row=row,
                                max_steps=max_steps, layers=layers)
        self.height = _even(self.caption.height + panel)

    def compose(self, frame: Frame) -> np.ndarray:
        """One frame of the video, [height, width, 3] uint8."""
        out = np.empty((self.height, self.width, 3), dtype=np.uint8)
        out[self.caption.height:] = BAND_RGB  # under and beside the cameras where a size is odd
        self.caption.paint(out, frame)
        top, x = self.caption.height, 0
        for camera in self.config.cameras:
            image = frame.images[camera]
            if self.scale > 1:
                image = image.repeat(self.scale, axis=0).repeat(self.scale, axis=1)
            out[top:top + image.shape[0], x:x + image.shape[1]] = image
            x += image.shape[1]
        return out

    def write(self, path: Path, frames: list[Frame]) -> None:
        import av

        with publishing(path) as tmp, av.open(str(tmp), "w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=self.config.fps, options=dict(_ENCODER))
            stream.width, stream.height, stream.pix_fmt = self.width, self.height, "yuv420p"
            for i, frame in enumerate(frames):
                picture = av.VideoFrame.from_ndarray(self.compose(frame), format="rgb24")
                picture.pts = i
                for packet in stream.encode(picture):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)


class VideoWriter:
    """The videos of one evaluation, in ``folder`` (emptied first, so no video of an earlier run
    stays beside this run's); :meth:`close` writes ``index.json``."""

    def __init__(self, folder: str | Path, config: VideoConfig | None = None):
        self.folder, self.config = Path(folder), config or VideoConfig(per_task=0)
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)
        self.entries: list[dict[str, Any]] = []

    def write(self, row: str, result: EpisodeResult, frames: list[Frame], *, instruction: str, image_size: int,
              max_steps: int, layers: int | None) -> Path:
        """The video of one recorded rollout and its sidecar; ``layers``: the policy's LLM layer count
        (None for a policy without exits: no exit layer is drawn)."""
        if len(frames) != result.steps + 1:
            raise ValueError(f"{result.task} seed {result.seed}: {len(frames)} frames for {result.steps} steps "
                             "(a recording holds the start and the state after every step)")
        video = EpisodeVideo(self.config, image_size=image_size, instruction=instruction, row=row,
                             max_steps=max_steps, layers=layers)
        stem = self.folder / row_folder(row) / f"{result.task}_seed{result.seed}"
        video.write(stem.with_suffix(".mp4"), frames)
        x0, y0, x1, y1 = video.caption.boxes.get("exit", (0, 0, 0, 0))
        write_json(stem.with_suffix(".json"), {
            "format_version": FORMAT_VERSION, "row": row, "task": result.task, "seed": result.seed,
            "instruction": instruction, "success": result.success, "steps": result.steps, "layers": layers,
            "fps": self.config.fps, "cameras": list(self.config.cameras), "size": [video.width, video.height],
            "font_size": video.caption.font_size,
            "exit_layer_box": [x0, y0, x1, y1] if "exit" in video.caption.boxes else None,
            "frames": [{"step": f.step, "exit_layer": f.exit_layer, "success": f.success, "query": f.query}
                       for f in frames]})
        self.entries.append({"row": row, "task": result.task, "seed": result.seed, "success": result.success,
                             "steps": result.steps, "video": stem.with_suffix(".mp4").relative_to(self.folder).as_posix(),
                             "frames": stem.with_suffix(".json").relative_to(self.folder).as_posix()})
        return stem.with_suffix(".mp4")

    def close(self) -> None:
        write_json(self.folder / "index.json", {"format_version": FORMAT_VERSION, "videos": self.entries})
