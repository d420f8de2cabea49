"""The RoboCOIN converter: its sample tree (one dataset per real-release quirk) and its tables.

The samples are written once per module (``write_samples``); each quirk of the real
RoboCOIN metadata listed in docs/sources/robocoin.md has a test below, and so has each
deliberately broken episode. The shared reader's own rules are tested in
tests/test_lerobot_reader.py.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from converters import get_converter
from converters.robocoin import (
    EMBODIMENTS,
    NAME_PREFIXES,
    RoboCOINConverter,
    frame_subtasks,
)
from pipelines.episode_store.errors import EpisodeError, Reason
from pipelines.episode_store.record import ActionKind
from pipelines.samples import robocoin as robocoin_samples
from pipelines.samples.formats.lerobot import av1_encoder
from pipelines.samples.robocoin import SAMPLE_DATASETS, SAMPLE_DEFECTS

R1 = "R1_Lite_open_the_microwave"
R1B = "Galaxea_R1_Lite_wipe_the_table"
G1 = "G1edu-u3_place_plastic_bowl"
AGX = "Cobot_Magic_move_the_bread"
RM = "Realman_build_blocks"


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    root = tmp_path_factory.mktemp("robocoin")
    t0 = time.perf_counter()
    expected = robocoin_samples.write_samples(root, seed=0)
    return root, expected, time.perf_counter() - t0


def load(root: Path, ref: str, options=None):
    conv = RoboCOINConverter(root, options)
    ctx = conv.read(lambda: conv.open_episode(ref))
    return ctx


def episode(root: Path, ref: str, options=None):
    with load(root, ref, options) as ep:
        return ep


def reason_of(root: Path, ref: str, options=None) -> Reason:
    with pytest.raises(EpisodeError) as err:
        conv = RoboCOINConverter(root, options)
        for r, opener in conv.episodes(ref):
            with conv.read(opener) as ep:
                for cam in ep.cameras.values():
                    list(cam.open_frames())
    return err.value.reason


def robocoin_meta(ep):
    return ep.metadata["robocoin"]


def lerobot_flags(ep):
    return ep.metadata["lerobot"]["flags"]


# -- identity and samples -----------------------------------------------------------------


def test_registered_with_declared_schema():
    cls = get_converter("robocoin")
    assert cls is RoboCOINConverter and cls.name == "robocoin"
    assert set(e for e, _ in NAME_PREFIXES.values()) <= set(EMBODIMENTS) == set(cls.embodiments)


def test_samples_are_small_and_seeded(samples, tmp_path):
    # the same seed giving the same bytes, in another process: test_converter_conformance
    root, expected, seconds = samples
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert size < 8 * 2**20

    def digest(base: Path) -> dict[str, str]:
        return {p.relative_to(base).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(base.rglob("*")) if p.is_file()}

    assert robocoin_samples.write_samples(tmp_path / "other", seed=1) != {} and \
        digest(tmp_path / "other") != digest(root)


def test_samples_cover_every_defect_and_two_codecs(samples):
    root, expected, _ = samples
    assert {v for v in expected.values() if v} == {r.value for r in SAMPLE_DEFECTS.values()}
    assert sum(v is None for v in expected.values()) >= 10
    codecs = set()
    for spec in SAMPLE_DATASETS:
        if (root / spec.folder / "meta" / "info.json").is_file() and spec.folder != "Realman_stack_basket":
            features = json.loads((root / spec.folder / "meta" / "info.json").read_text())["features"]
            codecs |= {f["info"]["video.codec"] for f in features.values() if f["dtype"] == "video"}
    assert codecs == ({"av1", "h264"} if av1_encoder() else {"h264"})


def test_samples_read_as_declared(samples):
    root, expected, _ = samples
    conv = RoboCOINConverter(root)
    assert sorted(conv.discover()) == sorted(expected)
    for ref, want in expected.items():
        if want is None:
            with load(root, ref) as ep:
                assert all(len(list(c.open_frames())) == ep.num_frames for c in ep.cameras.values())
        else:
            assert reason_of(root, ref) == want, ref


# -- quirks of the real releases ------------------------------------------------------------


def test_state_shape_30_with_28_names_is_padded_and_recorded(samples):
    root, _, _ = samples
    ep = episode(root, f"{G1}/episode_000000")
    assert ep.state.shape[1] == 30 and len(ep.state_names) == 30
    assert ep.state_names[:7] == [f"left_arm_joint_{i}_rad" for i in range(1, 8)]
    assert ep.state_names[-2:] == ["state_dim_28", "state_dim_29"]
    assert lerobot_flags(ep)["name_repairs"]["observation.state"] == {"declared": 28, "width": 30, "rule": "pad"}
    with pytest.raises(EpisodeError) as err:
        episode(root, f"{G1}/episode_000000", {"name_policy": "strict"})
    assert err.value.reason == Reason.NAME_MISMATCH


def test_gripper_name_variants_become_one_name_per_embodiment(samples):
    root, _, _ = samples
    a = episode(root, f"{R1}/episode_000000")  # info.json says left_gripper_open
    b = episode(root, f"{R1B}/episode_000000")  # info.json says left_gripper_open_scale
    assert a.embodiment == b.embodiment == "galaxea_r1_lite"
    assert a.state_names == b.state_names and a.action_names == b.action_names
    assert a.state_names[-2:] == ["left_gripper_open_scale", "right_gripper_open_scale"]
    assert lerobot_flags(a)["renamed_dimensions"] == {"left_gripper_open": "left_gripper_open_scale",
                                                      "right_gripper_open": "right_gripper_open_scale"}
    assert "renamed_dimensions" not in lerobot_flags(b)


def test_gripper_convention_is_recorded(samples):
    root, _, _ = samples
    conv = robocoin_meta(episode(root, f"{R1}/episode_000001"))["gripper_convention"]
    assert (conv["closed"], conv["open"]) == (0.0, 1.0)
    assert conv["dimensions"]["state"] == ["left_gripper_open_scale", "right_gripper_open_scale"]
    assert conv["dimensions"]["extras/gripper_open_scale_state"] == ["left_gripper_open_scale",
                                                                     "right_gripper_open_scale"]
    ep = episode(root, f"{R1}/episode_000001")
    grip = ep.state[:, ep.state_names.index("left_gripper_open_scale")]
    assert grip.min() >= 0.0 and grip.max() <= 1.0 and grip[0] == 1.0  # starts open at home


def test_float64_timestamps(samples):
    root, _, _ = samples
    ep = episode(root, f"{G1}/episode_000002")
    assert lerobot_flags(ep)["timestamp_dtype"] == "float64"
    jitter = ep.timestamp - np.arange(ep.num_frames) / 30.0
    assert 0 < np.abs(jitter).max() < 3e-4  # a recorded clock, not i / fps
    assert np.all(np.diff(ep.timestamp) > 0)


def test_splits_off_by_one_and_extra_info_keys(samples):
    root, _, _ = samples
    info = json.loads((root / G1 / "meta" / "info.json").read_text())
    assert info["splits"] == {"train": "0:3"} and info["total_episodes"] == 4
    ep = episode(root, f"{G1}/episode_000003")  # outside "0:3", still converted
    assert ep.metadata["lerobot"]["split"] is None and lerobot_flags(ep)["not_in_splits"] is True
    assert lerobot_flags(ep)["info_extra_keys"] == {"discarded_episode_indices": []}
    assert episode(root, f"{G1}/episode_000002").metadata["lerobot"]["split"] == "train"


def test_chunks_size_is_honoured(samples):
    root, _, _ = samples
    assert json.loads((root / G1 / "meta" / "info.json").read_text())["chunks_size"] == 39
    assert (root / R1 / "data" / "chunk-001" / "episode_000005.parquet").is_file()  # chunks_size 4
    ep = episode(root, f"{R1}/episode_000005")
    assert ep.num_frames > 0 and "path_fallback" not in lerobot_flags(ep)


def test_null_robot_type_resolved_from_the_dataset_name(samples):
    root, _, _ = samples
    for ref, emb, robot in ((f"{R1}/episode_000000", "galaxea_r1_lite", "Galaxea R1 Lite"),
                            (f"{G1}/episode_000000", "unitree_g1", "Unitree G1edu"),
                            (f"{AGX}/episode_000000", "agilex_cobot_magic", "AgileX Cobot Magic"),
                            (f"{RM}/episode_000000", "realman", "realman")):
        ep = episode(root, ref)
        assert (ep.embodiment, ep.robot_type) == (emb, robot), ref
    assert reason_of(root, "Mystery_bot_pick_the_cup/episode_000000") == Reason.MISSING_METADATA
    ep = episode(root, "Mystery_bot_pick_the_cup/episode_000000", {"embodiments": {"Mystery_bot_": "mystery_bot"}})
    assert ep.embodiment == "mystery_bot"
    ep = episode(root, f"{R1}/episode_000000", {"embodiment": "forced"})
    assert ep.embodiment == "forced"
    with pytest.raises(ValueError):
        RoboCOINConverter(root, {"embodiments": ["r1"]})


@pytest.mark.parametrize("name,embodiment", [
    ("Agilex_Cobot_Magic_fold_the_towel", "agilex_cobot_magic"),  # the maker's prefix, as the hub names them
    ("AGILEX-Cobot-Magic-fold-the-towel", "agilex_cobot_magic"),
    ("Galaxea_R1_Lite_open_the_drawer", "galaxea_r1_lite"),
    ("agilex_galaxea_r1_lite_x", "galaxea_r1_lite"),
    ("Cobot_Magicx_fold_the_towel", None),  # whole tokens only
    ("Agilex_fold_the_towel", None),
])
def test_maker_prefixed_names_with_a_null_robot_type_find_their_embodiment(samples, tmp_path, name, embodiment):
    import shutil

    root, _, _ = samples
    shutil.copytree(root / AGX, tmp_path / name)
    info = json.loads((tmp_path / name / "meta" / "info.json").read_text())
    info["robot_type"] = None
    (tmp_path / name / "meta" / "info.json").write_text(json.dumps(info))
    ref = f"{name}/episode_000000"
    if embodiment is None:
        with pytest.raises(EpisodeError) as info_:
            with load(tmp_path, ref):
                pass
        assert info_.value.reason == Reason.MISSING_METADATA
        assert "sources.<name>.options.embodiments" in info_.value.message
        return
    assert episode(tmp_path, ref).embodiment == embodiment


def test_early_example_format_states_and_name(samples):
    root, _, _ = samples
    info = json.loads((root / RM / "meta" / "info.json").read_text())
    assert "states" in info["features"] and "name" in info["features"]["states"]
    ep = episode(root, f"{RM}/episode_000000")
    meta = ep.metadata["lerobot"]
    assert (meta["state_key"], meta["action_key"]) == ("states", "actions")
    assert ep.state_names[:2] == ["right_arm_joint_1", "right_arm_joint_2"] and len(ep.state_names) == 30
    assert ep.extras["next.done"].dtype == bool and ep.extras["next.done"][-1, 0]


def test_dimension_names_carry_over(samples):
    root, _, _ = samples
    ep = episode(root, f"{AGX}/episode_000000")
    assert ep.state_names[:7] == [f"left_arm_joint_{i}_rad" for i in range(1, 7)] + ["left_gripper_open_scale"]
    assert ep.action_kind == ActionKind.JOINT_POSITION and ep.control_hz == 25.0
    assert robocoin_meta(ep)["action_equals_state"] is False


# -- annotations ----------------------------------------------------------------------------


def test_annotation_columns_are_named_extras(samples):
    root, _, _ = samples
    ep = episode(root, f"{R1}/episode_000000")
    for key in ("subtask_annotation", "scene_annotation", "eef_sim_pose_state", "eef_sim_pose_action",
                "eef_direction_state", "eef_velocity_action", "eef_acc_mag_state", "gripper_open_scale_action",
                "gripper_mode_state", "gripper_activity_action"):
        assert key in ep.extras and len(ep.extras[key]) == ep.num_frames, key
    assert ep.extra_names["eef_sim_pose_state"][:4] == ["left_eef_pos_x", "left_eef_pos_y", "left_eef_pos_z",
                                                         "left_eef_rot_x"]
    assert ep.extra_names["eef_direction_state"] == ["left_eef_direction", "right_eef_direction"]
    assert ep.extra_names["subtask_annotation"] == [f"subtask_annotation_dim_{i}" for i in range(5)]
    g1 = episode(root, f"{G1}/episode_000000")
    assert g1.extra_names["eef_sim_pose_state"][3] == "left_eef_ori_x"


def test_subtasks_and_scene_from_the_annotation_tables(samples):
    root, _, _ = samples
    ep = episode(root, f"{R1}/episode_000003")
    sub = ep.subtasks
    assert sub is not None and len(sub) == ep.num_frames
    assert sub[0] is None  # the idle prefix has no sub-task
    seen = list(dict.fromkeys(s for s in sub if s))
    assert seen == ["reach for the microwave handle", "grasp the microwave handle",
                    "move the microwave handle to the microwave", "release the microwave handle", "End"]
    idx = ep.extras["subtask_annotation"]  # 5 is the "null" padding entry of the table
    rows = np.where((idx[:, 0] == 5) & (idx[:, 1] != 5))[0]  # transition rows: first slot padding
    assert len(rows) and all(sub[r] is not None for r in rows)
    meta = robocoin_meta(ep)
    assert meta["scene"] == "A kitchen counter with a white microwave oven."
    assert meta["annotation_labels"]["gripper_mode"] == {"0": "open", "1": "closed"}
    assert meta["annotation_labels"]["subtask"]["5"] == "null"
    assert episode(root, f"{RM}/episode_000000").subtasks is None


def test_frame_subtasks_rule():
    table = {0: "reach", 1: "grasp", 2: "null"}
    rows = np.array([[2, 2, 2], [0, 2, 2], [2, 1, 2], [-1, 1, 0], [9, 0, 2], [9, 2, 2]])
    sub, unknown = frame_subtasks(rows, table)
    assert sub == [None, "reach", "grasp", "grasp", "reach", None] and unknown == [9]


def test_unknown_subtask_index_is_recorded_not_fatal(samples, tmp_path):
    root, _, _ = samples
    copy = tmp_path / "copy"
    shutil.copytree(root / R1B, copy / R1B)
    path = copy / R1B / "annotations" / "subtask_annotations.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[1:]) + "\n")  # drop subtask_index 0
    ep = episode(copy, f"{R1B}/episode_000000")
    assert robocoin_meta(ep)["unknown_subtask_indices"] == [0]
    path.write_text('{"subtask_index": "zero", "subtask": 3}\n')
    assert reason_of(copy, f"{R1B}/episode_000000") == Reason.INVALID_METADATA
    path.unlink()
    assert robocoin_meta(episode(copy, f"{R1B}/episode_000000"))["subtask_table_missing"] is True


def test_scene_per_episode_rows(samples, tmp_path):
    root, _, _ = samples
    shutil.copytree(root / RM, tmp_path / RM)
    (tmp_path / RM / "annotations").mkdir()
    (tmp_path / RM / "annotations" / "scene_annotations.jsonl").write_text(
        '{"episode_idx": 0, "scene_annotation": "A workbench with wooden blocks."}\n')
    assert robocoin_meta(episode(tmp_path, f"{RM}/episode_000000"))["scene"] == "A workbench with wooden blocks."
    assert "scene" not in robocoin_meta(episode(tmp_path, f"{RM}/episode_000002"))


def test_action_filled_from_state_is_detected(samples, tmp_path):
    root, _, _ = samples
    shutil.copytree(root / R1B, tmp_path / R1B)
    path = tmp_path / R1B / "data" / "chunk-000" / "episode_000001.parquet"
    table = pq.read_table(path)
    table = table.set_column(table.schema.get_field_index("action"), "action", table.column("observation.state"))
    pq.write_table(table, path)
    assert robocoin_meta(episode(tmp_path, f"{R1B}/episode_000001"))["action_equals_state"] is True


# -- broken episodes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ref, reason, words",
    [(f"{R1}/episode_000002", Reason.FRAME_COUNT_MISMATCH, "video frames but the episode has"),
     (f"{R1}/episode_000004", Reason.NON_FINITE_VALUES, "non-finite"),
     (f"{G1}/episode_000001", Reason.MISSING_FILE, "not found"),
     (f"{AGX}/episode_000001", Reason.CORRUPT_FILE, "parquet"),
     (f"{AGX}/episode_000002", Reason.MISSING_LANGUAGE, "task_index [7]"),
     (f"{RM}/episode_000001", Reason.NAME_MISMATCH, "30 names but the data has 28"),
     ("Realman_stack_basket", Reason.INVALID_METADATA, "info.json")],
)
def test_broken_samples_give_specific_reasons(samples, ref, reason, words):
    root, expected, _ = samples
    assert expected[ref] == reason.value
    conv = RoboCOINConverter(root)
    with pytest.raises(EpisodeError) as err:
        for r, opener in conv.episodes(ref):
            with conv.read(opener):
                pass
    assert err.value.reason == reason and words in err.value.message
    assert ref.split("/")[0] in err.value.message


def test_write_synthetic_gives_valid_episodes(tmp_path):
    robocoin_samples.write_synthetic(tmp_path, episodes=2, frames=30, height=47, width=64, seed=3)
    conv = RoboCOINConverter(tmp_path)
    refs = conv.discover()
    assert len(refs) == 2
    for ref in refs:
        with conv.read(lambda r=ref: conv.open_episode(r)) as ep:
            assert ep.num_frames == 30 and len(ep.cameras) == 3
            frame = next(iter(ep.cameras.values())).open_frames()
            assert next(frame).shape == (48, 64, 3)  # yuv420p: odd sizes are encoded one row larger


def test_unknown_options_are_rejected(samples):
    root, _, _ = samples
    with pytest.raises(ValueError, match="unknown option"):
        RoboCOINConverter(root, {"name_polcy": "strict"})
    with pytest.raises(ValueError):
        RoboCOINConverter(root, {"name_policy": "guess"})
