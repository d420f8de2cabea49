"""What a model was trained to see, saved beside its checkpoints and read back by inference.

``data_spec.json`` records the camera slots, image size, chunk length, vector sizes,
prompt choice, the manifest (name, split, table checksum) and the layout entries in use;
``normalization.json`` records the statistics. Together they turn a robot's named state
into the model's inputs and the model's output back into that robot's named action,
without the stores or the manifest at hand.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training.config import DataConfig
from training.data.layouts import EmbodimentLayout, LayoutTable, VectorLayout
from training.data.normalize import Normalizer, group_key
from training.io import write_json

SPEC_FILE = "data_spec.json"
NORMALIZATION_FILE = "normalization.json"
FORMAT_VERSION = 1


class EmbodimentCodec:
    """One embodiment's named state/action <-> the model's fixed-size, normalised vectors."""

    def __init__(self, dataset: str, embodiment: str, table: LayoutTable, entry: EmbodimentLayout,
                 normalizer: Normalizer):
        self.dataset, self.embodiment = dataset, embodiment
        self.table, self.entry, self.normalizer = table, entry, normalizer
        self.norm_key = group_key(dataset, embodiment, normalizer.scope)
        self._layouts: dict[tuple[str, tuple[str, ...]], VectorLayout] = {}

    def layout(self, field: str, names: Sequence[str]) -> VectorLayout:
        key = (field, tuple(names))
        if key not in self._layouts:
            self._layouts[key] = self.table.vector(self.entry, field, names)
        return self._layouts[key]

    def encode(self, field: str, values: np.ndarray, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Stored values [..., len(names)] -> (normalised, packed [..., size], dimension mask [size])."""
        layout = self.layout(field, names)
        return layout.pack(self.normalizer.normalize(self.norm_key, field, values, names)), layout.mask

    def decode_actions(self, packed: np.ndarray, names: Sequence[str]) -> np.ndarray:
        """The model's normalised, packed actions [..., size] -> the robot's actions [..., len(names)].

        Dimensions the layout drops come back as NaN: the policy never predicted them.
        """
        layout = self.layout("action", names)
        values = layout.unpack(packed)
        keep = layout.targets >= 0
        out = np.full(values.shape, np.nan, dtype=np.float32)
        kept_names = [n for n, k in zip(names, keep) if k]
        if kept_names:
            out[..., keep] = self.normalizer.unnormalize(self.norm_key, "action", values[..., keep], kept_names)
        return out


@dataclass
class DataSpec:
    camera_slots: tuple[str, ...]
    image_size: tuple[int, int]
    chunk: int
    max_state_dim: int
    max_action_dim: int
    prompt: str
    manifest: dict[str, Any]
    layouts: dict[str, Any]
    normalizer: Normalizer
    #: false: the model was trained blind (``DataConfig.images``); inference masks every camera too
    images: bool = True
    _table: LayoutTable | None = field(default=None, repr=False)

    @classmethod
    def from_config(cls, config: DataConfig, table: LayoutTable, keys: Sequence[str], normalizer: Normalizer,
                    manifest: dict[str, Any]) -> DataSpec:
        return cls(camera_slots=tuple(config.camera_slots), image_size=tuple(config.image_size), chunk=config.chunk,
                   max_state_dim=config.max_state_dim, max_action_dim=config.max_action_dim, prompt=config.prompt,
                   manifest=manifest, layouts=table.to_json(keys), normalizer=normalizer, images=config.images,
                   _table=table)

    @property
    def table(self) -> LayoutTable:
        if self._table is None:
            self._table = LayoutTable(self.layouts, camera_slots=self.camera_slots, max_state_dim=self.max_state_dim,
                                      max_action_dim=self.max_action_dim, origin=SPEC_FILE)
        return self._table

    def codec(self, dataset: str, embodiment: str) -> EmbodimentCodec:
        return EmbodimentCodec(dataset, embodiment, self.table, self.table.entry(dataset, embodiment), self.normalizer)

    def to_json(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "camera_slots": list(self.camera_slots),
                "image_size": list(self.image_size), "chunk": self.chunk, "max_state_dim": self.max_state_dim,
                "max_action_dim": self.max_action_dim, "prompt": self.prompt, "images": self.images,
                "normalization": {"mode": self.normalizer.mode, "scope": self.normalizer.scope,
                                  "file": NORMALIZATION_FILE},
                "manifest": self.manifest, "layouts": self.layouts}

    def save(self, directory: str | Path) -> None:
        """Write both files atomically into ``directory`` (a checkpoint directory)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_json(directory / NORMALIZATION_FILE, self.normalizer.to_json(), sort_keys=True)
        write_json(directory / SPEC_FILE, self.to_json(), sort_keys=True)

    @classmethod
    def load(cls, directory: str | Path) -> DataSpec:
        directory = Path(directory)
        for name in (SPEC_FILE, NORMALIZATION_FILE):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"{directory}: no {name}; it is written with every checkpoint")
        data = json.loads((directory / SPEC_FILE).read_text())
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{directory / SPEC_FILE}: format_version {data.get('format_version')!r}, "
                             f"this a1pipe reads {FORMAT_VERSION}")
        normalizer = Normalizer.from_json(json.loads((directory / NORMALIZATION_FILE).read_text()))
        return cls(camera_slots=tuple(data["camera_slots"]), image_size=tuple(data["image_size"]),
                   chunk=data["chunk"], max_state_dim=data["max_state_dim"], max_action_dim=data["max_action_dim"],
                   prompt=data["prompt"], manifest=data["manifest"], layouts=data["layouts"], normalizer=normalizer,
                   images=bool(data.get("images", True)))
