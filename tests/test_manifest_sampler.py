"""The manifest sampler: exact probabilities, reproducibility, disjoint shards that cover the epoch."""

from __future__ import annotations

import re

import numpy as np
import pytest

from pipelines.manifest.sampler import ManifestSampler


def sampler(**kw):
    # two datasets (0.5 each); dataset A has two embodiments (0.25 each): rows 0,1 | 2 ; dataset B: rows 3,4
    p = [0.125, 0.125, 0.25, 0.3, 0.2]
    ranges = [[(0, 10)], [(5, 8), (20, 25)], [(0, 100)], [(3, 4)], [(0, 50), (60, 70)]]
    return ManifestSampler(p, ranges, **kw)


def test_frames_come_only_from_kept_ranges():
    s = sampler(samples_per_epoch=20000)
    draws = s.epoch(0)
    for e, ranges in enumerate(s.ranges):
        frames = draws[draws[:, 0] == e, 1]
        inside = np.zeros(len(frames), dtype=bool)
        for a, b in ranges:
            inside |= (frames >= a) & (frames < b)
        assert inside.all()


def test_empirical_shares_match_declared_probabilities_chi_square():
    from scipy.stats import chisquare

    s = sampler(samples_per_epoch=200000, seed=3)
    draws = s.epoch(1)
    observed = np.bincount(draws[:, 0], minlength=5)
    expected = s.p * len(draws)
    assert chisquare(observed, expected).pvalue > 0.001
    # within an episode, uniform over kept frames
    frames = draws[draws[:, 0] == 4, 1]
    values, counts = np.unique(frames, return_counts=True)
    assert len(values) == 60
    assert chisquare(counts).pvalue > 0.001


def test_reproducible_for_a_seed_and_different_across_epochs_and_seeds():
    a, b = sampler(seed=7), sampler(seed=7)
    np.testing.assert_array_equal(a.epoch(2), b.epoch(2))
    assert not np.array_equal(a.epoch(2), a.epoch(3))
    assert not np.array_equal(a.epoch(2), sampler(seed=8).epoch(2))


@pytest.mark.parametrize("world_size,num_workers", [(1, 1), (2, 3), (4, 2)])
def test_worker_and_rank_shards_are_disjoint_and_cover_the_epoch(world_size, num_workers):
    s = sampler(samples_per_epoch=1001, seed=1)
    full = s.epoch(5)
    seen = np.zeros(len(full), dtype=int)
    for rank in range(world_size):
        for worker in range(num_workers):
            slot = rank * num_workers + worker
            shard = [(r.episode, r.frame) for r in s.shard(5, rank=rank, world_size=world_size, worker=worker,
                                                           num_workers=num_workers)]
            positions = np.arange(slot, len(full), world_size * num_workers)
            assert shard == [tuple(x) for x in full[positions].tolist()]
            seen[positions] += 1
    assert (seen == 1).all()


def test_invalid_inputs_are_rejected():
    with pytest.raises(ValueError, match="sum to 1"):
        ManifestSampler([0.5, 0.2], [[(0, 1)], [(0, 1)]])
    with pytest.raises(ValueError, match="no kept frames"):
        ManifestSampler([0.5, 0.5], [[(0, 1)], []])
    with pytest.raises(ValueError, match="out of range"):
        list(sampler().shard(0, rank=2, world_size=2))
    assert sampler().frame_probability(1) == pytest.approx(0.125 / 8)


def test_from_manifest_draws_dataset_and_embodiment_shares_as_declared(tmp_path):
    """End to end on a released manifest: the shares training actually draws are the declared ones."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq
    from scipy.stats import chisquare

    from pipelines.manifest.build import ManifestParams, assign_probabilities
    from pipelines.manifest.format import TABLE_SCHEMA

    rows = []
    for i, (dataset, embodiment, n) in enumerate([("a", "x", 40), ("a", "x", 10), ("a", "y", 7), ("b", "z", 90),
                                                  ("b", "z", 30), ("c", "w", 5)]):
        rows.append({"episode_id": f"{dataset}-{i:016x}", "dataset": dataset, "embodiment": embodiment,
                     "robot_type": embodiment, "store": dataset, "path": f"e{i}", "sha256": "0" * 64,
                     "source_episode": f"e{i}", "instruction": "t", "num_frames": n + 4, "frames_kept": n,
                     "kept_ranges": [{"start": 2, "stop": 2 + n}], "split": "train"})
    shares = assign_probabilities(rows, ManifestParams(name="t", validation_fraction=0))
    pq.write_table(pa.Table.from_pylist(rows, schema=TABLE_SCHEMA), tmp_path / "episodes.parquet")
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": 1, "table": {"file": "episodes.parquet"}}))

    s = ManifestSampler.from_manifest(tmp_path, seed=5, samples_per_epoch=120000)
    assert [r["episode_id"] for r in s.rows] == [r["episode_id"] for r in rows]
    draws = s.epoch(0)
    assert ((draws[:, 1] >= 2) & (draws[:, 1] < 2 + s.lengths[draws[:, 0]])).all()
    groups = sorted({(r["dataset"], r["embodiment"]) for r in rows})
    observed = np.zeros(len(groups))
    for e, r in enumerate(rows):
        observed[groups.index((r["dataset"], r["embodiment"]))] += (draws[:, 0] == e).sum()
    declared = np.array([shares["train"]["datasets"][d]["embodiments"][e]["share"] for d, e in groups])
    assert declared.tolist() == [1 / 6, 1 / 6, 1 / 3, 1 / 3]
    assert chisquare(observed, declared * len(draws)).pvalue > 0.001
    with pytest.raises(ValueError, match="no episodes in split"):
        ManifestSampler.from_manifest(tmp_path, split="validation")


@pytest.mark.parametrize("world_size,num_workers,batch_size", [(1, 1, 7), (2, 3, 5), (3, 2, 16)])
def test_batch_shards_are_disjoint_cover_whole_batches_and_ignore_the_worker_count(world_size, num_workers,
                                                                                     batch_size):
    s = sampler(samples_per_epoch=1001, seed=2)
    full = s.epoch(4)
    total = s.batches_per_epoch(batch_size, world_size)
    assert total == 1001 // (batch_size * world_size)
    seen = np.zeros(len(full), dtype=int)
    for rank in range(world_size):
        per_worker = [list(s.batches(4, batch_size, rank=rank, world_size=world_size, worker=w,
                                     num_workers=num_workers)) for w in range(num_workers)]
        # round-robin over workers gives batches 0, 1, 2, ... in order
        order = [per_worker[i % num_workers][i // num_workers] for i in range(total)]
        assert [b for b, _, _ in order] == list(range(total))
        single = list(s.batches(4, batch_size, rank=rank, world_size=world_size))
        for (b1, pos1, rows1), (b2, pos2, rows2) in zip(order, single):
            assert b1 == b2
            np.testing.assert_array_equal(pos1, pos2)
            np.testing.assert_array_equal(rows1, full[pos1])
            np.testing.assert_array_equal(rows1, rows2)
        for _, pos, _ in single:
            seen[pos] += 1
    covered = total * batch_size * world_size
    assert (seen[:covered] == 1).all() and (seen[covered:] == 0).all()


def test_batches_resume_at_a_start_batch_with_the_same_content():
    s = sampler(samples_per_epoch=300, seed=5)
    every = list(s.batches(1, 10, num_workers=1))
    for num_workers in (1, 2, 3):
        per_worker = [list(s.batches(1, 10, worker=w, num_workers=num_workers, start=13)) for w in range(num_workers)]
        resumed = [per_worker[i % num_workers][i // num_workers] for i in range(30 - 13)]
        assert [b for b, _, _ in resumed] == list(range(13, 30))
        for (_, _, got), (_, _, want) in zip(resumed, every[13:]):
            np.testing.assert_array_equal(got, want)
    assert list(s.batches(1, 10, start=30)) == []
    with pytest.raises(ValueError, match="start batch 31"):
        list(s.batches(1, 10, start=31))
    with pytest.raises(ValueError, match="worker 2/2"):
        list(s.batches(1, 10, worker=2, num_workers=2))


# Each test below pins one rule of the sampler, at its boundary and one past it.

P = [0.125, 0.125, 0.25, 0.3, 0.2]
RANGES = [[(0, 10)], [(5, 8), (20, 25)], [(0, 100)], [(3, 4)], [(0, 50), (60, 70)]]


def test_one_probability_per_episode_or_the_counts_are_named():
    with pytest.raises(ValueError, match="4 probabilities for 5 episodes"):
        ManifestSampler(P[:4], RANGES)
    with pytest.raises(ValueError, match="5 probabilities for 4 episodes"):
        ManifestSampler(P, RANGES[:4])
    with pytest.raises(ValueError, match="probabilities for"):
        ManifestSampler([P], RANGES[:1])  # a [1, 5] matrix is not one probability per episode


def test_a_zero_probability_is_allowed_and_a_negative_one_is_refused_naming_its_row():
    s = ManifestSampler([0.0, 1.0], [[(0, 4)], [(0, 2)]], samples_per_epoch=500)
    assert (s.epoch(0)[:, 0] == 1).all()
    with pytest.raises(ValueError, match=r"must be >= 0: row 1 has -0.1"):
        ManifestSampler([1.1, -0.1], [[(0, 4)], [(0, 2)]])


def test_probabilities_summing_to_one_within_1e_9_are_renormalised_and_beyond_are_refused():
    s = ManifestSampler([0.5, 0.5 + 5e-10], [[(0, 4)], [(0, 2)]])
    assert abs(s.p.sum() - 1.0) < 1e-15
    for off in (2e-9, -2e-9, -0.005):  # 0.995 is not silently renormalised
        with pytest.raises(ValueError, match=re.escape(f"must sum to 1 within 1e-9 (sum {0.5 + (0.5 + off)!r})")):
            ManifestSampler([0.5, 0.5 + off], [[(0, 4)], [(0, 2)]])


def test_an_episode_without_kept_frames_needs_probability_zero_and_the_error_names_five_rows():
    s = ManifestSampler([1.0, 0.0], [[(0, 3)], []])
    assert s.frame_probability(1) == 0.0 and s.frame_probability(0) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match=r"episode rows \[1, 2, 3, 4, 5\] have probability but no kept frames"):
        ManifestSampler([0.5] + [0.5 / 6] * 6, [[(0, 1)]] + [[]] * 6)


def test_the_default_epoch_is_one_draw_per_kept_frame_and_an_explicit_size_below_one_is_refused():
    assert sampler().samples_per_epoch == 10 + 8 + 100 + 1 + 60 == len(sampler().epoch(0))
    assert len(sampler(samples_per_epoch=1).epoch(0)) == 1
    for bad in (0, -3):
        with pytest.raises(ValueError, match=rf"samples_per_epoch must be >= 1 or None \(all kept frames\), got {bad}"):
            sampler(samples_per_epoch=bad)


def test_the_default_seed_is_zero_and_a_plain_sampler_has_no_table_rows():
    np.testing.assert_array_equal(ManifestSampler(P, RANGES).epoch(0), ManifestSampler(P, RANGES, seed=0).epoch(0))
    assert ManifestSampler(P, RANGES).rows is None


def test_the_default_shard_is_the_whole_epoch():
    s = sampler(samples_per_epoch=50, seed=4)
    assert [(r.episode, r.frame) for r in s.shard(3)] == [tuple(x) for x in s.epoch(3).tolist()]


@pytest.mark.parametrize("layout,ok", [
    (dict(worker=1, num_workers=2), True), (dict(worker=2, num_workers=2), False),  # worker == num_workers
    (dict(rank=1, world_size=2), True), (dict(rank=2, world_size=2), False),
    (dict(worker=-1, num_workers=2), False), (dict(rank=-1, world_size=2), False),
])
def test_a_worker_or_rank_outside_its_count_is_refused_instead_of_duplicating_another_slot(layout, ok):
    s = sampler(samples_per_epoch=40)
    for draw in (lambda: list(s.shard(0, **layout)), lambda: list(s.batches(0, 4, **layout))):
        if ok:
            assert draw()
        else:
            with pytest.raises(ValueError, match="out of range"):
                draw()


def test_batches_per_epoch_needs_a_batch_and_a_world_of_at_least_one():
    s = sampler(samples_per_epoch=100)
    assert s.batches_per_epoch(1) == 100 and s.batches_per_epoch(7) == 14 and s.batches_per_epoch(7, 2) == 7
    for batch_size, world_size in ((0, 1), (1, 0)):
        with pytest.raises(ValueError, match=rf"batch_size {batch_size} and world_size {world_size} must be >= 1"):
            s.batches_per_epoch(batch_size, world_size)


def test_from_manifest_passes_the_seed_and_epoch_size_through(tmp_path):
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.manifest.format import TABLE_SCHEMA

    rows = [{"episode_id": f"a-{i:016x}", "dataset": "a", "embodiment": "x", "robot_type": "x", "store": "a",
             "path": f"e{i}", "sha256": "0" * 64, "source_episode": f"e{i}", "instruction": "t", "num_frames": n,
             "frames_kept": n, "kept_ranges": [{"start": 0, "stop": n}], "split": "train", "probability": p}
            for i, (n, p) in enumerate([(5, 0.25), (9, 0.75)])]
    pq.write_table(pa.Table.from_pylist(rows, schema=TABLE_SCHEMA), tmp_path / "episodes.parquet")
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": 1, "table": {"file": "episodes.parquet"}}))
    direct = ManifestSampler([0.25, 0.75], [[(0, 5)], [(0, 9)]], seed=3, samples_per_epoch=77)
    loaded = ManifestSampler.from_manifest(tmp_path, seed=3, samples_per_epoch=77)
    np.testing.assert_array_equal(loaded.epoch(1), direct.epoch(1))
    default = ManifestSampler.from_manifest(tmp_path)
    assert default.samples_per_epoch == 14
    np.testing.assert_array_equal(default.epoch(0), ManifestSampler([0.25, 0.75], [[(0, 5)], [(0, 9)]]).epoch(0))
