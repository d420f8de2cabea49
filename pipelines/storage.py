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
besides. Beam reaches a scheme only with its client library installed (``a1pipe[aws]``,
``a1pipe[gcp]``: :data:`SCHEME_EXTRAS`), and with the options :func:`use_beam_options` sets;
by default those of the client library's own configuration (for S3: ``AWS_ENDPOINT_URL_S3``,
``AWS_REGION``, credentials, ``~/.aws``; docs/object_storage.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob as globbing
import hashlib
import importlib.util
import os
import posixpath
import shutil
import tempfile
import threading
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


def use_beam_options(args: list[str]) -> None:
    """Reach object stores in this process with these Beam options (``--s3_endpoint_url``,
    ``--s3_region_name``, ``--project``...): a conversion calls it with its Beam arguments, so
    that the driver reads and writes the store the way its workers do (Beam hands a pipeline's
    options to its workers itself). Without it, each client library's own configuration applies,
    as it was when the first client for the options was made (a process makes one per scheme and
    set of options): calling this again makes new ones."""
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

    FileSystems.set_options(PipelineOptions(args))


class ObjectStoreUnavailable(RuntimeError):
    """Beam cannot reach this scheme here: its client library is not installed."""


#: scheme -> (a module Beam's filesystem for it imports, what installs it): checked before Beam is
#: asked, whose own errors surface late (S3: an assertion inside the first request) or name
#: another package's extras
SCHEME_EXTRAS = {
    "s3": ("boto3", "a1pipe[aws]"),
    "gs": ("google.cloud.storage", "a1pipe[gcp]"),
    "hdfs": ("hdfs", "apache-beam[hadoop]"),
}


class Storage(ABC):
    """A directory tree (a store, or a directory inside one) addressed by paths relative to its root
    (``/``-separated). Every write publishes a whole file."""

    root: str
    #: the root on this machine's disk; None for an object store. Only the steps that need random
    #: access to the store's files on this machine look at it, each saying why.
    local: Path | None

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.root == self.root

    def __hash__(self) -> int:
        return hash((type(self), self.root))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.root!r})"

    @property
    def name(self) -> str:
        """The root's last path component (how manifests and a directory of stores name a store)."""
        return posixpath.basename(self.root.rstrip("/"))

    @abstractmethod
    def path(self, *parts: str) -> str:
        """The full path or URI of ``parts`` under the root (for Beam's IO transforms and messages)."""

    def child(self, rel: str) -> Storage:
        """The directory ``rel`` under the root, as a storage of its own."""
        return at(self.path(rel))

    def present(self, *rels: str) -> list[str]:
        """Those of ``rels`` that exist, in order: what a working copy can fetch of a set of
        optional files."""
        return [rel for rel in rels if self.exists(rel)]

    @abstractmethod
    def exists(self, rel: str) -> bool: ...

    @abstractmethod
    def read_text(self, rel: str) -> str: ...

    @abstractmethod
    def write_text(self, rel: str, text: str) -> None:
        """Publish ``rel`` whole: readers see the previous version or this one."""

    @abstractmethod
    def glob(self, pattern: str) -> list[str]:
        """The files matching ``pattern`` (relative to the root), as relative paths, sorted. ``**``
        matches any depth; names starting with a dot match too (an object store has no hidden
        names, and a leftover temporary must be found on either)."""

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
        without an error. The directory has the root's :attr:`name`, since a store is named by
        its directory."""

    @abstractmethod
    def local_file(self, rel: str, sha256: str, cache: str | os.PathLike) -> Path:
        """A file on this machine's disk with the bytes of ``rel``, whose digest was recorded as
        ``sha256``, for readers that need random access to it (an episode file): ``rel`` itself
        when the root is on disk, else a copy kept in the directory ``cache`` under its digest."""


class LocalStorage(Storage):
    """A directory on this machine's disk. The working copy is the directory itself: its writers
    publish in place (temporary, fsync, rename), so nothing is copied."""

    def __init__(self, root: str | os.PathLike):
        self.local = Path(root)
        self.root = str(self.local)

    def path(self, *parts: str) -> str:
        return str(Path(self.root, *parts))

    def exists(self, rel: str) -> bool:
        return os.path.exists(self.path(rel))

    def read_text(self, rel: str) -> str:
        return Path(self.path(rel)).read_text()

    def write_text(self, rel: str, text: str) -> None:
        write_text(self.path(rel), text)

    def glob(self, pattern: str) -> list[str]:
        found = globbing.glob(os.path.join(globbing.escape(self.root), pattern), recursive=True, include_hidden=True)
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

    def local_file(self, rel: str, sha256: str, cache: str | os.PathLike) -> Path:
        """``rel`` itself: nothing is copied or hashed (checking the digest is the reader's choice)."""
        return self.local / rel


class ObjectStorage(Storage):
    """A prefix on an object store, through Beam's ``FileSystems``. Object stores have no
    directories, no rename and no locks: a file is published by one PUT of its finished bytes."""

    def __init__(self, root: str):
        self.root = root
        self.local = None
        scheme = root.partition("://")[0]
        module, extra = SCHEME_EXTRAS.get(scheme, (None, None))
        if module is not None and not _installed(module):
            raise ObjectStoreUnavailable(f"{root}: {scheme}:// stores need {module}, which is not installed: "
                                         f"pip install '{extra}'")
        if scheme == "s3":
            _share_s3_clients()
        try:
            self._fs().get_filesystem(root)
        except ValueError as exc:  # no Beam filesystem claims the scheme
            known = ", ".join(f"{s}:// ({e})" for s, (_, e) in SCHEME_EXTRAS.items())
            raise ObjectStoreUnavailable(f"{root}: Apache Beam has no filesystem for {scheme}:// here "
                                         f"(object stores a1pipe knows: {known})") from exc

    @staticmethod
    def _fs():
        """Beam's ``FileSystems``, with options: a pipeline (driver or worker) has set its own, and
        :func:`use_beam_options` may have; otherwise the defaults, which leave each client library
        to its own configuration (Beam's S3 filesystem fails without any options at all)."""
        from apache_beam.io.filesystems import FileSystems

        if FileSystems._pipeline_options is None:
            from apache_beam.options.pipeline_options import PipelineOptions

            FileSystems.set_options(PipelineOptions([]))
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
            root = Path(staging, self.name)
            root.mkdir()
            for rel in fetch:
                self.download(rel, root / rel)
            yield root
            for rel in publish:
                with open(root / rel, "rb") as src, self._fs().create(self.path(rel)) as out:
                    shutil.copyfileobj(src, out, 8 << 20)

    def download(self, rel: str, dest: str | os.PathLike) -> None:
        """Copy ``rel`` to the local file ``dest`` (its directory is made)."""
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with self._fs().open(self.path(rel)) as fin, open(dest, "wb") as out:
            shutil.copyfileobj(fin, out, 8 << 20)

    def local_file(self, rel: str, sha256: str, cache: str | os.PathLike) -> Path:
        """The copy in ``cache`` named by the digest (``<2 hex>/<sha256>-<file name>``): downloaded
        the first time, checked against ``sha256`` on the way and published whole, so a copy in
        the cache is always one that matched, and later calls, in this process or another, use
        it as it is. A file changed in the store since its digest was recorded is an error."""
        dest = Path(cache, sha256[:2], f"{sha256}-{posixpath.basename(rel)}")
        if dest.is_file():
            return dest

        def fetch(tmp: Path) -> None:
            digest = hashlib.sha256()
            with self._fs().open(self.path(rel)) as fin, open(tmp, "wb") as out:
                while chunk := fin.read(8 << 20):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != sha256:
                raise ValueError(f"{self.path(rel)}: sha256 {digest.hexdigest()[:12]}... differs from the "
                                 f"{sha256[:12]}... recorded for it: the file changed since")

        publish_local(dest, fetch)
        return dest


def _share_s3_clients() -> None:
    """Make Beam's S3 filesystem reuse one boto3 client per process and set of options.

    Beam builds a new boto3 client for every operation (each HEAD, listing and upload), and
    botocore parses its service model anew for each: 0.2-0.6 s on a busy two-core machine, ten
    times the request itself against a local server, and most of the time an S3 conversion
    took. boto3 clients are thread-safe and meant to be shared; Beam's wrapper around one keeps
    the state of a read in progress, so every operation still gets a wrapper of its own, around
    the shared client. Installed once, in each process that opens an ``s3://`` store (a
    pipeline's workers among them: they open the store to write episodes).
    """
    from apache_beam.io.aws.clients.s3 import boto3_client

    if getattr(boto3_client.Client, "shares_clients", False):
        return
    lock = threading.Lock()
    made: dict[int, tuple[object, dict]] = {}  # id(options) -> (options, a new wrapper's attributes)

    class SharingClient(boto3_client.Client):
        shares_clients = True

        def __init__(self, options):
            with lock:
                first = made.get(id(options))
                if first is None or first[0] is not options:
                    super().__init__(options)
                    made[id(options)] = (options, dict(vars(self)))
                    return
            self.__dict__.update(first[1])

    boto3_client.Client = SharingClient


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a missing parent package; a module set to None in sys.modules
        return False
