"""Sections a store's and a manifest's report share: what curation removed, and frames to look at.

Both reports describe episodes the same way (:class:`Curated`): their kept ranges and, where the
store's curation table is at hand, their removed ranges with reason codes. The store report reads
both from ``curation.parquet``; the manifest report reads the kept ranges from its own table and
the reasons from the stores it was built from.
"""

from __future__ import annotations

import base64
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from pipelines.episode_store.reader import EpisodeReader
from pipelines.report import charts
from pipelines.report.page import Chart, Cited, Note, Sample, Section, Strip, Table, count, fraction, percent

#: episodes listed (and drawn) as the worst curated
WORST = 10
#: frames drawn per group, and cameras shown per frame
SAMPLES = 6
MAX_CAMERAS = 4


@dataclass(frozen=True)
class Curated:
    """One kept episode as a report sees it."""

    episode_id: str
    group: str
    frames: int
    kept: list[tuple[int, int]]
    #: (start, stop, reason); None where no curation table tells why frames are missing
    removed: list[tuple[int, int, str]] | None
    #: None where the store holding it was not given
    episode_file: Path | None
    #: the files ``kept`` and ``removed`` were read from
    kept_file: Path
    removed_file: Path | None

    @property
    def frames_kept(self) -> int:
        return sum(b - a for a, b in self.kept)

    def removed_by_reason(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for start, stop, reason in self.removed or []:
            out[reason] += stop - start
        return dict(sorted(out.items()))


def _grouped(episodes: list[Curated]) -> dict[str, list[Curated]]:
    groups: dict[str, list[Curated]] = defaultdict(list)
    for e in sorted(episodes, key=lambda e: (e.group, e.episode_id)):
        groups[e.group].append(e)
    return dict(groups)


def curation_section(episodes: list[Curated], intro: str) -> Section:
    """Kept and removed frames per group (table and chart) and the kept episodes curation cut most."""
    section = Section("Curation: what was removed from kept episodes", "curation", intro)
    if not episodes:
        section.blocks.append(Note("No kept episodes."))
        return section
    groups = _grouped(episodes)
    reasons = sorted({r for e in episodes for r in e.removed_by_reason()})
    rows, bars = [], []
    for label, members in groups.items():
        frames = sum(e.frames for e in members)
        kept = sum(e.frames_kept for e in members)
        removed: dict[str, int] = defaultdict(int)
        for e in members:
            for r, n in e.removed_by_reason().items():
                removed[r] += n
        first = members[0]
        known = first.removed_file is not None
        rows.append([label, count(len(members)),
                     Cited(count(frames), first.kept_file, f"frames of the {label} episodes"),
                     Cited(count(kept), first.kept_file, f"kept ranges of the {label} episodes"),
                     Cited(percent(fraction(kept, frames)), first.kept_file, "kept frames / frames"),
                     *(Cited(percent(fraction(removed.get(r, 0), frames)), first.removed_file,
                             f"removed ranges with reason {r}") if known else "n/a" for r in reasons)])
        bars.append((label, frames, kept, dict(removed) if known else {"unknown": frames - kept}))
    section.blocks.append(Table(["group", "episodes", "frames", "kept frames", "kept", *(f"removed: {r}"
                                                                                          for r in reasons)],
                                rows, "lrrrr" + "r" * len(reasons), "curation-groups"))
    section.blocks.append(Chart(charts.kept_and_removed(bars, "Frames kept and removed, by reason"),
                                "frames kept and removed per group, by reason"))
    worst = sorted((e for e in episodes if e.frames_kept < e.frames), key=lambda e: (e.frames_kept / e.frames,
                                                                                     e.episode_id))[:WORST]
    if not worst:
        section.blocks.append(Note("Curation removed no frame from a kept episode."))
        return section
    section.blocks.append(Table(
        ["episode", "group", "frames", "kept frames", "kept", "removed"],
        [[Cited(e.episode_id, e.episode_file, "the episode file") if e.episode_file else e.episode_id, e.group,
          count(e.frames),
          Cited(count(e.frames_kept), e.kept_file, f"kept ranges of {e.episode_id}"),
          percent(fraction(e.frames_kept, e.frames)),
          ", ".join(f"{r} {n}" for r, n in e.removed_by_reason().items()) if e.removed is not None else "n/a"]
         for e in worst],
        "llrrrl", "curation-worst", caption=f"The {len(worst)} kept episodes with the smallest share of frames kept."))
    section.blocks.append(Chart(charts.episode_ranges(
        [(e.episode_id, e.frames, _spans(e)) for e in worst], "Kept and removed frame ranges of those episodes"),
        "kept and removed frame ranges of the worst curated episodes"))
    return section


def _spans(e: Curated) -> list[tuple[int, int, str]]:
    spans = [(a, b, charts.KEPT) for a, b in e.kept]
    if e.removed is not None:
        return sorted(spans + list(e.removed))
    gaps, previous = [], 0
    for a, b in e.kept + [(e.frames, e.frames)]:
        if a > previous:
            gaps.append((previous, a, "unknown"))
        previous = b
    return sorted(spans + gaps)


def frames_section(episodes: list[Curated], intro: str) -> Section:
    """A strip of frames per group, drawn evenly over the group's kept frames (in episode-id order), so
    the strip shows what training reads, not what curation cut."""
    section = Section("Frames", "frames", intro)
    for label, members in _grouped(episodes).items():
        total = sum(e.frames_kept for e in members)
        if not total:
            continue
        picks = [int((i + 0.5) * total / SAMPLES) for i in range(min(SAMPLES, total))]
        located = []
        for e in members:
            for a, b in e.kept:
                while picks and picks[0] < b - a:
                    located.append((e, a + picks.pop(0)))
                picks = [p - (b - a) for p in picks]
        samples, cameras = [], set()
        for e, frame in located:
            with EpisodeReader(e.episode_file) as ep:
                images = {c: "data:image/jpeg;base64," + base64.b64encode(ep.encoded_frame(c, frame)).decode("ascii")
                          for c in ep.cameras[:MAX_CAMERAS]}
            cameras.update(images)
            samples.append(Sample(e.episode_id, frame, images))
        section.blocks.append(Strip(label, sorted(cameras), samples))
    if not section.blocks:
        section.blocks.append(Note("No kept frames to show."))
    return section
