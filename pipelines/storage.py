"""Where a store lives: a local directory or an object-storage prefix (gs://, s3://, hdfs://, azfs://...).

The conversion writes a store the same way wherever it is; what differs is how a file becomes
visible whole. On a local disk a file is written beside its destination, fsynced and renamed over
it (``os.replace``), so a reader or a crash sees the old or the new version, never a torn one. On
an object store a PUT is atomic (an object appears only when its upload completes), so files are
built in a local staging directory and uploaded finished. :func:`at` picks the implementation
from the path; conversion code speaks to the :class:`Storage` interface only and does not branch
on where the store lives, except through :attr:`Storage.local`, where a step needs the store on
this machine's disk.

Object stores go through Beam's ``FileSystems``, not fsspec: Beam is already a dependency and
already writes the run's work files (``WriteToText``) through it on every runner, so one layer
knows every scheme the pipeline can use, including a filesystem a deployment registers with Beam
(the tests' ``fakeobj://``); fsspec is not a declared dependency, and would need s3fs or gcsfs
besides.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob as globbing
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from pathlib import Path

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


def write_text(dest: str | os.PathLike, text: str) -> None:
    """Publish a local text file whole (see :func:`publish_local`)."""
    publish_local(dest, lambda tmp: Path(tmp).write_text(text))


def at(root: str | os.PathLike) -> Storage:
    """The storage of ``root``: an object store when the path names a scheme (``scheme://``)."""
    return ObjectStorage(str(root)) if "://" in str(root) else LocalStorage(root)


class Storage(ABC):
    """A directory tree (a store, or a directory inside one) addressed by paths relative to its root
    (``/``-separated). Every write publishes a whole file."""

    root: str
    #: the root on this machine's disk; None for an object store. Only the steps that need random
    #: access to the store's files on this machine look at it, each saying why.
    local: Path | None

    @abstractmethod
    def path(self, *parts: str) -> str:
        """The full path or URI of ``parts`` under the root (for Beam's IO transforms and messages)."""

    @abstractmethod
    def exists(self, rel: str) -> bool: ...

    @abstractmethod
    def read_text(self, rel: str) -> str: ...

    @abstractmethod
    def write_text(self, rel: str, text: str) -> None:
        """Publish ``rel`` whole: readers see the previous version or this one."""

    @abstractmethod
    def glob(self, pattern: str) -> list[str]:
        """The files matching ``pattern`` (relative to the root), as relative paths, sorted."""

    @abstractmethod
    def delete_tree(self, rel: str) -> None:
        """Remove ``rel`` and everything under it; nothing there is not an error."""

    @abstractmethod
    def remove_empty_dirs(self, *rels: str) -> None:
        """Remove these directories if they are empty (what deleting their contents leaves behind)."""

    @abstractmethod
    def remove_leftovers(self, *rels: str) -> None:
        """Remove what a killed writer left: the writer-private trees ``rels`` and the temporaries of
        publish steps that never renamed. Call it holding :meth:`lock`."""

    @abstractmethod
    def lock(self, name: str) -> contextlib.AbstractContextManager[None]:
        """Hold the root against a second writer, through the file ``name`` at the root; raises
        RuntimeError when another holds it."""

    @abstractmethod
    def working_copy(
        self, fetch: Iterable[str] = (), publish: Iterable[str] = ()
    ) -> contextlib.AbstractContextManager[Path]:
        """A local directory standing for the root, for code that reads and writes files on disk
        (zarr, parquet): the files ``fetch`` names (each must exist) are there to read, and the
        files ``publish`` names, each written there by the block (whole, through
        :func:`publish_local` or the episode writer), are in the storage when the block ends
        without an error."""


class LocalStorage(Storage):
    """A directory on this machine's disk. The working copy is the directory itself: its writers
    publish in place (temporary, fsync, rename), so nothing is copied."""

    def __init__(self, root: str | os.PathLike):
        self.root = str(root)
        self.local = Path(root)

    def path(self, *parts: str) -> str:
        return str(Path(self.root, *parts))

    def exists(self, rel: str) -> bool:
        return os.path.exists(self.path(rel))

    def read_text(self, rel: str) -> str:
        return Path(self.path(rel)).read_text()

    def write_text(self, rel: str, text: str) -> None:
        write_text(self.path(rel), text)

    def glob(self, pattern: str) -> list[str]:
        found = globbing.glob(os.path.join(globbing.escape(self.root), pattern))
        return sorted(Path(p).relative_to(self.root).as_posix() for p in found if os.path.isfile(p))

    def delete_tree(self, rel: str) -> None:
        shutil.rmtree(self.path(rel), ignore_errors=True)

    def remove_empty_dirs(self, *rels: str) -> None:
        for rel in rels:
            with contextlib.suppress(OSError):
                os.rmdir(self.path(rel))

    def remove_leftovers(self, *rels: str) -> None:
        for rel in rels:
            self.delete_tree(rel)
        for leftover in self.local.glob(".*" + PUBLISH_TMP_MARK + "*"):
            if leftover.is_file():
                leftover.unlink()

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """An exclusive ``flock`` on ``name``, released when the holder exits or dies."""
        self.local.mkdir(parents=True, exist_ok=True)
        with open(self.local / name, "w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise RuntimeError(f"another conversion is writing to {self.root}") from exc
            yield

    @contextlib.contextmanager
    def working_copy(self, fetch: Iterable[str] = (), publish: Iterable[str] = ()) -> Iterator[Path]:
        yield self.local


class ObjectStorage(Storage):
    """A prefix on an object store, through Beam's ``FileSystems``. Object stores have no
    directories, no rename and no locks: a file is published by one PUT of its finished bytes."""

    def __init__(self, root: str):
        self.root = root
        self.local = None

    @staticmethod
    def _fs():
        from apache_beam.io.filesystems import FileSystems

        return FileSystems

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def exists(self, rel: str) -> bool:
        return self._fs().exists(self.path(rel))

    def read_text(self, rel: str) -> str:
        with self._fs().open(self.path(rel)) as fin:
            return fin.read().decode()

    def write_text(self, rel: str, text: str) -> None:
        with self._fs().create(self.path(rel)) as out:
            out.write(text.encode())

    def glob(self, pattern: str) -> list[str]:
        prefix = self.path("")
        result = self._fs().match([self.path(pattern)])[0]
        return sorted(m.path[len(prefix):] for m in result.metadata_list)

    def delete_tree(self, rel: str) -> None:
        matches = self.glob(rel.rstrip("/") + "/**")
        if matches:
            self._fs().delete([self.path(m) for m in matches])

    def remove_empty_dirs(self, *rels: str) -> None:
        """Nothing to do: a prefix exists only while an object is under it."""

    def remove_leftovers(self, *rels: str) -> None:
        """Nothing to do, and nothing safe to do: episodes are staged on the writer's disk and a PUT
        leaves no temporary, while a work tree here may be a concurrent run's, since an object
        store offers no lock to tell (see :meth:`lock`)."""

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """No lock: object stores have none. Two runs writing one prefix at once race, and the
        last run to finish writes the index, statistics and reports."""
        yield

    @contextlib.contextmanager
    def working_copy(self, fetch: Iterable[str] = (), publish: Iterable[str] = ()) -> Iterator[Path]:
        with tempfile.TemporaryDirectory(prefix="a1pipe-stage-") as staging:
            for rel in fetch:
                local = os.path.join(staging, rel)
                os.makedirs(os.path.dirname(local), exist_ok=True)
                with self._fs().open(self.path(rel)) as fin, open(local, "wb") as out:
                    shutil.copyfileobj(fin, out, 8 << 20)
            yield Path(staging)
            for rel in publish:
                with open(os.path.join(staging, rel), "rb") as src, self._fs().create(self.path(rel)) as out:
                    shutil.copyfileobj(src, out, 8 << 20)
