"""The anchor suite: content hash, round trip, tamper refusal, teacher recomputation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from adapters.anchors import META_FILE, SUITE_FILE, AnchorSuite, AnchorSuiteError


def _suite(seed: int = 0, n: int = 12) -> AnchorSuite:
    rng = np.random.default_rng(seed)
    labels = ["crash" if i % 3 == 0 else "vol_spike" for i in range(n)]
    dates = [f"2008-10-{i + 1:02d}" for i in range(n)]
    return AnchorSuite(rng.normal(size=(n, 5)), rng.normal(size=n), rng.normal(size=n),
                       labels, dates)


def test_hash_depends_on_contents_only() -> None:
    a, b = _suite(0), _suite(0)
    assert a.content_hash() == b.content_hash()
    changed = AnchorSuite(a.inputs.copy(), a.teacher, a.targets, a.labels, a.dates)
    changed.inputs[3, 2] += 1e-3
    assert changed.content_hash() != a.content_hash()
    relabelled = AnchorSuite(a.inputs, a.teacher, a.targets, ["other"] * len(a), a.dates)
    assert relabelled.content_hash() != a.content_hash()


def test_round_trip_is_byte_identical(tmp_path: Path) -> None:
    suite = _suite(1)
    suite.save(tmp_path / "a")
    suite.save(tmp_path / "b")
    for name in (SUITE_FILE, META_FILE):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    loaded = AnchorSuite.load(tmp_path / "a")
    assert loaded.content_hash() == suite.content_hash()
    np.testing.assert_array_equal(loaded.inputs, suite.inputs)
    assert loaded.labels == suite.labels


def test_tampered_suite_is_refused(tmp_path: Path) -> None:
    _suite(2).save(tmp_path)
    raw = bytearray((tmp_path / SUITE_FILE).read_bytes())
    raw[-20] ^= 0xFF
    (tmp_path / SUITE_FILE).write_bytes(bytes(raw))
    with pytest.raises(AnchorSuiteError):
        AnchorSuite.load(tmp_path)


def test_with_teacher_recomputes_outputs_and_hash() -> None:
    suite = _suite(3)
    new = suite.with_teacher(lambda x: x.sum(axis=1))
    np.testing.assert_allclose(new.teacher, suite.inputs.sum(axis=1), rtol=1e-6)
    assert new.content_hash() != suite.content_hash()
    assert {k: list(v) for k, v in new.taxonomy().items()} == {
        "crash": [0, 3, 6, 9], "vol_spike": [1, 2, 4, 5, 7, 8, 10, 11]}


def test_mismatched_lengths_are_refused() -> None:
    s = _suite(4)
    with pytest.raises(AnchorSuiteError):
        AnchorSuite(s.inputs, s.teacher[:-1], s.targets, s.labels, s.dates)
