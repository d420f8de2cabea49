"""Training data: a released manifest -> samples and batches, with exact answers on constructed stores.

The stores here encode every value's origin (``tests/training_stores.py``), so each test can say
which episode, frame, dimension and camera every number in a sample must come from.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines.episode_store.reader import EpisodeReader
from tests.training_stores import (
    ALOHA_CAMERAS,
    ALOHA_NAMES,
    FRANKA_NAMES,
    action_value,
    build_store,
    build_test_manifest,
    camera_colour,
    coded_episode,
    eid,
    state_value,
)
from training.config import AugmentConfig, ConfigError, DataConfig, load_training_config, parse
from training.data import DataSpec, ManifestData, ManifestDataset, ManifestLoader, TrainingDataError
from training.data.dataset import prompt_text
from training.data.images import Augmenter, decode_fitted, decode_into
from training.data.layouts import LayoutError, LayoutTable
from training.data.normalize import FieldStats, Normalizer

REPO = Path(__file__).resolve().parents[1]
FRANKA = "franka_task/ep0.hdf5"
ALOHA = "aloha_task/ep0.hdf5"
NO_AUGMENT = AugmentConfig(enabled=False)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One store with a single-arm and a bimanual episode (kept ranges with a gap), and its manifest."""
    base = tmp_path_factory.mktemp("training_data")
    episodes = [
        coded_episode(FRANKA, 40, subtasks=["reach"] * 20 + [None] * 20),
        coded_episode(ALOHA, 30, embodiment="aloha", names=ALOHA_NAMES, cameras=ALOHA_CAMERAS,
                      action_padded=[False] * 28 + [True] * 2),
        coded_episode("franka_task/ep1.hdf5", 25, instruction="open the drawer"),
    ]
    build_store(base / "data" / "inhouse", episodes, kept={FRANKA: [(5, 20), (25, 40)]})
    build_test_manifest([base / "data" / "inhouse"], base / "manifest")
    return base


@pytest.fixture
def copy(built, tmp_path):
    """A private copy of the store and manifest, free to break."""
    shutil.copytree(built / "data", tmp_path / "data")
    shutil.copytree(built / "manifest", tmp_path / "manifest")
    return tmp_path


def config(base: Path, **kw) -> DataConfig:
    settings = dict(data_root=str(base / "data"), num_workers=0, batch_size=4, chunk=8, image_size=(32, 32),
                    layouts=str(REPO / "training" / "data" / "layouts.yaml"), augment=NO_AUGMENT)
    return DataConfig(**{**settings, **kw})


def dataset(base: Path, **kw) -> tuple[ManifestData, ManifestDataset]:
    data = ManifestData(base / "manifest", config(base, **kw))
    return data, ManifestDataset(data)


def row_of(data: ManifestData, ref: str) -> int:
    return next(i for i, r in enumerate(data.rows) if r["episode_id"] == eid(ref))


# --- one sample: chunk, padding and masks -----------------------------------------------------------


def test_chunk_stops_at_the_end_of_its_kept_range_with_a_time_mask(built):
    data, ds = dataset(built)
    row = row_of(data, FRANKA)
    s = ds.sample(row, 17, position=0)  # kept ranges 5..20 and 25..40: frames 17, 18, 19 only
    assert s["action_time_mask"].tolist() == [True] * 3 + [False] * 5
    for k in range(3):
        assert s["action"][k, :8].tolist() == [action_value(17 + k, j) for j in range(8)]
    assert not s["action"][3:].any()  # zeros, never the next range's frames or a repeated last action
    full = ds.sample(row, 5, position=1)
    assert full["action_time_mask"].all()
    assert full["action"][:, 0].tolist() == [action_value(5 + k, 0) for k in range(8)]
    edge = ds.sample(row, 19, position=2)  # the last kept frame of its range: one real step
    assert edge["action_time_mask"].tolist() == [True] + [False] * 7
    last = ds.sample(row, 39, position=3)  # the episode's last frame
    assert last["action_time_mask"].tolist() == [True] + [False] * 7


def test_a_frame_outside_the_kept_ranges_is_refused(built):
    data, ds = dataset(built)
    for frame in (22, 4, 20):  # in the gap; one before the first range; a range's (exclusive) stop
        with pytest.raises(IndexError, match="outside the kept ranges"):
            ds.sample(row_of(data, FRANKA), frame, position=0)
    with pytest.raises(IndexError, match=r"frame 40 out of range .* \(40 frames\)"):  # past the episode's end
        ds.sample(row_of(data, FRANKA), 40, position=0)


def test_a_chunk_that_ends_exactly_at_its_range_s_end_is_whole_and_one_later_is_cut(built):
    data, ds = dataset(built)
    row = row_of(data, FRANKA)  # kept ranges 5..20 and 25..40, chunk 8
    assert ds.sample(row, 12, position=0)["action_time_mask"].all()  # frames 12..19
    assert ds.sample(row, 13, position=0)["action_time_mask"].tolist() == [True] * 7 + [False]
    start = ds.sample(row, 25, position=0)  # the first frame of the second range
    assert start["action_time_mask"].all() and start["action"][:, 0].tolist() == [action_value(25 + k, 0)
                                                                                 for k in range(8)]


def test_action_padded_frames_are_masked_not_presented_as_data(built):
    data, ds = dataset(built)
    s = ds.sample(row_of(data, ALOHA), 25, position=0)  # frames 28 and 29 only hold position
    assert s["action_time_mask"].tolist() == [True, True, True, False, False, False, False, False]
    assert not s["action"][3:].any()


def test_single_arm_layout_and_camera_slots(built):
    data, ds = dataset(built)
    s = ds.sample(row_of(data, FRANKA), 10, position=0)
    assert s["state"][:8].tolist() == [state_value(10, j) for j in range(8)]
    assert not s["state"][8:].any()
    assert np.flatnonzero(s["state_mask"]).tolist() == list(range(8))
    assert np.flatnonzero(s["action_mask"]).tolist() == list(range(8))
    assert s["image_mask"].tolist() == [True, True, False]  # primary = cam_front, left_wrist = cam_wrist
    for slot, k in ((0, 0), (1, 1)):
        assert np.abs(s["images"][slot, 16, 16].astype(int) - camera_colour(k, 10)).max() <= 3
    assert not s["images"][2].any()
    assert s["images"].shape == (3, 32, 32, 3) and s["images"].dtype == np.uint8


def test_a_blind_run_masks_every_camera_and_reads_none(built, monkeypatch):
    data, ds = dataset(built)
    seen = ds.sample(row_of(data, ALOHA), 3, position=0)
    assert seen["image_mask"].all()
    _, blind = dataset(built, images=False)
    monkeypatch.setattr("training.data.dataset.decode_into", lambda *a: pytest.fail("a blind run decoded a frame"))
    buffer = np.full(blind.image_shape, 255, dtype=np.uint8)  # a reused batch buffer must come back black
    s = blind.sample(row_of(data, ALOHA), 3, position=0, images=buffer)
    assert not s["image_mask"].any() and not buffer.any()
    assert np.array_equal(s["state"], seen["state"]) and np.array_equal(s["action"], seen["action"])


def test_bimanual_layout_places_each_arm_in_its_own_group(built):
    data, ds = dataset(built)
    s = ds.sample(row_of(data, ALOHA), 3, position=0)
    # left_joint1..6 -> 0..5, left_gripper -> 7, right_joint1..6 -> 8..13, right_gripper -> 15
    expected_index = list(range(6)) + [7] + list(range(8, 14)) + [15]
    for j, index in enumerate(expected_index):
        assert s["state"][index] == state_value(3, j)
        assert s["action"][0, index] == action_value(3, j)
    assert np.flatnonzero(s["state_mask"]).tolist() == expected_index
    assert np.flatnonzero(s["action_mask"]).tolist() == expected_index
    assert s["image_mask"].tolist() == [True, True, True]
    for slot in range(3):  # cam_high, cam_left_wrist, cam_right_wrist in that order
        assert np.abs(s["images"][slot, 16, 16].astype(int) - camera_colour(slot, 3)).max() <= 3


def test_prompt_choices(built):
    assert prompt_text("instruction", "pick up the cube.", "reach") == "pick up the cube."
    assert prompt_text("subtask", "pick up the cube", "reach") == "reach"
    assert prompt_text("subtask", "pick up the cube", None) == "pick up the cube"
    assert prompt_text("instruction_and_subtask", "pick up the cube.", "reach") == "pick up the cube. reach"
    assert prompt_text("instruction_and_subtask", "pick up the cube", None) == "pick up the cube"
    data, ds = dataset(built, prompt="instruction_and_subtask")
    s = ds.sample(row_of(data, FRANKA), 10, position=0)
    assert (s["text"], s["instruction"], s["subtask"]) == ("pick up the cube. reach", "pick up the cube", "reach")
    assert ds.sample(row_of(data, FRANKA), 30, position=1)["text"] == "pick up the cube"


def test_images_decode_at_reduced_scale_and_letterbox_other_aspect_ratios(monkeypatch):
    import simplejpeg
    from PIL import Image

    from pipelines.episode_store.images import encode_jpeg

    wide = np.zeros((48, 96, 3), dtype=np.uint8)
    wide[:, :] = (200, 100, 50)
    out = decode_fitted(encode_jpeg(Image.fromarray(wide), 95), (32, 32))
    assert out.shape == (32, 32, 3)
    assert not out[:6].any() and not out[-6:].any()  # letterbox bars: 48x96 fits 32x32 as 16 rows of image
    assert np.abs(out[16].astype(int) - (200, 100, 50)).max() <= 4
    square = encode_jpeg(Image.fromarray(np.full((128, 128, 3), 90, np.uint8)), 95)
    calls = []
    original = simplejpeg.decode_jpeg

    def spy(data, **kw):
        result = original(data, **kw)
        calls.append((kw.get("min_height"), kw.get("min_width"), result.shape))
        return result

    monkeypatch.setattr(simplejpeg, "decode_jpeg", spy)
    small = decode_fitted(square, (32, 32))
    assert calls == [(32, 32, (32, 32, 3))]  # libjpeg decoded at 1/4 scale in the DCT domain: no resample
    assert small.shape == (32, 32, 3) and abs(int(small.mean()) - 90) <= 2
    buffer = np.zeros((128, 128, 3), np.uint8)
    assert decode_into(square, buffer) is buffer and abs(int(buffer.mean()) - 90) <= 2  # stored size: in place
    assert calls[-1][:2] == (None, None)
    odd = decode_fitted(square, (40, 40))  # libjpeg's nearest scale at or above is 3/8 (48 px): one resample
    assert odd.shape == (40, 40, 3) and abs(int(odd.mean()) - 90) <= 2 and calls[-1][2] == (48, 48, 3)
    with pytest.raises(ValueError):
        decode_fitted(b"\xff\xd8 not really a jpeg", (32, 32))


def test_decoded_frames_are_uint8_of_the_asked_height_and_width():
    from PIL import Image

    from pipelines.episode_store.images import encode_jpeg

    data = encode_jpeg(Image.fromarray(np.full((60, 80, 3), 90, np.uint8)), 95)
    for size in ((30, 40), (45, 60), (60, 80)):  # DCT-scaled, resampled, stored size
        out = decode_fitted(data, size)
        assert out.shape == (*size, 3) and out.dtype == np.uint8


def test_frames_within_a_pixel_of_the_aspect_ratio_are_stretched_bilinearly_others_letterboxed():
    """The rule serving must reproduce: a frame whose aspect ratio is within one pixel of the input's is resized
    (bilinear, no bars); any other is letterboxed (bilinear, black bars)."""
    from PIL import Image, ImageOps

    from training.data.images import fit

    white = Image.new("RGB", (200, 100), (255, 255, 255))
    stretched = np.asarray(fit(white, (51, 100)))  # 200 * 51 - 100 * 100 = 200 = one pixel of the long side
    assert stretched.shape == (51, 100, 3) and stretched.min() == 255
    boxed = np.asarray(fit(white, (60, 100)))
    assert boxed.shape == (60, 100, 3) and not boxed[:5].any() and not boxed[-5:].any() and boxed[30].min() == 255
    rng = np.random.default_rng(0)
    noisy = Image.fromarray(rng.integers(0, 256, (100, 200, 3), dtype=np.uint8))
    assert np.array_equal(np.asarray(fit(noisy, (51, 100))),
                          np.asarray(noisy.resize((100, 51), Image.Resampling.BILINEAR)))
    assert np.array_equal(np.asarray(fit(noisy, (60, 100))),
                          np.asarray(ImageOps.pad(noisy, (100, 60), method=Image.Resampling.BILINEAR)))
    assert fit(noisy, (100, 200)) is noisy


# --- normalisation ----------------------------------------------------------------------------------


def _stats(names, **values) -> FieldStats:
    n = len(names)
    full = {k: np.asarray(values.get(k, [0.0] * n), dtype=np.float64) for k in
            ("count", "mean", "std", "min", "max", "q01", "q99")}
    return FieldStats(names=list(names), **full)


def test_bounds_q99_and_mean_std_formulas_and_their_inverse():
    stats = _stats(["a", "b", "c"], count=[10] * 3, mean=[1.0, 5.0, 0.0], std=[2.0, 0.0, 1.0],
                   q01=[0.0, 3.0, -1.0], q99=[10.0, 3.0, 1.0])
    groups = {"d/e": {"state": stats, "action": stats}}
    q99 = Normalizer("bounds_q99", "dataset_embodiment", groups)
    x = np.array([[5.0, 3.0, 1.0], [10.0, 7.0, -1.0], [20.0, 3.0, 0.0]])
    y = q99.normalize("d/e", "action", x, ["a", "b", "c"])
    np.testing.assert_allclose(y, [[0.0, 0.0, 1.0], [1.0, 0.0, -1.0], [1.0, 0.0, 0.0]])  # clipped; constant -> 0
    back = q99.unnormalize("d/e", "action", y, ["a", "b", "c"])
    np.testing.assert_allclose(back[:2], [[5.0, 3.0, 1.0], [10.0, 3.0, -1.0]], atol=1e-5)  # b is constant 3
    # names select statistics, whatever the order of the vector
    np.testing.assert_allclose(q99.normalize("d/e", "action", x[:, ::-1], ["c", "b", "a"]), y[:, ::-1])
    ms = Normalizer("mean_std", "dataset_embodiment", groups)
    z = ms.normalize("d/e", "state", x, ["a", "b", "c"])
    np.testing.assert_allclose(z[0], [(5 - 1) / (2 + 1e-6), (3 - 5) / 1e-6, 1 / (1 + 1e-6)], rtol=1e-6)
    np.testing.assert_allclose(ms.unnormalize("d/e", "state", z, ["a", "b", "c"]), x, rtol=1e-5)
    none = Normalizer("none", "dataset_embodiment", groups)
    assert none.normalize("d/e", "state", x, ["a", "b", "c"]).tolist() == x.tolist()
    below = q99.normalize("d/e", "action", np.array([[-30.0, 3.0, -5.0]]), ["a", "b", "c"])
    assert below.tolist() == [[-1.0, 0.0, -1.0]]  # clipped at -1 below q01 as at +1 above q99


def test_a_data_error_lists_twenty_problems_and_counts_the_rest():
    from training.data.dataset import _fail

    _fail([], "nothing wrong")  # no problem: no error
    with pytest.raises(TrainingDataError) as twenty:
        _fail([f"p{i}" for i in range(20)], "what")
    assert str(twenty.value) == "what:\n  " + "\n  ".join(f"p{i}" for i in range(20))
    with pytest.raises(TrainingDataError) as more:
        _fail([f"p{i}" for i in range(21)], "what")
    assert str(more.value).endswith("\n  p19\n  ... and 1 more") and "p20" not in str(more.value)


def test_saved_normalisation_reads_back_the_same_and_says_how_it_was_made():
    """Beside every checkpoint: counts as integers, statistics as floats, the mode, scope, epsilon, quantile
    merge and stores; another format_version is refused naming it."""
    from training.data.normalize import FORMAT_VERSION, STD_EPS, NormalizationError

    stats = _stats(["a", "b"], count=[10, 4], mean=[1.0, 2.0], std=[0.5, 1.0], min=[0.0, -1.0], max=[2.0, 3.0],
                   q01=[0.25, -0.5], q99=[1.75, 2.5])
    norm = Normalizer("mean_std", "embodiment", {"franka": {"state": stats, "action": stats}},
                      [{"store": "s3://store"}])
    doc = norm.to_json()
    entry = doc["groups"]["franka"]["state"]
    assert entry["count"] == [10, 4] and all(type(v) is int for v in entry["count"])
    assert entry["mean"] == [1.0, 2.0] and all(type(v) is float for v in entry["mean"])
    assert {k: v for k, v in doc.items() if k != "groups"} == {
        "format_version": FORMAT_VERSION, "mode": "mean_std", "scope": "embodiment", "std_eps": STD_EPS,
        "quantile_merge": "q01 = min over stores, q99 = max over stores", "stores": [{"store": "s3://store"}]}
    back = Normalizer.from_json(json.loads(json.dumps(doc)))
    assert back.to_json() == doc
    with pytest.raises(NormalizationError, match=f"normalization file format_version 99, this a1pipe reads "
                                                 f"{FORMAT_VERSION}"):
        Normalizer.from_json(dict(doc, format_version=99))


def test_statistics_are_selected_by_name_and_missing_groups_or_names_are_named():
    from training.data.normalize import NormalizationError

    stats = _stats(["a", "b", "c"], mean=[1.0, 2.0, 3.0], count=[4, 5, 6])
    chosen = stats.select(["c", "a"], "g state")
    assert chosen.names == ["c", "a"] and chosen.mean.tolist() == [3.0, 1.0] and chosen.count.tolist() == [6, 4]
    with pytest.raises(NormalizationError, match=re.escape("g state: no statistics for dimensions ['z']")):
        stats.select(["a", "z"], "g state")
    norm = Normalizer("mean_std", "embodiment", {"franka": {"state": stats, "action": stats}})
    with pytest.raises(NormalizationError, match=re.escape("no normalisation statistics for group 'ur5' "
                                                          "(have ['franka'])")):
        norm.normalize("ur5", "state", np.zeros(3), ["a", "b", "c"])
    with pytest.raises(NormalizationError, match=re.escape("franka action: no statistics for dimensions ['z']")):
        norm.normalize("franka", "action", np.zeros(2), ["a", "z"])


def test_a_dimension_as_wide_as_the_zero_width_is_still_scaled_narrower_ones_map_to_zero():
    from training.data.normalize import ZERO_WIDTH

    stats = _stats(["wide", "narrow"], q01=[0.0, 0.0], q99=[ZERO_WIDTH, ZERO_WIDTH / 2])
    norm = Normalizer("bounds_q99", "embodiment", {"e": {"state": stats, "action": stats}})
    assert norm.normalize("e", "state", np.array([ZERO_WIDTH, ZERO_WIDTH / 2]), ["wide", "narrow"]).tolist() == [
        1.0, 0.0]


def test_unnormalised_and_unpacked_vectors_are_float32_with_dropped_dimensions_nan():
    from training.data.layouts import VectorLayout

    none = Normalizer("none", "embodiment", {})
    assert none.unnormalize("e", "action", np.array([1.5, 2.0]), ["a", "b"]).dtype == np.float32
    layout = VectorLayout(names=("a", "b", "c"), targets=np.array([2, -1, 0]), size=4)
    one = layout.unpack(np.array([1.0, 2.0, 3.0, 4.0]))  # a single vector, float64 in
    assert one.dtype == np.float32 and one.shape == (3,)
    assert one[0] == 3.0 and np.isnan(one[1]) and one[2] == 1.0
    assert layout.unpack(np.zeros((5, 4))).shape == (5, 3)


def test_a_constant_dimension_unnormalises_to_its_constant_whatever_the_model_predicts():
    stats = _stats(["c", "x"], q01=[3.0, 0.0], q99=[3.0, 10.0])
    norm = Normalizer("bounds_q99", "embodiment", {"e": {"state": stats, "action": stats}})
    back = norm.unnormalize("e", "action", np.array([0.7, 0.5], dtype=np.float32), ["c", "x"])
    assert back.dtype == np.float32 and back.tolist() == [3.0, 7.5]


def test_a_frame_error_is_recorded_with_where_it_happened():
    from training.data.dataset import FrameError

    err = FrameError("inhouse-1", 7, "top", "truncated", position=3)
    assert err.record() == {"episode_id": "inhouse-1", "frame": 7, "camera": "top", "message": "truncated",
                            "position": 3}


def test_a_data_spec_saved_with_a_checkpoint_loads_back_the_same(tmp_path):
    """Both files, keys sorted (checkpoints diff cleanly); an older spec without ``images`` loads as trained with
    images; a missing file or another format_version is refused naming it."""
    from training.data.spec import NORMALIZATION_FILE, SPEC_FILE

    stats = _stats(["a"], count=[3], mean=[0.5], std=[1.0], q01=[0.0], q99=[1.0])
    spec = DataSpec(camera_slots=("primary", "wrist"), image_size=(96, 128), chunk=8, max_state_dim=4,
                    max_action_dim=3, prompt="do: {instruction}", manifest={"table_sha256": "ab"},
                    layouts={"groups": {}, "layouts": {}}, images=False,
                    normalizer=Normalizer("mean_std", "embodiment", {"e": {"state": stats, "action": stats}}))
    where = tmp_path / "run" / "step_10"
    spec.save(where)
    spec.save(where)  # a checkpoint saved again in place
    back = DataSpec.load(where)
    assert (back.camera_slots, back.image_size, back.chunk, back.max_state_dim, back.max_action_dim, back.prompt,
            back.manifest, back.layouts, back.images) == (
        ("primary", "wrist"), (96, 128), 8, 4, 3, "do: {instruction}", {"table_sha256": "ab"},
        {"groups": {}, "layouts": {}}, False)
    assert back.normalizer.to_json() == spec.normalizer.to_json()
    saved = json.loads((where / SPEC_FILE).read_text())
    assert saved["normalization"] == {"mode": "mean_std", "scope": "embodiment", "file": NORMALIZATION_FILE}
    for name in (SPEC_FILE, NORMALIZATION_FILE):
        doc = json.loads((where / name).read_text())
        assert list(doc) == sorted(doc), name
    del saved["images"]
    (where / SPEC_FILE).write_text(json.dumps(saved))
    assert DataSpec.load(where).images is True
    (where / SPEC_FILE).write_text(json.dumps(dict(saved, format_version=99)))
    with pytest.raises(ValueError, match=re.escape(f"{where / SPEC_FILE}: format_version 99, this a1pipe reads 1")):
        DataSpec.load(where)
    (where / NORMALIZATION_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(f"{where}: no {NORMALIZATION_FILE}; it is written with "
                                                          f"every checkpoint")):
        DataSpec.load(where)


def test_statistics_of_one_group_merge_exactly_across_stores():
    rng = np.random.default_rng(0)
    a, b = rng.normal(2, 3, (50, 2)), rng.normal(-1, 0.5, (30, 2))
    both = np.concatenate([a, b])

    def of(v, names):
        return _stats(names, count=[len(v)] * 2, mean=v.mean(0), std=v.std(0), min=v.min(0), max=v.max(0),
                      q01=np.quantile(v, 0.01, axis=0), q99=np.quantile(v, 0.99, axis=0))

    merged = FieldStats.merge([of(a, ["x", "y"]), of(b[:, ::-1], ["y", "x"])])  # another order in the second store
    b_xy = b
    assert merged.names == ["x", "y"] and merged.count.tolist() == [80, 80]
    np.testing.assert_allclose(merged.mean, both.mean(0))
    np.testing.assert_allclose(merged.std, np.concatenate([a, b_xy]).std(0))
    np.testing.assert_allclose(merged.min, both.min(0))
    np.testing.assert_allclose(merged.q01, np.minimum(np.quantile(a, 0.01, 0), np.quantile(b, 0.01, 0)))
    np.testing.assert_allclose(merged.q99, np.maximum(np.quantile(a, 0.99, 0), np.quantile(b, 0.99, 0)))


def test_normalisation_groups_by_dataset_and_embodiment_unless_told_to_merge(tmp_path):
    def store(name, source, offset):
        ep = coded_episode(f"{name}/ep.hdf5", 12, source=source)
        ep.state = ep.state + offset
        return build_store(tmp_path / "data" / name, [ep])

    stores = [store("one", "inhouse", 0.0), store("two", "robochallenge", 500.0)]
    wanted = [("inhouse", "franka"), ("robochallenge", "franka")]
    split = Normalizer.from_stores("mean_std", "dataset_embodiment", stores, wanted)
    assert sorted(split.groups) == ["inhouse/franka", "robochallenge/franka"]
    assert split.groups["robochallenge/franka"]["state"].mean[0] - split.groups["inhouse/franka"]["state"].mean[0] \
        == pytest.approx(500.0)
    merged = Normalizer.from_stores("mean_std", "embodiment", stores, wanted)
    assert sorted(merged.groups) == ["franka"]
    assert merged.groups["franka"]["state"].count[0] == 24
    assert merged.groups["franka"]["state"].mean[0] == pytest.approx(5500.0 + 250.0)
    assert [p["store"] for p in merged.provenance] == ["one", "two"]


def test_normalised_samples_round_trip_through_the_saved_spec(built, tmp_path):
    data, ds = dataset(built, normalization="bounds_q99")
    row = row_of(data, ALOHA)
    s = ds.sample(row, 4, position=0)
    assert np.abs(s["action"][s["action_time_mask"]][:, s["action_mask"]]).max() <= 1.0
    data.spec.save(tmp_path / "ckpt")
    saved = json.loads((tmp_path / "ckpt" / "normalization.json").read_text())
    assert saved["mode"] == "bounds_q99" and "inhouse/aloha" in saved["groups"]
    assert saved["groups"]["inhouse/aloha"]["action"]["names"] == ALOHA_NAMES
    spec = DataSpec.load(tmp_path / "ckpt")
    assert spec.manifest["table_sha256"] == data.manifest["table"]["sha256"] and spec.chunk == 8
    codec = spec.codec("inhouse", "aloha")
    restored = codec.decode_actions(s["action"][:4], ALOHA_NAMES)
    expected = [[action_value(4 + k, j) for j in range(14)] for k in range(4)]
    np.testing.assert_allclose(restored, expected, rtol=1e-6)
    # the spec alone (no store) encodes a live state the way training did
    packed, mask = codec.encode("state", np.array([state_value(4, j) for j in range(14)]), ALOHA_NAMES)
    np.testing.assert_allclose(packed, s["state"], atol=1e-6)
    assert mask.tolist() == s["state_mask"].tolist()


def test_decoded_actions_leave_dropped_dimensions_as_nan(built):
    table = LayoutTable({"groups": {"arm": [0, 2]}, "layouts": {"x": {"cameras": {}, "state": {"arm": ["a", "b"]},
                                                                      "action": {"arm": ["a"], "drop": ["b"]}}}},
                        camera_slots=["primary"], max_state_dim=4, max_action_dim=4)
    norm = Normalizer("none", "embodiment", {})
    from training.data.spec import EmbodimentCodec

    codec = EmbodimentCodec("d", "x", table, table.entry("d", "x"), norm)
    out = codec.decode_actions(np.array([[7.0, 0.0, 0.0, 0.0]]), ["a", "b"])
    assert out[0, 0] == 7.0 and np.isnan(out[0, 1]) and out.dtype == np.float32


# --- augmentation and state masking -----------------------------------------------------------------


def test_augmentation_plan_frequencies_and_boundaries():
    rng = np.random.default_rng(0)
    aug = Augmenter(AugmentConfig(p=0.5, p_second=0.3), (224, 224))
    plans = [aug.plan(rng) for _ in range(20000)]
    augmented = np.mean([bool(p) for p in plans])
    both = np.mean([len(p.effects) == 2 for p in plans])
    erase_first = np.mean([p.effects[0] == "erase" for p in plans if p])
    assert abs(augmented - 0.5) < 0.02 and abs(both - 0.15) < 0.015 and abs(erase_first - 0.5) < 0.03
    assert all(2.0 <= p.sharpness <= 3.5 for p in plans if "sharpen" in p.effects)
    assert not any(Augmenter(AugmentConfig(p=0.0), (32, 32)).plan(rng) for _ in range(200))
    always = [Augmenter(AugmentConfig(p=1.0, p_second=0.0), (32, 32)).plan(rng) for _ in range(200)]
    assert all(len(p.effects) == 1 for p in always)
    assert all(len(p.effects) == 2 for p in (Augmenter(AugmentConfig(p=1.0, p_second=1.0), (32, 32)).plan(rng)
                                              for _ in range(200)))
    assert not any(Augmenter(AugmentConfig(enabled=False, p=1.0), (32, 32)).plan(rng) for _ in range(50))


def test_erased_squares_are_black_counted_and_sized_for_the_input_width():
    from scipy import ndimage

    from training.data.images import AugmentPlan

    def white():
        return np.full((112, 112, 3), 255, np.uint8)

    one = Augmenter(AugmentConfig(erase_count=(1, 1), erase_size=(40, 40)), (112, 112))  # 40 px at 224 -> 20 px
    black = (one.apply(AugmentPlan(("erase",)), white(), np.random.default_rng(3)) == 0).all(axis=2)
    rows, cols = np.flatnonzero(black.any(1)), np.flatnonzero(black.any(0))
    assert black.sum() == 400 and len(rows) == len(cols) == 20
    many = Augmenter(AugmentConfig(erase_count=(1, 3), erase_size=(20, 80)), (112, 112))
    counts = set()
    for seed in range(60):
        black = (many.apply(AugmentPlan(("erase",)), white(), np.random.default_rng(seed)) == 0).all(2)
        _, n = ndimage.label(black)
        assert 1 <= n <= 3 and 10 * 10 <= black.sum() <= 3 * 40 * 40
        counts.add(n)
    assert counts == {1, 2, 3}


@pytest.mark.parametrize("factor", [2.0, 2.7, 3.5])
def test_sharpening_equals_pil_s_sharpness_enhancement(factor):
    from PIL import Image, ImageEnhance

    from training.data.images import AugmentPlan

    rng = np.random.default_rng(int(factor * 10))
    for shape in ((32, 32, 3), (17, 45, 3)):
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        image[:4] = 255  # saturated rows: clipping at the top
        image[-4:] = 0
        expected = np.asarray(ImageEnhance.Sharpness(Image.fromarray(image)).enhance(factor))
        got = Augmenter(AugmentConfig(), shape[:2]).apply(AugmentPlan(("sharpen",), factor), image.copy(), rng)
        assert np.array_equal(got, expected) and not np.array_equal(got, image)


def test_augmentation_and_state_masking_are_deterministic_per_draw_position(built):
    data, ds = dataset(built, augment=AugmentConfig(p=1.0, p_second=1.0), state_mask_prob=0.5)
    row = row_of(data, ALOHA)
    a, b = ds.sample(row, 6, position=11), ds.sample(row, 6, position=11)
    assert np.array_equal(a["images"], b["images"]) and a["state_dropped"] == b["state_dropped"]
    plain = dataset(built)[1].sample(row, 6, position=11)
    assert not np.array_equal(a["images"], plain["images"])  # erased and sharpened
    others = [ds.sample(row, 6, position=p) for p in range(12, 40)]
    assert any(not np.array_equal(a["images"], o["images"]) for o in others)
    dropped = [o["state_dropped"] for o in others]
    assert 0 < sum(dropped) < len(dropped)
    for o in others:
        assert (not o["state"].any()) == o["state_dropped"]
        assert o["state_mask"].sum() == 14  # the dimensions still exist; only their values are hidden


def test_state_mask_probability_boundaries(built):
    data, ds = dataset(built, state_mask_prob=1.0)
    s = ds.sample(row_of(data, FRANKA), 10, position=0)
    assert s["state_dropped"] and not s["state"].any() and s["state_mask"].sum() == 8
    data, ds = dataset(built, state_mask_prob=0.0)
    assert not any(ds.sample(row_of(data, FRANKA), 10, position=p)["state_dropped"] for p in range(50))


# --- batches, shards, resume ------------------------------------------------------------------------


def _epoch(loader: ManifestLoader) -> list[dict]:
    return list(loader)


def test_batches_follow_the_manifest_sampler_and_rank_shards_are_disjoint(built):
    data = ManifestData(built / "manifest", config(built, samples_per_epoch=64))
    draws = data.sampler.epoch(0)
    seen = []
    for rank in range(2):
        for batch in _epoch(ManifestLoader(data, rank=rank, world_size=2, num_workers=0)):
            assert batch["size"] == 4
            for pos, ep, frame in zip(batch["position"].tolist(), batch["episode_id"], batch["frame"].tolist()):
                assert (data.rows[draws[pos, 0]]["episode_id"], int(draws[pos, 1])) == (ep, frame)
                seen.append(pos)
    assert sorted(seen) == list(range(64))  # 64 draws = 8 global batches of 2 ranks x 4


def test_the_batch_sequence_is_the_same_for_any_number_of_workers(built):
    data = ManifestData(built / "manifest", config(built, samples_per_epoch=40,
                                                   augment=AugmentConfig(p=1.0), state_mask_prob=0.5))
    zero = _epoch(ManifestLoader(data, num_workers=0))
    two = _epoch(ManifestLoader(data, num_workers=2))
    assert [b["batch_index"] for b in two] == list(range(10))
    for a, b in zip(zero, two):
        for key in ("images", "state", "action", "position", "state_dropped", "action_time_mask"):
            assert torch.equal(a[key], b[key]), key
        assert a["episode_id"] == b["episode_id"]


def test_a_restored_position_reproduces_the_rest_of_the_sequence(built):
    data = ManifestData(built / "manifest", config(built, samples_per_epoch=48, augment=AugmentConfig(p=1.0)))
    straight = ManifestLoader(data, num_workers=0)
    reference = _epoch(straight) + _epoch(straight)  # two epochs of 12 batches
    first = ManifestLoader(data, num_workers=0)
    got = []
    for batch in first:
        got.append(batch)
        if len(got) == 5:
            break
    saved = json.loads(json.dumps(first.state_dict()))  # survives a checkpoint file
    assert (saved["epoch"], saved["batch"]) == (0, 5)
    resumed = ManifestLoader(data, num_workers=2)  # another worker count: same batches
    resumed.load_state_dict(saved)
    got += _epoch(resumed) + _epoch(resumed)
    assert len(got) == len(reference) == 24
    for a, b in zip(reference, got):
        assert (a["epoch"], a["batch_index"]) == (b["epoch"], b["batch_index"])
        assert torch.equal(a["images"], b["images"]) and torch.equal(a["position"], b["position"])
    assert any(not torch.equal(reference[k]["frame"], reference[12 + k]["frame"]) for k in range(12))  # epochs differ


def test_a_saved_position_is_refused_for_other_data_settings(built):
    data = ManifestData(built / "manifest", config(built, samples_per_epoch=48))
    state = ManifestLoader(data, num_workers=0).state_dict()
    for change in ({"batch_size": 8}, {"seed": 1}, {"samples_per_epoch": 40}):
        other = ManifestData(built / "manifest", config(built, **{"samples_per_epoch": 48, **change}))
        with pytest.raises(ValueError, match=next(iter(change))):
            ManifestLoader(other, num_workers=0).load_state_dict(state)
    with pytest.raises(ValueError, match="saved batch 99"):
        ManifestLoader(data, num_workers=0).load_state_dict({**state, "batch": 99})
    loader = ManifestLoader(data, num_workers=0)
    end = loader.batches_per_epoch
    loader.load_state_dict({**state, "batch": end})  # saved after the epoch's last batch: a valid position
    assert loader.batch == end
    with pytest.raises(ValueError, match=f"saved batch {end + 1} outside 0..{end}"):
        loader.load_state_dict({**state, "batch": end + 1})
    with pytest.raises(ValueError) as error:
        loader.load_state_dict({**state, "version": 0})
    from training.data.loader import STATE_VERSION
    assert str(error.value) == f"loader state version 0, this a1pipe reads {STATE_VERSION}"


def test_an_epoch_without_a_whole_batch_is_an_error(built):
    data = ManifestData(built / "manifest", config(built, samples_per_epoch=3))
    with pytest.raises(TrainingDataError, match="no whole batch"):
        _epoch(ManifestLoader(data, num_workers=0))


# --- bad input --------------------------------------------------------------------------------------


def test_a_missing_store_stops_before_training(copy):
    shutil.rmtree(copy / "data" / "inhouse")
    with pytest.raises(TrainingDataError, match="store inhouse: not found"):
        ManifestData(copy / "manifest", config(copy))


def test_a_store_whose_index_changed_since_the_manifest_stops_before_training(copy):
    import pyarrow.parquet as pq

    path = copy / "data" / "inhouse" / "index.parquet"
    pq.write_table(pq.read_table(path).slice(0, 2), path)  # an episode gone from the index
    with pytest.raises(TrainingDataError, match=r"store inhouse: index.parquet sha256 .* differs"):
        ManifestData(copy / "manifest", config(copy))


def test_missing_and_altered_episode_files_are_named(copy):
    data = ManifestData(copy / "manifest", config(copy))
    row = data.rows[row_of(data, FRANKA)]
    path = copy / "data" / "inhouse" / row["path"]
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    ManifestData(copy / "manifest", config(copy))  # sizes and names are fine: not re-hashed by default
    with pytest.raises(TrainingDataError, match=f"{row['episode_id']}: .* sha256 differs"):
        ManifestData(copy / "manifest", config(copy, verify_files=True))
    path.unlink()
    with pytest.raises(TrainingDataError, match=f"{row['episode_id']}: episode file missing"):
        ManifestData(copy / "manifest", config(copy))


def _layouts(tmp_path: Path, mutate) -> str:
    import yaml

    doc = yaml.safe_load((REPO / "training" / "data" / "layouts.yaml").read_text())
    mutate(doc)
    path = tmp_path / "layouts.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_an_embodiment_without_a_layout_stops_before_training(built, tmp_path):
    layouts = _layouts(tmp_path, lambda d: d["layouts"].pop("inhouse/aloha"))
    with pytest.raises(TrainingDataError, match="no layout for embodiment 'aloha' of dataset 'inhouse'; add "
                                                "'inhouse/aloha'"):
        ManifestData(built / "manifest", config(built).replace(layouts=layouts))


def test_a_stored_dimension_the_layout_does_not_place_is_named(built, tmp_path):
    def drop_gripper(doc):
        doc["layouts"]["inhouse/franka"]["state"] = {"left_arm": FRANKA_NAMES[:7]}

    layouts = _layouts(tmp_path, drop_gripper)
    with pytest.raises(TrainingDataError, match=r"inhouse/franka.state: stored state dimensions \['gripper'\] are "
                                                r"neither placed"):
        ManifestData(built / "manifest", config(built).replace(layouts=layouts))

    def extra_name(doc):
        doc["layouts"]["inhouse/franka"]["action"]["drop"] = ["wrist_torque"]

    with pytest.raises(TrainingDataError, match=r"lists \['wrist_torque'\], which the data does not have"):
        ManifestData(built / "manifest", config(built).replace(layouts=_layouts(tmp_path, extra_name)))


@pytest.mark.parametrize("document,message", [
    ({"groups": {"arm": [0, 2]}, "layouts": {"x": {"state": {"arm": ["a", "b", "c"]}, "action": {"arm": ["a"]}}}},
     "3 names for a group of 2"),
    ({"groups": {"arm": [0, 2], "other": [1, 2]},
      "layouts": {"x": {"state": {"arm": ["a", "b"], "other": ["c"]}, "action": {"arm": ["a"]}}}},
     "'c' and 'b' both go to index 1"),
    ({"groups": {"arm": [3, 2]}, "layouts": {"x": {"state": {"arm": ["a", "b"]}, "action": {"arm": ["a"]}}}},
     "beyond max_state_dim 4"),
    ({"groups": {"arm": [0, 2]}, "layouts": {"x": {"state": {"hand": ["a"]}, "action": {"arm": ["a"]}}}},
     "unknown group 'hand'"),
    ({"groups": {"arm": [0, 2]}, "layouts": {"x": {"cameras": {"top": "c"}, "state": {"arm": ["a"]},
                                                   "action": {"arm": ["a"]}}}}, "slots \\['top'\\]"),
    ({"groups": {"arm": [0, 2]}, "layouts": {"x": {"state": {"arm": ["a"], "drop": ["a"]}, "action": {"arm": ["a"]}}}},
     "names listed twice"),
    ({"groups": {"drop": [0, 1]}}, "reserved"),
    ({"groups": {"arm": [0]}}, "must be \\[start, length\\]"),
    ({"groupz": {}}, "unknown top-level keys"),
])
def test_malformed_layout_tables_are_refused(document, message):
    with pytest.raises(LayoutError, match=message):
        LayoutTable(document, camera_slots=["primary"], max_state_dim=4, max_action_dim=4)


def _corrupt_frame(path: Path, camera: str, frame: int) -> None:
    """Overwrite one stored JPEG's bytes with zeros, keeping the file's structure intact."""
    with EpisodeReader(path) as ep:
        offset, size = ep._frame_ranges(camera).locate(frame)
    with open(path, "r+b") as fh:
        fh.seek(offset + 8)
        fh.write(b"\0" * (size - 8))


def test_a_frame_that_fails_to_decode_is_reported_and_its_sample_skipped(copy, caplog):
    data = ManifestData(copy / "manifest", config(copy, samples_per_epoch=400, max_decode_errors=1000))
    row = data.rows[row_of(data, FRANKA)]
    _corrupt_frame(copy / "data" / "inhouse" / row["path"], "cam_wrist", 12)
    loader = ManifestLoader(data, num_workers=0)
    with caplog.at_level(logging.WARNING, logger="a1pipe.training.data"):
        batches = _epoch(loader)
    draws = data.sampler.epoch(0)
    bad_positions = {p for p in range(400) if data.rows[draws[p, 0]] is row and draws[p, 1] == 12}
    assert bad_positions, "the draw sequence should hit the corrupted frame"
    assert loader.decode_errors == len(bad_positions)
    for record in loader.error_records:
        assert (record["episode_id"], record["frame"], record["camera"]) == (row["episode_id"], 12, "cam_wrist")
    delivered = [p for b in batches for p in b["position"].tolist()]
    assert set(delivered) == set(range(400)) - bad_positions  # left out, never replaced by another sample
    assert all(b["size"] == 4 - len(b["errors"]) for b in batches)
    assert "frame 12 camera cam_wrist failed to read" in caplog.text


def test_decode_errors_beyond_the_limit_stop_the_run(copy):
    probe = ManifestData(copy / "manifest", config(copy, samples_per_epoch=400))
    row = probe.rows[row_of(probe, FRANKA)]
    _corrupt_frame(copy / "data" / "inhouse" / row["path"], "cam_front", 12)
    draws = probe.sampler.epoch(0)
    bad = sum(1 for p in range(400) if probe.rows[draws[p, 0]] is row and draws[p, 1] == 12)
    at_limit = ManifestLoader(ManifestData(copy / "manifest", config(copy, samples_per_epoch=400,
                                                                      max_decode_errors=bad)), num_workers=0)
    _epoch(at_limit)
    assert at_limit.decode_errors == bad
    past = ManifestLoader(ManifestData(copy / "manifest", config(copy, samples_per_epoch=400,
                                                                  max_decode_errors=bad - 1)), num_workers=0)
    with pytest.raises(TrainingDataError, match=f"{bad} frames failed to decode, more than "
                                                f"training.data.max_decode_errors={bad - 1}"):
        _epoch(past)


def test_an_unreadable_episode_file_mid_run_is_counted_per_sample(copy):
    data = ManifestData(copy / "manifest", config(copy, samples_per_epoch=40, max_decode_errors=1000))
    row = data.rows[row_of(data, ALOHA)]
    (copy / "data" / "inhouse" / row["path"]).write_bytes(b"not a zip")
    loader = ManifestLoader(data, num_workers=0)
    delivered = [e for b in _epoch(loader) for e in b["episode_id"]]
    assert row["episode_id"] not in delivered and loader.decode_errors > 0
    assert all("episode file unreadable" in r["message"] for r in loader.error_records)


# --- configuration ------------------------------------------------------------------------------------


def test_params_yaml_training_section_parses():
    cfg = load_training_config(REPO / "params.yaml")
    assert cfg.data.max_action_dim == 32 and cfg.data.camera_slots == ("primary", "left_wrist", "right_wrist")
    assert isinstance(cfg.data.augment, AugmentConfig)


@pytest.mark.parametrize("values,message", [
    ({"data": {"chunks": 50}}, r"training.data: unknown keys \['chunks'\]"),
    ({"data": {"augment": {"prob": 0.5}}}, r"training.data.augment: unknown keys \['prob'\]"),
    ({"data": {"chunk": "50"}}, "training.data.chunk must be an integer"),
    ({"data": {"chunk": 0}}, "training.data.chunk must be >= 1"),
    ({"data": {"state_mask_prob": 1.5}}, r"state_mask_prob must be in \[0, 1\]"),
    ({"data": {"normalization": "minmax"}}, "normalization must be one of"),
    ({"data": {"image_size": [224]}}, "must have 2 items"),
    ({"data": {"augment": {"erase_size": [80, 20]}}}, "erase_size must be"),
    ({"data": {"verify_files": "yes"}}, "must be true or false"),
    ({"data": {"camera_slots": ["a", "a"]}}, "camera_slots must be non-empty and unique"),
    ({"model": {}}, r"training: unknown keys \['model'\]"),
])
def test_unknown_or_invalid_settings_are_errors(values, message):
    from training.config import TrainingConfig

    with pytest.raises(ConfigError, match=message):
        parse(TrainingConfig, values, "training")


def test_training_never_imports_the_data_half_s_converters_beam_or_curation(built):
    import subprocess
    import sys

    code = ("import sys; import training.train, training.model.molmo; from training.config import DataConfig; "
            "from training.data import ManifestData, "
            "ManifestLoader; d = ManifestData(sys.argv[1], DataConfig(num_workers=0, batch_size=2, "
            "data_root=sys.argv[2], chunk=4)); next(iter(ManifestLoader(d))); "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('converters', 'apache_beam', 'tensorflow') or "
            "m in ('pipelines.convert', 'pipelines.curation', 'pipelines.curation_rules')]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code, str(built / "manifest"), str(built / "data")],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
