"""Where things live inside a store, and how episode ids are derived. One place, used by all.

What one episode file holds (arrays, attributes, metadata keys) is ``schema.py``.
"""

from __future__ import annotations

import hashlib
import re

STORE_MARKER = "a1pipe_store.json"
#: the marker's ``format`` value (its ``format_version`` is ``schema.FORMAT_VERSION``)
STORE_FORMAT = "a1pipe-episode-store"
INDEX_FILE = "index.parquet"
STATS_FILE = "stats.json"
REPORT_FILE = "conversion_report.json"
#: per-episode curation decisions (schema: ``index.CURATION_SCHEMA``) and their per-source summary
CURATION_FILE = "curation.parquet"
CURATION_REPORT_FILE = "curation_report.json"
EPISODES_DIR = "episodes"
TMP_DIR = ".tmp"
WORK_DIR = ".work"
LOCK_FILE = ".lock"
EPISODE_SUFFIX = ".zarr.zip"

_SOURCE_RE = re.compile(r"^[a-z][a-z0-9_]*$")
EPISODE_ID_RE = re.compile(r"^([a-z][a-z0-9_]*)-([0-9a-f]{16})$")


def check_source_name(source: str) -> str:
    if not _SOURCE_RE.match(source):
        raise ValueError(f"source name must match {_SOURCE_RE.pattern}, got {source!r}")
    return source


def episode_id(source: str, source_episode: str) -> str:
    """Stable id from the source identity: same source + same relative reference -> same id.

    64 bits of sha256 keep ids short; at a million episodes per source the chance
    of any collision is ~3e-8, and the validator reports duplicates anyway.
    """
    check_source_name(source)
    digest = hashlib.sha256(f"{source}\n{source_episode}".encode()).hexdigest()
    return f"{source}-{digest[:16]}"


def episode_relpath(episode_id_: str) -> str:
    """``episodes/<source>/<2 hex>/<id>.zarr.zip``: 256-way fan-out keeps directories small."""
    m = EPISODE_ID_RE.match(episode_id_)
    if not m:
        raise ValueError(f"not an episode id: {episode_id_!r}")
    source, digest = m.groups()
    return f"{EPISODES_DIR}/{source}/{digest[:2]}/{episode_id_}{EPISODE_SUFFIX}"
