"""Where each embodiment's cameras and state/action dimensions go in the model's fixed inputs.

A policy trained on many robots sees fixed-size inputs: a few camera *slots* and state
and action vectors of ``max_state_dim`` / ``max_action_dim`` (32, as A1). Which stored
camera fills which slot, and which stored dimension lands at which index, is data: the
table in ``layouts.yaml``, keyed on the names the episode store records. Nothing is
inferred from positions, so the same physical quantity lands at the same index for
every robot (A1's readers put a single arm in dims 0-6 for one source and 7-13 for
another), and masks say which slots and dimensions are real (A1 marks padded action
dimensions as valid for most sources, so the loss trains them).

The table's ``groups`` name spans of the vectors (``left_arm: [0, 7]``); an
embodiment's entry lists its stored names per group, and every stored name must be
either placed or listed under ``drop``. A converter that adds or renames a dimension
therefore stops training with a message naming it, instead of shifting every index
after it. Entries are looked up as ``<dataset>/<embodiment>`` first, then
``<embodiment>``, because one embodiment id can be recorded with different dimension
names and conventions by two sources.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import yaml

DROP = "drop"


class LayoutError(ValueError):
    """The layout table is malformed, or does not fit an embodiment's stored names (the message says how)."""


@dataclass(frozen=True)
class VectorLayout:
    """Stored dimension ``names[k]`` goes to index ``targets[k]``; ``-1`` means dropped."""

    names: tuple[str, ...]
    targets: np.ndarray  # int64 [len(names)]
    size: int

    @cached_property
    def mask(self) -> np.ndarray:
        """bool [size]: which indices of the fixed vector hold a real dimension."""
        m = np.zeros(self.size, dtype=bool)
        m[self.targets[self.targets >= 0]] = True
        return m

    def pack(self, values: np.ndarray) -> np.ndarray:
        """[..., len(names)] stored values -> [..., size] float32, zeros where nothing is placed."""
        values = np.asarray(values, dtype=np.float32)
        out = np.zeros(values.shape[:-1] + (self.size,), dtype=np.float32)
        keep = self.targets >= 0
        out[..., self.targets[keep]] = values[..., keep]
        return out

    def unpack(self, packed: np.ndarray) -> np.ndarray:
        """[..., size] -> [..., len(names)] in the stored order; dropped dimensions come back as NaN."""
        packed = np.asarray(packed, dtype=np.float32)
        out = np.full(packed.shape[:-1] + (len(self.names),), np.nan, dtype=np.float32)
        keep = self.targets >= 0
        out[..., keep] = packed[..., self.targets[keep]]
        return out


@dataclass(frozen=True)
class EmbodimentLayout:
    key: str  # the table entry that matched: "<dataset>/<embodiment>" or "<embodiment>"
    cameras: dict[str, str]  # slot -> stored camera name
    state: dict[str, tuple[str, ...]]  # group (or "drop") -> stored names
    action: dict[str, tuple[str, ...]]

    def camera_for(self, slot: str) -> str | None:
        return self.cameras.get(slot)


class LayoutTable:
    """The parsed ``layouts.yaml``: groups and per-embodiment entries, checked against the model's sizes."""

    def __init__(self, document: Mapping[str, Any], *, camera_slots: Sequence[str], max_state_dim: int,
                 max_action_dim: int, origin: str = "layouts"):
        self.origin = origin
        self.camera_slots = tuple(camera_slots)
        self.sizes = {"state": int(max_state_dim), "action": int(max_action_dim)}
        unknown = set(document) - {"groups", "layouts"}
        if unknown:
            raise LayoutError(f"{origin}: unknown top-level keys {sorted(unknown)} (expected groups, layouts)")
        self.groups = self._parse_groups(document.get("groups") or {})
        self.entries: dict[str, EmbodimentLayout] = {}
        for key, entry in (document.get("layouts") or {}).items():
            self.entries[str(key)] = self._parse_entry(str(key), entry)

    @classmethod
    def load(cls, path: str | Path | None, **kwargs: Any) -> LayoutTable:
        """Read a table; ``None`` reads the one shipped with a1pipe (``training/data/layouts.yaml``)."""
        path = Path(__file__).with_name("layouts.yaml") if path is None else Path(path)
        if not path.is_file():
            raise LayoutError(f"{path}: layout table not found (training.data.layouts)")
        try:
            document = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise LayoutError(f"{path}: not valid YAML: {exc}") from exc
        return cls(document, origin=str(path), **kwargs)

    def _parse_groups(self, groups: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
        out = {}
        for name, span in groups.items():
            if name == DROP:
                raise LayoutError(f"{self.origin}: '{DROP}' is reserved and cannot name a group")
            if (not isinstance(span, list) or len(span) != 2 or not all(isinstance(v, int) for v in span)
                    or span[0] < 0 or span[1] < 1):
                raise LayoutError(f"{self.origin}: group {name!r} must be [start, length], got {span!r}")
            out[str(name)] = (span[0], span[1])
        return out

    def _parse_entry(self, key: str, entry: Any) -> EmbodimentLayout:
        where = f"{self.origin}: layouts.{key}"
        if not isinstance(entry, Mapping):
            raise LayoutError(f"{where} must be a mapping with cameras, state and action")
        unknown = set(entry) - {"cameras", "state", "action"}
        if unknown:
            raise LayoutError(f"{where}: unknown keys {sorted(unknown)} (expected cameras, state, action)")
        cameras = dict(entry.get("cameras") or {})
        bad_slots = sorted(set(cameras) - set(self.camera_slots))
        if bad_slots:
            raise LayoutError(f"{where}.cameras: slots {bad_slots} are not among training.data.camera_slots "
                              f"{list(self.camera_slots)}")
        vectors = {}
        for field in ("state", "action"):
            spec = entry.get(field)
            if not isinstance(spec, Mapping) or not spec:
                raise LayoutError(f"{where}.{field} must map groups to stored dimension names")
            parsed: dict[str, tuple[str, ...]] = {}
            used: dict[int, str] = {}
            for group, names in spec.items():
                if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                    raise LayoutError(f"{where}.{field}.{group} must be a list of dimension names")
                parsed[group] = tuple(names)
                if group == DROP:
                    continue
                if group not in self.groups:
                    raise LayoutError(f"{where}.{field}: unknown group {group!r} (groups: {sorted(self.groups)})")
                start, length = self.groups[group]
                if len(names) > length:
                    raise LayoutError(f"{where}.{field}.{group}: {len(names)} names for a group of {length}")
                for k, name in enumerate(names):
                    index = start + k
                    if index >= self.sizes[field]:
                        raise LayoutError(f"{where}.{field}.{group}: {name!r} would go to index {index}, beyond "
                                          f"max_{field}_dim {self.sizes[field]}")
                    if index in used:
                        raise LayoutError(f"{where}.{field}: {name!r} and {used[index]!r} both go to index {index}")
                    used[index] = name
            every = [n for names in parsed.values() for n in names]
            repeated = sorted({n for n in every if every.count(n) > 1})
            if repeated:
                raise LayoutError(f"{where}.{field}: names listed twice {repeated}")
            vectors[field] = parsed
        return EmbodimentLayout(key=key, cameras={str(k): str(v) for k, v in cameras.items()},
                                state=vectors["state"], action=vectors["action"])

    def entry(self, dataset: str, embodiment: str) -> EmbodimentLayout:
        for key in (f"{dataset}/{embodiment}", embodiment):
            if key in self.entries:
                return self.entries[key]
        raise LayoutError(f"{self.origin}: no layout for embodiment {embodiment!r} of dataset {dataset!r}; add "
                          f"'{dataset}/{embodiment}' (or '{embodiment}') under layouts: with its cameras, "
                          f"state and action groups")

    def vector(self, entry: EmbodimentLayout, field: str, names: Sequence[str]) -> VectorLayout:
        """Resolve an episode's stored ``names`` against the entry; every name must be placed or dropped."""
        spec = entry.state if field == "state" else entry.action
        target: dict[str, int] = {}
        for group, listed in spec.items():
            for k, name in enumerate(listed):
                target[name] = -1 if group == DROP else self.groups[group][0] + k
        names = tuple(names)
        unplaced = [n for n in names if n not in target]
        missing = [n for n in target if n not in names]
        if unplaced or missing:
            parts = []
            if unplaced:
                parts.append(f"stored {field} dimensions {unplaced} are neither placed in a group nor listed under "
                             f"'{DROP}'")
            if missing:
                parts.append(f"the layout lists {missing}, which the data does not have")
            raise LayoutError(f"{self.origin}: layouts.{entry.key}.{field}: " + "; ".join(parts))
        return VectorLayout(names=names, targets=np.array([target[n] for n in names], dtype=np.int64),
                            size=self.sizes[field])

    def to_json(self, keys: Sequence[str] | None = None) -> dict[str, Any]:
        """The groups and the entries in use: saved with a checkpoint so inference places dimensions the same way."""
        keys = sorted(self.entries) if keys is None else sorted(keys)
        return {"groups": {k: list(v) for k, v in self.groups.items()},
                "layouts": {k: {"cameras": dict(self.entries[k].cameras),
                                "state": {g: list(n) for g, n in self.entries[k].state.items()},
                                "action": {g: list(n) for g, n in self.entries[k].action.items()}} for k in keys}}
