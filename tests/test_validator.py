"""Every validator rule is triggered by a store that breaks it, and all violations are reported."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zarr

from pipelines.episode_store.images import ImageConfig
from pipelines.episode_store.index import rebuild_index_and_stats
from pipelines.episode_store.layout import INDEX_FILE, STATS_FILE, STORE_MARKER
from pipelines.episode_store.reader import EpisodeReader, EpisodeStore
from pipelines.episode_store.schema import EPISODE_ATTR, FORMAT_VERSION
from pipelines.episode_store.validator import (
    RULES,
    ValidationReport,
    merge_reports,
    validate_path,
    validate_store,
)
from pipelines.episode_store.writer import pack_directory, write_episode
from tests.episode_factory import make_episode


def build_store(root: Path) -> EpisodeStore:
    store = EpisodeStore.create(root)
    specs = [("t/a", "franka", 0), ("t/b", "franka", 1), ("u/c", "ur5", 2)]
    for ref, emb, seed in specs:
        write_episode(make_episode(16 + seed, ref=ref, embodiment=emb, seed=seed), root, ImageConfig(height=24, width=32))
    rebuild_index_and_stats(root)
    return store


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("pristine") / "store"
    build_store(root)
    return root


@pytest.fixture
def store(pristine, tmp_path):
    root = tmp_path / "store"
    shutil.copytree(pristine, root)
    return EpisodeStore(root)


def first_episode(store: EpisodeStore) -> Path:
    return store.episode_files()[0]


def rewrite(path: Path, edit) -> None:
    """Unpack an episode, let ``edit(group)`` change it through zarr, pack it back in place."""
    work = path.parent / "_unpacked"
    with zipfile.ZipFile(path) as zf:
        zf.extractall(work)
    group = zarr.open_group(zarr.storage.LocalStore(work), mode="r+")
    edit(group)
    packed = path.parent / "_packed.zip"
    pack_directory(work, packed)
    packed.replace(path)
    shutil.rmtree(work)


def edit_meta(path: Path, change) -> None:
    def edit(group):
        meta = dict(group.attrs[EPISODE_ATTR])
        change(meta)
        group.attrs[EPISODE_ATTR] = meta

    rewrite(path, edit)


def edit_stats(store: EpisodeStore, change) -> None:
    doc = json.loads((store.root / STATS_FILE).read_text())
    change(doc)
    (store.root / STATS_FILE).write_text(json.dumps(doc))


def edit_index(store: EpisodeStore, change) -> None:
    rows = pq.read_table(store.root / INDEX_FILE).to_pylist()
    rows = change(rows)
    table = pq.read_table(store.root / INDEX_FILE)
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), store.root / INDEX_FILE)


def replace_array(group, name, data, **kw):
    attrs = dict(group[name].attrs)
    del group[name]
    arr = group.create_array(name, data=data, **kw)
    arr.attrs.update(attrs)


def _vlen(group, name, frames, chunks):
    del group[name]
    arr = group.create_array(name, shape=(len(frames),), chunks=chunks, dtype=zarr.dtype.VariableLengthBytes())
    block = np.empty(len(frames), dtype=object)
    block[:] = frames
    arr[:] = block


def _frames(group, cam):
    return [bytes(np.asarray(group[f"images/{cam}"][i : i + 1], dtype=object).reshape(-1)[0]) for i in range(group[f"images/{cam}"].shape[0])]


BREAKERS = {
    "store_marker": lambda s: (s.root / STORE_MARKER).write_text(json.dumps({"format_version": 99})),
    "index_missing": lambda s: (s.root / INDEX_FILE).unlink(),
    "index_schema": lambda s: pq.write_table(pq.read_table(s.root / INDEX_FILE).drop(["sha256"]), s.root / INDEX_FILE),
    "index_duplicate": lambda s: edit_index(s, lambda rows: rows + rows[:1]),
    "index_orphan": lambda s: edit_index(s, lambda rows: rows + [dict(rows[0], episode_id="inhouse-0000000000000000", path="episodes/inhouse/00/inhouse-0000000000000000.zarr.zip")]),
    "unindexed_episode": lambda s: edit_index(s, lambda rows: rows[1:]),
    "index_mismatch": lambda s: edit_index(s, lambda rows: [dict(rows[0], num_frames=999)] + rows[1:]),
    "stray_file": lambda s: (first_episode(s).parent / "inhouse-1234.zarr.zip.partial").write_bytes(b"half"),
    "episode_unreadable": lambda s: first_episode(s).write_bytes(first_episode(s).read_bytes()[:100]),
    "episode_metadata": lambda s: edit_meta(first_episode(s), lambda m: m.pop("robot_type")),
    "episode_id": lambda s: edit_meta(first_episode(s), lambda m: m.update(episode_id="inhouse-ffffffffffffffff")),
    "array_missing": lambda s: rewrite(first_episode(s), lambda g: g.__delitem__("action")),
    "array_dtype": lambda s: rewrite(first_episode(s), lambda g: replace_array(g, "state", g["state"][:].astype(np.float64))),
    "array_shape": lambda s: rewrite(first_episode(s), lambda g: replace_array(g, "action", g["action"][:-1])),
    "dimension_names": lambda s: edit_meta(first_episode(s), lambda m: m.update(state_names=["j"] * len(m["state_names"]))),
    "timestamps": lambda s: rewrite(first_episode(s), lambda g: replace_array(g, "timestamp", g["timestamp"][:][::-1].copy())),
    "non_finite": lambda s: rewrite(first_episode(s), lambda g: replace_array(g, "state", np.where(np.eye(*g["state"].shape, dtype=bool), np.nan, g["state"][:]).astype(np.float32))),
    "implausible": lambda s: rewrite(first_episode(s), lambda g: replace_array(g, "action", np.where(np.eye(*g["action"].shape, dtype=bool), np.float32(2e36), g["action"][:]).astype(np.float32))),
    "image_chunking": lambda s: rewrite(first_episode(s), lambda g: _vlen(g, "images/top", _frames(g, "top"), chunks=(4,))),
    "image_frame": lambda s: rewrite(first_episode(s), lambda g: _vlen(g, "images/top", [b"\x89PNG not a jpeg"] + _frames(g, "top")[1:], chunks=(1,))),
    "language": lambda s: edit_meta(first_episode(s), lambda m: m["language"].update(instruction="")),
    "embodiment_consistency": lambda s: edit_meta(first_episode(s), lambda m: m.update(action_names=[f"x{i}" for i in range(len(m["action_names"]))])),
    "stats_missing": lambda s: edit_stats(s, lambda d: d["sources"]["inhouse"]["embodiments"].pop("ur5")),
    "curation": lambda s: _write_bad_curation(s),
    "content_digest": lambda s: rewrite(first_episode(s), lambda g: _vlen(g, "images/top", _frames(g, "top")[::-1], chunks=(1,))),
    "stats_mismatch": lambda s: edit_stats(s, lambda d: d["sources"]["inhouse"]["embodiments"]["franka"]["action"]["mean"].__setitem__(0, 5.0)),
}


def _write_bad_curation(store: EpisodeStore) -> None:
    rows = pq.read_table(store.root / INDEX_FILE).to_pylist()
    out = [{"episode_id": r["episode_id"], "status": "kept", "frames_in": r["num_frames"], "frames_kept": r["num_frames"] - 1,
            "kept_ranges": [{"start": 0, "stop": r["num_frames"] - 1}], "removed_ranges": []} for r in rows]
    pq.write_table(pa.Table.from_pylist(out), store.root / "curation.parquet")


def test_pristine_store_is_valid(pristine):
    report = validate_store(pristine, decode_frames=True)
    assert report.ok, [str(e) for e in report.errors]
    assert report.episodes == 3 and report.frames == 16 + 17 + 18
    assert report.sources["inhouse"]["embodiments"] == ["franka", "ur5"]


def test_the_writer_records_the_digest_a_full_read_gives(pristine):
    from pipelines.episode_store.index import content_sha256

    for path in EpisodeStore(pristine).episode_files():
        with EpisodeReader(path) as reader:
            assert reader.meta["content_sha256"] == content_sha256(reader, recorded=False)


def test_every_rule_has_a_breaking_case():
    assert set(BREAKERS) == set(RULES)


@pytest.mark.parametrize("rule", sorted(RULES))
def test_rule_is_enforced(store, rule):
    BREAKERS[rule](store)
    report = validate_store(store.root, decode_frames=True)
    codes = {e.code for e in report.errors}
    assert rule in codes, [str(e) for e in report.errors]


def test_the_plausibility_bound_is_the_one_the_store_was_converted_with(store):
    rewrite(store.episode_files()[0], lambda g: replace_array(
        g, "state", np.where(np.eye(*g["state"].shape, dtype=bool), np.float32(5e6), g["state"][:]).astype(np.float32)))
    assert "implausible" in {e.code for e in validate_store(store.root).errors}
    assert "implausible" not in {e.code for e in validate_store(store.root, max_abs_value=1e7).errors}


def test_the_cli_validates_against_the_bound_in_params_unless_told_otherwise(tmp_path, capsys):
    """``a1pipe validate`` must read ``convert.max_abs_value`` as ``convert`` does, or a store converted with a
    wider bound is reported invalid (and one converted with a tighter bound passes unchecked)."""
    from pipelines.cli import main as cli

    root = tmp_path / "store"
    EpisodeStore.create(root)
    episode = make_episode(12)
    episode.state[3, 2] = 5e6
    write_episode(episode, root, ImageConfig(height=24, width=32), max_abs_value=1e7)
    rebuild_index_and_stats(root)
    store = EpisodeStore(root)
    wide, tight = tmp_path / "wide.yaml", tmp_path / "tight.yaml"
    wide.write_text("convert:\n  max_abs_value: 1.0e+7\n")
    tight.write_text("convert:\n  max_abs_value: 5.0e+6\n")
    assert cli(["validate", str(store.root), "--params", str(wide)]) == 0
    assert cli(["validate", str(store.root), "--params", str(tight)]) == 0  # exactly at the bound is plausible
    assert cli(["validate", str(store.root), "--params", str(wide), "--max-abs-value", "4.9e6"]) == 1
    assert "implausible" in capsys.readouterr().out
    empty = tmp_path / "empty.yaml"
    empty.write_text("{}\n")
    assert cli(["validate", str(store.root), "--params", str(empty)]) == 1  # the 1e6 default


def test_all_violations_are_reported_not_only_the_first(store):
    files = store.episode_files()
    edit_meta(files[0], lambda m: m["language"].update(instruction=""))
    rewrite(files[1], lambda g: replace_array(g, "timestamp", g["timestamp"][:][::-1].copy()))
    (store.root / STATS_FILE).unlink()
    report = validate_store(store.root)
    codes = [e.code for e in report.errors]
    assert {"language", "timestamps", "stats_missing", "index_mismatch"} <= set(codes)
    wheres = {e.where for e in report.errors if e.code in ("language", "timestamps")}
    assert len(wheres) == 2


def test_directory_of_stores_is_validated_store_by_store(pristine, tmp_path):
    shutil.copytree(pristine, tmp_path / "many" / "one")
    shutil.copytree(pristine, tmp_path / "many" / "two")
    reports = validate_path(tmp_path / "many")
    assert [Path(r.root).name for r in reports] == ["one", "two"]
    assert all(r.ok for r in reports)


# --- each rule's other conditions: every one breaks on its own ------------------------------------------


def _curation(store: EpisodeStore, edit=lambda rows: rows) -> None:
    """A curation table that keeps every frame of every indexed episode, then ``edit``-ed."""
    rows = [{"episode_id": r["episode_id"], "status": "kept", "frames_in": r["num_frames"],
             "frames_kept": r["num_frames"], "kept_ranges": [{"start": 0, "stop": r["num_frames"]}],
             "removed_ranges": []} for r in pq.read_table(store.root / INDEX_FILE).to_pylist()]
    pq.write_table(pa.Table.from_pylist(edit(rows)), store.root / "curation.parquet")


def _first_row(change):
    def edit(rows):
        change(rows[0], rows[0]["frames_in"])
        return rows
    return edit


def _quarantined(row, n):
    row.update(status="quarantined", frames_kept=0, kept_ranges=[], removed_ranges=[{"start": 0, "stop": n}])


def _jpeg(height: int, width: int) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), (90, 20, 200)).save(buf, format="JPEG")
    return buf.getvalue()


def _moved(store: EpisodeStore) -> None:
    path = first_episode(store)
    other = path.parent.parent / ("00" if path.parent.name != "00" else "01")
    other.mkdir(exist_ok=True)
    path.rename(other / path.name)
    edit_index(store, lambda rows: [dict(r, path=f"{other.relative_to(store.root).as_posix()}/{path.name}")
                                    if r["path"].endswith(path.name) else r for r in rows])


def _stats(store, change):
    edit_stats(store, lambda d: change(d["sources"]["inhouse"]["embodiments"]["franka"]["state"]))


#: (rule, condition, how to break it): conditions beyond each rule's first breaking case (BREAKERS)
CONDITIONS = [
    ("curation", "ranges that overlap", lambda s: _curation(s, _first_row(lambda r, n: r.update(
        kept_ranges=[{"start": 0, "stop": n - 2}], removed_ranges=[{"start": n - 3, "stop": n}], frames_kept=n - 2)))),
    ("curation", "an empty range", lambda s: _curation(s, _first_row(lambda r, n: r.update(
        kept_ranges=[{"start": 0, "stop": 0}, {"start": 0, "stop": n}])))),
    ("curation", "a gap between ranges", lambda s: _curation(s, _first_row(lambda r, n: r.update(
        kept_ranges=[{"start": 0, "stop": n - 3}], removed_ranges=[{"start": n - 2, "stop": n}], frames_kept=n - 3)))),
    ("curation", "frames_kept that is not the kept ranges' length", lambda s: _curation(s, _first_row(
        lambda r, n: r.update(frames_kept=n - 1)))),
    ("curation", "a quarantined row keeping frames", lambda s: _curation(s, _first_row(
        lambda r, n: r.update(status="quarantined")))),
    ("curation", "an episode with no row", lambda s: _curation(s, lambda rows: rows[1:])),
    ("curation", "a row for an episode not in the index", lambda s: _curation(s, lambda rows: rows + [
        dict(rows[0], episode_id="inhouse-0000000000000000")])),
    ("curation", "frames_in that is not the episode's length", lambda s: _curation(s, _first_row(
        lambda r, n: r.update(frames_in=n + 1)))),
    ("episode_metadata", "another episode format_version", lambda s: edit_meta(first_episode(s), lambda m: m.update(
        format_version=2))),
    ("episode_metadata", "an action_kind outside its set", lambda s: edit_meta(first_episode(s), lambda m: m.update(
        action_kind="teleport"))),
    ("episode_metadata", "a timestamp_origin outside its set", lambda s: edit_meta(first_episode(s), lambda m: m.update(
        timestamp_origin="guessed"))),
    ("episode_metadata", "control_hz of 0", lambda s: edit_meta(first_episode(s), lambda m: m.update(control_hz=0.0))),
    ("timestamps", "two equal timestamps", lambda s: rewrite(first_episode(s), lambda g: replace_array(
        g, "timestamp", np.r_[g["timestamp"][:1], g["timestamp"][:-1]]))),
    ("timestamps", "a NaN timestamp", lambda s: rewrite(first_episode(s), lambda g: replace_array(
        g, "timestamp", np.r_[g["timestamp"][:-1], np.nan]))),
    ("image_frame", "a JPEG of another size than the declared one", lambda s: rewrite(first_episode(s), lambda g: _vlen(
        g, "images/top", [_jpeg(24, 30)] + _frames(g, "top")[1:], chunks=(1,)))),
    ("episode_id", "a file in another shard folder than its id says", _moved),
    ("stats_mismatch", "a count that is not the frames'", lambda s: _stats(s, lambda e: e["count"].__setitem__(
        0, e["count"][0] + 1))),
    ("stats_mismatch", "a q01 below the data's minimum", lambda s: _stats(s, lambda e: e["q01"].__setitem__(
        0, e["min"][0] - 1e-3))),
    ("stats_mismatch", "a q99 above the data's maximum", lambda s: _stats(s, lambda e: e["q99"].__setitem__(
        0, e["max"][0] + 1e-3))),
    ("stats_mismatch", "a q01 at the data's maximum", lambda s: _stats(s, lambda e: e["q01"].__setitem__(
        0, e["max"][0]))),
]


def test_a_curation_table_that_tiles_every_episode_is_valid_kept_or_quarantined(store):
    _curation(store)
    assert validate_store(store.root).ok
    _curation(store, _first_row(_quarantined))
    assert validate_store(store.root).ok


@pytest.mark.parametrize("rule,condition,breaker", CONDITIONS, ids=[f"{r}: {c}" for r, c, _ in CONDITIONS])
def test_each_condition_of_a_rule_is_enforced_on_its_own(store, rule, condition, breaker):
    if rule != "curation":
        _curation(store)  # a valid table, so that only the broken condition is reported
    breaker(store)
    report = validate_store(store.root, decode_frames=True)
    codes = {e.code for e in report.errors}
    # an edited episode file no longer has the checksum (and, for its arrays, the content digest) recorded; an
    # episode whose timestamps are broken is left out of the statistics the stored ones are checked against
    assert rule in codes and codes <= {rule, "index_mismatch", "content_digest", "stats_mismatch"}, \
        [str(e) for e in report.errors]


# --- what a report says, and how reports of several stores add up ---------------------------------------


def test_stats_of_a_missing_embodiment_and_wrong_counts_of_another_are_both_reported(store):
    """The statistics check goes on past an embodiment without statistics, and a count that differs in
    episodes only is a mismatch; each violation names the embodiment and the numbers."""
    def change(doc):
        embodiments = doc["sources"]["inhouse"]["embodiments"]
        embodiments.pop("franka")
        embodiments["ur5"]["episodes"] = 2
    edit_stats(store, change)
    errors = [(e.code, e.where, e.message) for e in validate_store(store.root).errors]
    assert errors == [
        ("stats_missing", f"{STATS_FILE}:inhouse/franka", "no statistics for this embodiment"),
        ("stats_mismatch", f"{STATS_FILE}:inhouse/ur5", "episodes/frames 2/18, data has 1/18"),
    ]


def _report(root: str, episodes: int, frames: int, sources: dict, errors: list) -> ValidationReport:
    report = ValidationReport(root=root, episodes=episodes, frames=frames, sources=sources)
    for code, where, message in errors:
        report.add(code, where, message)
    return report


def test_merged_reports_add_counts_and_join_names_per_source_and_tag_each_error_with_its_store():
    one = _report("s3://a", 2, 30, {
        "droid": {"episodes": 2, "frames": 30, "embodiments": ["franka"], "cameras": ["top", "wrist"],
                  "camera_sources": {"top": ["ext1"]}}}, [("language", "e1", "instruction is empty")])
    two = _report("s3://b", 3, 50, {
        "droid": {"episodes": 1, "frames": 10, "embodiments": ["franka", "ur5"], "cameras": ["top"],
                  "camera_sources": {"top": ["ext2"], "wrist": ["w"]}},
        "gm100": {"episodes": 2, "frames": 40, "embodiments": ["aloha"], "cameras": ["left"]}},
        [("timestamps", "e2", "not increasing"), ("stats_missing", "stats.json", "missing")])
    assert one.to_json() == {"format_version": FORMAT_VERSION, "store": "s3://a", "episodes": 2, "frames": 30,
                             "sources": one.sources,
                             "errors": [{"code": "language", "where": "e1", "message": "instruction is empty"}]}
    assert merge_reports([one, two]) == {
        "format_version": FORMAT_VERSION, "stores": ["s3://a", "s3://b"], "episodes": 5, "frames": 80,
        "sources": {
            "droid": {"episodes": 3, "frames": 40, "embodiments": ["franka", "ur5"], "cameras": ["top", "wrist"],
                      "camera_sources": {"top": ["ext1", "ext2"], "wrist": ["w"]}},
            "gm100": {"episodes": 2, "frames": 40, "embodiments": ["aloha"], "cameras": ["left"],
                      "camera_sources": {}}},
        "errors": [{"code": "language", "where": "e1", "message": "instruction is empty", "store": "s3://a"},
                   {"code": "timestamps", "where": "e2", "message": "not increasing", "store": "s3://b"},
                   {"code": "stats_missing", "where": "stats.json", "message": "missing", "store": "s3://b"}]}


def test_validate_path_passes_its_options_to_every_store_it_validates(tmp_path, monkeypatch):
    from pipelines.episode_store import validator

    calls = []
    monkeypatch.setattr(validator, "validate_store", lambda root, **options: calls.append(
        (Path(root).name, options)) or ValidationReport(root=str(root)))
    for name in ("one", "two"):
        (tmp_path / "many" / name).mkdir(parents=True)
        (tmp_path / "many" / name / STORE_MARKER).write_text("{}")
    options = {"decode_frames": True, "max_abs_value": 5.0}
    validate_path(tmp_path / "many", **options)
    validate_path(tmp_path / "many" / "one", **options)
    (tmp_path / "empty").mkdir()
    validate_path(tmp_path / "empty", **options)  # neither a store nor a folder of stores: reported as one
    assert calls == [("one", options), ("two", options), ("one", options), ("empty", options)]
    calls.clear()
    validate_path(tmp_path / "many" / "one")
    assert calls == [("one", {"decode_frames": False, "max_abs_value": 1e6})]  # frames by header, the 1e6 bound


# --- what each violation says, and that one violation does not hide the next (mutation run, issue 18) ---


def test_a_report_counts_each_source_s_episodes_and_frames(pristine):
    report = validate_store(pristine)
    assert (report.episodes, report.frames) == (3, 16 + 17 + 18)
    assert report.sources["inhouse"]["episodes"] == 3 and report.sources["inhouse"]["frames"] == 51
    assert report.sources["inhouse"]["embodiments"] == ["franka", "ur5"]


def _errors(store) -> list[tuple[str, str, str]]:
    return [(e.code, e.where, e.message) for e in validate_store(store.root).errors]


def test_an_index_row_without_its_file_names_the_episode_and_the_path(store):
    BREAKERS["index_orphan"](store)
    assert ("index_orphan", INDEX_FILE, "row inhouse-0000000000000000 points at missing file "
            "episodes/inhouse/00/inhouse-0000000000000000.zarr.zip") in _errors(store)


def test_an_embodiment_whose_names_change_is_reported_at_the_episode_that_differs(store):
    BREAKERS["embodiment_consistency"](store)
    found = [e for e in _errors(store) if e[0] == "embodiment_consistency"]
    assert len(found) == 1
    code, where, message = found[0]
    assert where.startswith("episodes/inhouse/") and where.endswith(".zarr.zip")
    assert message == "inhouse/franka: names differ from earlier episodes of the embodiment"


def test_an_unreadable_curation_table_is_one_curation_violation_saying_why(store):
    (store.root / "curation.parquet").write_bytes(b"not parquet")
    found = [e for e in _errors(store) if e[0] == "curation"]
    assert len(found) == 1 and found[0][1] == "curation.parquet" and found[0][2].startswith("unreadable: ")
    assert len(found[0][2]) > len("unreadable: ")  # pyarrow's reason follows


def test_a_source_without_statistics_is_reported_for_the_source_and_each_embodiment(store):
    edit_stats(store, lambda d: d["sources"].pop("inhouse"))
    assert _errors(store) == [
        ("stats_missing", f"{STATS_FILE}:inhouse/franka", "no statistics for this embodiment"),
        ("stats_missing", f"{STATS_FILE}:inhouse/ur5", "no statistics for this embodiment"),
        ("stats_missing", f"{STATS_FILE}:inhouse", "no statistics for this source"),
    ]


def test_a_missing_statistic_is_reported_for_every_dimension_and_the_other_fields_are_still_checked(store):
    def change(doc):
        franka = doc["sources"]["inhouse"]["embodiments"]["franka"]
        del franka["state"]["std"]
        franka["action"]["mean"][0] = 5.0
    edit_stats(store, change)
    errors = _errors(store)
    names = json.loads((store.root / STATS_FILE).read_text())["sources"]["inhouse"]["embodiments"]["franka"]["state"]["names"]
    where = f"{STATS_FILE}:inhouse/franka"
    assert [e for e in errors if e[0] == "stats_missing"] == [
        ("stats_missing", where, f"state '{n}' lacks a statistic") for n in names]
    assert any(e[0] == "stats_mismatch" and e[1] == where and " mean = 5.0," in e[2] for e in errors)


def test_a_field_without_statistics_does_not_stop_the_next_field_s_check(store):
    def change(doc):
        franka = doc["sources"]["inhouse"]["embodiments"]["franka"]
        del franka["state"]
        franka["action"]["mean"][0] = 5.0
    edit_stats(store, change)
    errors = _errors(store)
    where = f"{STATS_FILE}:inhouse/franka"
    assert ("stats_missing", where, "no 'state' statistics") in errors
    assert any(e[0] == "stats_mismatch" and e[1] == where and " mean = 5.0," in e[2] for e in errors)


def test_a_quantile_outside_the_data_s_range_does_not_hide_the_other_quantile_s_rank(store):
    def change(doc):
        action = doc["sources"]["inhouse"]["embodiments"]["franka"]["action"]
        low = action["min"][0]
        action["q01"][0] = low - 1.0
        action["q99"][0] = low  # inside the range, at the wrong rank
    edit_stats(store, change)
    doc = json.loads((store.root / STATS_FILE).read_text())
    action = doc["sources"]["inhouse"]["embodiments"]["franka"]["action"]
    name, low, high = action["names"][0], action["min"][0], action["max"][0]
    mine = [e[2] for e in _errors(store) if e[1] == f"{STATS_FILE}:inhouse/franka"]
    assert f"action '{name}' q01 = {low - 1.0} is outside the data's range [{low}, {high}]" in mine
    assert any(m.startswith(f"action '{name}' q99 = {low} sits at rank ") and m.endswith("expected 0.99") for m in mine)


def _episode_errors(store) -> list[tuple[str, str]]:
    rel = str(first_episode(store).relative_to(store.root))
    return [(e.code, e.message) for e in validate_store(store.root).errors if e.where == rel]


def test_a_missing_key_inside_a_metadata_section_is_named_with_its_section(store):
    edit_meta(first_episode(store), lambda m: m["source"].pop("episode"))
    assert _episode_errors(store)[0] == ("episode_metadata", "missing key 'source.episode'")


def test_an_episode_without_a_key_later_checks_need_is_reported_not_a_crash(store):
    edit_meta(first_episode(store), lambda m: m.pop("num_frames"))
    assert ("episode_metadata", "missing key 'num_frames'") in _episode_errors(store)


def test_any_positive_control_rate_is_valid(store):
    edit_meta(first_episode(store), lambda m: m.update(control_hz=0.5))  # one frame every 2 s
    assert not [e for e in _episode_errors(store) if e[0] == "episode_metadata"]


def test_array_violations_name_the_array_its_shape_or_dtype_and_what_was_expected(store):
    def edit(g):
        replace_array(g, "state", g["state"][:].astype(np.float64))
        replace_array(g, "action", g["action"][:, :-1])
        replace_array(g, "timestamp", g["timestamp"][:-1])
    rewrite(first_episode(store), edit)
    with EpisodeReader(first_episode(store)) as reader:
        n, dims = reader.meta["num_frames"], len(reader.meta["action_names"])
    errors = _episode_errors(store)
    assert ("array_dtype", "'state' is float64, expected float32") in errors
    assert ("array_shape", f"timestamp shape ({n - 1},), expected ({n},)") in errors
    assert ("array_shape", f"'action' shape ({n}, {dims - 1}), expected ({n}, {dims})") in errors


def test_an_episode_without_frames_is_an_array_shape_violation(store):
    edit_meta(first_episode(store), lambda m: m.update(num_frames=0))
    assert ("array_shape", "num_frames is 0; episodes must have frames") in _episode_errors(store)


def test_an_episode_in_another_shard_folder_is_told_where_it_belongs(store):
    path = first_episode(store)
    with EpisodeReader(path) as reader:
        eid = reader.meta["episode_id"]
    moved = store.root / "episodes" / "inhouse" / "zz" / path.name
    moved.parent.mkdir(parents=True)
    path.rename(moved)
    edit_index(store, lambda rows: [dict(r, path=str(moved.relative_to(store.root))) if r["episode_id"] == eid else r
                                    for r in rows])
    rel = str(moved.relative_to(store.root))
    found = [(e.code, e.message) for e in validate_store(store.root).errors if e.where == rel]
    assert ("episode_id", f"episode {eid} belongs at {path.relative_to(store.root)}") in found


def _camera(store) -> str:
    with EpisodeReader(first_episode(store)) as reader:
        return sorted(reader.meta["cameras"])[0]


@pytest.mark.parametrize("case", ["marker_missing", "marker_unreadable", "marker_version", "index_unreadable",
                                  "index_column_type", "stats_missing", "stats_unreadable", "stray"])
def test_store_level_files_are_reported_with_what_is_wrong(store, case):
    root = store.root
    if case == "marker_missing":
        (root / STORE_MARKER).unlink()
        expected = ("store_marker", str(root), f"{STORE_MARKER} missing: not an a1pipe store")
    elif case == "marker_unreadable":
        (root / STORE_MARKER).write_text("{not json")
        expected = ("store_marker", STORE_MARKER, "unreadable: ")
    elif case == "marker_version":
        (root / STORE_MARKER).write_text(json.dumps({"format_version": 99}))
        expected = ("store_marker", STORE_MARKER, f"format_version is 99, expected {FORMAT_VERSION}")
    elif case == "index_unreadable":
        (root / INDEX_FILE).write_bytes(b"not parquet")
        expected = ("index_missing", INDEX_FILE, "unreadable: ")
    elif case == "index_column_type":
        table = pq.read_table(root / INDEX_FILE)
        i = table.schema.get_field_index("num_frames")
        pq.write_table(table.set_column(i, "num_frames", table["num_frames"].cast(pa.int32())), root / INDEX_FILE)
        expected = ("index_schema", INDEX_FILE, "column 'num_frames' is int32, expected int64")
    elif case == "stats_missing":
        (root / STATS_FILE).unlink()
        expected = ("stats_missing", STATS_FILE, "statistics file missing")
    elif case == "stats_unreadable":
        (root / STATS_FILE).write_text("{")
        expected = ("stats_missing", STATS_FILE, "unreadable: ")
    else:
        stray = first_episode(store).parent / "notes.txt"
        stray.write_text("x")
        expected = ("stray_file", str(stray.relative_to(root)),
                    "not a published episode file (partial write or foreign file)")
    errors = [(e.code, e.where, e.message) for e in validate_store(root).errors]
    code, where, message = expected
    if message.endswith(": "):  # the library's reason follows
        assert any(e[:2] == (code, where) and e[2].startswith(message) and len(e[2]) > len(message) for e in errors)
    else:
        assert expected in errors, errors


def test_camera_violations_name_the_camera_the_frame_and_what_was_expected(store):
    cam = _camera(store)
    with EpisodeReader(first_episode(store)) as reader:
        n, h, w = reader.meta["num_frames"], reader.meta["cameras"][cam]["height"], reader.meta["cameras"][cam]["width"]
    frames_of = {}
    rewrite(first_episode(store), lambda g: frames_of.setdefault("f", _frames(g, cam)))
    bad = [b"\x89PNG"] * 7 + frames_of["f"][7:]  # seven frames that are no JPEG: five named, then a count
    rewrite(first_episode(store), lambda g: _vlen(g, f"images/{cam}", bad, chunks=(1,)))
    errors = _episode_errors(store)
    named = [m for c, m in errors if c == "image_frame"]
    assert named[:5] == [f"camera '{cam}' frame {i}: not a JPEG (4 bytes)" for i in range(5)]
    assert named[5] == f"camera '{cam}': 2 more bad frames" and len(named) == 6
    rewrite(first_episode(store), lambda g: _vlen(g, f"images/{cam}", frames_of["f"][:-1], chunks=(1,)))
    assert ("array_shape", f"'images/{cam}' shape ({n - 1},), expected ({n},)") in _episode_errors(store)
    rewrite(first_episode(store), lambda g: g.__delitem__(f"images/{cam}"))
    assert ("array_missing", f"camera '{cam}' declared but 'images/{cam}' missing") in _episode_errors(store)
    assert (h, w) == (24, 32)


# --- the per-episode and per-camera messages, second conditions and tolerances left by the sampled run -----


@pytest.mark.parametrize("key,value,kind", [("control_hz", "30", "str"), ("num_frames", True, "bool")])
def test_a_metadata_value_of_the_wrong_type_is_named_and_ends_the_episode_s_checks(store, key, value, kind):
    """Rule episode_metadata: a required key of the wrong type (a bool is not an int) is reported with
    its type, and nothing later is checked on that episode: every later check reads the bad value."""
    edit_meta(first_episode(store), lambda m: m.update({key: value}))
    assert _episode_errors(store) == [("episode_metadata", f"'{key}' has type {kind}")]


def test_a_camera_entry_without_encoding_or_size_is_named(store):
    """Rule episode_metadata: a declared camera's entry needs encoding, height and width before its
    frames can be checked."""
    cam = _camera(store)
    edit_meta(first_episode(store), lambda m: m["cameras"][cam].pop("height"))
    assert ("episode_metadata", f"camera '{cam}' metadata lacks encoding/height/width") in _episode_errors(store)


def test_an_episode_that_declares_no_camera_is_an_array_missing_violation(store):
    """Rule array_missing: every episode has at least one camera."""
    edit_meta(first_episode(store), lambda m: m.update(cameras={}))
    assert ("array_missing", "episode declares no camera") in _episode_errors(store)


def test_an_unreadable_episode_file_is_reported_at_its_path_with_the_reason(store):
    """Rule episode_unreadable: the violation is the file's, and names the error that reading it raised."""
    BREAKERS["episode_unreadable"](store)
    assert _episode_errors(store) == [("episode_unreadable", "BadZipFile: File is not a zip file")]


@pytest.mark.parametrize("change,message", [
    (lambda m: m["source"].update(name="Bad-Name"), "source name must match ^[a-z][a-z0-9_]*$, got 'Bad-Name'"),
    (lambda m: m.update(episode_id="nope"), "not an episode id: 'nope'"),
], ids=["a source name ids cannot be made of", "an id that is no episode id"])
def test_an_id_that_cannot_be_derived_or_placed_is_an_episode_id_violation_not_a_crash(store, change, message):
    """Rule episode_id: a source name outside the id alphabet, or an episode id of no known form, is
    reported with the reason (the id and its file location cannot be derived from it)."""
    edit_meta(first_episode(store), change)
    assert ("episode_id", message) in _episode_errors(store)


def test_an_implausible_value_is_named_with_its_array_the_bound_its_frame_and_the_value(store):
    """Rule implausible: the message names the array, the bound, the first frame and the value found."""
    BREAKERS["implausible"](store)
    assert ("implausible", "'action' has values beyond +-1e+06, first at frame 0: 2e+36") in _episode_errors(store)


def test_timestamps_name_the_first_frame_that_does_not_increase_and_its_times(store):
    """Rule timestamps: a repeated time is reported at the first frame that does not move forward,
    with the two times; a NaN time is reported as non-finite."""
    def repeat(g):
        t = g["timestamp"][:].copy()
        t[5] = t[4]
        replace_array(g, "timestamp", t)
    rewrite(first_episode(store), repeat)
    assert ("timestamps", "not strictly increasing at frame 5: 0.4 -> 0.4") in _episode_errors(store)
    CONDITIONS[[c for _, c, _ in CONDITIONS].index("a NaN timestamp")][2](store)
    assert ("timestamps", "timestamp has non-finite values") in _episode_errors(store)


def test_a_timestamp_array_that_is_not_one_dimensional_is_a_shape_violation_only(store):
    """Rules array_shape and timestamps: timestamps of another rank are one array_shape violation; their
    values are judged (finite, increasing) only on a 1-D array."""
    def two_d(g):
        t = g["timestamp"][:].copy()
        t[3] = np.nan
        replace_array(g, "timestamp", t[:, None])
    rewrite(first_episode(store), two_d)
    with EpisodeReader(first_episode(store)) as reader:
        n = reader.meta["num_frames"]
    errors = _episode_errors(store)
    assert ("array_shape", f"timestamp shape ({n}, 1), expected ({n},)") in errors
    assert "timestamps" not in {c for c, _ in errors}


def test_a_sub_task_index_equal_to_the_number_of_texts_is_outside_the_table(store):
    """Rule language: sub-task indices run from -1 (none) to len(texts) - 1; len(texts) itself points past
    the table."""
    def past_the_end(g):
        idx = g["language/subtask_index"][:].copy()
        idx[0] = len(g["language/subtask_index"].attrs["texts"])
        replace_array(g, "language/subtask_index", idx)
    rewrite(first_episode(store), past_the_end)
    with EpisodeReader(first_episode(store)) as reader:
        n = reader.meta["num_frames"]
    assert ("language", f"subtask_index has {n} rows or indices outside 0..0") in _episode_errors(store)


def test_an_episode_that_says_it_has_sub_tasks_but_stores_none_is_an_array_missing_violation(store):
    """Rule array_missing: has_subtasks true needs the language/subtask_index array."""
    rewrite(first_episode(store), lambda g: g.__delitem__("language/subtask_index"))
    assert ("array_missing", "has_subtasks is true but language/subtask_index is missing") in _episode_errors(store)


def test_an_episode_without_a_recorded_content_digest_is_not_checked_against_one(store):
    """Rule content_digest: content_sha256 is optional (stores written before it was recorded); only a
    recorded one is compared with the data."""
    edit_meta(first_episode(store), lambda m: m.pop("content_sha256"))
    assert "content_digest" not in {c for c, _ in _episode_errors(store)}


def test_a_wrong_content_digest_is_reported_with_the_recorded_and_the_actual_digest(store):
    """Rule content_digest: the message gives the start of the recorded digest and of the data's."""
    from pipelines.episode_store.index import content_sha256

    BREAKERS["content_digest"](store)
    with EpisodeReader(first_episode(store)) as reader:
        recorded, actual = reader.meta["content_sha256"], content_sha256(reader, recorded=False)
    assert ("content_digest", f"metadata content_sha256 {recorded[:16]}... but the stored timestamps, state, "
            f"action and frames give {actual[:16]}...") in _episode_errors(store)


def test_an_image_array_that_is_not_variable_length_bytes_is_an_array_dtype_violation(store):
    """Rule array_dtype: images/<camera> holds variable-length bytes (one JPEG per item)."""
    cam = _camera(store)

    def fixed_width(g):
        frames = _frames(g, cam)
        del g[f"images/{cam}"]
        width = max(map(len, frames))
        g.create_array(f"images/{cam}", shape=(len(frames),), chunks=(1,), dtype=f"S{width}")[:] = \
            np.array(frames, dtype=f"S{width}")
    rewrite(first_episode(store), fixed_width)
    found = [m for c, m in _episode_errors(store) if c == "array_dtype"]
    assert len(found) == 1 and found[0].startswith(f"'images/{cam}' is ") \
        and found[0].endswith(", expected variable-length bytes"), found


def test_image_chunking_and_frame_size_violations_say_what_was_found_and_expected(store):
    """Rules image_chunking and image_frame: the chunking found and (1,); a frame's size and the declared
    height x width."""
    BREAKERS["image_chunking"](store)
    assert ("image_chunking", "'images/top' chunks (4,), expected (1,)") in _episode_errors(store)
    CONDITIONS[[c for _, c, _ in CONDITIONS].index("a JPEG of another size than the declared one")][2](store)
    assert ("image_frame", "camera 'top' frame 0: size 24x30, declared 24x32") in _episode_errors(store)


def test_a_report_lists_each_camera_s_source_names_or_its_own_name_when_none_was_recorded(store):
    """The report's camera_sources: canonical camera -> the source's names of it; a camera whose entry
    records no source (older stores) stands for itself."""
    def change(m):
        m["cameras"]["top"]["source"]["name"] = "cam_high"
        m["cameras"]["wrist"].pop("source")
    edit_meta(first_episode(store), change)
    assert validate_store(store.root).sources["inhouse"]["camera_sources"] == {"top": ["cam_high", "top"],
                                                                               "wrist": ["wrist"]}


def test_stray_files_are_reported_in_path_order_component_by_component(store):
    """Rule stray_file: strays are listed by path, folder by folder: a folder's files come before those of a
    sibling folder whose name extends it ('inhouse' before 'inhouse-old', though '-' sorts before '/')."""
    inside = first_episode(store).parent / "notes.txt"
    beside = store.root / "episodes" / "inhouse-old" / "notes.txt"
    beside.parent.mkdir()
    for path in (inside, beside):
        path.write_text("x")
    strays = [e.where for e in validate_store(store.root).errors if e.code == "stray_file"]
    assert strays == [str(inside.relative_to(store.root)), str(beside.relative_to(store.root))]


def test_a_missing_index_column_is_named(store):
    """Rule index_schema: the message names the column the index lacks."""
    BREAKERS["index_schema"](store)
    assert ("index_schema", INDEX_FILE, "column 'sha256' missing") in _errors(store)


def test_a_source_s_own_statistics_are_checked_and_reported_under_the_source(store):
    """Rule stats_mismatch: the per-source entry (over all its embodiments) is compared with the data too,
    and its violations name the source."""
    edit_stats(store, lambda d: d["sources"]["inhouse"]["state"]["mean"].__setitem__(0, 5.0))
    assert [e[:2] for e in _errors(store) if " mean = 5.0," in e[2]] == [("stats_mismatch", f"{STATS_FILE}:inhouse")]


def test_a_dimension_without_statistics_does_not_stop_the_next_dimension_s_check(store):
    """Rule stats_missing: a dimension absent from the stored names is reported, and the field's other
    dimensions are still compared."""
    def change(doc):
        state = doc["sources"]["inhouse"]["embodiments"]["franka"]["state"]
        state["names"][0] = "elsewhere"
        state["mean"][1] = 5.0
    edit_stats(store, change)
    where = f"{STATS_FILE}:inhouse/franka"
    errors = _errors(store)
    assert ("stats_missing", where, "state dimension 'joint_0' has no statistics") in errors
    assert any(e[:2] == ("stats_mismatch", where) and e[2].startswith("state 'joint_1' mean = 5.0,") for e in errors)


class _FetchedCopies:
    """A store read the way an object store is: each working copy is a fresh folder holding only the files
    fetched into it (a local directory's working copy is the directory itself, holding everything)."""

    def __init__(self, root: Path):
        from pipelines import storage

        self.inner = storage.LocalStorage(root)
        self.root = self.inner.root
        self.fetches: list[list[str]] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def working_copy(self, fetch=(), publish=()):
        import contextlib
        import tempfile

        fetch = list(fetch)
        self.fetches.append(fetch)

        @contextlib.contextmanager
        def copy():
            with tempfile.TemporaryDirectory() as tmp:
                for rel in fetch:
                    (Path(tmp) / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(self.inner.local / rel, Path(tmp) / rel)
                yield Path(tmp)
        return copy()


def test_a_store_read_through_working_copies_fetches_its_files_then_one_episode_at_a_time(pristine, monkeypatch):
    """validate_store on object storage: the marker, index and statistics are fetched for the store-level
    checks, then each episode on its own (local room for one episode, not the store), and the store is
    valid as it is on disk."""
    from pipelines import storage

    fake = _FetchedCopies(pristine)
    monkeypatch.setattr(storage, "at", lambda root: fake)
    report = validate_store(pristine)
    assert report.ok, [str(e) for e in report.errors]
    assert report.episodes == 3
    assert fake.fetches[0] == [STORE_MARKER, INDEX_FILE, STATS_FILE]
    episodes = [str(p.relative_to(pristine)) for p in EpisodeStore(pristine).episode_files()]
    assert sorted(fake.fetches[1:]) == sorted([rel] for rel in episodes)


# --- the statistics' tolerances and rank counts, on a store of designed values ----------------------------


@pytest.fixture(scope="module")
def designed(tmp_path_factory):
    """Two franka episodes of 100 frames (200 values per dimension): state joint_0 is 0, 1, ..., 99 in one and
    0.5, 1.5, ..., 99.5 in the other; joint_1 runs from -1000 to -500 in one and -500 to 0 in the other."""
    root = tmp_path_factory.mktemp("designed") / "store"
    EpisodeStore.create(root)
    for k, ref in enumerate(("t/a", "t/b")):
        episode = make_episode(100, ref=ref, state_dim=2, action_dim=2, cameras=("top",), seed=k)
        episode.state[:, 0] = np.arange(100) + 0.5 * k
        episode.state[:, 1] = np.linspace(-1000, -500, 100) if k == 0 else np.linspace(-500, 0, 100)
        write_episode(episode, root, ImageConfig(height=24, width=32))
    rebuild_index_and_stats(root)
    return root


@pytest.fixture
def designed_store(designed, tmp_path):
    shutil.copytree(designed, tmp_path / "store")
    return EpisodeStore(tmp_path / "store")


def _designed_errors(store, change) -> list[str]:
    edit_stats(store, lambda d: change(d["sources"]["inhouse"]["embodiments"]["franka"]["state"]))
    return [e.message for e in validate_store(store.root).errors if e.where == f"{STATS_FILE}:inhouse/franka"]


def test_the_designed_store_is_valid(designed):
    assert validate_store(designed).ok


@pytest.mark.parametrize("q01,below,reported", [(2.0, 4, False), (2.25, 5, True), (2.75, 6, True)])
def test_a_q01_s_rank_is_counted_over_every_episode_and_may_exceed_its_target_by_the_slack(
        designed_store, q01, below, reported):
    """Rule stats_mismatch: the share of values below a stored q01 is counted over all the embodiment's
    episodes (each episode here holds half of them), and may exceed 0.01 by the slack epsilon + 1/n,
    inclusive: with n = 200, 4 values below (0.02 = 0.01 + 0.005 + 0.005) pass, 5 do not."""
    errors = _designed_errors(designed_store, lambda e: e["q01"].__setitem__(0, q01))
    ranked = [m for m in errors if m.startswith(f"state 'joint_0' q01 = {q01} sits at rank {below / 200:.4f}")]
    assert bool(ranked) == reported, errors
    assert len(errors) == len(ranked)


@pytest.mark.parametrize("change,reported", [
    (lambda e: e["max"].__setitem__(1, 1e-7), False),
    (lambda e: e["q01"].__setitem__(1, -1000 - 1e-7), False),
    (lambda e: e["max"].__setitem__(1, 1e-5), True),
    (lambda e: e["q01"].__setitem__(1, -1000 - 1e-5), True),
], ids=["max 1e-7 off zero", "q01 1e-7 below the minimum", "max 1e-5 off zero", "q01 1e-5 below the minimum"])
def test_statistics_near_zero_are_compared_within_1e_9_of_the_dimension_s_largest_magnitude(
        designed_store, change, reported):
    """Rule stats_mismatch: the absolute tolerance of a statistic, and of a quantile against the data's range,
    is 1e-9 of the dimension's largest magnitude, max(|min|, |max|), here |-1000|: a stored maximum of 1e-7
    for the data's 0, or a q01 1e-7 below the minimum, is rounding; 1e-5 is a mismatch."""
    errors = _designed_errors(designed_store, change)
    assert bool(errors) == reported, errors


# --- where each violation is reported and what it says, one violation not ending the checks of the next ------


def test_a_duplicated_index_row_and_an_unindexed_file_name_the_episode_and_the_file(store):
    """Rules index_duplicate and unindexed_episode: the report names the duplicated id (in the index) and
    the published file no row points at (at that file), so an auditor can find both without a search."""
    rows = pq.read_table(store.root / INDEX_FILE).to_pylist()
    BREAKERS["index_duplicate"](store)
    assert ("index_duplicate", INDEX_FILE, f"episode id {rows[0]['episode_id']} appears more than once") \
        in _errors(store)
    edit_index(store, lambda r: [x for x in r if x["episode_id"] != rows[0]["episode_id"]])  # both of its rows gone
    assert ("unindexed_episode", rows[0]["path"], "published episode file has no index row") in _errors(store)


def test_curation_violations_are_reported_at_the_episode_s_row_with_what_was_found(store):
    """Rule curation: a row whose ranges do not tile the episode, or a quarantined row that keeps frames,
    is reported at ``curation.parquet:<episode id>`` with the ranges, the count and the row's status."""
    eid = pq.read_table(store.root / INDEX_FILE).to_pylist()[0]["episode_id"]
    n = pq.read_table(store.root / INDEX_FILE).to_pylist()[0]["num_frames"]
    _curation(store, _first_row(lambda r, n: r.update(status="quarantined")))
    assert _errors(store) == [("curation", f"curation.parquet:{eid}",
                               f"frames_kept {n} vs kept ranges {n} (status quarantined)")]
    _curation(store, _first_row(lambda r, n: r.update(kept_ranges=[{"start": 0, "stop": n - 3}],
                                                      removed_ranges=[{"start": n - 2, "stop": n}], frames_kept=n - 3)))
    assert _errors(store) == [("curation", f"curation.parquet:{eid}",
                               f"kept and removed ranges do not tile [0, {n}): [(0, {n - 3}), ({n - 2}, {n})]")]


def test_a_curation_row_that_cannot_be_checked_does_not_stop_the_rows_after_it(store):
    """Rule curation: a row for an episode not in the index, and a row whose frames_in is wrong, are
    reported and skipped; every later row is still checked, and no episode with a row is called row-less."""
    index = pq.read_table(store.root / INDEX_FILE).to_pylist()

    def edit(rows):
        stranger = dict(rows[0], episode_id="inhouse-0000000000000000")
        rows[0]["frames_in"] += 1
        rows[2]["frames_kept"] -= 1
        return [stranger] + rows
    _curation(store, edit)
    where = [f"curation.parquet:{r['episode_id']}" for r in index]
    assert _errors(store) == [
        ("curation", "curation.parquet:inhouse-0000000000000000", "row for an episode that is not in the index"),
        ("curation", where[0], f"frames_in {index[0]['num_frames'] + 1} but the episode has {index[0]['num_frames']} frames"),
        ("curation", where[2], f"frames_kept {index[2]['num_frames'] - 1} vs kept ranges {index[2]['num_frames']} "
                               "(status kept)"),
    ]


def test_every_missing_low_dimensional_array_is_named_not_only_the_first(store):
    """Rule array_missing: each of timestamp, state and action that is absent is reported."""
    def edit(g):
        del g["timestamp"]
        del g["action"]
    rewrite(first_episode(store), edit)
    missing = [e for e in _episode_errors(store) if e[0] == "array_missing"]
    assert missing == [("array_missing", "array 'timestamp' missing"), ("array_missing", "array 'action' missing")]


def test_a_zero_control_rate_and_a_short_extra_array_are_reported_at_the_episode(store):
    """Rules episode_metadata and array_shape: the episode's own path is where they are reported (the
    helper keeps only violations reported there)."""
    with EpisodeReader(first_episode(store)) as reader:
        n = reader.meta["num_frames"]
    edit_meta(first_episode(store), lambda m: m.update(control_hz=0))
    rewrite(first_episode(store), lambda g: replace_array(g, "extras/qvel", g["extras/qvel"][:-1]))
    errors = _episode_errors(store)
    assert ("episode_metadata", "control_hz must be > 0, got 0") in errors
    assert ("array_shape", f"extra 'qvel' does not have {n} rows") in errors


@pytest.mark.parametrize("bad", [5, 6])
def test_at_most_five_bad_frames_are_named_and_only_more_than_five_are_counted(store, bad):
    """Rule image_frame: the first five bad frames of a camera are named one by one; a count line follows
    only when there are more (five bad frames: five lines, no "0 more")."""
    cam = _camera(store)
    frames_of = {}
    rewrite(first_episode(store), lambda g: frames_of.setdefault("f", _frames(g, cam)))
    frames = [b"\x89PNG"] * bad + frames_of["f"][bad:]
    rewrite(first_episode(store), lambda g: _vlen(g, f"images/{cam}", frames, chunks=(1,)))
    named = [m for c, m in _episode_errors(store) if c == "image_frame"]
    assert named[:5] == [f"camera '{cam}' frame {i}: not a JPEG (4 bytes)" for i in range(5)]
    assert named[5:] == ([] if bad == 5 else [f"camera '{cam}': {bad - 5} more bad frames"])


def test_a_truncated_jpeg_is_found_only_when_frames_are_decoded(store):
    """Rule image_frame, ``decode_frames``: by default a frame is checked by its header and size (cheap);
    a frame whose entropy-coded data is cut short passes that and is found only by a full decode."""
    cam = _camera(store)
    frames_of = {}
    rewrite(first_episode(store), lambda g: frames_of.setdefault("f", _frames(g, cam)))
    data = frames_of["f"][0]
    scan = data.index(b"\xff\xda") + 2  # start of scan: the headers end, the entropy-coded data follows
    cut = data[: scan + int.from_bytes(data[scan : scan + 2], "big") + 4]
    rewrite(first_episode(store), lambda g: _vlen(g, f"images/{cam}", [cut] + frames_of["f"][1:], chunks=(1,)))
    rel = str(first_episode(store).relative_to(store.root))

    def frame_errors(**kw):
        return [e.message for e in validate_store(store.root, **kw).errors if e.code == "image_frame" and e.where == rel]
    assert frame_errors() == []
    found = frame_errors(decode_frames=True)
    assert len(found) == 1 and found[0].startswith(f"camera '{cam}' frame 0: undecodable: "), found


@pytest.mark.parametrize("key,value,outside", [
    ("q01", -1000.0 - 1e-9 * 1000.0, False),
    ("q01", float(np.nextafter(-1000.0 - 1e-9 * 1000.0, -np.inf)), True),
    ("q99", 0.0 + 1e-9 * 1000.0, False),
    ("q99", float(np.nextafter(1e-9 * 1000.0, np.inf)), True),
], ids=["q01 at the tolerance", "q01 just past it", "q99 at the tolerance", "q99 just past it"])
def test_a_quantile_is_outside_the_data_s_range_only_past_1e_9_of_the_largest_magnitude(
        designed_store, key, value, outside):
    """Rule stats_mismatch: joint_1's data spans [-1000, 0], so a quantile may sit up to 1e-9 * 1000 past
    either end (inclusive) before it is called outside the range; one float further it is."""
    errors = _designed_errors(designed_store, lambda e: e[key].__setitem__(1, value))
    flagged = [m for m in errors if m == f"state 'joint_1' {key} = {value} is outside the data's range [-1000.0, 0.0]"]
    assert bool(flagged) == outside, errors
