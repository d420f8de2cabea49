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
