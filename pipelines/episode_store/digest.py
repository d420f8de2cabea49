"""The content digest: what makes two episodes the same training data, wherever they came from.

It lives with the episode store because the writer records it while encoding frames
(``content_sha256`` in the episode metadata) and the validator re-derives it from the file;
curation uses it to find duplicates.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np


def content_digest(timestamp: np.ndarray, state: np.ndarray, action: np.ndarray, frame_digests: list[bytes]) -> str:
    """sha256 of an episode's content, independent of where it came from.

    Timestamps enter relative to the first frame, in whole microseconds (a re-upload
    recorded at another wall-clock time is still the same episode); state and action
    as float32 (the stored precision); images as the digests of their stored frames,
    in camera-name order. Identical digests mean identical training content.
    """
    h = hashlib.sha256()
    t = np.asarray(timestamp, dtype=np.float64)
    relative_us = np.round((t - t[0]) * 1e6).astype(np.int64) if len(t) else np.zeros(0, np.int64)
    h.update(relative_us.tobytes())
    for arr in (state, action):
        a = np.ascontiguousarray(np.asarray(arr, dtype=np.float32))
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    for d in frame_digests:
        h.update(d)
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks: what the index, the validator and a
    released manifest record of each file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
