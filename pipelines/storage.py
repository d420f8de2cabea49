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


#: in the name of a publish step's temporary (``.<name>.tmp-<pid>``): a killed run's leftovers match it
PUBLISH_TMP_MARK = ".tmp-"
#: fault injection for tests: called with the destination after the temporary is durable and before
#: the rename, the moment a kill must leave the old file whole
before_publish = None


def publish_local(dest: str | os.PathLike, write) -> None:
    """Write a local file so that a reader sees the old or the new version whole, never a torn one,
    even after a crash or power loss: ``write(tmp_path)`` fills a temporary beside it, which is
    fsynced, renamed over ``dest`` and its directory fsynced. The temporary's name is private to
    the process, so two writers never share one."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}{PUBLISH_TMP_MARK}{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        if before_publish is not None:
            before_publish(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    fd = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def upload(local: str | os.PathLike, dest: str) -> None:
    """Copy a finished local file to its final location (atomic for local and object stores)."""
    if not is_remote(dest):
        publish_local(dest, lambda tmp: shutil.copyfile(local, tmp))
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


def write_text(dest: str | os.PathLike, text: str) -> None:
    """Publish a text file whole (see :func:`publish_local`; an object store's PUT is atomic)."""
    if not is_remote(dest):
        publish_local(dest, lambda tmp: Path(tmp).write_text(text))
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
