"""Canary routing and stepping, and the MA-crossover stand-in (pure logic)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from daemon.bars.model import Bar
from daemon.execution import canary as cn
from daemon.execution.ma_rule import MovingAverageCrossover
from daemon.intent import intent_for_target
from daemon.risk import MarketView, RiskLimits, RiskState, gate

POLICY = cn.CanaryPolicy(steps=(5, 25, 50, 100), healthy_windows=2, window_bars=3,
                         max_risk_block_rate=0.5, max_p99_latency_ms=20.0, min_ann_recall=0.9)
IDS = [hashlib.sha256(str(i).encode()).hexdigest()[:16] for i in range(4000)]


def test_routing_is_deterministic_nested_and_close_to_the_step():
    for pct in (5, 25, 50):
        live = {i for i in IDS if cn.is_live(i, pct)}
        assert abs(len(live) / len(IDS) - pct / 100) < 0.03
        assert live == {i for i in IDS if cn.is_live(i, pct)}
        assert live <= {i for i in IDS if cn.is_live(i, min(100, pct * 2))}
    assert all(cn.is_live(i, 100) for i in IDS)


def _windows(state, n, **kw):
    verdicts = []
    for _ in range(n * POLICY.window_bars):
        state, v = cn.end_bar(state, POLICY, **kw)
        if v:
            verdicts.append(v)
    return state, verdicts


def test_two_healthy_windows_step_up_until_the_top():
    state, verdicts = _windows(cn.CanaryState(), 8, replay=True)
    assert [v.step_pct for v in verdicts] == [5, 25, 25, 50, 50, 100, 100, 100]
    assert all(v.healthy for v in verdicts)
    assert cn.step_pct(state, POLICY) == 100


def test_an_unhealthy_window_steps_back_and_says_why():
    state = cn.CanaryState(step_index=2)
    state = cn.count_submit_error(state, timing_dependent=False)
    state, [v] = _windows(state, 1, replay=True)
    assert not v.healthy and v.step_pct_before == 50 and v.step_pct == 25
    assert "1 submit error" in v.reason and "stepping back" in v.reason
    state = cn.CanaryState(step_index=1)
    for blocked in (True, True, False):
        state = cn.count_intent(state, risk_blocked=blocked)
    state, [v] = _windows(state, 1, replay=False, ann_recall=0.5, p99_latency_ms=30.0)
    assert v.step_pct == 5
    assert "risk-block rate 0.67" in v.reason and "ANN recall 0.500" in v.reason
    assert "p99 latency 30.0" in v.reason


def test_a_replay_ignores_what_depends_on_venue_timing():
    state = cn.count_submit_error(cn.CanaryState(step_index=1), timing_dependent=True)
    replayed, [v] = _windows(state, 1, replay=True, p99_latency_ms=999.0)
    assert v.healthy
    live, [v] = _windows(state, 1, replay=False)
    assert not v.healthy and v.step_pct == 5


def test_state_round_trips_and_is_clamped_to_the_steps():
    state = cn.CanaryState(step_index=7, streak=1, bars=2)
    assert cn.CanaryState.from_dict(state.to_dict()) == state
    assert cn.step_pct(cn.clamp(state, POLICY), POLICY) == 100
    pinned = cn.CanaryPolicy(steps=(100,), window_bars=1)
    s, v = cn.end_bar(cn.CanaryState(), pinned, replay=True)
    assert v.step_pct == 100 and cn.is_live(IDS[0], v.step_pct)


def _bars(closes):
    t0 = datetime(2020, 1, 1, tzinfo=UTC)
    return [Bar("C", t0 + timedelta(days=i), c, c + 1, c - 1, c, 10) for i, c in enumerate(closes)]


def test_ma_crossover_targets_follow_the_averages_and_the_gate():
    risk = RiskState()
    rule = MovingAverageCrossover(2, 3, 2)
    out = [rule.decide(b) for b in _bars([10, 11, 12, 10, 9, 9, 12])]
    assert out[:2] == [None, None]
    assert [d.target_position for d in out[2:]] == [2, 0, -2, -2, 2]
    bar = _bars([10])[0]
    intent = intent_for_target("C", bar.ts, 0, 2, 10.0)
    # its intents are judged by the gate it is handed (the daemon's one gate, all limits)
    def judge(i, b):
        return gate(i, risk.snapshot(), RiskLimits(max_order_size=1), MarketView(b.ts, b.ts, 0))

    assert rule.check(intent, bar, judge).reason == "max_order_size"
    risk.mark_news(bar.ts)
    assert rule.check(intent, bar, judge).reason == "news_embargo"
    risk.kill_switch = True
    assert rule.check(intent, bar, judge).reason == "kill_switch"
