"""``a1pipe view``: one episode as a Rerun recording, for looking at it before trusting it.

LeRobot users open episodes in the Rerun viewer; this writes the same kind of recording from a
store, through its reader. Two timelines: ``frame`` (the frame index, the unit of curation ranges
and manifests) and ``time`` (seconds from the episode's first timestamp). The entities:

- ``cameras/<camera>``: every stored JPEG, handed to Rerun as it is (nothing is decoded or
  re-encoded, so what the viewer shows is what training reads);
- ``state/<dimension>``, ``action/<dimension>``: one named scalar series per dimension;
- ``language/instruction`` (static text) and ``language/subtask`` (a lane that changes where the
  sub-task changes);
- ``curation``: a lane that is ``kept`` or ``removed: <reason code>`` over each frame range the
  store's ``curation.parquet`` records, so an idle prefix that curation cut is visible at a
  glance next to the images and signals it was cut from;
- ``episode``: the identity, provenance and curation decision as one static text.

:data:`ENTITIES` names the layout once; the viewer blueprint and the tests read it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.episode_store.layout import CURATION_FILE
from pipelines.episode_store.reader import EpisodeReader, EpisodeStore
from pipelines.report.charts import KEPT, reason_colour

if TYPE_CHECKING:
    import rerun as rr

APPLICATION_ID = "a1pipe"
FRAME_TIMELINE = "frame"
TIME_TIMELINE = "time"
#: entity path roots of a recording
ENTITIES = {"cameras": "cameras", "state": "state", "action": "action", "instruction": "language/instruction",
            "subtask": "language/subtask", "curation": "curation", "episode": "episode"}
#: frames sent to Rerun per batch: bounds memory on long episodes (a DROID episode has thousands)
_BLOCK = 256


def removed_state(reason: str) -> str:
    """The curation lane's value over a removed range: the reason code, as curation.parquet records it."""
    return f"removed: {reason}"


def episode_curation(store: EpisodeStore, episode_id: str) -> dict[str, Any] | None:
    """The episode's row of ``curation.parquet``, or None where the store records no curation for it."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = store.root / CURATION_FILE
    if not path.is_file():
        return None
    table = pq.read_table(path)
    rows = table.filter(pc.equal(table["episode_id"], episode_id)).to_pylist()
    return rows[0] if rows else None


def curation_spans(curation: dict[str, Any]) -> list[tuple[int, int, str]]:
    """(start, stop, lane value) for every kept and removed range, in frame order."""
    spans = [(k["start"], k["stop"], KEPT) for k in curation["kept_ranges"]]
    spans += [(k["start"], k["stop"], removed_state(k["reason"])) for k in curation["removed_ranges"]]
    return sorted(spans)


def _entity(root: str, name: str) -> str:
    """``root/name`` with the name escaped: camera and dimension names are the sources' own."""
    import rerun as rr

    return f"{root}/{rr.escape_entity_path_part(name)}"


def _rgba(hex_colour: str) -> int:
    return int(hex_colour.lstrip("#"), 16) << 8 | 0xFF


def _blueprint(cameras: list[str], has_subtasks: bool) -> Any:
    import rerun.blueprint as rrb

    lanes = [ENTITIES["curation"]] + ([ENTITIES["subtask"]] if has_subtasks else [])
    return rrb.Blueprint(
        rrb.Horizontal(
            rrb.Grid(*[rrb.Spatial2DView(origin=_entity(ENTITIES["cameras"], c), name=c) for c in cameras]),
            rrb.Vertical(
                rrb.StateTimelineView(origin="/", contents=lanes, name="curation and sub-tasks"),
                rrb.TimeSeriesView(origin=ENTITIES["state"], name="state"),
                rrb.TimeSeriesView(origin=ENTITIES["action"], name="action"),
                rrb.Horizontal(rrb.TextDocumentView(origin=ENTITIES["instruction"], name="instruction"),
                               rrb.TextDocumentView(origin=ENTITIES["episode"], name="episode")),
                row_shares=[1, 2, 2, 1],
            ),
            column_shares=[1, 1],
        ),
        collapse_panels=True,
    )


def _episode_text(ep: EpisodeReader, curation: dict[str, Any] | None) -> str:
    m = ep.meta
    lines = [f"# {m['episode_id']}", "",
             f"- source: {m['source']['name']} {m['source']['version']}, episode `{m['source']['episode']}`",
             f"- embodiment: {m['embodiment']} (robot {m['robot_type']}), {m['control_hz']:g} Hz, "
             f"action {m['action_kind']}",
             f"- frames: {m['num_frames']} over {m['duration_s']:.2f} s (timestamps {m['timestamp_origin']})",
             f"- cameras: {', '.join(ep.cameras)}", ""]
    if curation is None:
        lines.append(f"No curation recorded ({CURATION_FILE} has no row for this episode).")
        return "\n".join(lines)
    status = curation["status"] + (f" ({curation['reason']}: {curation['message']})" if curation["reason"] else "")
    lines += [f"Curation: {status}; {curation['frames_kept']} of {curation['frames_in']} frames kept.", ""]
    for r in sorted(curation["removed_ranges"], key=lambda r: r["start"]):
        lines.append(f"- frames {r['start']}..{r['stop'] - 1} removed: {r['reason']}"
                     + (f" ({r['message']})" if r["message"] else ""))
    return "\n".join(lines)


def log_episode(rec: rr.RecordingStream, store: EpisodeStore, episode_id: str) -> dict[str, int]:
    """Log one episode into ``rec``; returns the number of rows logged per entity (what a reader gets back)."""
    import rerun as rr

    logged: dict[str, int] = {}
    curation = episode_curation(store, episode_id)
    with store.open_episode(episode_id) as ep:
        n = ep.num_frames
        frames = np.arange(n)
        seconds = ep.timestamp - ep.timestamp[0]
        rec.log(ENTITIES["episode"], rr.TextDocument(_episode_text(ep, curation), media_type="text/markdown"),
                static=True)
        language = ep.meta["language"]
        instruction = "\n".join([language["instruction"], *(f"(also: {a})" for a in language["alternatives"])])
        rec.log(ENTITIES["instruction"], rr.TextDocument(instruction), static=True)
        for camera in ep.cameras:
            path = _entity(ENTITIES["cameras"], camera)
            for lo in range(0, n, _BLOCK):
                hi = min(lo + _BLOCK, n)
                rec.send_columns(
                    path,
                    indexes=[rr.TimeColumn(FRAME_TIMELINE, sequence=frames[lo:hi]),
                             rr.TimeColumn(TIME_TIMELINE, duration=seconds[lo:hi])],
                    columns=rr.EncodedImage.columns(blob=[ep.encoded_frame(camera, i) for i in range(lo, hi)],
                                                    media_type=["image/jpeg"] * (hi - lo)),
                )
            logged[path] = n
        indexes = [rr.TimeColumn(FRAME_TIMELINE, sequence=frames), rr.TimeColumn(TIME_TIMELINE, duration=seconds)]
        for root, values, names in ((ENTITIES["state"], ep.state, ep.meta["state_names"]),
                                    (ENTITIES["action"], ep.action, ep.meta["action_names"])):
            for j, name in enumerate(names):
                path = _entity(root, name)
                rec.send_columns(path, indexes=indexes, columns=rr.Scalars.columns(scalars=values[:, j]))
                logged[path] = n
        subtasks = ep.subtasks()
        if subtasks is not None:
            starts = [i for i in range(n) if i == 0 or subtasks[i] != subtasks[i - 1]]
            _log_lane(rec, ENTITIES["subtask"], [(i, subtasks[i] or "") for i in starts], seconds)
            logged[ENTITIES["subtask"]] = len(starts)
        if curation is not None:
            spans = curation_spans(curation)
            reasons = sorted({k["reason"] for k in curation["removed_ranges"]})
            colours = [_rgba(reason_colour(r)) for r in (KEPT, *reasons)]  # as in the reports' charts
            rec.log(ENTITIES["curation"], rr.StateConfiguration(values=[KEPT, *map(removed_state, reasons)],
                                                                colors=np.array(colours, dtype=np.uint32)),
                    static=True)
            _log_lane(rec, ENTITIES["curation"], [(start, value) for start, _, value in spans], seconds)
            logged[ENTITIES["curation"]] = len(spans)
    return logged


def _log_lane(rec: rr.RecordingStream, path: str, changes: list[tuple[int, str]], seconds: np.ndarray) -> None:
    """A state lane: each (frame, value) starts a new state there (an empty value is a gap)."""
    import rerun as rr

    starts = np.array([i for i, _ in changes], dtype=np.int64)
    rec.send_columns(path, indexes=[rr.TimeColumn(FRAME_TIMELINE, sequence=starts),
                                    rr.TimeColumn(TIME_TIMELINE, duration=seconds[starts])],
                     columns=rr.StateChange.columns(state=[v for _, v in changes]))


def view_episode(store_root: str | Path, episode_id: str, *, out: str | Path | None = None,
                 connect: str | None = None) -> dict[str, int]:
    """Write the episode's recording to ``out`` (an ``.rrd`` file, replaced whole once complete), stream it
    to the viewer at ``connect``, or, with neither, spawn a viewer and stream it there."""
    import rerun as rr

    store = EpisodeStore(store_root)
    with store.open_episode(episode_id) as ep:  # a wrong id fails here, before a viewer or a file is opened
        blueprint = _blueprint(ep.cameras, ep.subtasks() is not None)
    rec = rr.RecordingStream(APPLICATION_ID, recording_id=episode_id)
    tmp = None
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        rec.save(tmp, default_blueprint=blueprint)
    elif connect is not None:
        rec.connect_grpc(connect, default_blueprint=blueprint)
    else:
        rec.spawn(default_blueprint=blueprint)
    complete = False
    try:
        logged = log_episode(rec, store, episode_id)
        rec.flush()
        complete = True
    finally:
        rec.disconnect()  # closes the file
        if tmp is not None and complete:
            os.replace(tmp, out)
        elif tmp is not None:
            tmp.unlink(missing_ok=True)
    return logged
