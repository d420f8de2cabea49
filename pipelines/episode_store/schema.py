"""What one episode file holds: its arrays, attribute names, enumerations and required metadata.

docs/episode_format.md (section 3, "Episode file") is the specification; this module is its
single statement in code. The writer builds episodes from these names, the reader, validator,
index, statistics, curation, ``a1pipe inspect`` and the training loader read them through it,
and ``tests/test_episode_schema.py`` parses the document's tables and holds them equal to this
module, so a key added, renamed or dropped on one side fails the tests until the other follows.

Why not ``layout.py``: that module says where files sit in a store (file names, the episode-id
rule, the directory fan-out); this one says what is inside one of those files. They change for
different reasons (a new store-level file, against a format change that needs a new
``FORMAT_VERSION``), and every consumer of an episode's contents needs this module but not the
store's directory layout. The Parquet tables beside the episodes (``index.parquet``,
``curation.parquet``) have their schemas in ``index.py``.

Keys are ``StrEnum`` members: they compare and hash as the strings stored in the file, format
as them in messages and serialise as them in JSON, and each class enumerates its table, which
is what the required-metadata schema and the document test are built from.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np

#: the episode file format (and store marker) version this code writes and reads
FORMAT_VERSION = 1

#: the root attribute of an episode's zarr group that holds its metadata (``MetaKey``)
EPISODE_ATTR = "a1pipe_episode"

# ------------------------------------------------------------------------------------ arrays

TIMESTAMP = "timestamp"
STATE = "state"
ACTION = "action"
#: the arrays every episode has, in the order they are checked, with their stored dtypes
LOW_DIM_ARRAYS: dict[str, np.dtype] = {
    TIMESTAMP: np.dtype(np.float64),
    STATE: np.dtype(np.float32),
    ACTION: np.dtype(np.float32),
}
#: the per-frame vectors with named dimensions (``state_names``, ``action_names``): statistics,
#: curation bounds and training layouts are per dimension of these
VECTORS = (STATE, ACTION)

#: one variable-length-bytes array per camera, one JPEG per frame and chunk: ``images/<camera>``
IMAGES_GROUP = "images"
#: optional per-frame sub-task labels: ``language/subtask_index``
LANGUAGE_GROUP = "language"
#: optional source-specific per-frame arrays: ``extras/<name>``
EXTRAS_GROUP = "extras"

SUBTASK_INDEX = f"{LANGUAGE_GROUP}/subtask_index"
SUBTASK_INDEX_DTYPE = np.dtype(np.int32)
#: the attribute of ``SUBTASK_INDEX`` listing the sub-task texts its values index
SUBTASK_TEXTS_ATTR = "texts"
#: a ``SUBTASK_INDEX`` value meaning "no sub-task at this frame"
NO_SUBTASK = -1

#: the encoding of every stored frame (``CameraKey.ENCODING``)
FRAME_ENCODING = "jpeg"

#: the extra a converter writes where a frame's action only holds position because the source
#: recorded none (RoboChallenge's last frame); training masks those actions (docs/training.md)
ACTION_PADDED_EXTRA = "action_padded"


def image_array(camera: str) -> str:
    """The key of one camera's frame array."""
    return f"{IMAGES_GROUP}/{camera}"


def extra_array(name: str) -> str:
    """The key of one extra per-frame array."""
    return f"{EXTRAS_GROUP}/{name}"


# ---------------------------------------------------------------------------- metadata keys


class MetaKey(StrEnum):
    """Keys of the ``a1pipe_episode`` attribute (docs/episode_format.md, "Root attribute")."""

    FORMAT_VERSION = "format_version"
    EPISODE_ID = "episode_id"
    SOURCE = "source"
    CONVERTER = "converter"
    EMBODIMENT = "embodiment"
    ROBOT_TYPE = "robot_type"
    CONTROL_HZ = "control_hz"
    NUM_FRAMES = "num_frames"
    DURATION_S = "duration_s"
    TIMESTAMP_ORIGIN = "timestamp_origin"
    STATE_NAMES = "state_names"
    ACTION_NAMES = "action_names"
    ACTION_KIND = "action_kind"
    LANGUAGE = "language"
    CAMERAS = "cameras"
    EXTRAS = "extras"
    METADATA = "metadata"
    CONTENT_SHA256 = "content_sha256"


class SourceKey(StrEnum):
    """``source``: where the episode came from."""

    NAME = "name"
    VERSION = "version"
    EPISODE = "episode"


class ConverterKey(StrEnum):
    """``converter``: what wrote it."""

    NAME = "name"
    VERSION = "version"


class LanguageKey(StrEnum):
    """``language``: the episode-level instruction."""

    INSTRUCTION = "instruction"
    ALTERNATIVES = "alternatives"
    HAS_SUBTASKS = "has_subtasks"


class CameraKey(StrEnum):
    """``cameras.<name>``: how one camera's frames were stored and where they were read from."""

    SOURCE = "source"
    ENCODING = "encoding"
    QUALITY = "quality"
    HEIGHT = "height"
    WIDTH = "width"
    SOURCE_HEIGHT = "source_height"
    SOURCE_WIDTH = "source_width"
    RESIZE = "resize"


class CameraSourceKey(StrEnum):
    """``cameras.<name>.source``: the source's own name of the camera and the file it was read from."""

    NAME = "name"
    FILE = "file"


class ExtraKey(StrEnum):
    """``extras.<name>``."""

    NAMES = "names"


#: the one key of the source-specific ``metadata`` that later stages read: the attempt's outcome,
#: where the source records it (curation's ``failed_episodes``)
METADATA_SUCCESS = "success"

#: every key but ``content_sha256`` (optional) is required, with these JSON types; a float may be
#: written as an integer
REQUIRED_METADATA: dict[MetaKey, type | tuple[type, ...]] = {
    MetaKey.FORMAT_VERSION: int,
    MetaKey.EPISODE_ID: str,
    MetaKey.SOURCE: dict,
    MetaKey.CONVERTER: dict,
    MetaKey.EMBODIMENT: str,
    MetaKey.ROBOT_TYPE: str,
    MetaKey.CONTROL_HZ: (int, float),
    MetaKey.NUM_FRAMES: int,
    MetaKey.DURATION_S: (int, float),
    MetaKey.TIMESTAMP_ORIGIN: str,
    MetaKey.STATE_NAMES: list,
    MetaKey.ACTION_NAMES: list,
    MetaKey.ACTION_KIND: str,
    MetaKey.LANGUAGE: dict,
    MetaKey.CAMERAS: dict,
    MetaKey.EXTRAS: dict,
    MetaKey.METADATA: dict,
}
OPTIONAL_METADATA: dict[MetaKey, type] = {MetaKey.CONTENT_SHA256: str}
#: the keys each required object holds
REQUIRED_SUBKEYS: dict[MetaKey, tuple[StrEnum, ...]] = {
    MetaKey.SOURCE: tuple(SourceKey),
    MetaKey.CONVERTER: tuple(ConverterKey),
    MetaKey.LANGUAGE: tuple(LanguageKey),
}
#: what a camera's entry needs for its frames to be checked (older stores lack the others)
REQUIRED_CAMERA_KEYS = (CameraKey.ENCODING, CameraKey.HEIGHT, CameraKey.WIDTH)

# ----------------------------------------------------------------------------- enumerations


class ActionKind(StrEnum):
    """What the action vector means; the gripper dimension(s) are described by name."""

    JOINT_POSITION = "joint_position"  # absolute joint targets (rad / m)
    JOINT_VELOCITY = "joint_velocity"  # joint velocity commands (rad/s)
    JOINT_POSITION_DELTA = "joint_position_delta"  # target minus current joint position
    EE_POSE = "ee_pose"  # absolute end-effector pose targets
    EE_VELOCITY = "ee_velocity"  # end-effector twist commands
    EE_POSE_DELTA = "ee_pose_delta"  # relative end-effector motion
    NEXT_STATE = "next_state"  # derived from the next frame's state (no recorded action)


class TimestampOrigin(StrEnum):
    RECORDED = "recorded"  # the source stores a clock per frame
    FROM_CONTROL_RATE = "from_control_rate"  # source has none: t_i = i / control_hz


#: the statistics ``stats.json`` holds per state and action dimension, in this order (written by
#: ``stats.py``; read by the validator and by training's normaliser, which must not import the Beam
#: combiner that ``stats.py`` builds them with)
STAT_KEYS = ("count", "mean", "std", "min", "max", "q01", "q99")
