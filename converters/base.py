"""The converter interface: declare a source, find its episodes, read one into an :class:`Episode`.

A converter is "declare the schema + yield episodes" (the TFDS builder idea): the
parallel machinery, curation, writing, resume and reporting live once in
``pipelines/convert/``. To add a source, subclass :class:`Converter` in one
module under ``converters/`` and decorate it with :func:`converters.register`; its
options are a frozen dataclass that :func:`parse_options` builds from ``params.yaml``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import re
import types
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, ClassVar, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

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


# Converter options ------------------------------------------------------------------

OptionsT = TypeVar("OptionsT")

#: the ``field(metadata=...)`` key :func:`option` keeps a field's :class:`Rule` under
_RULE = "a1pipe.option_rule"


@dataclass(frozen=True)
class Rule:
    """A constraint on a value beyond its type; every bound given must hold (NaN fails every bound).

    ``choices``: the allowed values, for a set owned by a table (``tuple(ACTION_CHOICES)``); a
    fixed set of spellings reads better as ``Literal[...]``. ``ge``/``gt``/``le``/``lt``: bounds
    on a number (``lt=math.inf`` says "finite"). ``nonempty``: a string with a non-space
    character, a list or mapping with an item. ``pattern``: a regular expression the whole
    string must match.
    """

    choices: tuple[Any, ...] | None = None
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    nonempty: bool = False
    pattern: str | None = None

    def holds(self, value: Any) -> bool:
        """Does ``value``, already of the annotated type, keep every part of this rule?"""
        if self.choices is not None and value not in self.choices:
            return False
        # written as "not (value >= bound)" so that NaN, for which every comparison is false, fails
        for bound, ok in ((self.ge, lambda b: value >= b), (self.gt, lambda b: value > b),
                          (self.le, lambda b: value <= b), (self.lt, lambda b: value < b)):
            if bound is not None and not ok(bound):
                return False
        if self.nonempty and not (value.strip() if isinstance(value, str) else len(value)):
            return False
        return self.pattern is None or re.fullmatch(self.pattern, value) is not None

    def describe(self, base: str) -> str:
        """``base`` (the type in words, with its article) narrowed by this rule."""
        if self.choices is not None:
            base = "one of " + ", ".join(repr(c) for c in self.choices)
        if self.nonempty:
            base = "a non-empty " + base.removeprefix("a ").removeprefix("an ")
        bounds = [f"{op} {b}" for op, b in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
                  if b is not None]
        if bounds:
            base += " " + " and ".join(bounds)
        if self.pattern is not None:
            base += f" matching the pattern {self.pattern}"
        return base


def option(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING, **rule: Any) -> Any:
    """A dataclass field whose value must also satisfy ``Rule(**rule)``: ``x: int = option(1, ge=1)``."""
    return dataclasses.field(default=default, default_factory=default_factory, metadata={_RULE: Rule(**rule)})


@dataclass(frozen=True)
class NoOptions:
    """The options of a converter that takes none: any key is unknown."""


def parse_options(options_type: type[OptionsT], given: Mapping[str, Any] | None, *, source: str) -> OptionsT:
    """``options_type`` built from ``given`` (a source's ``params.yaml`` options; None: empty), or a
    ``ValueError`` naming ``source``, the key, what it must be and the value given.

    Every converter declares its options as a frozen dataclass (``Converter.options_type``): the
    fields are the keys its ``sources.<name>.options`` may hold, their annotations the values each
    accepts, their defaults what a key left out means. One validator reads them all, so every
    source refuses the same mistakes the same way:

    * a key that is no field (the message lists the known ones);
    * a value of the wrong type. ``bool`` is neither ``int`` nor ``float`` (YAML's ``true`` is not
      a count); an ``int`` is a ``float`` (and stored as one); a list or tuple is a ``tuple[...]``
      (stored as a tuple); ``None`` only where the annotation says ``| None``;
    * a value that breaks its :class:`Rule` (choices, a range, not empty, a pattern): on the field,
      given with :func:`option`; on an item inside a container (each camera name, each mapping
      key) as ``Annotated[type, Rule(...)]``. A field's rule on ``X | None`` applies to ``X``.

    Annotations understood: ``bool``, ``int``, ``float``, ``str``, ``None``, ``Literal[...]``,
    unions, ``tuple[X, ...]``, ``tuple[X, Y]``, ``dict[K, V]``, ``Annotated[X, Rule]``; any other is
    a ``TypeError`` the first time the class is used, so no declaration goes unchecked. A condition
    relating fields, or one no rule says, is the dataclass's ``__post_init__``: it runs after every
    field has passed, and its ``ValueError`` is prefixed with the source like the others.

    Not pydantic, though the environment has it: it comes only through DVC (gto requires it), not
    as a dependency of this project, and would be a large import in every Beam worker for a few
    dozen scalar options. Its default (lax) mode accepts what must be refused here (``"yes"`` for a bool,
    ``"30"`` for a number), its strict mode refuses a YAML list for a tuple, and its messages would
    need rewriting to name the source. The handful of annotations above and four kinds of rule are
    plain ``dataclasses`` and ``typing`` introspection.
    """
    given = {} if given is None else given
    if not isinstance(given, Mapping):
        raise ValueError(f"{source}: options must be a mapping of option names to values, got {given!r}")
    schema = _schema(options_type)
    unknown = sorted((k for k in given if k not in schema), key=str)
    if unknown:
        raise ValueError(f"{source}: unknown option(s) {unknown}; known: {sorted(schema)}")
    try:
        return options_type(**{key: check_value(schema[key], value, f"option {key}") for key, value in given.items()})
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None


def check_value(tp: Any, value: Any, where: str) -> Any:
    """``value`` as the annotation ``tp`` asks (an int widened to float, a list made a tuple, a mapping
    copied), or a ``ValueError``: ``<where> must be <tp in words>, got <value>``. Also for data read
    from a file an option names (a table of texts), so it is held to the same rules."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        if not _same_kind(args[0], value):  # named with its rule: "an integer >= 0", not "an integer"
            raise _mismatch(tp, value, where)
        out = check_value(args[0], value, where)
        if not all(r.holds(out) for r in tp.__metadata__ if isinstance(r, Rule)):
            raise _mismatch(tp, value, where)
        return out
    if origin is Union or origin is types.UnionType:
        candidates = [a for a in args if _same_kind(a, value)]
        if not candidates:
            raise _mismatch(tp, value, where)
        first_error = None
        for member in candidates:
            try:
                return check_value(member, value, where)
            except ValueError as exc:
                first_error = first_error or exc
        raise first_error
    if not _same_kind(tp, value):
        raise _mismatch(tp, value, where)
    if origin is Literal:
        return value
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(check_value(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise _mismatch(tp, value, where)
        return tuple(check_value(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict:
        return {check_value(args[0], k, f"{where} key {k!r}"): check_value(args[1], v, f"{where}[{k!r}]")
                for k, v in value.items()}
    return float(value) if tp is float else value


def _describe(tp: Any) -> str:
    """The annotation ``tp`` in words, as messages give it; ``TypeError`` for one the validator lacks."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        text = _describe(args[0])
        for rule in tp.__metadata__:
            if isinstance(rule, Rule):
                text = rule.describe(text)
        return text
    if origin is Union or origin is types.UnionType:
        return " or ".join(_describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list [{_describe(args[0])}, ...]"
        return f"a list of {len(args)} [{', '.join(_describe(a) for a in args)}]"
    if origin is dict:
        return f"a mapping {{{_describe(args[0])}: {_describe(args[1])}}}"
    if tp in _SCALARS:
        return _SCALARS[tp][1]
    raise TypeError(f"option annotation {tp!r} is not one the options validator understands")


#: scalar annotation -> (is this value of it, its name in messages); bool is not a number here
_SCALARS: dict[Any, tuple[Any, str]] = {
    bool: (lambda v: isinstance(v, bool), "true or false"),
    int: (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    float: (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
    str: (lambda v: isinstance(v, str), "a string"),
    type(None): (lambda v: v is None, "null"),
}


def _same_kind(tp: Any, value: Any) -> bool:
    """Is ``value`` the kind of thing ``tp`` holds (its items and rules not yet looked at)? Chooses the
    member of a union a value is checked against, so the message names that member's rule."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        return _same_kind(args[0], value)
    if origin is Union or origin is types.UnionType:
        return any(_same_kind(a, value) for a in args)
    if origin is Literal:  # compared by type too: True == 1, but true is not the choice 1
        return any(type(value) is type(a) and value == a for a in args)
    if origin is tuple:
        return isinstance(value, (list, tuple))
    if origin is dict:
        return isinstance(value, Mapping)
    return _SCALARS[tp][0](value)


def _mismatch(tp: Any, value: Any, where: str) -> ValueError:
    return ValueError(f"{where} must be {_describe(tp)}, got {value!r}")


@functools.cache
def _schema(options_type: type) -> dict[str, Any]:
    """Field name -> its annotation with the field's :class:`Rule` folded in, each checked once to be
    one the validator understands (a mistyped declaration fails on first use, not when first set)."""
    if not (dataclasses.is_dataclass(options_type) and options_type.__dataclass_params__.frozen):
        raise TypeError(f"{options_type.__name__}: converter options are a frozen dataclass")
    hints = get_type_hints(options_type, include_extras=True)
    schema = {}
    for f in dataclasses.fields(options_type):
        if not f.init:
            continue
        tp = hints[f.name]
        if _RULE in f.metadata:
            tp = _with_rule(tp, f.metadata[_RULE])
        _describe(tp)
        schema[f.name] = tp
    return schema


def _with_rule(tp: Any, rule: Rule) -> Any:
    """``tp`` narrowed by a field's rule; for ``X | None`` the rule is on ``X`` (None stays "not set")."""
    if get_origin(tp) in (Union, types.UnionType) and type(None) in get_args(tp):
        rest = tuple(a for a in get_args(tp) if a is not type(None))
        return Union[Annotated[Union[rest], rule], None]
    return Annotated[tp, rule]


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
    #: the frozen dataclass of what ``sources.<name>.options`` may set (:func:`parse_options`)
    options_type: ClassVar[type] = NoOptions

    def __init__(self, root: str | Path, options: dict[str, Any] | None = None):
        self.root = Path(root)
        #: an ``options_type`` instance; a bad key or value fails here, before any work is listed
        self.options = parse_options(self.options_type, options, source=self.name)

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
