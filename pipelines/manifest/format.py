"""The released manifest format: its file names, its table schema, and how manifest.json is written and read.

Every module of ``pipelines.manifest`` and every reader outside it (training, the CLI) takes
these from here, and this module imports none of them: building, verifying, describing and
sampling all sit on top of one definition of what a release is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.episode_store.digest import file_sha256  # noqa: F401  (the checksums a release records)

MANIFEST_FORMAT = 1
TABLE_FILE = "episodes.parquet"
MANIFEST_FILE = "manifest.json"
#: ``sha256sum`` lines for every other released file, manifest.json included: ``sha256sum -c`` checks
#: a release without a1pipe, and ``verify`` catches an edit to any file, whatever version wrote it
CHECKSUMS_FILE = "SHA256SUMS"
CROISSANT_FILE = "croissant.json"
CARD_FILE = "MANIFEST.md"
PLOT_FILE = "composition.svg"
#: the files regenerated from manifest.json and the table (``release.write_derived_files``)
DERIVED_FILES = (CROISSANT_FILE, CARD_FILE, PLOT_FILE)
#: every split a manifest may have; ``calibration`` exists only when its fraction is non-zero, so a
#: manifest without one is byte-identical to what earlier versions wrote (see :func:`splits_of`)
SPLITS = ("train", "validation", "calibration")
_RANGE = pa.struct([("start", pa.int64()), ("stop", pa.int64())])
TABLE_SCHEMA = pa.schema(
    [
        pa.field("episode_id", pa.string(), nullable=False),
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("embodiment", pa.string(), nullable=False),
        pa.field("robot_type", pa.string(), nullable=False),
        pa.field("store", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("source_episode", pa.string(), nullable=False),
        pa.field("instruction", pa.string(), nullable=False),
        pa.field("num_frames", pa.int64(), nullable=False),
        pa.field("frames_kept", pa.int64(), nullable=False),
        pa.field("kept_ranges", pa.list_(_RANGE), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("probability", pa.float64(), nullable=False),
    ]
)
#: parameters that manifests written by earlier versions record under another name: the split seed
#: was ``seed`` until it was told apart from the sampler's draw seed
_RENAMED_PARAMETERS = {"seed": "split_seed"}


class ManifestError(ValueError):
    """A manifest cannot be built from these inputs and parameters, or read (the message says why)."""


def manifest_json_text(manifest: dict[str, Any]) -> str:
    """The one serialisation of manifest.json (croissant.json records its sha256)."""
    return json.dumps(manifest, indent=1, sort_keys=True) + "\n"




def splits_of(manifest: dict[str, Any]) -> tuple[str, ...]:
    """The splits a manifest has: train and validation, and calibration when it was built with one."""
    return tuple(s for s in SPLITS if s != "calibration" or "calibration" in manifest.get("counts", {}))


def parameters_of(manifest: dict[str, Any]) -> dict[str, Any]:
    """manifest.json's ``parameters`` under today's names.

    A release keeps the bytes it was written with (its SHA256SUMS and croissant.json hash them),
    so a manifest that records the split seed as ``seed`` is read, verified and compared as if
    it said ``split_seed``, not rewritten.
    """
    return {_RENAMED_PARAMETERS.get(k, k): v for k, v in manifest["parameters"].items()}


def load_manifest(manifest_dir: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    manifest_dir = Path(manifest_dir)
    path = manifest_dir / MANIFEST_FILE
    if not path.is_file():
        raise ManifestError(f"{manifest_dir}: no {MANIFEST_FILE}")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("format_version") != MANIFEST_FORMAT:
        raise ManifestError(f"{path}: format_version {manifest.get('format_version')!r}, "
                            f"this a1pipe reads {MANIFEST_FORMAT}")
    return manifest, pq.read_table(manifest_dir / manifest["table"]["file"]).to_pylist()
