"""The report's charts, drawn with matplotlib as SVG and embedded as ``data:`` URIs.

The SVG is byte-deterministic for a given matplotlib (no date, a fixed id salt, text kept as
text, the caller's settings ignored), so ``dvc repro`` writes the same report from the same
stores. Every figure is its own document inside an ``<img>``: two inline SVGs on one page would
share matplotlib's element ids. A reason code has the same colour in every chart of every page.
"""

from __future__ import annotations

import base64
import io
from typing import Any

from pipelines.curation_rules import CurationReason

#: what a kept frame range is called in charts and in ``a1pipe view``'s curation lane
KEPT = "kept"
_KEPT_COLOUR = "#4caf50"
#: tab10 without its green, which means "kept"
_PALETTE = ("#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#1f77b4", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
_RC = {"svg.hashsalt": "a1pipe-report", "svg.fonttype": "none", "font.family": "DejaVu Sans", "font.size": 8.0}


def reason_colour(reason: str) -> str:
    """Fixed per code (the order of ``CurationReason``), so a reason looks the same on every page."""
    if reason == KEPT:
        return _KEPT_COLOUR
    codes = [str(r) for r in CurationReason]
    index = codes.index(reason) if reason in codes else len(codes) + sum(map(ord, reason))
    return _PALETTE[index % len(_PALETTE)]


def _svg_uri(fig: Any, title: str) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Title": title})
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue().encode("utf-8")).decode("ascii")


def _figure(rows: int, labels: list[str]) -> Any:
    """A figure sized to its rows, with margins fixed from the label lengths: matplotlib's layout engines
    measure every text several times, which doubled the cost of a report."""
    from matplotlib.figure import Figure

    width, height = 9.0, 1.3 + 0.3 * rows
    left = min(0.2 + 0.062 * max(map(len, labels), default=4), 4.0)
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=left / width, right=1 - 0.2 / width, top=1 - 0.35 / height, bottom=0.8 / height)
    return fig


def _legend(fig: Any, keys: list[str]) -> None:
    from matplotlib.patches import Patch

    fig.legend([Patch(facecolor=reason_colour(k)) for k in keys], keys, loc="lower center", ncol=min(len(keys), 6) or 1,
               fontsize=7, frameon=False)


def kept_and_removed(groups: list[tuple[str, int, int, dict[str, int]]], title: str) -> str:
    """One stacked bar per group: the fraction of its frames kept, then removed by each reason.

    ``groups``: (label, frames in, frames kept, {reason: frames removed}).
    """
    import matplotlib as mpl
    import matplotlib.style
    from matplotlib.ticker import PercentFormatter

    reasons = sorted({r for _, _, _, removed in groups for r in removed})
    with mpl.style.context("default"), mpl.rc_context(_RC):
        fig = _figure(len(groups), [g[0] for g in groups])
        ax = fig.subplots()
        for y, (_, frames_in, kept, removed) in enumerate(groups):
            left = 0.0
            for key, frames in [(KEPT, kept), *((r, removed.get(r, 0)) for r in reasons)]:
                width = frames / frames_in if frames_in else 0.0
                if width:
                    ax.barh(y, width, left=left, height=0.7, color=reason_colour(key), edgecolor="white",
                            linewidth=0.5)
                left += width
        ax.set_yticks(range(len(groups)), [g[0] for g in groups])
        ax.set_ylim(len(groups) - 0.5, -0.5)
        ax.set_xlim(0, 1)
        ax.xaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
        ax.set_xlabel("share of the group's frames")
        ax.set_title(title, fontsize=9)
        _legend(fig, [KEPT, *reasons])
        return _svg_uri(fig, title)


def episode_ranges(episodes: list[tuple[str, int, list[tuple[int, int, str]]]], title: str) -> str:
    """Each episode's frames as a bar, coloured by what curation did with each range.

    ``episodes``: (label, frames, [(start, stop, "kept" or a reason code)]).
    """
    import matplotlib as mpl
    import matplotlib.style

    keys = sorted({k for _, _, spans in episodes for _, _, k in spans}, key=lambda k: (k != KEPT, k))
    with mpl.style.context("default"), mpl.rc_context(_RC):
        fig = _figure(len(episodes), [e[0] for e in episodes])
        ax = fig.subplots()
        for y, (_, _, spans) in enumerate(episodes):
            ax.broken_barh([(start, stop - start) for start, stop, _ in spans], (y - 0.35, 0.7),
                           facecolors=[reason_colour(key) for _, _, key in spans], edgecolor="white", linewidth=0.5)
        ax.set_yticks(range(len(episodes)), [e[0] for e in episodes])
        ax.set_ylim(len(episodes) - 0.5, -0.5)
        ax.set_xlim(0, max([n for _, n, _ in episodes] or [1]))
        ax.set_xlabel("frame")
        ax.set_title(title, fontsize=9)
        _legend(fig, keys)
        return _svg_uri(fig, title)
