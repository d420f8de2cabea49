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
    Annotations,
    RoboCOINConverter,
    _jsonl,
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
    assert conv["dimensions"]["action"] == ["left_gripper_open_scale", "right_gripper_open_scale"]
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


def _embodiment(robot_type, rel, options=None, root="/data/robocoin"):
    from types import SimpleNamespace

    return RoboCOINConverter(root, options).embodiment_for(SimpleNamespace(robot_type=robot_type, rel=rel), "ref")


def test_the_embodiment_option_names_every_dataset_s_embodiment():
    """``embodiment`` wins over every table; the robot model is the dataset's robot_type, else that id."""
    assert _embodiment("Galaxea R1 Lite", "Realman_x", {"embodiment": "forced"}) == ("forced", "Galaxea R1 Lite")
    assert _embodiment(None, "Mystery_x", {"embodiment": "forced"}) == ("forced", "forced")


def test_the_embodiments_option_is_checked_before_the_built_in_tables():
    """Its keys match a robot_type (normalised: case, '-' as '_', spaces) or, as whole-token prefixes, the dataset
    name; the longest matching prefix wins; the model is the robot_type, else the prefix without its '_'."""
    rows = {"embodiments": {"Lab-Arm": "lab_arm_v1", "lab_": "lab_generic", "lab_arm_": "lab_arm",
                            "r1_lite_": "my_r1"}}
    assert _embodiment(" lab_arm ", "Realman_x", rows) == ("lab_arm_v1", " lab_arm ")  # robot_type first
    assert _embodiment(None, "Lab_Arm_pick", rows) == ("lab_arm", "lab_arm")  # the longest prefix
    assert _embodiment(None, "Lab_Other_pick", rows) == ("lab_generic", "lab")
    assert _embodiment("cobot_magic", "Lab_Arm_pick", rows) == ("lab_arm", "cobot_magic")  # before ROBOT_TYPES
    assert _embodiment(None, "R1_Lite_open", rows) == ("my_r1", "r1_lite")  # before NAME_PREFIXES


def test_robot_type_is_looked_up_before_the_dataset_name_with_or_without_its_maker():
    assert _embodiment("Realman", "R1_Lite_open") == ("realman", "Realman")
    assert _embodiment("Galaxea-R1-Lite", "x") == ("galaxea_r1_lite", "Galaxea-R1-Lite")
    assert _embodiment("Unitree_G1edu", "x") == ("unitree_g1", "Unitree_G1edu")  # maker dropped: g1edu
    assert _embodiment("Mystery", "Cobot_Magic_fold") == ("agilex_cobot_magic", "Mystery")  # not in the table: name
    assert _embodiment(None, "Alpha_Bot_2_pick") == ("alphabot_2", "AlphaBot 2")  # null robot_type: the table's model


def test_only_leading_maker_tokens_are_skipped_in_a_dataset_name():
    """A robot's name matches at the start of the name, or after the makers' names only: a name that merely
    contains it, or a maker's name alone, matches no row; a name that is the robot's name alone does."""
    assert _embodiment(None, "Realman") == ("realman", "Realman")
    assert _embodiment(None, "Agilex_Galaxea_R1_Lite") == ("galaxea_r1_lite", "Galaxea R1 Lite")
    for name in ("Lab_Realman_pick", "Agilex", "Agilex_Lab_Realman_pick"):
        with pytest.raises(EpisodeError) as err:
            _embodiment(None, name)
        assert err.value.reason == Reason.MISSING_METADATA, name


def test_a_dataset_at_the_root_is_named_by_the_root_folder():
    assert _embodiment(None, "", root="/data/RMC_AIDA_L_pour") == ("rmc_aida_l", "RMC AIDA-L")
    assert _embodiment(None, None, root="/data/Realman_stack") == ("realman", "Realman")


def test_a_dataset_no_row_matches_is_missing_metadata_naming_both_keys():
    with pytest.raises(EpisodeError) as err:
        _embodiment("mystery_arm", "Agilex_fold_the_towel")
    assert err.value.reason == Reason.MISSING_METADATA
    assert err.value.message.startswith("ref: robot_type 'mystery_arm' and dataset name 'Agilex_fold_the_towel' "
                                        "match no row of the RoboCOIN embodiment table; ")
    assert "sources.<name>.options.embodiments: {<robot_type or name prefix>: <embodiment id>}" in err.value.message


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
    with pytest.raises(EpisodeError) as err:  # the message names the dataset folder, the file and the line
        episode(copy, f"{R1B}/episode_000000")
    assert err.value.message.startswith(f"{R1B}: annotations/subtask_annotations.jsonl line 1 is not ")
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


def _annotation_folder(tmp_path: Path, files: dict[str, str]) -> Path:
    (tmp_path / "annotations").mkdir()
    for name, text in files.items():
        (tmp_path / "annotations" / name).write_text(text)
    return tmp_path


def test_annotation_tables_are_read_per_kind_and_an_absent_file_is_an_absent_kind(tmp_path):
    folder = _annotation_folder(tmp_path, {
        "subtask_annotations.jsonl": '{"subtask_index": 0, "subtask": "reach"}\n\n  \n{"subtask_index": 3, '
                                     '"subtask": "grasp"}\n',
        "gripper_mode_annotation.jsonl": '{"gripper_mode_index": 1, "gripper_mode": "closed"}\n',
    })
    ann = Annotations.load(folder, "ds")
    assert ann.labels == {"subtask": {0: "reach", 3: "grasp"}, "gripper_mode": {1: "closed"}}  # blank lines skipped
    assert ann.scene_by_episode == {}
    assert Annotations.load(tmp_path / "nothing_here", "ds") == Annotations()


def test_scene_rows_may_name_an_episode_in_either_spelling(tmp_path):
    """The scene file holds ``{scene_index, scene}`` rows or per-episode rows: ``episode_idx`` or
    ``episode_index`` with ``scene_annotation`` or ``scene``."""
    folder = _annotation_folder(tmp_path, {"scene_annotations.jsonl": "\n".join([
        '{"episode_idx": 0, "scene_annotation": "a kitchen"}',
        '{"episode_index": 1, "scene": "a workbench"}',
        '{"episode_idx": 2, "scene": "a shelf", "episode_index": 9}',
        '{"scene_index": 4, "scene": "an office"}',
    ]) + "\n"})
    ann = Annotations.load(folder, "ds")
    assert ann.scene_by_episode == {0: "a kitchen", 1: "a workbench", 2: "a shelf"}
    assert ann.labels == {"scene": {4: "an office"}}


@pytest.mark.parametrize("file_name, line", [
    ("subtask_annotations.jsonl", '{"subtask_index": true, "subtask": "reach"}'),  # a bool is no index
    ("subtask_annotations.jsonl", '{"subtask_index": 1.0, "subtask": "reach"}'),
    ("subtask_annotations.jsonl", '{"subtask_index": 1, "subtask": 7}'),
    ("subtask_annotations.jsonl", '{"subtask": "reach"}'),
    ("subtask_annotations.jsonl", '{"episode_idx": 0, "scene_annotation": "a kitchen"}'),  # only scenes per episode
    ("scene_annotations.jsonl", '{"episode_idx": "0", "scene_annotation": "a kitchen"}'),
    ("scene_annotations.jsonl", '{"episode_idx": 0, "scene_annotation": 5}'),
    ("scene_annotations.jsonl", '{"episode_index": 0}'),
])
def test_an_annotation_row_without_an_int_index_and_a_text_is_invalid_metadata(tmp_path, file_name, line):
    kind = file_name.removesuffix("_annotations.jsonl")
    folder = _annotation_folder(tmp_path, {file_name: f'{{"{kind}_index": 0, "{kind}": "ok"}}\n{line}\n'})
    with pytest.raises(EpisodeError) as err:
        Annotations.load(folder, "R1_x")
    assert err.value.reason == Reason.INVALID_METADATA
    assert err.value.message == (f'R1_x: annotations/{file_name} line 2 is not {{"{kind}_index": int, '
                                 f'"{kind}": str}}: {json.loads(line)!r}')


def test_a_bad_annotation_row_is_named_by_its_line_in_the_file_blank_lines_counted(tmp_path):
    folder = _annotation_folder(tmp_path, {"gripper_mode_annotation.jsonl":
                                           '{"gripper_mode_index": 0, "gripper_mode": "open"}\n\n{"gripper_mode": "x"}\n'})
    with pytest.raises(EpisodeError) as err:
        Annotations.load(folder, "R1_x")
    assert err.value.message.startswith("R1_x: annotations/gripper_mode_annotation.jsonl line 3 is not ")


@pytest.mark.parametrize("text, message", [
    ('{"a": 1}\n\n{"a": \n', "ds/x.jsonl line 3 is not JSON: "),
    ('{"a": 1}\n[1, 2]\n', "ds/x.jsonl line 2 is not a JSON object"),
])
def test_an_annotation_file_line_that_is_not_a_json_object_names_its_line(tmp_path, text, message):
    path = tmp_path / "x.jsonl"
    path.write_text(text)
    with pytest.raises(EpisodeError) as err:
        _jsonl(path, "ds/x.jsonl")
    assert err.value.reason == Reason.INVALID_METADATA and err.value.message.startswith(message)
    path.write_text('\n{"a": 1}\n \n{"b": [2]}\n')
    assert _jsonl(path, "ds/x.jsonl") == [(2, {"a": 1}), (4, {"b": [2]})]  # blank lines skipped, but counted


def test_an_unreadable_annotation_file_is_invalid_metadata(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a": "\xff"}\n')  # not UTF-8
    for target in (path, tmp_path):  # undecodable bytes; a folder (an OSError)
        with pytest.raises(EpisodeError) as err:
            _jsonl(target, "ds/x.jsonl")
        assert err.value.reason == Reason.INVALID_METADATA and err.value.message.startswith("ds/x.jsonl: cannot read: ")


def test_the_scene_is_the_table_text_of_the_indices_the_frames_use_padding_dropped():
    """In order of first use; "null", "none", empty and unknown indices are padding; one text is a string,
    several a list; no text (or no scene column or table): the scene file's per-episode row, if any."""
    from types import SimpleNamespace

    def raw(indices, index=0):
        return SimpleNamespace(columns={"scene_annotation"}, meta=SimpleNamespace(index=index),
                               matrix=lambda key: np.asarray(indices).reshape(-1, 1))

    ann = Annotations(labels={"scene": {0: "a kitchen", 1: " NULL ", 2: "a bench", 3: "", 4: "None"}},
                      scene_by_episode={0: "per episode", 5: "five"})
    scene = RoboCOINConverter._scene
    assert scene(ann, raw([1, 0, 0, 2, 0])) == ["a kitchen", "a bench"]
    assert scene(ann, raw([1, 1, 2, 9])) == "a bench"
    assert scene(ann, raw([1, 3, 4, 9, 9])) == "per episode"
    assert scene(ann, raw([1, 3], index=7)) is None
    no_column = SimpleNamespace(columns=set(), meta=SimpleNamespace(index=5), matrix=None)
    assert scene(ann, no_column) == "five"
    assert scene(Annotations(scene_by_episode={0: "per episode"}), raw([0])) == "per episode"


def test_a_subtask_column_of_padding_only_gives_no_subtasks(samples, tmp_path):
    root, _, _ = samples
    shutil.copytree(root / R1B, tmp_path / R1B)
    path = tmp_path / R1B / "annotations" / "subtask_annotations.jsonl"
    indices = [json.loads(line)["subtask_index"] for line in path.read_text().splitlines() if line.strip()]
    path.write_text("".join(json.dumps({"subtask_index": i, "subtask": "null"}) + "\n" for i in indices))
    ep = episode(tmp_path, f"{R1B}/episode_000000")
    assert ep.subtasks is None and "unknown_subtask_indices" not in robocoin_meta(ep)
    assert "subtask_annotation" in ep.extras  # the column itself stays an extra


def test_the_episode_s_tasks_and_how_they_were_found_are_recorded(samples):
    root, _, _ = samples
    ep = episode(root, f"{R1}/episode_000000")
    tasks = ep.metadata["tasks"]
    assert tasks and tasks[0] == ep.instruction
    assert ep.metadata["task_info"]["task_index"] and all(isinstance(i, int) for i in ep.metadata["task_info"]["task_index"])


def test_an_annotation_line_that_is_not_json_names_the_dataset_file_and_line(tmp_path):
    folder = _annotation_folder(tmp_path, {"eef_velocity_annotation.jsonl":
                                           '{"eef_velocity_index": 0, "eef_velocity": "slow"}\n{"eef_velocity_index": 1,\n'})
    with pytest.raises(EpisodeError) as err:
        Annotations.load(folder, "R1_x")
    assert err.value.reason == Reason.INVALID_METADATA
    assert err.value.message.startswith("R1_x: annotations/eef_velocity_annotation.jsonl line 2 is not JSON: ")


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
