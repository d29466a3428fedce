"""Choosing the stress days of the anchor suite and the named date slices.

Stress days come from a named list in config (`"YYYY-MM-DD taxonomy_label"`) and from two
rules over the training window: the N worst daily returns (`tail_loss`) and the N largest
volatility spikes, measured by `vol_ratio` (short over long volatility; `vol_spike`). Only
days up to the training end qualify; a day within a few bars of one already chosen is skipped,
so the suite is not one crash counted many times.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np

MIN_SEPARATION = 3  # bars between two rule-chosen stress days


@dataclass(frozen=True)
class StressDay:
    """One chosen stress day: its row position, ISO date, taxonomy label and why it was chosen."""

    row: int
    date: str
    label: str
    source: str  # "named" or the rule's name


def parse_named(entries: list[str]) -> list[tuple[str, str]]:
    """(ISO date, label) of config entries "YYYY-MM-DD label"."""
    out = []
    for entry in entries:
        day, *label = entry.split()
        out.append((date.fromisoformat(day).isoformat(), "_".join(label) or "named"))
    return out


def parse_slices(entries: list[str]) -> dict[str, tuple[str, str]]:
    """{name: (start, end)} of config entries "name start end"."""
    out = {}
    for entry in entries:
        name, start, end = entry.split()[:3]
        out[name] = (date.fromisoformat(start).isoformat(), date.fromisoformat(end).isoformat())
    return out


def choose_stress_days(dates: list[str], ret_1: np.ndarray, vol_ratio: np.ndarray,
                       named: list[tuple[str, str]], n_worst: int,
                       n_spikes: int) -> list[StressDay]:
    """Stress days among the candidate rows (`dates` ISO, all within the training window).

    A named day maps to the first row on or after it within 7 calendar days (markets closed on
    the day itself, e.g. after 2001-09-11); named days outside the rows are dropped. Then the
    rules add rows by worst `ret_1` and by largest `vol_ratio`, skipping rows within
    MIN_SEPARATION of a chosen one. Sorted by date.
    """
    chosen: dict[int, StressDay] = {}
    as_dates = np.array([date.fromisoformat(d).toordinal() for d in dates])
    for day, label in named:
        target = date.fromisoformat(day).toordinal()
        pos = int(np.searchsorted(as_dates, target))
        if pos < len(dates) and as_dates[pos] - target <= 7:
            chosen.setdefault(pos, StressDay(pos, dates[pos], label, "named"))

    def near_chosen(row: int) -> bool:
        return any(abs(row - r) < MIN_SEPARATION for r in chosen)

    for values, count, label, rule in ((ret_1, n_worst, "tail_loss", "worst_return"),
                                       (-vol_ratio, n_spikes, "vol_spike", "vol_spike")):
        added = 0
        for row in np.argsort(values, kind="mergesort"):
            if added >= count:
                break
            if not np.isfinite(values[row]) or near_chosen(int(row)):
                continue
            chosen[int(row)] = StressDay(int(row), dates[int(row)], label, rule)
            added += 1
    return [chosen[r] for r in sorted(chosen)]
