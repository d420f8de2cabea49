"""The converter interface: declare a source, find its episodes, read one into an :class:`Episode`.

A converter is "declare the schema + yield episodes" (the TFDS builder idea): the
parallel machinery, curation, writing, resume and reporting live once in
``pipelines/convert.py``. To add a source, subclass :class:`Converter` in one
module under ``converters/`` and decorate it with :func:`converters.register`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

from pipelines.episode_store.errors import EpisodeError, Reason
from pipelines.episode_store.record import MAX_ABS_VALUE, Episode, check_episode

EpisodeOpener = Callable[[], AbstractContextManager[Episode]]


@dataclass(frozen=True)
class SourceCard:
    """What a released training manifest states about one source (its "source card").

    A released manifest (the Croissant JSON-LD file's Responsible-AI fields and the
    human-readable MANIFEST.md) must state, per source, its license, how the data was
    collected and its known biases and limitations. The card holds those facts next to
    the converter that reads the source, so they are reviewed together. Nothing is
    invented: a fact that is not known is written ``"unknown"`` (or ``""`` for an absent
    url or citation), and a fact that could not be checked is listed in ``unverified``.
    """

    #: the dataset's public name, e.g. ``"DROID"``
    title: str
    #: homepage or canonical dataset page; ``""`` if unknown
    url: str
    #: SPDX id (``"CC-BY-4.0"``, ``"Apache-2.0"``, ...) or ``"unknown"``
    license: str
    #: paper title + arXiv id or venue, short; ``""`` if none
    citation: str
    #: one paragraph: robots, teleoperation device, scenes, scale
    collection: str
    #: e.g. ``("Teleoperation", "Real-world robot demonstrations")``
    collection_type: tuple[str, ...]
    #: known biases: lab/scene concentration, success-only demos, task skew, single robot family...
    biases: tuple[str, ...]
    #: known limitations and quirks that matter to training
    limitations: tuple[str, ...]
    #: personal information the data may contain, only what is known or likely (and said so)
    personal_information: tuple[str, ...]
    #: facts on this card that could not be verified
    unverified: tuple[str, ...] = ()

    @classmethod
    def load(cls, dataset: str) -> SourceCard:
        """The card of ``dataset`` from ``converters/cards/<dataset>.yaml``.

        Cards are data: a released manifest reads its datasets' cards without importing any
        converter (``cards_for``), and a dataset recorded in another source's layout (the
        Meta-World demonstrations, read by the in-house converter) has a card of its own.
        """
        import yaml

        path = CARDS_DIR / f"{dataset}.yaml"
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML ({exc})") from exc
        fields = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(doc, dict) or set(doc) - fields:
            raise ValueError(f"{path}: a source card is a mapping of {sorted(fields)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in doc.items()})


#: one YAML source card per dataset (``SourceCard.load``)
CARDS_DIR = Path(__file__).resolve().parent / "cards"


def cards_for(datasets) -> dict[str, SourceCard | None]:
    """Each dataset's card; None where the dataset has none (a manifest states it as missing)."""
    return {d: SourceCard.load(d) if (CARDS_DIR / f"{d}.yaml").is_file() else None for d in sorted(datasets)}


class Converter(ABC):
    """Base class of every source converter.

    Work is split into *units* (a file, a folder, a TFRecord shard): ``discover``
    lists them and ``episodes(unit)`` yields ``(source_episode, opener)`` pairs.
    Most sources have one episode per unit and only implement ``discover`` and
    ``open_episode``. ``source_episode`` is the episode's path or id *relative to
    the input root*; the stable episode id is derived from it, so moving the root
    does not change ids.
    """

    #: registry key, e.g. ``"inhouse"``
    name: ClassVar[str]
    #: version of the source release this converter reads
    source_version: ClassVar[str]
    #: bump whenever the output for the same input changes
    converter_version: ClassVar[str]
    #: the dataset name episodes are stamped with; None: the converter's own name. Set on an instance
    #: when another dataset is recorded in this converter's layout (Meta-World demonstrations in the
    #: in-house layout: ``sources.<name>.converter``)
    dataset_name: str | None = None
    #: the plausibility bound every state and action value is checked against (``implausible_values``);
    #: set on an instance from ``convert.max_abs_value`` for a source with larger raw units
    max_abs_value: float = MAX_ABS_VALUE
    #: embodiment ids this converter can produce
    embodiments: ClassVar[tuple[str, ...]]
    #: nominal control frequency (Hz); per-episode values may override it
    control_hz: ClassVar[float]
    #: hard physical ranges the source guarantees, {embodiment: {dimension name: (low, high)}};
    #: curation quarantines an episode outside them (``physical_range``); params.yaml may add more
    physical_limits: ClassVar[dict[str, dict[str, tuple[float, float]]]] = {}
    #: license, collection method, biases and limitations stated in released manifests
    card: ClassVar[SourceCard]

    def __init__(self, root: str | Path, options: dict[str, Any] | None = None):
        self.root = Path(root)
        self.options = dict(options or {})

    @abstractmethod
    def discover(self) -> list[str]:
        """Return the work units under ``root``, sorted, so every run sees the same order."""

    def episodes(self, unit: str) -> Iterator[tuple[str, EpisodeOpener]]:
        """Yield ``(source_episode, opener)`` for each episode of a unit (default: one)."""
        yield unit, lambda: self.open_episode(unit)

    def open_episode(self, source_episode: str) -> AbstractContextManager[Episode]:
        """Open one episode; the context keeps source files open while frames stream."""
        raise NotImplementedError(f"{type(self).__name__} must implement open_episode or episodes")

    @contextlib.contextmanager
    def read(self, opener: EpisodeOpener) -> Iterator[Episode]:
        """Open an episode, stamp the source identity on it and check the format invariants."""
        with opener() as episode:
            episode.source = self.dataset_name or self.name
            episode.converter = self.name
            # A converter reading several releases sets the one each episode came from.
            episode.source_version = episode.source_version or self.source_version
            episode.converter_version = self.converter_version
            check_episode(episode, max_abs_value=self.max_abs_value)
            yield episode

    # Helpers shared by converters -------------------------------------------------

    def require(self, mapping: Any, key: str, where: str) -> Any:
        """``mapping[key]`` or a ``missing_key`` error naming the episode and key."""
        try:
            return mapping[key]
        except (KeyError, TypeError) as exc:
            raise EpisodeError(Reason.MISSING_KEY, f"{where}: missing '{key}'") from exc


def episode_file(root: Path, rel: str) -> Path:
    """The regular file ``root / rel`` that discovery listed as an episode, or the reason it is not one.

    Discovery lists every path named like an episode, so nothing under the root disappears from a
    run's report: a dangling symbolic link or a vanished file is ``missing_file`` (naming the link's
    target), and a directory or other non-regular file under an episode's name is ``corrupt_file``.
    """
    path = _present(root, rel, "file")
    if not path.is_file():
        kind = "a directory" if path.is_dir() else "not a regular file"
        raise EpisodeError(Reason.CORRUPT_FILE, f"{rel}: {kind} where an episode file should be")
    return path


def episode_folder(root: Path, rel: str) -> Path:
    """The directory ``root / rel`` that discovery listed as an episode folder, or the reason it is
    not one: a dangling link or a vanished folder is ``missing_file``, a file where the folder should
    be is ``corrupt_file`` (the folder-per-episode counterpart of :func:`episode_file`)."""
    path = _present(root, rel, "episode folder")
    if not path.is_dir():
        raise EpisodeError(Reason.CORRUPT_FILE, f"{rel}: not a directory where an episode folder should be")
    return path


def _present(root: Path, rel: str, what: str) -> Path:
    """``root / rel``, or ``missing_file`` naming a dangling link's target or the path not found."""
    path = root / rel
    if is_dangling_link(path):
        raise EpisodeError(Reason.MISSING_FILE, f"{rel}: a symbolic link to {os.readlink(path)}, which does not exist")
    if not path.exists():
        raise EpisodeError(Reason.MISSING_FILE, f"{rel}: {what} not found ({path})")
    return path


def is_dangling_link(entry: os.DirEntry | Path) -> bool:
    """A symbolic link whose target does not exist: discovery lists it under the name it has (it is
    not a directory, and not a file), so the episode it stood for gets a ``missing_file`` outcome."""
    path = Path(entry.path) if isinstance(entry, os.DirEntry) else entry
    return path.is_symlink() and not path.exists()


def relative_inside(rel: str, where: str) -> str:
    """``rel`` (a path built from a source's metadata) if it stays inside the folder it is joined to.

    Metadata is data, and data can be wrong or hostile: an absolute path, or a ``..`` that climbs
    out (a camera serial of ``../../etc/x``, a LeRobot path template with ``..``), would make a
    converter read files outside its input root. Checked lexically, so a symbolic link the user
    put inside the root still works. Raises ``invalid_metadata``.
    """
    text = str(rel).replace("\\", "/")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if text.startswith("/") or ".." in parts or not parts:
        raise EpisodeError(Reason.INVALID_METADATA, f"{where}: path {str(rel)!r} from the metadata leads outside the "
                                                    "source's folder")
    return "/".join(parts)
