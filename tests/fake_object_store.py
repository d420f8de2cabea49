"""A Beam filesystem for the made-up scheme ``fakeobj://`` backed by a local directory.

Lets tests drive the object-storage code path (stage locally, upload finished
files, download to summarise on resume) without a cloud account. Only usable with
in-process runners (``workers=1``), where this registered subclass is visible.
"""

from __future__ import annotations

import os

from apache_beam.io.filesystem import FileMetadata, MatchResult
from apache_beam.io.localfilesystem import LocalFileSystem

PREFIX = "fakeobj://"


class FakeObjectStore(LocalFileSystem):
    root: str | None = None

    @classmethod
    def scheme(cls):
        return "fakeobj"

    def _local(self, path: str) -> str:
        if not path.startswith(PREFIX):  # LocalFileSystem's own helpers call back with local paths
            return path
        assert self.root is not None, "set FakeObjectStore.root first"
        return os.path.join(self.root, path[len(PREFIX):])

    def _remote(self, local: str) -> str:
        return PREFIX + os.path.relpath(local, self.root)

    def join(self, basepath, *paths):
        if not basepath.startswith(PREFIX):
            return super().join(basepath, *paths)
        return "/".join([basepath.rstrip("/"), *[p.strip("/") for p in paths]])

    def split(self, path):
        if not path.startswith(PREFIX):
            return super().split(path)
        head, _, tail = path.rstrip("/").rpartition("/")
        return head, tail

    def mkdirs(self, path):
        os.makedirs(self._local(path), exist_ok=True)

    def create(self, path, *args, **kwargs):
        os.makedirs(os.path.dirname(self._local(path)), exist_ok=True)
        return super().create(self._local(path), *args, **kwargs)

    def open(self, path, *args, **kwargs):
        return super().open(self._local(path), *args, **kwargs)

    def exists(self, path):
        return os.path.exists(self._local(path))

    def size(self, path):
        return super().size(self._local(path))

    def last_updated(self, path):
        return super().last_updated(self._local(path))

    def checksum(self, path):
        return super().checksum(self._local(path))

    def match(self, patterns, limits=None):
        results = super().match([self._local(p) for p in patterns], limits)
        return [
            MatchResult(pattern, [FileMetadata(self._remote(m.path) if pattern.startswith(PREFIX) else m.path,
                                               m.size_in_bytes, m.last_updated_in_seconds)
                                  for m in r.metadata_list])
            for pattern, r in zip(patterns, results)
        ]

    def delete(self, paths):
        super().delete([self._local(p) for p in paths])

    def rename(self, source_file_names, destination_file_names):
        for dst in destination_file_names:
            os.makedirs(os.path.dirname(self._local(dst)), exist_ok=True)
        super().rename([self._local(p) for p in source_file_names], [self._local(p) for p in destination_file_names])

    def copy(self, source_file_names, destination_file_names):
        super().copy([self._local(p) for p in source_file_names], [self._local(p) for p in destination_file_names])
