"""The decision rule: bounded by the limits, flat below the minimum edge, sized by volatility."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.pipeline.decision import DecisionParams, EwmaVol, target_position


@settings(max_examples=300, deadline=None)
@given(p=st.floats(0.0, 1.0), forecast=st.floats(-0.1, 0.1), sigma=st.floats(1e-4, 0.1),
       price=st.floats(10.0, 5000.0), position=st.integers(-6, 6), max_pos=st.integers(0, 5),
       max_step=st.integers(1, 3), min_edge=st.floats(0.0, 0.5))
def test_target_respects_limits(p, forecast, sigma, price, position, max_pos, max_step,
                                min_edge) -> None:
    params = DecisionParams(min_edge=min_edge, max_position=max_pos, max_order_size=max_step)
    wanted, edge, _ = target_position(p, forecast, sigma, price, params)
    target, _, _ = target_position(p, forecast, sigma, price, params, position)
    assert abs(wanted) <= max_pos and abs(target) <= max_pos
    if abs(position) <= max_pos:
        assert abs(target - position) <= max_step
    if abs(edge) < min_edge:
        assert wanted == 0
    if wanted:
        assert math.copysign(1, wanted) == math.copysign(1, edge)


def test_size_follows_the_volatility_target() -> None:
    params = DecisionParams(min_edge=0.0, full_edge=0.2, vol_target=1000.0, point_value=50.0,
                            max_position=100, agree_with_forecast=False)
    calm, _, _ = target_position(0.7, 0.0, 0.005, 100.0, params)   # 1000/(0.005·100·50) = 40
    wild, _, _ = target_position(0.7, 0.0, 0.02, 100.0, params)    # 10
    short, _, _ = target_position(0.3, 0.0, 0.02, 100.0, params)
    assert (calm, wild, short) == (40, 10, -10)
    assert target_position(0.7, -0.01, 0.02, 100.0, DecisionParams())[0] == 0  # disagreement


def test_ewma_vol_warms_up_then_tracks() -> None:
    vol = EwmaVol(halflife=5, min_bars=3)
    assert math.isnan(vol.update(100.0))
    for c in (101.0, 100.0, 101.0, 100.0):
        v = vol.update(c)
    assert 0.005 < v < 0.012
