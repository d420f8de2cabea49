"""The unified episode store (format version 1). See docs/episode_format.md."""

from .errors import EpisodeError, Reason
from .record import CameraStream, Episode, check_episode, decode_image_bytes
from .schema import FORMAT_VERSION, ActionKind, TimestampOrigin

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
