"""Replay sources: both CSV layouts, Parquet, zones normalised to UTC, the real sample."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from daemon.bars.replay import SourceError, load_bars, load_bars_counted, open_replay


def test_yahoo_style_csv(tmp_path: Path) -> None:
    p = tmp_path / "y.csv"
    p.write_text("Date,Open,High,Low,Close,Adj Close,Volume\n"
                 "2020-01-02,10,11,9,10.5,10.4,100\n2020-01-03,10.5,12,10,11,10.9,200\n")
    bars = load_bars(str(p), "C")
    assert [b.close for b in bars] == [10.5, 11.0]
    assert bars[0].ts == datetime(2020, 1, 2, tzinfo=UTC)


def test_lowercase_iso_csv_with_zones(tmp_path: Path) -> None:
    p = tmp_path / "m.csv"
    p.write_text("timestamp,open,high,low,close,volume\n"
                 "2020-01-02T09:30:00-05:00,1,2,1,2,5\n2020-01-02T14:31:00Z,2,3,2,3,5\n")
    bars = load_bars(str(p), "C")
    assert bars[0].ts == datetime(2020, 1, 2, 14, 30, tzinfo=UTC)
    assert bars[1].ts == datetime(2020, 1, 2, 14, 31, tzinfo=UTC)


def test_parquet(tmp_path: Path) -> None:
    p = tmp_path / "b.parquet"
    table = pa.table({"timestamp": [datetime(2020, 1, 2, tzinfo=UTC),
                                    datetime(2020, 1, 3, tzinfo=UTC)],
                      "open": [1.0, 2.0], "high": [2.0, 3.0], "low": [1.0, 2.0],
                      "close": [2.0, 3.0], "volume": [1, 2]})
    pq.write_table(table, p)
    assert [b.close for b in load_bars(str(p), "C")] == [2.0, 3.0]


def test_real_sample_sp500_is_complete_and_valid() -> None:
    bars, refused = load_bars_counted("sample:sp500", "ES")
    assert refused == 0
    assert bars[0].ts.year == 1999 and bars[-1].ts.year == 2018
    assert len(bars) > 5000


def test_window_and_stable_id() -> None:
    a = open_replay("sample:nasdaq", "2013-01-01", "2013-12-31")
    b = open_replay("sample:nasdaq", "2013-01-01", "2013-12-31")
    c = open_replay("sample:nasdaq", "2014-01-01", "2014-12-31")
    assert a.source_id == b.source_id != c.source_id
    assert 240 < len(a.rows) < 260


def test_missing_file_and_unknown_sample() -> None:
    with pytest.raises(SourceError, match="no such file"):
        load_bars("/nonexistent/x.csv", "C")
    with pytest.raises(SourceError, match="unknown sample"):
        load_bars("sample:dax", "C")
