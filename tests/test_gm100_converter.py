"""The GM-100 profile on the LeRobot reader: platforms, task slugs, samples (docs/sources/gm100.md)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from converters import get_converter
from converters.formats import lerobot as L
from converters.gm100 import PLATFORMS, GM100Converter, task_instruction
from pipelines.episode_store.errors import EpisodeError, Reason
from pipelines.samples import gm100 as gm100_samples
from pipelines.samples.gm100 import SAMPLE_DEFECTS

POUR = "agibot_g1/pour_water_into_the_cup"
OPAQUE = "agibot_g1/task_00043"
TOWEL = "agilex/fold_the_towel_in_half"
CUPS = "galaxea_r1_pro/stack_the_paper_cups"
DRAWER = "galaxea_r1_pro/open_the_drawer"


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    root = tmp_path_factory.mktemp("gm100")
    t0 = time.perf_counter()
    expected = gm100_samples.write_samples(root, seed=0)
    return root, expected, time.perf_counter() - t0


def episode(root: Path, ref: str, options=None):
    conv = GM100Converter(root, options)
    with conv.read(lambda: conv.open_episode(ref)) as ep:
        for cam in ep.cameras.values():
            assert len(list(cam.open_frames())) == ep.num_frames
        return ep


def reason_of(root: Path, ref: str, options=None) -> EpisodeError:
    conv = GM100Converter(root, options)
    with pytest.raises(EpisodeError) as err:
        with conv.read(lambda: conv.open_episode(ref)) as ep:
            for cam in ep.cameras.values():
                list(cam.open_frames())
    return err.value


def test_registered_with_the_three_platforms():
    cls = get_converter("gm100")
    assert cls is GM100Converter
    assert set(cls.embodiments) == {"agibot_g1", "agilex_cobot_magic", "galaxea_r1_pro"}
    assert {p.embodiment for p in PLATFORMS} == set(cls.embodiments)


@pytest.mark.parametrize(
    "task, table, want",
    [("pour_water_into_the_cup", {}, ("pour water into the cup", "slug_words")),
     ("Fold-The-Towel", {}, ("fold the towel", "slug_words")),
     ("stack the cups", {}, ("stack the cups", "text")),
     ("wipe", {}, ("wipe", "text")),
     ("task_00043", {"task_00043": "Hang the mug on the rack."}, ("Hang the mug on the rack.", "task_texts")),
     ("pour_water_into_the_cup", {"pour_water_into_the_cup": "Pour water."}, ("Pour water.", "task_texts"))],
)
def test_task_slug_rule(task, table, want):
    assert task_instruction(task, table, "ref") == want


@pytest.mark.parametrize("task", ["task_00043", "TASK-7", "00012", "  "])
def test_opaque_or_empty_task_without_a_table_entry_is_missing_language(task):
    with pytest.raises(EpisodeError) as err:
        task_instruction(task, {}, "ref")
    assert err.value.reason == Reason.MISSING_LANGUAGE


def test_samples_are_small(samples):
    # the same seed giving the same bytes, in another process: test_converter_conformance
    root, expected, seconds = samples
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert size < 8 * 2**20


def test_samples_mix_v30_and_v21_and_cover_every_defect(samples):
    root, expected, _ = samples
    versions = {d: json.loads((root / d / "meta" / "info.json").read_text())["codebase_version"]
                for d in (POUR, TOWEL, CUPS)}
    assert versions == {POUR: "v3.0", TOWEL: "v2.1", CUPS: "v3.0"}
    assert (root / POUR / "data" / "chunk-000" / "file-001.parquet").is_file()  # episodes split over files
    assert {v for v in expected.values() if v} == {r.value for r in SAMPLE_DEFECTS.values()}


def test_samples_read_as_declared(samples):
    root, expected, _ = samples
    assert sorted(GM100Converter(root).discover()) == sorted(expected)
    for ref, want in expected.items():
        if want is None:
            episode(root, ref)
        else:
            assert reason_of(root, ref).reason == want, ref


def test_platform_embodiment_and_language_metadata(samples):
    root, _, _ = samples
    ep = episode(root, f"{POUR}/episode_000003")
    assert (ep.embodiment, ep.robot_type, ep.instruction) == ("agibot_g1", "agibot_g1", "pour water into the cup")
    assert ep.metadata["gm100"] == {"platform": "agibot_g1", "platform_from": "path",
                                    "task": "pour_water_into_the_cup", "instruction_rule": "slug_words"}
    assert ep.metadata["tasks"] == ["pour_water_into_the_cup"]
    assert ep.metadata["lerobot"]["codebase_version"] == "v3.0" and len(ep.cameras) == 3
    ep = episode(root, f"{TOWEL}/episode_000004")
    assert (ep.embodiment, ep.robot_type) == ("agilex_cobot_magic", "AgileX Cobot Magic")  # robot_type null
    ep = episode(root, f"{CUPS}/episode_000001")
    assert (ep.embodiment, ep.robot_type) == ("galaxea_r1_pro", "Galaxea R1 Pro")
    assert ep.state_names[-2:] == ["left_gripper", "right_gripper"]


def test_task_texts_table_from_option_or_file(samples, tmp_path):
    root, _, _ = samples
    err = reason_of(root, f"{OPAQUE}/episode_000000")
    assert err.reason == Reason.MISSING_LANGUAGE and "task_00043" in err.message
    assert err.message.startswith(f"{OPAQUE}/episode_000000: task 'task_00043' is an opaque id")
    ep = episode(root, f"{OPAQUE}/episode_000000", {"task_texts": {"task_00043": "Hang the mug on the rack."}})
    assert ep.instruction == "Hang the mug on the rack."
    assert ep.metadata["gm100"]["instruction_rule"] == "task_texts"
    table = tmp_path / "gm100_tasks.json"
    table.write_text(json.dumps({"task_00043": "Hang the mug.", "pour_water_into_the_cup": "Pour the water."}))
    ep = episode(root, f"{POUR}/episode_000000", {"task_texts_file": str(table)})
    assert ep.instruction == "Pour the water."
    for bad in ({"task_texts": {"task_1": ""}}, {"task_texts": {"task_1": 3}}):
        with pytest.raises(ValueError):
            GM100Converter(root, bad)


def test_platform_from_robot_type_or_option(samples, tmp_path):
    root, _, _ = samples
    shutil.copytree(root / POUR, tmp_path / "lingbot" / "pour")  # no platform folder in the path
    ep = episode(tmp_path, "lingbot/pour/episode_000000")  # info.json robot_type "agibot_g1"
    assert ep.embodiment == "agibot_g1" and ep.metadata["gm100"]["platform_from"] == "robot_type"
    shutil.copytree(root / CUPS, tmp_path / "lingbot" / "cups")  # robot_type null and no platform folder
    err = reason_of(tmp_path, "lingbot/cups/episode_000000")
    assert err.reason == Reason.MISSING_METADATA and "platform" in err.message
    assert err.message.startswith("lingbot/cups/episode_000000: no GM-100 platform in the dataset path")
    ep = episode(tmp_path, "lingbot/cups/episode_000000", {"platform": "R1-Pro"})
    assert ep.embodiment == "galaxea_r1_pro" and ep.metadata["gm100"]["platform_from"] == "option"
    with pytest.raises(ValueError):
        GM100Converter(tmp_path, {"platform": "franka"})


@pytest.mark.parametrize(
    "ref, reason, words",
    [(f"{POUR}/episode_000002", Reason.FRAME_COUNT_MISMATCH, "video frames in ["),
     (f"{POUR}/episode_000004", Reason.NON_FINITE_VALUES, "non-finite"),
     (f"{TOWEL}/episode_000001", Reason.CORRUPT_FILE, "parquet"),
     (f"{TOWEL}/episode_000002", Reason.MISSING_LANGUAGE, "task_index [9]"),
     (f"{TOWEL}/episode_000003", Reason.MISSING_FILE, "camera_left_wrist"),
     (f"{DRAWER}/episode_000001", Reason.NAME_MISMATCH, "18 names but the data has 16")],
)
def test_broken_samples_give_specific_reasons(samples, ref, reason, words):
    root, expected, _ = samples
    assert expected[ref] == reason.value
    err = reason_of(root, ref)
    assert err.reason == reason and words in err.message and ref in err.message


def test_episode_next_to_a_short_one_in_the_same_video_file_is_intact(samples):
    root, _, _ = samples
    ep = episode(root, f"{POUR}/episode_000001")  # shares file-000 with the short episode 2
    assert ep.metadata["lerobot"]["flags"] == {"timestamp_dtype": "float32"}


def test_write_synthetic_gives_valid_episodes(tmp_path):
    gm100_samples.write_synthetic(tmp_path, episodes=3, frames=25, height=48, width=64, seed=2)
    conv = GM100Converter(tmp_path)
    refs = conv.discover()
    assert len(refs) == 3
    ds = L.LeRobotDataset(tmp_path, "agibot_g1/pour_water_into_the_cup")
    assert ds.version == "v3.0"
    for ref in refs:
        ep = episode(tmp_path, ref)
        assert ep.num_frames == 25 and ep.embodiment == "agibot_g1"


def test_unknown_options_are_rejected(samples):
    root, _, _ = samples
    with pytest.raises(ValueError, match="unknown option"):
        GM100Converter(root, {"task_text": {}})
    GM100Converter(root, {"name_policy": "strict", "video_extra_frames": 1, "platform": "agilex"})


# -- rules at their edges (issue 18: what the mutation run showed no test pinned) ---------------


@pytest.mark.parametrize(
    "task, want",
    [("  Pour__Water--into_the_Cup ", ("pour water into the cup", "slug_words")),  # runs of separators: one space
     ("Task 7", None), ("task-0012", None), ("7", None),  # opaque ids, any case and separator
     ("taskforce_7", ("taskforce 7", "slug_words")), ("pour water_now", ("pour water_now", "text"))],
)
def test_task_strings_are_stripped_then_read_as_id_slug_or_text(task, want):
    if want is None:
        with pytest.raises(EpisodeError) as err:
            task_instruction(task, {}, "ds/episode_000001")
        assert err.value.reason is Reason.MISSING_LANGUAGE
        assert err.value.message == (f"ds/episode_000001: task {task.strip()!r} is an opaque id with no entry in the "
                                     "task_texts table (option task_texts / task_texts_file)")
    else:
        assert task_instruction(task, {}, "ref") == want


def test_a_task_table_entry_matches_the_stripped_task_and_an_empty_task_is_named():
    assert task_instruction(" task_7 ", {"task_7": "Open it."}, "ref") == ("Open it.", "task_texts")
    with pytest.raises(EpisodeError) as err:
        task_instruction("   ", {}, "ds/episode_000001")
    assert err.value.message == "ds/episode_000001: empty task string"


def test_task_texts_file_relative_to_the_root_stripped_and_overridden_by_the_option(tmp_path):
    (tmp_path / "tasks.json").write_text(json.dumps({" task_1 ": " Lift the cup. ", "task_2": "Two."}))
    conv = GM100Converter(tmp_path, {"task_texts_file": "tasks.json", "task_texts": {"task_2": "Second."}})
    assert conv.task_texts == {"task_1": "Lift the cup.", "task_2": "Second."}
    assert GM100Converter(tmp_path, {"task_texts_file": str(tmp_path / "tasks.json")}).task_texts["task_2"] == "Two."
    assert GM100Converter(tmp_path).task_texts == {}


def test_a_task_texts_file_is_read_as_utf8_whatever_the_locale(tmp_path):
    """Task texts may be in any language: the file is decoded as UTF-8 even where the locale is ASCII."""
    import locale

    (tmp_path / "tasks.json").write_text(json.dumps({"task_1": "拿起杯子"}, ensure_ascii=False), encoding="utf-8")
    before = locale.setlocale(locale.LC_CTYPE)
    try:
        locale.setlocale(locale.LC_CTYPE, "C")
        texts = GM100Converter(tmp_path, {"task_texts_file": "tasks.json"}).task_texts
    finally:
        locale.setlocale(locale.LC_CTYPE, before)
    assert texts == {"task_1": "拿起杯子"}


@pytest.mark.parametrize("content", [None, b"{", b"\xff\xfe", b'{"task_1": 3}'])
def test_an_unreadable_task_texts_file_is_an_option_error(tmp_path, content):
    path = tmp_path / "tasks.json"
    if content is not None:
        path.write_bytes(content)
    words = f"option task_texts_file: cannot read {path}: "
    if content == b'{"task_1": 3}':  # read, but not a table of texts
        words = f"gm100: task_texts_file {path}"
    with pytest.raises(ValueError) as err:
        GM100Converter(tmp_path, {"task_texts_file": "tasks.json"})
    assert words in str(err.value)


@pytest.mark.parametrize(
    "name, embodiment",
    [("agibot_g1", "agibot_g1"), ("AgiBot G1", "agibot_g1"), (" g1 ", "agibot_g1"),
     ("Cobot-Magic", "agilex_cobot_magic"), ("agilex_cobot_magic", "agilex_cobot_magic"),
     ("R1 Pro", "galaxea_r1_pro"), ("galaxea_r1_pro", "galaxea_r1_pro"),
     ("piper", None), ("franka", None)],
)
def test_option_platform_names_an_embodiment_or_a_platform_folder(tmp_path, name, embodiment):
    if embodiment is None:  # "piper" is a robot_type, not a folder name
        with pytest.raises(ValueError) as err:
            GM100Converter(tmp_path, {"platform": name})
        assert str(err.value) == (f"gm100: option platform {name!r} is not one of "
                                  "['agibot_g1', 'agilex_cobot_magic', 'galaxea_r1_pro']")
    else:
        conv = GM100Converter(tmp_path, {"platform": name})
        assert conv.forced_platform.embodiment == embodiment
        platform, how = conv.platform_for(SimpleNamespace(rel="agilex/x", robot_type="agibot"), "ref")
        assert (platform.embodiment, how) == (embodiment, "option")  # the option wins over path and robot_type


@pytest.mark.parametrize(
    "rel, robot_type, embodiment, how",
    [("data/AgileX/fold", None, "agilex_cobot_magic", "path"),
     ("Galaxea-R1-Pro/cups", "agibot", "galaxea_r1_pro", "path"),  # the path wins over robot_type
     ("x/agilex_cobot_magic/y", None, "agilex_cobot_magic", "path"),  # the embodiment id as a folder
     ("lingbot/fold", "Piper", "agilex_cobot_magic", "robot_type"),
     ("lingbot/fold", "agibot-a2d", "agibot_g1", "robot_type"),
     ("lingbot/cups", " R1 Pro ", "galaxea_r1_pro", "robot_type")],
)
def test_platform_from_a_path_folder_then_robot_type(tmp_path, rel, robot_type, embodiment, how):
    platform, found = GM100Converter(tmp_path).platform_for(SimpleNamespace(rel=rel, robot_type=robot_type), "ref")
    assert (platform.embodiment, found) == (embodiment, how)


def test_no_platform_names_the_path_and_robot_type(tmp_path):
    with pytest.raises(EpisodeError) as err:
        GM100Converter(tmp_path).platform_for(SimpleNamespace(rel="lingbot/cups", robot_type="spot"), "ds/episode_1")
    assert err.value.reason is Reason.MISSING_METADATA
    assert err.value.message == ("ds/episode_1: no GM-100 platform in the dataset path 'lingbot/cups' or robot_type "
                                 "'spot'; put the dataset under a platform folder or set option 'platform'")


def test_how_the_task_text_was_found_is_kept_in_metadata(tmp_path):
    raw = SimpleNamespace(dataset=SimpleNamespace(layout="v3", tasks={}), task_index=None, ref="agibot_g1/x/episode_1",
                          meta=SimpleNamespace(tasks=["wipe_the_table"]))  # no task_index column: the episode's list
    ds = SimpleNamespace(rel="agibot_g1/x", robot_type=None)
    instruction, alternatives, subtasks, meta = GM100Converter(tmp_path).language_for(ds, raw)
    assert (instruction, alternatives, subtasks) == ("wipe the table", [], None)
    assert meta == {"tasks": ["wipe_the_table"], "task_info": {"task_source": "episodes_meta"},
                    "gm100": {"platform": "agibot_g1", "platform_from": "path", "task": "wipe_the_table",
                              "instruction_rule": "slug_words"}}
