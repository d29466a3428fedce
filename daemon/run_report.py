"""The run report: HTML with PNG plots plus JSON, rebuilt from a run's state store.

It reads only the run journal (`Store.journal_rows`), so `anchord report RUN_DIR` can rebuild it
at any time. Journal kinds and the fields used:
- `bar`: `close`, `position`, `equity` (and optionally `p_up`)
- `latency`: `stages` and `end_to_end` ({name: {p50_us, p90_us, p99_us, p999_us, max_us}}),
  `hist` ({name: [[upper_us, count], ...]}) — the last record is the run's summary
- `cycle`: `cycle`, `decision`, `reason`, gate metrics; `promotion`, `rollback`: `version`, `reason`
- `canary`: `step_pct`, `healthy`, `reason`; `deny`: `reason`; `monitor`: `ann_recall`, `ece`
"""

from __future__ import annotations

import html
from collections import Counter
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import orjson  # noqa: E402

from daemon.errors import AnchordError  # noqa: E402
from daemon.store import Store  # noqa: E402
from daemon.timeutil import parse_utc  # noqa: E402


def _dates(rows: list[dict[str, Any]]) -> list[Any]:
    return [parse_utc(r["ts"]) for r in rows]


def max_drawdown(equity: np.ndarray) -> float:
    """Largest peak-to-trough fall of an equity curve (a number <= 0, in equity units)."""
    if equity.size == 0:
        return 0.0
    return float(np.min(equity - np.maximum.accumulate(equity)))


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's summary figures from its journal."""
    by: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault(r["kind"], []).append(r)
    bars = by.get("bar", [])
    equity = np.array([b.get("equity", 0.0) for b in bars], dtype=float)
    cycles = by.get("cycle", [])
    latency = by.get("latency", [])
    monitors = by.get("monitor", [])
    canary = by.get("canary", [])
    return {
        "bars": len(bars),
        "first_bar": bars[0]["ts"] if bars else None,
        "last_bar": bars[-1]["ts"] if bars else None,
        "final_equity": float(equity[-1]) if equity.size else 0.0,
        "max_drawdown": max_drawdown(equity),
        "final_position": bars[-1].get("position", 0) if bars else 0,
        "orders": sum(1 for r in rows if r["kind"] == "order"),
        "update_cycles": len(cycles),
        "decisions": dict(Counter(str(c.get("decision")) for c in cycles)),
        "promotions": len(by.get("promotion", [])),
        "rollbacks": len(by.get("rollback", [])),
        "risk_denials": dict(Counter(str(d.get("reason")) for d in by.get("deny", []))),
        "canary_final_step_pct": canary[-1].get("step_pct") if canary else None,
        "latency": latency[-1].get("end_to_end", {}) if latency else {},
        "ann_recall_last": monitors[-1].get("ann_recall") if monitors else None,
        "ece_last": monitors[-1].get("ece") if monitors else None,
    }


def _save(fig: Any, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.name


def _plots(by: dict[str, list[dict[str, Any]]], out: Path) -> dict[str, str]:
    plots: dict[str, str] = {}
    bars = by.get("bar", [])
    if bars:
        t = _dates(bars)
        eq = np.array([b.get("equity", 0.0) for b in bars], dtype=float)
        fig, (a1, a2) = plt.subplots(2, 1, figsize=(9, 5), sharex=True)
        a1.plot(t, eq)
        a1.set_title("Equity")
        a2.fill_between(t, eq - np.maximum.accumulate(eq), 0, color="tab:red")
        a2.set_title("Drawdown")
        plots["equity"] = _save(fig, out / "equity.png")
        fig, ax = plt.subplots(figsize=(9, 2.5))
        ax.step(t, [b.get("position", 0) for b in bars], where="post")
        ax.set_title("Position (contracts)")
        plots["position"] = _save(fig, out / "position.png")
    lat = by.get("latency", [])
    if lat:
        last = lat[-1]
        stages = {**last.get("stages", {}), "end_to_end": last.get("end_to_end", {})}
        names = [n for n in stages if stages[n]]
        fig, ax = plt.subplots(figsize=(9, 3.5))
        x = np.arange(len(names))
        for i, q in enumerate(("p50_us", "p99_us", "p999_us")):
            ax.bar(x + (i - 1) * 0.27, [stages[n].get(q, 0) for n in names], 0.27, label=q)
        ax.set_xticks(x, names, rotation=20)
        ax.set_ylabel("µs")
        ax.legend()
        ax.set_title("Latency percentiles per stage")
        plots["latency"] = _save(fig, out / "latency.png")
        hist = last.get("hist", {}).get("end_to_end")
        if hist:
            fig, ax = plt.subplots(figsize=(9, 2.5))
            ax.bar([h[0] for h in hist], [h[1] for h in hist], width=np.diff(
                [0] + [h[0] for h in hist]), align="edge")
            ax.set_xscale("log")
            ax.set_xlabel("end-to-end µs")
            ax.set_title("End-to-end latency histogram")
            plots["latency_hist"] = _save(fig, out / "latency_hist.png")
    cycles = by.get("cycle", [])
    if cycles:
        fig, ax = plt.subplots(figsize=(9, 2.5))
        colors = {"promote": "tab:green", "reject": "tab:red", "hold": "tab:gray"}
        for c, t in zip(cycles, _dates(cycles), strict=True):
            ax.scatter([t], [1], color=colors.get(str(c.get("decision")), "tab:blue"))
        for t in _dates(by.get("rollback", [])):
            ax.scatter([t], [0], marker="x", color="black")
        ax.set_yticks([0, 1], ["rollback", "cycle"])
        ax.set_title("Update cycles (green promote, red reject, grey hold) and rollbacks")
        plots["cycles"] = _save(fig, out / "cycles.png")
    canary = by.get("canary", [])
    if canary:
        fig, ax = plt.subplots(figsize=(9, 2.5))
        ax.step(_dates(canary), [c.get("step_pct", 0) for c in canary], where="post")
        ax.set_title("Canary step (% of intents live)")
        plots["canary"] = _save(fig, out / "canary.png")
    denies = Counter(str(d.get("reason")) for d in by.get("deny", []))
    if denies:
        fig, ax = plt.subplots(figsize=(9, 2.5))
        ax.barh(list(denies), list(denies.values()))
        ax.set_title("Risk denials by reason")
        plots["denials"] = _save(fig, out / "denials.png")
    mon = [m for m in by.get("monitor", []) if m.get("ann_recall") is not None
           or m.get("ece") is not None]
    if mon:
        fig, ax = plt.subplots(figsize=(9, 2.5))
        t = _dates(mon)
        ax.plot(t, [m.get("ann_recall") for m in mon], label="ANN recall@k")
        ax.plot(t, [m.get("ece") for m in mon], label="ECE")
        ax.legend()
        ax.set_title("Online monitors")
        plots["monitors"] = _save(fig, out / "monitors.png")
    return plots


def _table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in cols) + "</tr>"
        for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def build_report(state_dir: Path, out: Path | None = None) -> dict[str, Any]:
    """Write report.html, report.json and PNG plots for the run in `state_dir`; returns the
    summary. Raises AnchordError when there is no run there."""
    db = state_dir / "store.sqlite"
    if not db.is_file():
        raise AnchordError(f"{state_dir}: no store.sqlite (not a run's state directory)")
    store = Store(db)
    try:
        rows = store.journal_rows()
    finally:
        store.close()
    out = out or state_dir / "reports"
    out.mkdir(parents=True, exist_ok=True)
    by: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault(r["kind"], []).append(r)
    summary = summarize(rows)
    plots = _plots(by, out)
    timeline = [r for r in rows if r["kind"] in ("cycle", "promotion", "rollback")]
    (out / "report.json").write_bytes(orjson.dumps(
        {"summary": summary, "plots": plots, "timeline": timeline,
         "canary": by.get("canary", [])}, option=orjson.OPT_INDENT_2, default=str))
    parts = ["<html><head><meta charset='utf-8'><title>anchord run report</title>",
             "<style>body{font-family:sans-serif;max-width:1000px;margin:auto}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
             "</style></head><body><h1>anchord run report</h1>",
             _table([{"figure": k, "value": v} for k, v in summary.items()], ["figure", "value"])]
    for name, file in plots.items():
        parts.append(f"<h2>{html.escape(name)}</h2><img src='{html.escape(file)}'>")
    parts.append("<h2>Update cycles, promotions and rollbacks</h2>")
    parts.append(_table(timeline, ["ts", "kind", "cycle", "version", "decision", "reason"]))
    parts.append("<h2>Canary steps</h2>")
    parts.append(_table(by.get("canary", []), ["ts", "step_pct", "healthy", "reason"]))
    parts.append("</body></html>")
    (out / "report.html").write_text("".join(parts), encoding="utf-8")
    return summary
