"""Readable summaries for ``a1pipe inspect``: what is in a store, and what is in one episode."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from pipelines.episode_store.layout import (
    CURATION_FILE,
    CURATION_REPORT_FILE,
    INDEX_FILE,
    REPORT_FILE,
    episode_relpath,
)
from pipelines.episode_store.reader import EpisodeStore
from pipelines.episode_store.schema import (
    ACTION,
    STATE,
    CameraKey,
    CameraSourceKey,
    ConverterKey,
    LanguageKey,
    MetaKey,
    SourceKey,
    extra_array,
)


def describe_store(root: str | Path) -> str:
    """A store's summary: from its index and reports only, which is all that is downloaded of a
    store on object storage."""
    with EpisodeStore.staged(root, INDEX_FILE, REPORT_FILE, CURATION_REPORT_FILE) as store:
        return _describe_store(store)


def _describe_store(store: EpisodeStore) -> str:
    rows = store.index().to_pylist()
    lines = [f"store {store.location} (format v{store.info['format_version']})", f"  episodes: {len(rows)}"]
    lines.append(f"  frames:   {sum(r['num_frames'] for r in rows)}")
    lines.append(f"  size:     {sum(r['size_bytes'] for r in rows) / 1e6:.1f} MB")
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["source"], r["embodiment"])].append(r)
    lines.append("")
    lines.append(f"  {'source':<14} {'embodiment':<22} {'episodes':>8} {'frames':>9} {'hz':>6}  cameras / action")
    for (source, emb), rs in sorted(groups.items()):
        cams = ",".join(sorted({c for r in rs for c in r["cameras"]}))
        hz = "/".join(f"{h:g}" for h in sorted({r["control_hz"] for r in rs}))
        kinds = ",".join(sorted({f"{r['action_kind']}[{r['action_dim']}]" for r in rs}))
        lines.append(f"  {source:<14} {emb:<22} {len(rs):>8} {sum(r['num_frames'] for r in rs):>9} {hz:>6}  {cams} / {kinds}")
    report_path = store.root / REPORT_FILE
    if report_path.is_file():
        report = json.loads(report_path.read_text())
        c = report["counts"]
        lines.append("")
        lines.append(
            f"  last conversion ({report['source']}): {c['converted']} converted, {c['quarantined']} quarantined, "
            f"{report['frames']} frames"
        )
        for e in report["episodes"]:
            if e["status"] == "quarantined":
                lines.append(f"    quarantined {e['source_episode']}: [{e['reason']}] {e['message']}")
    curation_path = store.root / CURATION_REPORT_FILE
    if curation_path.is_file():
        lines.append("")
        lines.append("  curation:")
        for source, entry in json.loads(curation_path.read_text())["sources"].items():
            t = entry["total"]
            lines.append(f"    {source}: {t['frames_kept']}/{t['frames_in']} frames kept ({t['kept_fraction']}), "
                         f"{t['episodes_kept']}/{t['episodes_in']} episodes; removed {t['frames_removed_by_reason']}; "
                         f"quarantined {t['quarantined_by_reason']}")
    instructions = Counter(r["instruction"] for r in rows)
    if instructions:
        lines.append("")
        lines.append("  instructions:")
        for text, n in instructions.most_common(10):
            lines.append(f"    {n:>5} x {text}")
    return "\n".join(lines)


def describe_episode(root: str | Path, episode_id: str) -> str:
    """One episode's summary: from its file and the store's curation table (what is downloaded of a
    store on object storage)."""
    with EpisodeStore.staged(root, episode_relpath(episode_id), CURATION_FILE) as store:
        return _describe_episode(store, episode_id)


def _describe_episode(store: EpisodeStore, episode_id: str) -> str:
    with store.open_episode(episode_id) as ep:
        m = ep.meta
        t = ep.timestamp
        source, language = m[MetaKey.SOURCE], m[MetaKey.LANGUAGE]
        lines = [
            f"episode {m[MetaKey.EPISODE_ID]}",
            f"  source:      {source[SourceKey.NAME]} {source[SourceKey.VERSION]}  ({source[SourceKey.EPISODE]})",
            f"  converter:   {m[MetaKey.CONVERTER][ConverterKey.VERSION]}",
            f"  embodiment:  {m[MetaKey.EMBODIMENT]} (robot {m[MetaKey.ROBOT_TYPE]}), {m[MetaKey.CONTROL_HZ]:g} Hz",
            f"  frames:      {m[MetaKey.NUM_FRAMES]} over {m[MetaKey.DURATION_S]:.2f} s, "
            f"timestamps {m[MetaKey.TIMESTAMP_ORIGIN]} [{t[0]:.3f} .. {t[-1]:.3f}]",
            f"  instruction: {language[LanguageKey.INSTRUCTION]!r}",
        ]
        for alt in language[LanguageKey.ALTERNATIVES]:
            lines.append(f"               {alt!r}")
        subtasks = ep.subtasks()
        if subtasks is not None:
            lines.append("  sub-tasks:")
            start = 0
            for i in range(1, len(subtasks) + 1):
                if i == len(subtasks) or subtasks[i] != subtasks[start]:
                    lines.append(f"    frames {start:>5}-{i - 1:<5} {subtasks[start] or '(none)'}")
                    start = i
        lines.append("  cameras:")
        for name, info in sorted(m[MetaKey.CAMERAS].items()):
            lines.append(
                f"    {name:<24} {info[CameraKey.HEIGHT]}x{info[CameraKey.WIDTH]} {info[CameraKey.ENCODING]} "
                f"q{info.get(CameraKey.QUALITY)} (source {info.get(CameraKey.SOURCE_HEIGHT)}x"
                f"{info.get(CameraKey.SOURCE_WIDTH)}, {info.get(CameraKey.RESIZE)})"
            )
            origin = info.get(CameraKey.SOURCE) or {}
            if origin:
                where = f" in {origin[CameraSourceKey.FILE]}" if origin.get(CameraSourceKey.FILE) else ""
                lines.append(f"    {'':<24} from the source's '{origin.get(CameraSourceKey.NAME) or name}'{where}")
        for label, arr, names in ((STATE, ep.state, m[MetaKey.STATE_NAMES]),
                                  (ACTION, ep.action, m[MetaKey.ACTION_NAMES])):
            extra = f" ({m[MetaKey.ACTION_KIND]})" if label == ACTION else ""
            lines.append(f"  {label}{extra}: {arr.shape[1]} dims")
            for j, name in enumerate(names):
                col = arr[:, j]
                lines.append(f"    {name:<28} min {col.min():>9.4f}  max {col.max():>9.4f}  mean {np.mean(col):>9.4f}")
        for key in m[MetaKey.EXTRAS]:
            lines.append(f"  extra {key}: shape {ep.group[extra_array(key)].shape}")
        if m[MetaKey.METADATA]:
            lines.append(f"  metadata: {json.dumps(m[MetaKey.METADATA], sort_keys=True)[:400]}")
    lines += _curation_lines(store.root, episode_id)
    return "\n".join(lines)


def _curation_lines(root: Path, episode_id: str) -> list[str]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = Path(root) / CURATION_FILE
    if not path.is_file():
        return ["  curation: none recorded"]
    table = pq.read_table(path)
    rows = table.filter(pc.equal(table["episode_id"], episode_id)).to_pylist()
    if not rows:
        return ["  curation: episode not in curation.parquet"]
    r = rows[0]
    head = f"  curation: {r['status']}" + (f" [{r['reason']}] {r['message']}" if r["reason"] else "")
    lines = [head + f"; {r['frames_kept']} of {r['frames_in']} frames kept"]
    spans = [(k["start"], k["stop"], "kept", "") for k in r["kept_ranges"]]
    spans += [(k["start"], k["stop"], f"removed: {k['reason']}", k["message"] or "") for k in r["removed_ranges"]]
    for start, stop, what, message in sorted(spans):
        lines.append(f"    frames {start:>5}-{stop - 1:<5} {what}" + (f" ({message})" if message else ""))
    return lines
