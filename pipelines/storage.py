"""Store paths may be local directories or object-storage URIs (gs://, s3://, hdfs://, azfs://...).

Local stores use atomic ``os.replace``; remote stores rely on the object store's
atomic PUT through Beam's ``FileSystems`` (an object becomes visible only when its
upload completes). Episodes are always built in a local staging directory first.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def is_remote(path: str | os.PathLike) -> bool:
    return "://" in str(path)


def join(root: str | os.PathLike, *parts: str) -> str:
    if is_remote(root):
        return "/".join([str(root).rstrip("/"), *parts])
    return str(Path(root, *parts))


def exists(path: str) -> bool:
    if is_remote(path):
        from apache_beam.io.filesystems import FileSystems

        return FileSystems.exists(path)
    return os.path.exists(path)


def upload(local: str | os.PathLike, dest: str) -> None:
    """Copy a finished local file to its final location (atomic for local and object stores)."""
    if not is_remote(dest):
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        tmp = f"{dest}.partial"
        shutil.copyfile(local, tmp)
        os.replace(tmp, dest)
        return
    from apache_beam.io.filesystems import FileSystems

    with open(local, "rb") as src, FileSystems.create(dest) as out:
        shutil.copyfileobj(src, out, 8 << 20)


def download(src: str, local: str | os.PathLike) -> None:
    if not is_remote(src):
        shutil.copyfile(src, local)
        return
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(src) as fin, open(local, "wb") as out:
        shutil.copyfileobj(fin, out, 8 << 20)


def write_text(dest: str, text: str) -> None:
    if not is_remote(dest):
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        tmp = f"{dest}.tmp"
        Path(tmp).write_text(text)
        os.replace(tmp, dest)
        return
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.create(dest) as out:
        out.write(text.encode())


def read_text(path: str) -> str:
    if not is_remote(path):
        return Path(path).read_text()
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as fin:
        return fin.read().decode()


def glob(pattern: str) -> list[str]:
    from apache_beam.io.filesystems import FileSystems

    result = FileSystems.match([pattern])[0]
    return sorted(m.path for m in result.metadata_list)


def delete_tree(path: str) -> None:
    if not is_remote(path):
        shutil.rmtree(path, ignore_errors=True)
        return
    from apache_beam.io.filesystems import FileSystems

    matches = glob(path.rstrip("/") + "/**")
    if matches:
        FileSystems.delete(matches)
