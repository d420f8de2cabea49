"""The unified episode store (format version 1). See docs/episode_format.md."""

from .errors import EpisodeError, Reason
from .record import ActionKind, CameraStream, Episode, TimestampOrigin, check_episode, decode_image_bytes

FORMAT_VERSION = 1

__all__ = [
    "FORMAT_VERSION",
    "ActionKind",
    "CameraStream",
    "Episode",
    "EpisodeError",
    "Reason",
    "TimestampOrigin",
    "check_episode",
    "decode_image_bytes",
]
