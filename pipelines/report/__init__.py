"""``a1pipe report``: static HTML pages an auditor opens before trusting a store or a manifest.

One page per store (``store-<name>.html``) and per manifest (``manifest-<name>.html``), and an
``index.html`` listing them. Each page is self-contained: charts (matplotlib SVG) and frames (the
stored JPEGs) are ``data:`` URIs and the style is inline, so nothing is fetched when it is viewed.
Its numbers link to the files they were read from, by paths relative to the page. The same inputs
give the same bytes (sorted content, deterministic SVG, no clock), so ``dvc repro`` reproduces
the reports it records.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pipelines.episode_store.layout import STORE_MARKER
from pipelines.manifest.format import MANIFEST_FILE
from pipelines.report.page import Page


def resolve_inputs(paths: Iterable[str | Path]) -> tuple[list[Path], list[Path]]:
    """(stores, manifests) named directly, or found one level under a directory (``data/converted``,
    ``manifests``); a path that is neither and holds neither is an error, not an empty report."""
    found: dict[str, set[Path]] = {"store": set(), "manifest": set()}
    for p in map(Path, paths):
        candidates = [p] if _kind(p) else sorted(c for c in p.iterdir() if _kind(c)) if p.is_dir() else []
        if not candidates:
            raise FileNotFoundError(f"{p}: not a store ({STORE_MARKER}) or a manifest ({MANIFEST_FILE}), "
                                    "and none under it")
        for c in candidates:
            found[_kind(c)].add(c)
    for kind, members in found.items():
        names = [m.name for m in members]
        if clash := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"two {kind}s share a directory name {clash}: their pages would have the same name")
    return (sorted(found["store"], key=lambda s: s.name), sorted(found["manifest"], key=lambda m: m.name))


def _kind(path: Path) -> str | None:
    if (path / STORE_MARKER).is_file():
        return "store"
    return "manifest" if (path / MANIFEST_FILE).is_file() else None


def write_reports(paths: Iterable[str | Path], out: str | Path, *, data: Iterable[str | Path] = ()) -> list[Path]:
    """Write a page for every store and manifest in ``paths`` and the index; returns the pages written.

    A manifest's stores are looked up by name among the stores in ``paths`` and ``data``.
    """
    from pipelines.report.manifest import manifest_page
    from pipelines.report.render import write_index, write_page
    from pipelines.report.store import store_page

    stores, manifests = resolve_inputs(paths)
    data = list(data)
    known = {s.name: s for s in (resolve_inputs(data)[0] if data else [])}
    known.update({s.name: s for s in stores})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pages: list[Page] = [store_page(s) for s in stores] + [manifest_page(m, known) for m in manifests]
    written = [write_page(page, out) for page in pages]
    written.append(write_index(pages, out))
    return written
