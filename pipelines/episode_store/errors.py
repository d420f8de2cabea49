"""Reason codes for episodes that cannot enter the store.

Every quarantined episode carries one of these codes in ``conversion_report.json``.
The codes are part of the public format: auditors filter on them and later
issues (curation, manifests) count them, so values never change meaning; new
codes may be added.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    MISSING_FILE = "missing_file"
    CORRUPT_FILE = "corrupt_file"
    MISSING_KEY = "missing_key"
    MISSING_METADATA = "missing_metadata"
    INVALID_METADATA = "invalid_metadata"
    MISSING_CAMERA = "missing_camera"
    EMPTY_EPISODE = "empty_episode"
    LENGTH_MISMATCH = "length_mismatch"
    SHAPE_MISMATCH = "shape_mismatch"
    NAME_MISMATCH = "name_mismatch"
    NON_FINITE_VALUES = "non_finite_values"
    IMPLAUSIBLE_VALUES = "implausible_values"
    NON_MONOTONIC_TIMESTAMPS = "non_monotonic_timestamps"
    IMAGE_DECODE_ERROR = "image_decode_error"
    VIDEO_DECODE_ERROR = "video_decode_error"
    FRAME_COUNT_MISMATCH = "frame_count_mismatch"
    MISSING_LANGUAGE = "missing_language"
    UNSUPPORTED_LAYOUT = "unsupported_layout"
    WRITE_ERROR = "write_error"
    CONVERTER_ERROR = "converter_error"


REASON_DESCRIPTIONS: dict[Reason, str] = {
    Reason.MISSING_FILE: "a file the episode needs is absent",
    Reason.CORRUPT_FILE: "a source file exists but cannot be opened or parsed",
    Reason.MISSING_KEY: "a required key/dataset/column is absent from a source file",
    Reason.MISSING_METADATA: "task- or episode-level metadata the converter needs is absent",
    Reason.INVALID_METADATA: "metadata is present but malformed or contradicts itself",
    Reason.MISSING_CAMERA: "a camera declared for the episode has no frames",
    Reason.EMPTY_EPISODE: "the episode has zero frames",
    Reason.LENGTH_MISMATCH: "streams of one episode disagree on the number of frames (e.g. truncated arrays)",
    Reason.SHAPE_MISMATCH: "an array has the wrong rank or width",
    Reason.NAME_MISMATCH: "dimension names do not match the array width",
    Reason.NON_FINITE_VALUES: "state, action or timestamps contain NaN or infinity",
    Reason.IMPLAUSIBLE_VALUES: "a state or action value is beyond any physical quantity's range (|x| above the "
                               "plausibility bound, 1e6 by default): garbage bytes read as numbers",
    Reason.NON_MONOTONIC_TIMESTAMPS: "timestamps are not strictly increasing",
    Reason.IMAGE_DECODE_ERROR: "an encoded image frame cannot be decoded",
    Reason.VIDEO_DECODE_ERROR: "a video file cannot be decoded",
    Reason.FRAME_COUNT_MISMATCH: "a camera delivered a different number of frames than the state stream",
    Reason.MISSING_LANGUAGE: "the episode has no usable language instruction",
    Reason.UNSUPPORTED_LAYOUT: "the files are in a layout variant the converter does not support",
    Reason.WRITE_ERROR: "the episode could not be written to the store",
    Reason.CONVERTER_ERROR: "an unexpected error in converter code (a bug: report it)",
}


class EpisodeError(Exception):
    """An episode-specific failure with a stable reason code.

    Raised by converters and by the store writer. The conversion pipeline turns it
    into a quarantine entry; it never aborts a run.
    """

    def __init__(self, reason: Reason | str, message: str):
        self.reason = Reason(reason)
        self.message = message
        super().__init__(f"[{self.reason}] {message}")
