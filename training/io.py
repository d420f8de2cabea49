"""Atomic publication of the files training, calibration and evaluation write.

DVC hashes these files and later stages read them, so a reader must see either the previous
file or the complete new one, never a torn one after a crash or a kill. The data half has the
same rule in ``pipelines/storage.py``, but ``training`` does not import the pipelines package
(it reads released manifests and the store reader only), so it keeps this small writer of its own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def publishing(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; on a clean exit it is flushed to disk and
    renamed over ``path``; on an error it is removed and ``path`` is left as it was.

    The temporary name keeps ``path``'s suffix, so writers that append one (``np.savez``) or pick a
    format by it (h5py, torch) write exactly where they are told."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # the rename itself survives a power cut only once the directory is on disk
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # platforms that cannot open a directory
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text(path: str | Path, text: str) -> None:
    with publishing(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, value: Any, **dumps: Any) -> None:
    """``value`` as indented JSON with a final newline (``dumps``: extra ``json.dumps`` options)."""
    write_text(path, json.dumps(value, indent=1, **dumps) + "\n")
