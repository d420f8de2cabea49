"""RoboCOIN: a root holding many per-robot, per-task LeRobot v2.1 datasets plus RoboCOIN annotations.

Thin on top of the shared LeRobot reader (``converters/formats/lerobot.py``); the format and
every decision are in ``docs/sources/robocoin.md``. Layout of one dataset (as downloaded by
``robocoin-download``, one HF repo per robot x task)::

    <root>/<Robot>_<task>[_qced_hardlink]/meta/{info.json, episodes.jsonl, episodes_stats.jsonl, tasks.jsonl}
    <root>/<Robot>_<task>/data/chunk-XXX/episode_XXXXXX.parquet
    <root>/<Robot>_<task>/videos/chunk-XXX/observation.images.<cam>/episode_XXXXXX.mp4
    <root>/<Robot>_<task>/annotations/{subtask_annotations, scene_annotations,
                                       eef_{direction,velocity,acc_mag}_annotation,
                                       gripper_{mode,activity}_annotation}.jsonl

What RoboCOIN adds to the reader: an embodiment table (``robot_type`` is often null, so the
dataset-name prefix decides), gripper-name normalisation (``left_gripper_open`` ->
``left_gripper_open_scale``, convention 0 = closed, 1 = open, recorded), per-frame sub-task
text from ``subtask_annotation`` through ``subtask_annotations.jsonl``, the scene text and the
label tables of the motion / gripper annotation classes in the metadata. Every annotation
column stays a named extra per-frame field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from converters import register
from converters.base import SourceCard
from converters.formats.lerobot import (
    FeatureMap,
    LeRobotConverter,
    LeRobotDataset,
    LeRobotOptions,
    RawEpisode,
    episode_tasks,
)
from pipelines.episode_store.errors import EpisodeError, Reason
from pipelines.episode_store.record import Episode
from pipelines.episode_store.schema import extra_array

# --------------------------------------------------------------------------------------
# Declarative tables
# --------------------------------------------------------------------------------------

#: info.json robot_type (lower-cased) -> (embodiment id, robot model). Checked first.
ROBOT_TYPES: dict[str, tuple[str, str]] = {
    "galaxea_r1_lite": ("galaxea_r1_lite", "Galaxea R1 Lite"),
    "r1_lite": ("galaxea_r1_lite", "Galaxea R1 Lite"),
    "cobot_magic": ("agilex_cobot_magic", "AgileX Cobot Magic"),
    "agilex_cobot_magic": ("agilex_cobot_magic", "AgileX Cobot Magic"),
    "unitree_g1": ("unitree_g1", "Unitree G1edu"),
    "g1edu": ("unitree_g1", "Unitree G1edu"),
    "realman": ("realman", "Realman"),
    "bi_realman": ("realman", "Realman"),
    "alpha_bot_2": ("alphabot_2", "AlphaBot 2"),
    "rmc_aida_l": ("rmc_aida_l", "RMC AIDA-L"),
}

#: dataset folder-name prefix (lower-cased, '-' read as '_') -> (embodiment id, robot model).
#: Used when robot_type is null or not in ROBOT_TYPES; the longest matching prefix wins.
NAME_PREFIXES: dict[str, tuple[str, str]] = {
    "galaxea_r1_lite_": ("galaxea_r1_lite", "Galaxea R1 Lite"),
    "r1_lite_": ("galaxea_r1_lite", "Galaxea R1 Lite"),
    "cobot_magic_": ("agilex_cobot_magic", "AgileX Cobot Magic"),
    "g1edu_": ("unitree_g1", "Unitree G1edu"),
    "realman_": ("realman", "Realman"),
    "alpha_bot_2_": ("alphabot_2", "AlphaBot 2"),
    "rmc_aida_l_": ("rmc_aida_l", "RMC AIDA-L"),
}
EMBODIMENTS = tuple(sorted({e for e, _ in (*ROBOT_TYPES.values(), *NAME_PREFIXES.values())}))

#: gripper dimension names seen across RoboCOIN datasets -> the canonical name (0 closed, 1 open)
GRIPPER_RENAMES = {
    "left_gripper_open": "left_gripper_open_scale",
    "right_gripper_open": "right_gripper_open_scale",
}
GRIPPER_SUFFIX = "_gripper_open_scale"
GRIPPER_CONVENTION = {"closed": 0.0, "open": 1.0, "unit": "normalised opening"}

FEATURES = FeatureMap(
    state_keys=("observation.state", "states", "observation.states"),  # "states": early example format
    action_keys=("action", "actions"),
    camera_prefixes=("observation.images.", "observation.image."),
    renames=GRIPPER_RENAMES,
)

ANNOTATION_DIR = "annotations"
#: annotation kind -> (file, parquet columns holding its indices). Tables are rows
#: {"<kind>_index": i, "<kind>": text}; subtask and scene files use the plural file names.
ANNOTATIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "subtask": ("subtask_annotations.jsonl", ("subtask_annotation",)),
    "scene": ("scene_annotations.jsonl", ("scene_annotation",)),
    "eef_direction": ("eef_direction_annotation.jsonl", ("eef_direction_state", "eef_direction_action")),
    "eef_velocity": ("eef_velocity_annotation.jsonl", ("eef_velocity_state", "eef_velocity_action")),
    "eef_acc_mag": ("eef_acc_mag_annotation.jsonl", ("eef_acc_mag_state", "eef_acc_mag_action")),
    "gripper_mode": ("gripper_mode_annotation.jsonl", ("gripper_mode_state", "gripper_mode_action")),
    "gripper_activity": ("gripper_activity_annotation.jsonl", ("gripper_activity_state", "gripper_activity_action")),
}
#: label texts that mean "no annotation" (padding slots of subtask_annotation)
NULL_LABELS = {"", "null", "none"}


@dataclass
class Annotations:
    """One dataset's annotation tables: kind -> {index: text}; scene texts per episode."""

    labels: dict[str, dict[int, str]] = field(default_factory=dict)
    scene_by_episode: dict[int, str] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: Path, where: str) -> Annotations:
        out = cls()
        for kind, (file_name, _) in ANNOTATIONS.items():
            path = folder / ANNOTATION_DIR / file_name
            if not path.is_file():
                continue
            table: dict[int, str] = {}
            for number, row in _jsonl(path, f"{where}: {ANNOTATION_DIR}/{file_name}"):
                index, text = row.get(f"{kind}_index"), row.get(kind)
                if kind == "scene" and index is None:  # per-episode rows {episode_idx, scene_annotation}
                    ep = row.get("episode_idx", row.get("episode_index"))
                    scene = row.get("scene_annotation", row.get("scene"))
                    if isinstance(ep, int) and isinstance(scene, str):
                        out.scene_by_episode[ep] = scene
                        continue
                if isinstance(index, bool) or not isinstance(index, int) or not isinstance(text, str):
                    raise EpisodeError(
                        Reason.INVALID_METADATA,
                        f"{where}: {ANNOTATION_DIR}/{file_name} line {number} is not "
                        f'{{"{kind}_index": int, "{kind}": str}}: {row!r}',
                    )
                table[index] = text
            out.labels[kind] = table
        return out


def _jsonl(path: Path, where: str) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line of a JSON-lines file; blank lines are skipped but
    counted, so a message names the line an editor shows."""
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EpisodeError(Reason.INVALID_METADATA, f"{where}: cannot read: {exc}") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EpisodeError(Reason.INVALID_METADATA, f"{where} line {number} is not JSON: {exc}") from exc
        if not isinstance(row, dict):
            raise EpisodeError(Reason.INVALID_METADATA, f"{where} line {number} is not a JSON object")
        rows.append((number, row))
    return rows


def _norm(text: str) -> str:
    return text.strip().lower().replace("-", "_")


#: makers' names that releases put in front of a robot's name (``Agilex_Cobot_Magic_<task>``,
#: ``Galaxea_R1_Lite_<task>``); matching skips them, so the table needs one row per robot
MAKERS = ("agilex", "galaxea", "unitree")


def _spellings(name: str) -> list[str]:
    """``name`` normalised, then again without each leading maker token: the forms a table row may match.
    Rows are token-aligned (a prefix row ends with ``_``), so a match is always on whole tokens."""
    tokens = [t for t in _norm(name).split("_") if t]
    out = ["_".join(tokens)]
    while len(tokens) > 1 and tokens[0] in MAKERS:
        tokens = tokens[1:]
        out.append("_".join(tokens))
    return out


# --------------------------------------------------------------------------------------
# Converter
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoboCOINOptions(LeRobotOptions):
    """``sources.robocoin.options`` in params.yaml: the reader options, ``embodiment`` (one id for every
    dataset under the root) and ``embodiments`` (docs/sources/robocoin.md §5)."""

    #: extra ``{robot_type or name prefix: embodiment id}`` rows, checked before the built-in tables
    embodiments: dict[str, str] | None = None


@register
class RoboCOINConverter(LeRobotConverter):
    """RoboCOIN per-robot, per-task LeRobot v2.1 datasets under one root.

    Options: :class:`RoboCOINOptions`.
    """

    name = "robocoin"
    source_version = "lerobot-v2.1-robocoin"
    converter_version = "1.1.0"
    embodiments = EMBODIMENTS
    control_hz = 30.0  # most RoboCOIN robots; every dataset's info.json fps is used per episode
    card = SourceCard.load("robocoin")  # converters/cards/robocoin.yaml
    feature_map = FEATURES
    options_type = RoboCOINOptions

    def __init__(self, root: str | Path, options: dict[str, Any] | None = None):
        super().__init__(root, options)
        self.extra_embodiments = {_norm(k): v for k, v in (self.options.embodiments or {}).items()}
        self._annotations: dict[str, Annotations] = {}

    # -- embodiment ----------------------------------------------------------------------

    def embodiment_for(self, ds: LeRobotDataset, ref: str) -> tuple[str, str]:
        forced = self.options.embodiment
        if forced:
            return forced, ds.robot_type or forced
        robot_types = _spellings(ds.robot_type) if ds.robot_type else []
        name = Path(ds.rel).name if ds.rel else self.root.name
        folders = [f + "_" for f in _spellings(name)]  # rows are whole-token prefixes ending in '_'
        if ds.robot_type and _norm(ds.robot_type) in self.extra_embodiments:
            return self.extra_embodiments[_norm(ds.robot_type)], ds.robot_type
        for prefix in sorted(self.extra_embodiments, key=len, reverse=True):
            if _norm(name).startswith(prefix):
                return self.extra_embodiments[prefix], ds.robot_type or prefix.rstrip("_")
        for robot_type in robot_types:
            if robot_type in ROBOT_TYPES:
                embodiment, model = ROBOT_TYPES[robot_type]
                return embodiment, ds.robot_type or model
        for folder in folders:
            for prefix in sorted(NAME_PREFIXES, key=len, reverse=True):
                if folder.startswith(prefix):
                    embodiment, model = NAME_PREFIXES[prefix]
                    return embodiment, ds.robot_type or model
        raise EpisodeError(
            Reason.MISSING_METADATA,
            f"{ref}: robot_type {ds.robot_type!r} and dataset name {name!r} match no row of the RoboCOIN "
            f"embodiment table; name the embodiment with the source option 'embodiments' "
            f"(sources.<name>.options.embodiments: {{<robot_type or name prefix>: <embodiment id>}}) or, for a "
            f"single-robot input, 'embodiment'",
        )

    # -- language and annotations --------------------------------------------------------

    def annotations(self, ds: LeRobotDataset) -> Annotations:
        if ds.rel not in self._annotations:
            self._annotations[ds.rel] = Annotations.load(ds.path, ds.where)
        return self._annotations[ds.rel]

    def language_for(self, ds: LeRobotDataset, raw: RawEpisode):
        texts, info = episode_tasks(raw)
        ann = self.annotations(ds)
        robocoin: dict[str, Any] = {}
        subtasks = None
        if "subtask_annotation" in raw.columns:
            table = ann.labels.get("subtask")
            if table is None:
                robocoin["subtask_table_missing"] = True
            else:
                subtasks, unknown = frame_subtasks(raw.matrix("subtask_annotation"), table)
                if unknown:
                    robocoin["unknown_subtask_indices"] = unknown
                if not any(subtasks):
                    subtasks = None
        meta: dict[str, Any] = {"tasks": texts, "robocoin": robocoin}
        if info:
            meta["task_info"] = info
        return texts[0], [], subtasks, meta

    def extra_metadata(self, ds: LeRobotDataset, raw: RawEpisode) -> dict[str, Any]:
        ann = self.annotations(ds)
        out: dict[str, Any] = {}
        scene = self._scene(ann, raw)
        if scene is not None:
            out["scene"] = scene
        labels = {}
        for kind, (_, columns) in ANNOTATIONS.items():
            if kind in ann.labels and any(c in raw.columns for c in columns):
                labels[kind] = {str(i): t for i, t in sorted(ann.labels[kind].items())}
        if labels:
            out["annotation_labels"] = labels
        return {"robocoin_annotations": out} if out else {}

    @staticmethod
    def _scene(ann: Annotations, raw: RawEpisode) -> str | list[str] | None:
        if "scene_annotation" in raw.columns and "scene" in ann.labels:
            values = [int(v) for v in raw.matrix("scene_annotation")[:, 0]]
            texts = [ann.labels["scene"].get(v) for v in dict.fromkeys(values)]
            texts = [t for t in texts if t and t.strip().lower() not in NULL_LABELS]
            if texts:
                return texts[0] if len(texts) == 1 else texts
        return ann.scene_by_episode.get(raw.meta.index)

    def finish(self, episode: Episode, ds: LeRobotDataset, raw: RawEpisode) -> Episode:
        robocoin = episode.metadata.setdefault("robocoin", {})
        robocoin.update(episode.metadata.pop("robocoin_annotations", {}))
        dims = {
            "state": [n for n in episode.state_names if n.endswith(GRIPPER_SUFFIX)],
            "action": [n for n in episode.action_names if n.endswith(GRIPPER_SUFFIX)],
        }
        for key, names in episode.extra_names.items():
            grip = [n for n in names if n.endswith(GRIPPER_SUFFIX)]
            if grip:
                dims[extra_array(key)] = grip
        robocoin["gripper_convention"] = {**GRIPPER_CONVENTION, "dimensions": {k: v for k, v in dims.items() if v}}
        same = episode.state.shape == episode.action.shape and bool(np.array_equal(episode.state, episode.action))
        robocoin["action_equals_state"] = same  # README: "action is filled from observation.state" when absent
        return episode


def frame_subtasks(indices: np.ndarray, table: dict[int, str]) -> tuple[list[str | None], list[int]]:
    """Per frame, the first slot of ``subtask_annotation`` whose text is a real sub-task.

    Negative indices and "null" texts are padding. An index missing from the table gives no
    sub-task for that frame and is returned in the unknown list (recorded in the metadata).
    """
    out: list[str | None] = []
    unknown: set[int] = set()
    for row in np.asarray(indices).reshape(len(indices), -1):
        text = None
        for value in row:
            v = int(value)
            if v < 0:
                continue
            label = table.get(v)
            if label is None:
                unknown.add(v)
                continue
            if label.strip().lower() in NULL_LABELS:
                continue
            text = label
            break
        out.append(text)
    return out, sorted(unknown)
