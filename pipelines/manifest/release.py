"""The files derived from a manifest's table and manifest.json, for people and catalogues.

They carry no information of their own: ``verify`` regenerates them and compares them, so an
edited card or plot cannot misdescribe the checksummed table. The card and the Croissant file
are compared byte for byte (this project writes every byte of them). The plot is compared by
what it says (``plot_labels``: its names and percentages), not by its bytes, which another
matplotlib draws differently from the same numbers.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from converters.base import cards_for  # the cards are data: no converter is imported
from pipelines.manifest.card import composition_svg, manifest_card
from pipelines.manifest.croissant import write_croissant
from pipelines.manifest.format import CARD_FILE, CROISSANT_FILE, PLOT_FILE


def renderer_version() -> str:
    """The plot's bytes depend on matplotlib's version, so the manifest records it."""
    import matplotlib

    return f"matplotlib {matplotlib.__version__}"


#: axis tick labels ("0%", "20%"): matplotlib's locator picks them, so they are not the data
_TICK = re.compile(r"\d+%")


def plot_labels(svg: str) -> list[str]:
    """What the composition plot tells a reader, sorted: the title, the datasets, the embodiments
    and every share it prints (as text: the plot keeps its labels as SVG ``<text>``); axis ticks left
    out. A plot that is not SVG raises ``ValueError``."""
    try:
        root = ElementTree.fromstring(svg.encode("utf-8"))
    except ElementTree.ParseError as exc:
        raise ValueError(f"not an SVG document: {exc}") from exc
    texts = ("".join(e.itertext()).strip() for e in root.iter("{http://www.w3.org/2000/svg}text"))
    return sorted(t for t in texts if t and not _TICK.fullmatch(t))


def write_derived_files(out_dir: Path, manifest: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    out_dir = Path(out_dir)
    cards = cards_for({r["dataset"] for r in rows})
    write_croissant(out_dir / CROISSANT_FILE, manifest, rows, cards)
    (out_dir / CARD_FILE).write_text(manifest_card(manifest, rows, cards), encoding="utf-8")
    (out_dir / PLOT_FILE).write_text(composition_svg(manifest, rows), encoding="utf-8")

