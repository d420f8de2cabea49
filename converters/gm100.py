"""GM-100 (Great March 100): LeRobot-style datasets per robot platform, with slug task names.

A profile on the shared LeRobot reader (``converters/formats/lerobot.py``). What is public
about the release is thin; ``docs/sources/gm100.md`` separates what was verified from what is
assumed. The converter reads any LeRobot v2.x / v3.0 dataset under the root and adds:

* the platform, hence the embodiment id, from the dataset's path (a folder named after the
  platform, e.g. ``<root>/agibot_g1/<task>/``), else from ``info.json`` ``robot_type``, else
  option ``platform``; unknown -> ``missing_metadata``;
* the instruction from the task string, which GM-100 stores as a slug: a ``task_texts``
  table (option, or a JSON file named by option ``task_texts_file``) wins; a word slug such
  as ``pour_water_into_the_cup`` becomes "pour water into the cup"; an opaque id such as
  ``task_00043`` without a table entry is ``missing_language``.

The sample tree (``pipelines/samples/gm100.py``) mixes a v3.0 layout (AgiBot G1, Galaxea
R1 Pro) and a v2.1 layout (AgileX) only to cover both reader paths; it does not claim the
real release does so.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from converters import register
from converters.base import Rule, SourceCard, check_value
from converters.formats.lerobot import (
    FeatureMap,
    LeRobotConverter,
    LeRobotDataset,
    RawEpisode,
    ReaderOptions,
    episode_tasks,
)
from pipelines.episode_store.errors import EpisodeError, Reason


@dataclass(frozen=True)
class Platform:
    """One GM-100 robot platform."""

    embodiment: str
    robot: str  # robot model, used as Episode.robot_type when info.json robot_type is null
    #: path components (lower-cased, '-' and ' ' read as '_') that name this platform
    folder_names: tuple[str, ...]
    #: info.json robot_type values (same normalisation) that name this platform
    robot_types: tuple[str, ...]


#: the three platforms LingBot-VLA reports GM-100 results on (see docs/sources/gm100.md)
PLATFORMS: tuple[Platform, ...] = (
    Platform("agibot_g1", "AgiBot G1", ("agibot_g1", "agibotg1", "agibot", "g1"),
             ("agibot_g1", "agibotg1", "agibot_a2d", "a2d", "agibot")),
    Platform("agilex_cobot_magic", "AgileX Cobot Magic", ("agilex", "agilex_cobot_magic", "cobot_magic", "aloha_agilex"),
             ("agilex", "agilex_cobot_magic", "cobot_magic", "aloha_agilex", "piper")),
    Platform("galaxea_r1_pro", "Galaxea R1 Pro", ("galaxea_r1_pro", "r1_pro", "r1pro", "galaxea"),
             ("galaxea_r1_pro", "r1_pro", "r1pro", "galaxea")),
)
EMBODIMENTS = tuple(sorted(p.embodiment for p in PLATFORMS))

#: an opaque task id: "task_00043", "task-7", "00043"
OPAQUE_TASK_RE = re.compile(r"^(?:task)?[\s_\-]*\d+$", re.IGNORECASE)
#: a word slug: words joined by '_' or '-', no spaces ("pour_water_into_the_cup")
WORD_SLUG_RE = re.compile(r"^[A-Za-z0-9]+(?:[_\-]+[A-Za-z0-9]+)+$")

FEATURES = FeatureMap(
    state_keys=("observation.state",),
    action_keys=("action",),
    camera_prefixes=("observation.images.", "observation.image."),
)


def _norm(text: str) -> str:
    return re.sub(r"[\s\-]+", "_", text.strip().lower())


def task_instruction(task: str, table: dict[str, str], ref: str) -> tuple[str, str]:
    """``(instruction, rule)`` for a GM-100 task string (rule: task_texts | slug_words | text)."""
    key = task.strip()
    if key in table:
        return table[key], "task_texts"
    if not key:
        raise EpisodeError(Reason.MISSING_LANGUAGE, f"{ref}: empty task string")
    if OPAQUE_TASK_RE.match(key):
        raise EpisodeError(
            Reason.MISSING_LANGUAGE,
            f"{ref}: task {key!r} is an opaque id with no entry in the task_texts table (option task_texts / "
            f"task_texts_file)",
        )
    if WORD_SLUG_RE.match(key):
        return re.sub(r"[_\-]+", " ", key).lower(), "slug_words"
    return key, "text"


#: ``{task string: instruction}``, from option ``task_texts`` or the file ``task_texts_file`` names
TaskTexts = dict[str, Annotated[str, Rule(nonempty=True)]]


@dataclass(frozen=True)
class GM100Options(ReaderOptions):
    """``sources.gm100.options`` in params.yaml: the reader options and these (docs/sources/gm100.md §5)."""

    #: force one platform (an embodiment id or folder name); None: from each dataset's path or robot_type
    platform: str | None = None
    #: ``{task string: instruction}``; wins over ``task_texts_file``
    task_texts: TaskTexts | None = None
    #: a JSON object of the same shape; relative paths are relative to the root
    task_texts_file: str | None = None


@register
class GM100Converter(LeRobotConverter):
    """GM-100 trajectories, one LeRobot dataset per platform (and task) under the root.

    Options: :class:`GM100Options`.
    """

    name = "gm100"
    source_version = "gm100-lerobot"
    converter_version = "1.1.0"
    embodiments = EMBODIMENTS
    control_hz = 30.0  # assumed nominal; every dataset's info.json fps is used per episode
    card = SourceCard.load("gm100")  # converters/cards/gm100.yaml
    feature_map = FEATURES
    options_type = GM100Options

    def __init__(self, root: str | Path, options: dict[str, Any] | None = None):
        super().__init__(root, options)
        self.task_texts = self._load_task_texts()
        forced = self.options.platform
        self.forced_platform = None
        if forced is not None:
            self.forced_platform = self._platform_by_name(forced)
            if self.forced_platform is None:
                raise ValueError(f"{self.name}: option platform {forced!r} is not one of "
                                 f"{[p.embodiment for p in PLATFORMS]}")

    def _load_task_texts(self) -> dict[str, str]:
        table: dict[str, str] = {}
        file_opt = self.options.task_texts_file
        if file_opt:
            path = Path(file_opt)
            path = path if path.is_absolute() else self.root / path
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ValueError(f"option task_texts_file: cannot read {path}: {exc}") from exc
            table.update(check_value(TaskTexts, data, f"{self.name}: task_texts_file {path}"))
        table.update(self.options.task_texts or {})
        return {k.strip(): v.strip() for k, v in table.items()}

    @staticmethod
    def _platform_by_name(name: str) -> Platform | None:
        key = _norm(name)
        for p in PLATFORMS:
            if key == p.embodiment or key in p.folder_names:
                return p
        return None

    def platform_for(self, ds: LeRobotDataset, ref: str) -> tuple[Platform, str]:
        if self.forced_platform is not None:
            return self.forced_platform, "option"
        for part in Path(ds.rel).parts:
            for p in PLATFORMS:
                if _norm(part) in p.folder_names or _norm(part) == p.embodiment:
                    return p, "path"
        if ds.robot_type:
            for p in PLATFORMS:
                if _norm(ds.robot_type) in p.robot_types:
                    return p, "robot_type"
        raise EpisodeError(
            Reason.MISSING_METADATA,
            f"{ref}: no GM-100 platform in the dataset path {ds.rel!r} or robot_type {ds.robot_type!r}; "
            f"put the dataset under a platform folder or set option 'platform'",
        )

    def embodiment_for(self, ds: LeRobotDataset, ref: str) -> tuple[str, str]:
        platform, _ = self.platform_for(ds, ref)
        return platform.embodiment, ds.robot_type or platform.robot

    def language_for(self, ds: LeRobotDataset, raw: RawEpisode):
        texts, info = episode_tasks(raw)
        instruction, rule = task_instruction(texts[0], self.task_texts, raw.ref)
        platform, how = self.platform_for(ds, raw.ref)
        meta: dict[str, Any] = {
            "tasks": texts,
            "gm100": {"platform": platform.embodiment, "platform_from": how, "task": texts[0],
                      "instruction_rule": rule},
        }
        if info:
            meta["task_info"] = info
        return instruction, [], None, meta
