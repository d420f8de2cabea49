"""Conformance suite: runs automatically against every registered converter on its own samples.

A converter that passes it works with every later stage: it declares its identity,
discovers deterministically, gives stable ids, produces records that satisfy the
unified format (names, dtypes, timestamps, language, decodable frames), quarantines
each deliberately broken sample episode with the reason its generator declared, and
round-trips through the store unchanged. Adding a module to
``converters.CONVERTERS`` is enough to put it under test here.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from converters import SOURCE_NAMES, available_sources, get_converter
from converters.base import SourceCard
from pipelines.episode_store import ActionKind, EpisodeError, TimestampOrigin
from pipelines.episode_store.images import ImageConfig
from pipelines.episode_store.layout import episode_id
from pipelines.episode_store.reader import EpisodeStore
from pipelines.episode_store.validator import validate_store
from pipelines.episode_store.writer import write_episode
from pipelines.samples import write_samples

SOURCES = available_sources()
SLUG = re.compile(r"^[a-z0-9]+(?:_[a-z0-9]+)*$")
SPDX_LIKE = re.compile(r"^[A-Za-z0-9.+-]+$")


@pytest.fixture(scope="module")
def sample_root(sample_stores):
    """``get(source)`` -> (the source's samples, the outcome each episode must get): the session's samples."""
    stores, outcomes = sample_stores

    def get(source: str) -> tuple[Path, dict[str, str | None]]:
        return stores.parent / "samples" / source, outcomes[source]

    return get


def _episodes(converter):
    """Every (unit, source_episode, opener) the converter yields, stopping a unit at its first error."""
    out = []
    for unit in converter.discover():
        try:
            for ref, opener in converter.episodes(unit):
                out.append((unit, ref, opener))
        except EpisodeError:
            continue
    return out


def _consume(episode):
    frames = {}
    for name, cam in episode.cameras.items():
        n = 0
        first = last = None
        for frame in cam.open_frames():
            if first is None:
                first = frame
            last = frame
            n += 1
        frames[name] = (n, first, last)
    return frames


@pytest.mark.parametrize("source", SOURCES)
def test_declares_its_identity(source):
    cls = get_converter(source)
    assert cls.name == source and source in SOURCE_NAMES
    for attr in ("source_version", "converter_version"):
        assert isinstance(getattr(cls, attr), str) and getattr(cls, attr)
    assert cls.embodiments and all(SLUG.match(e) for e in cls.embodiments), cls.embodiments
    assert cls.control_hz > 0


@pytest.mark.parametrize("source", SOURCES)
def test_has_a_source_card(source):
    """Released manifests state license, collection method, biases and limitations per source."""
    card = get_converter(source).__dict__.get("card")
    assert isinstance(card, SourceCard), f"{source}: set `card = SourceCard(...)` on the converter class"
    for field in ("title", "url", "license", "citation", "collection"):
        assert isinstance(getattr(card, field), str), field
    for field in ("title", "license", "collection"):
        assert getattr(card, field).strip(), f"{source}: card.{field} is empty"
    for field in ("collection_type", "biases", "limitations", "personal_information", "unverified"):
        items = getattr(card, field)
        assert isinstance(items, tuple), f"{source}: card.{field} must be a tuple"
        assert all(isinstance(i, str) and i.strip() for i in items), f"{source}: card.{field} has an empty item"
    assert card.biases and card.limitations, f"{source}: biases and limitations must be stated"
    assert card.license == "unknown" or SPDX_LIKE.match(card.license), card.license


@pytest.mark.parametrize("source", SOURCES)
def test_discovery_is_deterministic_and_relative(source, sample_root):
    root, _ = sample_root(source)
    cls = get_converter(source)
    units = cls(root).discover()
    assert units, "samples must yield work units"
    assert units == cls(root).discover()
    assert len(set(units)) == len(units)
    for unit in units:
        assert not Path(unit).is_absolute(), f"unit {unit} must be relative to the input root"


@pytest.mark.parametrize("source", SOURCES)
def test_episode_refs_and_ids_are_stable_and_unique(source, sample_root):
    root, expected = sample_root(source)
    cls = get_converter(source)
    refs = [ref for _, ref, _ in _episodes(cls(root))]
    assert refs == [ref for _, ref, _ in _episodes(cls(root))]
    assert len(set(refs)) == len(refs)
    ids = {episode_id(source, r) for r in refs}
    assert len(ids) == len(refs)
    good = {ref for ref, reason in expected.items() if reason is None}
    assert good <= set(refs), f"good sample episodes not discovered: {sorted(good - set(refs))}"


@pytest.mark.parametrize("source", SOURCES)
def test_good_episodes_satisfy_the_unified_format(source, sample_root):
    root, expected = sample_root(source)
    cls = get_converter(source)
    converter = cls(root)
    names_by_embodiment: dict[str, tuple[list[str], list[str]]] = {}
    checked = 0
    for _, ref, opener in _episodes(converter):
        if expected.get(ref, "unknown") is not None:
            continue
        with converter.read(opener) as ep:
            assert ep.source == source and ep.source_episode == ref
            assert ep.embodiment in cls.embodiments, (ref, ep.embodiment)
            assert isinstance(ep.robot_type, str) and ep.robot_type
            assert ActionKind(ep.action_kind) and TimestampOrigin(ep.timestamp_origin)
            assert np.asarray(ep.state).dtype.kind == "f" and np.asarray(ep.action).dtype.kind == "f"
            assert all(isinstance(n, str) and n for n in ep.state_names + ep.action_names)
            names = (list(ep.state_names), list(ep.action_names))
            assert names_by_embodiment.setdefault(ep.embodiment, names) == names, (
                f"{ref}: embodiment {ep.embodiment} changes its dimension names"
            )
            assert np.all(np.diff(ep.timestamp) > 0)
            assert ep.instruction.strip()
            for name, (n, first, last) in _consume(ep).items():
                assert n == ep.num_frames, (ref, name)
                for frame in (first, last):
                    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
            for key, arr in ep.extras.items():
                assert len(arr) == ep.num_frames and np.asarray(arr).dtype.kind in "biuf", (ref, key)
            if ep.subtasks is not None:
                assert all(s is None or isinstance(s, str) for s in ep.subtasks)
        checked += 1
    assert checked == sum(v is None for v in expected.values())


@pytest.mark.parametrize("source", SOURCES)
def test_round_trip_through_the_store(source, sample_root, tmp_path):
    root, expected = sample_root(source)
    converter = get_converter(source)(root)
    store = EpisodeStore.create(tmp_path / "store")
    config = ImageConfig(resize="none", quality=95)
    done = 0
    for _, ref, opener in _episodes(converter):
        if expected.get(ref, "unknown") is not None or done >= 3:
            continue
        with converter.read(opener) as ep:
            eid = write_episode(ep, store.root, config)
        with converter.read(opener) as original, store.open_episode(eid) as stored:
            back = stored.to_episode()
            np.testing.assert_array_equal(back.state, np.asarray(original.state, dtype=np.float32))
            np.testing.assert_array_equal(back.action, np.asarray(original.action, dtype=np.float32))
            np.testing.assert_array_equal(back.timestamp, np.asarray(original.timestamp, dtype=np.float64))
            assert (back.state_names, back.action_names) == (original.state_names, original.action_names)
            assert back.instruction == original.instruction and back.subtasks == original.subtasks
            assert back.embodiment == original.embodiment and back.metadata == stored.meta["metadata"]
            for name, cam in original.cameras.items():
                # provenance: the source's own name of the camera and the file it is read from
                assert stored.meta["cameras"][name]["source"] == {"name": cam.source_name or name,
                                                                   "file": cam.source_file}
                assert cam.source_file and (root / re.split(r"[:#,]", cam.source_file)[0]).exists(), cam.source_file
                for a, b in zip(cam.open_frames(), back.cameras[name].open_frames()):
                    assert a.shape == b.shape
                    assert np.abs(a.astype(np.int16) - b.astype(np.int16)).mean() < 4.0
        done += 1
    assert done > 0


@pytest.mark.parametrize("source", SOURCES)
def test_samples_convert_to_their_declared_outcomes(source, sample_stores):
    """The samples, converted as ``dvc repro`` converts them (params.yaml settings), get their declared outcomes."""
    stores, outcomes = sample_stores
    expected = outcomes[source]
    assert any(v is None for v in expected.values()), "samples need good episodes"
    assert any(v is not None for v in expected.values()), "samples need deliberately broken episodes"
    store = stores / source
    report = json.loads((store / "conversion_report.json").read_text())
    got = {e["source_episode"]: e["reason"] for e in report["episodes"]}
    assert got == expected
    for entry in report["episodes"]:
        if entry["status"] == "quarantined":
            assert entry["message"], entry
    # headers only: every frame of up to three good episodes per source is decoded and compared with
    # the source's by test_round_trip_through_the_store
    result = validate_store(store)
    assert result.ok, [str(e) for e in result.errors]
    # curation accounts for every converted frame: kept + removed = input, per source
    curation = json.loads((store / "curation_report.json").read_text())["sources"][source]["total"]
    assert curation["episodes_in"] == report["counts"]["converted"]
    assert curation["frames_in"] == report["frames"]
    assert curation["frames_kept"] + sum(curation["frames_removed_by_reason"].values()) == curation["frames_in"]


@pytest.mark.parametrize("source", SOURCES)
def test_samples_are_deterministic(source, tmp_path, sample_stores):
    """Written again, in another process's session, a source's samples are the same bytes."""
    stores, outcomes = sample_stores
    seed = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())["samples"]["seed"]
    again = write_samples(tmp_path, seed=seed, sources=[source])
    assert again[source] == outcomes[source]

    def digest(base: Path) -> dict[str, str]:
        return {p.relative_to(base).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(base.rglob("*")) if p.is_file()}

    assert digest(tmp_path / source) == digest(stores.parent / "samples" / source)


@pytest.mark.parametrize("rel,ok", [("a.mp4", "a.mp4"), ("./sub/a.mp4", "sub/a.mp4"), ("sub//a.mp4", "sub/a.mp4"),
                                    ("../a.mp4", None), ("sub/../../a.mp4", None), ("sub/../a.mp4", None),
                                    ("/etc/hostname", None), ("..\\a.mp4", None), ("", None), (".", None)])
def test_paths_from_metadata_stay_inside_the_source_folder(rel, ok):
    from converters.base import relative_inside
    from pipelines.episode_store.errors import EpisodeError, Reason

    if ok is not None:
        assert relative_inside(rel, "w") == ok
        return
    with pytest.raises(EpisodeError) as info:
        relative_inside(rel, "w")
    assert info.value.reason == Reason.INVALID_METADATA


@pytest.mark.parametrize("rel", ["../a.mp4", "/etc/hostname"])
def test_a_path_leading_outside_names_where_it_came_from_and_the_path(rel):
    from converters.base import relative_inside
    from pipelines.episode_store.errors import EpisodeError

    with pytest.raises(EpisodeError) as info:
        relative_inside(rel, "ep_1/meta.json")
    assert info.value.message == (f"ep_1/meta.json: path {rel!r} from the metadata leads outside the source's "
                                  "folder")
    assert relative_inside(Path("sub") / "a.mp4", "w") == "sub/a.mp4"  # a Path is read as its text
    assert relative_inside("sub\\a.mp4", "w") == "sub/a.mp4"  # a Windows separator is a separator


# -- the helpers every converter shares (converters/base.py) -------------------------------------------------


def test_a_source_card_is_its_yaml_file_with_lists_as_tuples():
    from converters.base import CARDS_DIR

    card = SourceCard.load("robocoin")
    doc = yaml.safe_load((CARDS_DIR / "robocoin.yaml").read_text())
    assert card == SourceCard(**{k: tuple(v) if isinstance(v, list) else v for k, v in doc.items()})
    assert isinstance(card.biases, tuple) and card.biases == tuple(doc["biases"])
    assert isinstance(card.title, str) and card.title == doc["title"]


def test_a_source_card_that_is_not_a_mapping_of_its_fields_is_refused_naming_the_file(tmp_path, monkeypatch):
    import dataclasses

    from converters import base

    monkeypatch.setattr(base, "CARDS_DIR", tmp_path)
    good = {"title": "T", "url": "", "license": "MIT", "citation": "", "collection": "c",
            "collection_type": ["Teleoperation"], "biases": ["b"], "limitations": ["l"], "personal_information": []}
    (tmp_path / "good.yaml").write_text(yaml.safe_dump(good))
    card = SourceCard.load("good")
    assert card.collection_type == ("Teleoperation",) and card.personal_information == () and card.unverified == ()
    fields = sorted(f.name for f in dataclasses.fields(SourceCard))
    for name, text in (("extra", yaml.safe_dump({**good, "notes": "x"})), ("listed", "- a\n- b\n")):
        (tmp_path / f"{name}.yaml").write_text(text)
        with pytest.raises(ValueError) as err:
            SourceCard.load(name)
        assert str(err.value) == f"{tmp_path / name}.yaml: a source card is a mapping of {fields}"
    (tmp_path / "broken.yaml").write_text("title: [unclosed\n")
    with pytest.raises(ValueError, match=r"broken\.yaml: not valid YAML \(") as err:
        SourceCard.load("broken")
    assert str(err.value).startswith(f"{tmp_path / 'broken.yaml'}: not valid YAML (")


def test_cards_for_gives_each_dataset_its_card_or_none_sorted():
    from converters.base import cards_for

    cards = cards_for(["robocoin", "no_such_dataset", "agibot"])
    assert list(cards) == ["agibot", "no_such_dataset", "robocoin"]
    assert cards["no_such_dataset"] is None
    assert cards["agibot"] == SourceCard.load("agibot") and cards["robocoin"] == SourceCard.load("robocoin")


def _bare_converter(opened: list[str] | None = None):
    from converters.base import Converter

    class Bare(Converter):
        name = "bare"
        source_version = "1"
        converter_version = "1"
        embodiments = ("bare_arm",)
        control_hz = 10.0

        def discover(self) -> list[str]:
            return ["unit_a"]

    if opened is None:
        return Bare("/nowhere")

    class Opens(Bare):
        def open_episode(self, source_episode: str):
            opened.append(source_episode)
            return source_episode

    return Opens("/nowhere")


def test_a_unit_is_one_episode_opened_by_its_own_name_by_default():
    opened: list[str] = []
    conv = _bare_converter(opened)
    [(ref, opener)] = list(conv.episodes("unit_a"))
    assert ref == "unit_a" and opened == []  # nothing is opened until the opener is called
    assert opener() == "unit_a" and opened == ["unit_a"]
    bare = _bare_converter()
    [(_, opener)] = list(bare.episodes("unit_a"))
    with pytest.raises(NotImplementedError, match="^Bare must implement open_episode or episodes$"):
        opener()


def test_require_names_the_episode_and_the_missing_key():
    conv = _bare_converter()
    assert conv.require({"fps": 30}, "fps", "ep_1") == 30
    for mapping, cause in (({"fps": 30}, KeyError), (None, TypeError), (["x"], TypeError)):
        with pytest.raises(EpisodeError) as err:
            conv.require(mapping, "robot", "ep_1/meta.json")
        assert err.value.reason.value == "missing_key" and err.value.message == "ep_1/meta.json: missing 'robot'"
        assert isinstance(err.value.__cause__, cause)


def test_an_episode_file_or_folder_listed_by_discovery_is_checked_for_what_it_is(tmp_path):
    """A regular file (or folder) is returned; a directory or other non-regular file where a file should be is
    ``corrupt_file``, a file where a folder should be too; a vanished path or a dangling link ``missing_file``."""
    import os

    from converters.base import episode_file, episode_folder

    (tmp_path / "ep.h5").write_bytes(b"x")
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone.h5")
    assert episode_file(tmp_path, "ep.h5") == tmp_path / "ep.h5"
    assert episode_folder(tmp_path, "folder") == tmp_path / "folder"

    def refused(check, rel):
        with pytest.raises(EpisodeError) as err:
            check(tmp_path, rel)
        return err.value.reason.value, err.value.message

    assert refused(episode_file, "folder") == ("corrupt_file", "folder: a directory where an episode file should be")
    assert refused(episode_file, "pipe") == ("corrupt_file", "pipe: not a regular file where an episode file should be")
    assert refused(episode_folder, "ep.h5") == ("corrupt_file",
                                                "ep.h5: not a directory where an episode folder should be")
    assert refused(episode_file, "absent.h5") == ("missing_file", f"absent.h5: file not found ({tmp_path / 'absent.h5'})")
    assert refused(episode_folder, "absent") == ("missing_file",
                                                 f"absent: episode folder not found ({tmp_path / 'absent'})")
    link = ("missing_file", f"dangling: a symbolic link to {tmp_path / 'gone.h5'}, which does not exist")
    assert refused(episode_file, "dangling") == link and refused(episode_folder, "dangling") == link


def test_a_dangling_link_is_a_link_whose_target_is_absent(tmp_path):
    import os

    from converters.base import is_dangling_link

    (tmp_path / "file").write_bytes(b"x")
    (tmp_path / "good_link").symlink_to(tmp_path / "file")
    (tmp_path / "bad_link").symlink_to(tmp_path / "absent")
    want = {"file": False, "good_link": False, "bad_link": True}
    assert {e.name: is_dangling_link(e) for e in os.scandir(tmp_path)} == want  # directory entries
    assert {n: is_dangling_link(tmp_path / n) for n in want} == want  # paths
    assert is_dangling_link(tmp_path / "absent") is False  # absent, but no link
