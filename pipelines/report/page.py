"""What a report page is made of: numbers that name their file, tables, charts, strips of frames.

The page builders (``store.py``, ``manifest.py``) produce these plain values and the template
(``templates/page.html.j2``) lays them out; neither knows the other's business. A number read
from a file is a :class:`Cited`, so the page links it to that file and says where in it the
number was read: an auditor follows the link instead of trusting the page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Cited:
    """A value shown on the page, the file it was read or counted from, and where in that file."""

    text: str
    file: Path
    where: str


Cell = str | Cited


@dataclass(frozen=True)
class Table:
    kind = "table"
    header: list[str]
    rows: list[list[Cell]]
    #: one letter per column: l(eft) or r(ight, numbers)
    align: str
    id: str
    caption: str = ""


@dataclass(frozen=True)
class Chart:
    """A figure as a ``data:`` URI (the page loads nothing at view time), and the file its numbers came from."""

    kind = "chart"
    uri: str
    alt: str
    source: Cited | None = None


@dataclass(frozen=True)
class Sample:
    episode_id: str
    frame: int
    #: camera -> ``data:`` URI of the stored JPEG, None where the episode lacks that camera
    images: dict[str, str | None]


@dataclass(frozen=True)
class Strip:
    """Frames drawn evenly over one group's kept frames: a row per camera, a column per sample."""

    kind = "strip"
    label: str
    cameras: list[str]
    samples: list[Sample]
    source: Cited | None = None


@dataclass(frozen=True)
class Note:
    kind = "note"
    text: str


Block = Table | Chart | Strip | Note


@dataclass
class Section:
    title: str
    id: str
    intro: str = ""
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Page:
    """One report: a store's or a manifest's, written to ``file_name`` in the output directory."""

    kind: str  # store | manifest
    name: str
    path: Path
    description: str
    #: headline numbers: (label, value, element id)
    stats: list[tuple[str, Cell, str]]
    sections: list[Section]

    @property
    def file_name(self) -> str:
        return f"{self.kind}-{self.name}.html"


def count(n: int) -> str:
    return str(int(n))


def percent(x: float | None) -> str:
    """Two decimals: enough to tell 99.99 % from all, and what the tests compare."""
    return "n/a" if x is None else f"{100 * x:.2f}%"


def fraction(part: int, whole: int) -> float | None:
    return part / whole if whole else None
