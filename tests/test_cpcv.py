"""CPCV split properties: purging, embargo, how often each group is tested, and the paths."""

from __future__ import annotations

from math import comb

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.training.cpcv import cpcv_paths, cpcv_splits, group_bounds, n_paths, sample_groups


@st.composite
def designs(draw: st.DrawFn) -> tuple[int, int, int, int, int]:
    n_groups = draw(st.integers(2, 7))
    k = draw(st.integers(1, n_groups - 1))
    n = draw(st.integers(n_groups * 3, 300))
    horizon = draw(st.integers(1, 10))
    embargo = draw(st.integers(0, 10))
    return n, n_groups, k, horizon, embargo


@settings(max_examples=150, deadline=None)
@given(designs())
def test_no_training_label_window_overlaps_a_test_label_window(d) -> None:
    n, n_groups, k, horizon, embargo = d
    for s in cpcv_splits(n, n_groups, k, horizon, embargo):
        assert len(np.intersect1d(s.train, s.test)) == 0
        if len(s.train) == 0:
            continue
        # windows [i, i+h] and [j, j+h] must be disjoint for every train i and test j
        gap = np.abs(s.train[:, None] - s.test[None, :])
        assert gap.min() > horizon


@settings(max_examples=150, deadline=None)
@given(designs())
def test_embargo_after_every_test_block_is_respected(d) -> None:
    n, n_groups, k, horizon, embargo = d
    for s in cpcv_splits(n, n_groups, k, horizon, embargo):
        test = set(s.test.tolist())
        block_ends = [j for j in s.test if j + 1 not in test]
        train = set(s.train.tolist())
        for end in block_ends:
            banned = range(end + 1, min(n, end + horizon + 1 + embargo))
            assert not train.intersection(banned)
        # and nothing beyond purge + embargo is dropped
        dropped = set(range(n)) - train - test
        for i in dropped:
            assert any(abs(i - j) <= horizon for j in s.test) or any(
                0 < i - e <= horizon + embargo for e in block_ends)


@settings(max_examples=100, deadline=None)
@given(designs())
def test_each_group_tested_c_n1_k1_times_and_paths_cover_every_sample_once(d) -> None:
    n, n_groups, k, horizon, embargo = d
    splits = cpcv_splits(n, n_groups, k, horizon, embargo)
    assert len(splits) == comb(n_groups, k)
    counts = np.zeros(n_groups, dtype=int)
    for s in splits:
        counts[list(s.test_groups)] += 1
    assert set(counts) == {comb(n_groups - 1, k - 1)}
    paths = cpcv_paths(splits, n_groups)
    assert len(paths) == n_paths(n_groups, k)
    groups = sample_groups(n, n_groups)
    for path in paths:
        covered = np.concatenate([
            splits[si].test[groups[splits[si].test] == g] for g, si in enumerate(path)])
        assert np.array_equal(np.sort(covered), np.arange(n))
        for g, si in enumerate(path):
            assert g in splits[si].test_groups
    # two different paths never reuse the same (group, split) pair
    pairs = {(g, si) for path in paths for g, si in enumerate(path)}
    assert len(pairs) == n_groups * len(paths)


def test_groups_are_contiguous_and_cover_everything() -> None:
    b = group_bounds(103, 6)
    assert b[0][0] == 0 and b[-1][1] == 103
    assert all(b[i][1] == b[i + 1][0] for i in range(5))
    assert max(e - s for s, e in b) - min(e - s for s, e in b) <= 1
