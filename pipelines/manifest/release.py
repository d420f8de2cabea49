"""The files derived from a manifest's table and manifest.json, for people and catalogues.

They carry no information of their own: ``verify`` regenerates them and compares bytes,
so an edited card or plot cannot misdescribe the checksummed table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CROISSANT_FILE = "croissant.json"
CARD_FILE = "MANIFEST.md"
PLOT_FILE = "composition.svg"
DERIVED_FILES = (CROISSANT_FILE, CARD_FILE, PLOT_FILE)


def renderer_version() -> str:
    """The plot's bytes depend on matplotlib's version, so the manifest records it."""
    import matplotlib

    return f"matplotlib {matplotlib.__version__}"


def source_cards(datasets: set[str]) -> dict[str, Any]:
    """Each dataset's SourceCard from its converter; None where there is none (stated as missing)."""
    from converters import get_converter

    cards: dict[str, Any] = {}
    for dataset in sorted(datasets):
        try:
            cards[dataset] = getattr(get_converter(dataset), "card", None)
        except (KeyError, ValueError, ImportError):
            cards[dataset] = None
    return cards


def write_derived_files(out_dir: Path, manifest: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    from pipelines.manifest.card import composition_svg, manifest_card
    from pipelines.manifest.croissant import write_croissant

    out_dir = Path(out_dir)
    cards = source_cards({r["dataset"] for r in rows})
    write_croissant(out_dir / CROISSANT_FILE, manifest, rows, cards)
    (out_dir / CARD_FILE).write_text(manifest_card(manifest, rows, cards), encoding="utf-8")
    (out_dir / PLOT_FILE).write_text(composition_svg(manifest, rows), encoding="utf-8")


def validate_croissant(path: Path) -> list[str]:
    from pipelines.manifest.croissant import validate_croissant as validate

    return validate(path)
