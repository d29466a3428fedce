"""Combinatorial purged cross-validation (López de Prado): splits and backtest paths.

Samples are rows in time order; sample i's label window is [i, i + horizon] (features known at
i, outcome realised at i + horizon). The n samples are cut into N contiguous groups; every
choice of k test groups is one split, C(N, k) in all. A training sample is *purged* when its
label window overlaps a test sample's, and *embargoed* when it starts within `embargo` samples
after the end of a test block's last label window. Every group is tested C(N-1, k-1) times;
path p takes, for each group, its p-th test occurrence, so each path covers every sample once.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from math import comb

import numpy as np


@dataclass(frozen=True)
class Split:
    """One CPCV split: its test groups and the sample positions to train and test on."""

    index: int
    test_groups: tuple[int, ...]
    train: np.ndarray
    test: np.ndarray


def group_bounds(n: int, n_groups: int) -> list[tuple[int, int]]:
    """[start, end) of each of `n_groups` contiguous, near-equal groups of n samples."""
    if not 1 <= n_groups <= n:
        raise ValueError(f"need 1 <= groups <= samples, got {n_groups} groups for {n}")
    edges = np.linspace(0, n, n_groups + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def sample_groups(n: int, n_groups: int) -> np.ndarray:
    """The group number of every sample."""
    out = np.empty(n, dtype=np.int64)
    for g, (a, b) in enumerate(group_bounds(n, n_groups)):
        out[a:b] = g
    return out


def _blocks(test: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous runs [first, last] of sorted positions."""
    breaks = np.flatnonzero(np.diff(test) > 1)
    starts = np.r_[test[0], test[breaks + 1]]
    ends = np.r_[test[breaks], test[-1]]
    return [(int(a), int(b)) for a, b in zip(starts, ends, strict=True)]


def cpcv_splits(n: int, n_groups: int, k: int, horizon: int, embargo: int) -> list[Split]:
    """All C(n_groups, k) purged and embargoed splits of n samples, in lexicographic order of
    their test groups."""
    if not 1 <= k < n_groups:
        raise ValueError(f"need 1 <= test groups < groups, got k={k}, N={n_groups}")
    bounds = group_bounds(n, n_groups)
    splits = []
    for i, groups in enumerate(combinations(range(n_groups), k)):
        test = np.concatenate([np.arange(*bounds[g]) for g in groups])
        keep = np.ones(n, dtype=bool)
        keep[test] = False
        for first, last in _blocks(test):
            # purge: label windows [i, i+h] and [j, j+h] overlap when |i - j| <= h
            keep[max(0, first - horizon): min(n, last + horizon + 1)] = False
            # embargo: samples starting just after the block's last label is realised
            keep[last + horizon + 1: min(n, last + horizon + 1 + embargo)] = False
        splits.append(Split(i, tuple(groups), np.flatnonzero(keep), test))
    return splits


def n_paths(n_groups: int, k: int) -> int:
    """How many backtest paths CPCV yields: C(N-1, k-1)."""
    return comb(n_groups - 1, k - 1)


def cpcv_paths(splits: list[Split], n_groups: int) -> list[list[int]]:
    """Paths as lists of split indices, one per group: path p uses, for group g, the split in
    which g is tested for the p-th time."""
    occurrences: dict[int, list[int]] = {g: [] for g in range(n_groups)}
    for s in splits:
        for g in s.test_groups:
            occurrences[g].append(s.index)
    counts = {len(v) for v in occurrences.values()}
    if len(counts) != 1:
        raise ValueError("groups are tested unequal numbers of times")
    return [[occurrences[g][p] for g in range(n_groups)] for p in range(counts.pop())]
