"""The manifest sampler: exact probabilities, reproducibility, disjoint shards that cover the epoch."""

from __future__ import annotations

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
