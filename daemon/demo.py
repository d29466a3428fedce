"""`anchord demo`: the whole system on the bundled sample, in one process, ending by itself.

It trains the artifact set if there is none that verifies (S&P 500 daily through 2012), starts
the paper venue on a loopback port, writes the run's runtime.toml (state in OUT/state, so
`anchord report OUT/state` and `anchord ctl` work on it), and runs the same `Daemon` with the
same attach functions as `anchord run` over 2013-2018 at full speed: pipeline strategy, risk
gate, canary, submitter over HTTP to the venue, continual adapter updates. Progress goes to the
terminal (one updating line, or JSON lines when not a TTY); the daemon's JSON log goes to
OUT/anchord.log. It ends with a summary and a report folder (HTML, PNG, JSON).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from daemon.errors import AnchordError

SOURCE = "sample:sp500"
DEMO_API_KEY_ENV = "PROJECTX_API_KEY"
TRAIN_END = "2012-12-31"
JOURNAL_EVERY = 50
# The promotion gate of the demo: a candidate may be 1% worse on the drift hold-out and 0.5%
# deeper in drawdown than the serving model (the defaults, 0 and 0, promote about one cycle in
# ten on this sample, so a run would show few swaps and no rollback monitor at work).
DEMO_DELTA = 0.01
DEMO_TOLERANCE = 0.005


def add_demo_parser(sub: argparse._SubParsersAction) -> None:
    """Register `anchord demo`."""
    p = sub.add_parser("demo", help="run the whole system on the sample against the paper venue")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--artifacts", default="artifacts/sp500",
                   help="artifact root; trained here when missing (default artifacts/sp500)")
    p.add_argument("--train-config", default=None,
                   help="runtime.toml whose [training] etc. train a missing artifact set "
                        "(default: the built-in defaults)")
    p.add_argument("--start", default="2013-01-01", help="first replayed bar date")
    p.add_argument("--end", default="2018-12-31", help="last replayed bar date")
    p.add_argument("--cycles", type=int, default=10,
                   help="about this many adapter update cycles over the window (default 10)")
    p.add_argument("--canary-steps", default=None, metavar="PCT,PCT,...",
                   help="canary steps in percent (default: [canary].steps, 5,25,50,100)")

    def demo(args: argparse.Namespace) -> int:
        return run_demo(args)

    p.set_defaults(func=demo)


# -- artifacts -----------------------------------------------------------------------------
def ensure_artifacts(root: Path, train_config: str | None, out: Path) -> tuple[Path, bool]:
    """The artifact root to load: reused when its current set verifies, else trained through
    2012 on the sample (the `anchord train --install` code path). Returns (root, trained)."""
    from daemon.training.artifacts import read_manifest, resolve_set_dir, verify_files

    try:
        folder = resolve_set_dir(root)
        verify_files(folder, read_manifest(folder))
        return root, False
    except (AnchordError, OSError):
        pass
    from daemon.config import load_config
    from daemon.training.artifacts import install_artifact_set
    from daemon.training.train import train_artifacts

    _say(f"no verified artifact set at {root}: training one on {SOURCE} through {TRAIN_END} "
         "(first run only; a few minutes)")
    if train_config is None:
        out.mkdir(parents=True, exist_ok=True)
        path = out / "train.toml"
        path.write_text(f'[data]\nsource = "{SOURCE}"\n')
        train_config = str(path)
    cfg = load_config(train_config)
    build = root / "build"
    shutil.rmtree(build, ignore_errors=True)  # what an interrupted first run left
    t0 = time.monotonic()
    train_artifacts(cfg, SOURCE, build, train_end=TRAIN_END)
    install_artifact_set(build, root)  # copied to root/sets/<hash>, made current
    shutil.rmtree(build, ignore_errors=True)
    _say(f"artifact set trained and installed under {root} in {time.monotonic() - t0:.0f} s")
    return root, True


# -- configuration -------------------------------------------------------------------------
def window_bars(start: str, end: str) -> int:
    """Bars of the sample in [start, end]."""
    from daemon.bars.replay import open_replay

    return len(open_replay(SOURCE, start, end).rows)


def demo_config(*, base_url: str, artifacts: Path, start: str, end: str,
                every_n_bars: int, canary_steps: str | None = None) -> str:
    """The run's runtime.toml (state_dir relative to it; no secret in it)."""
    window = max(8, min(120, every_n_bars))
    holdout = min(20, window // 4)
    return f"""# Written by `anchord demo`: the paper venue on loopback, the sample at full speed.
[daemon]
state_dir = "state"
control_socket = "state/anchord.sock"
status_interval_s = 60.0

[data]
source = "{SOURCE}"
pace = 0.0
at_end = "exit"
start = "{start}"
end = "{end}"

[metrics]
listen = "127.0.0.1:0"

[adapters]
every_n_bars = {every_n_bars}
window_bars = {window}
gate_holdout_bars = {holdout}
min_spacing_bars = {min(20, every_n_bars)}

[promotion]
delta = {DEMO_DELTA}
tolerance = {DEMO_TOLERANCE}

[artifacts]
dir = "{artifacts.resolve()}"

[projectx]
base_url = "{base_url}"
username = "demo"
rate_limit_qps = 5.0

[execution]
enabled = true
strategy = "pipeline"
""" + (f"\n[canary]\nsteps = [{canary_steps}]\n" if canary_steps else "")


# -- progress ------------------------------------------------------------------------------
class Progress:
    """One updating line on a TTY, JSON lines (about every 2 s) otherwise."""

    def __init__(self, daemon: Any, execution: Any, total: int) -> None:
        self.daemon = daemon
        self.execution = execution
        self.total = total
        self.tty = sys.stdout.isatty()
        self.last = 0.0
        self.period = 0.2 if self.tty else 2.0

    def snapshot(self, bar: Any) -> dict[str, Any]:
        """The figures shown for `bar`."""
        trader = self.execution.trader
        adapters = getattr(self.daemon, "adapters", None)
        cycles = adapters.status().get("cycles", 0) if adapters is not None else 0
        return {"bar": bar.ts.date().isoformat(), "n": self.daemon.ingest.bars_seen,
                "of": self.total,
                "position": self.execution.ledger.position(self.execution.contract),
                "equity": round(self.execution.ledger.equity(self.execution.contract), 2),
                "cycles": cycles,
                "canary_pct": trader.step_pct}

    async def on_bar(self, bar: Any) -> None:
        """Bar handler (last): show progress at most every `period` seconds."""
        now = time.monotonic()
        if now - self.last < self.period:
            return
        self.last = now
        self.show(self.snapshot(bar))

    def show(self, s: dict[str, Any]) -> None:
        """Print one progress update."""
        if self.tty:
            line = (f"\r{s['bar']}  bar {s['n']}/{s['of']}  pos {s['position']:+d}  "
                    f"equity {s['equity']:>12,.2f}  cycles {s['cycles']}  "
                    f"canary {s['canary_pct']}%")
            sys.stdout.write(line.ljust(100))
        else:
            sys.stdout.write(orjson.dumps({"progress": s}).decode() + "\n")
        sys.stdout.flush()

    def done(self) -> None:
        """End the updating line."""
        if self.tty:
            sys.stdout.write("\n")
            sys.stdout.flush()


def _say(text: str) -> None:
    print(f"anchord demo: {text}", flush=True)


# -- the run -------------------------------------------------------------------------------
async def _run(out: Path, artifacts: Path, args: argparse.Namespace, total: int) -> dict:
    from daemon.app import Daemon
    from daemon.config import load_config
    from daemon.execution.attach import attach_execution
    from daemon.logs import configure_logging
    from daemon.pipeline.attach import record_latency
    from daemon.venue import attach_to_daemon, run_venue

    # The first cycle waits for the pipeline's warm-up: n+1 periods give about n cycles.
    every = max(10, total // (max(1, args.cycles) + 1))
    cfg_path = out / "runtime.toml"
    log_file = (out / "anchord.log").open("ab")
    configure_logging("info", stream=log_file)  # the venue's and the daemon's JSON log
    try:
        async with run_venue(data=SOURCE, other_limit="unlimited") as venue:
            cfg_path.write_text(demo_config(base_url=venue.base_url, artifacts=artifacts,
                                            start=args.start, end=args.end,
                                            every_n_bars=every,
                                            canary_steps=args.canary_steps))
            daemon = Daemon(load_config(cfg_path))
            if daemon.pipeline is None:
                raise AnchordError(f"{artifacts}: the artifact set did not load (see "
                                   f"{out / 'anchord.log'})")
            # Monitor and latency records every 50 bars: ANN recall and ECE over time.
            daemon.pipeline.params = dataclasses.replace(daemon.pipeline.params,
                                                         journal_every_bars=JOURNAL_EVERY)
            attach_to_daemon(venue, daemon)
            execution = attach_execution(daemon)
            async def final_latency() -> None:  # the run's last latency + monitor record
                record_latency(daemon, daemon.pipeline, "end")

            daemon.drain_hooks.append(final_latency)
            progress = Progress(daemon, execution, total)
            daemon.ingest.handlers.append(progress.on_bar)
            _say(f"venue at {venue.base_url}; replaying {total} bars {args.start}..{args.end}"
                 f" (adapter cycle every {every} bars); log: {out / 'anchord.log'}")
            code = await daemon.run()
            progress.done()
            if code != 0:
                raise AnchordError(f"the daemon exited with {code} (see {out / 'anchord.log'})")
            ledger = execution.ledger
            positions = {"daemon_position": ledger.position(execution.contract),
                         "working_position": execution.outbox.working_position(
                             execution.contract)}
            return {"venue_position": venue.net_position(), **positions,
                    "venue_orders": len(venue.orders()),
                    "adapters": daemon.adapters.status() if getattr(
                        daemon, "adapters", None) is not None else None,
                    "canary_step_pct": execution.trader.step_pct,
                    "point_value": daemon.cfg.pipeline.point_value,
                    "equity": round(ledger.equity(execution.contract), 2)}
    finally:
        configure_logging("info")
        log_file.close()


def _fmt_summary(s: dict[str, Any]) -> str:
    lat = s.get("latency") or {}
    d = s.get("decisions") or {}
    pv = float(s.get("point_value") or 1.0)
    rows = [
        ("bars", f"{s['bars']} ({s['first_bar']} .. {s['last_bar']})"),
        ("orders", s["orders"]),
        ("final position", f"daemon {s['daemon_position']}, venue {s['venue_position']}"),
        ("PnL / equity", f"{s['final_equity']:,.2f} (the ledger's: realised + unrealised "
                         f"- fees, at {pv:g} per point and contract)"),
        ("max drawdown", f"{s['max_drawdown']:,.2f}"),
        ("update cycles", f"{s['update_cycles']} (promote {d.get('promote', 0)}, reject "
                          f"{d.get('reject', 0)}, other "
                          f"{sum(v for k, v in d.items() if k not in ('promote', 'reject'))});"
                          f" promotions {s['promotions']}, rollbacks {s['rollbacks']}"),
        ("canary final step", f"{s['canary_final_step_pct']}%"),
        ("risk denials", ", ".join(f"{k} {v}" for k, v in s["risk_denials"].items()) or "none"),
        ("latency end-to-end", f"p50 {lat.get('p50_us', '-')} µs, p99 {lat.get('p99_us', '-')} µs"),
        ("ANN recall", s["ann_recall_last"]),
        ("ECE", s["ece_last"]),
        ("wall time", f"{s['wall_time_s']:.1f} s"),
        ("report", s["report_dir"]),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows)


def run_demo(args: argparse.Namespace) -> int:
    """The `anchord demo` command; returns the exit code."""
    import anyio

    from daemon.run_report import build_report

    if args.canary_steps is not None and not all(
            x.strip().isdigit() for x in args.canary_steps.split(",")):
        raise AnchordError(f"--canary-steps: expected percentages like 5,25,100, got "
                           f"{args.canary_steps!r}")
    out = Path(args.out)
    state = out / "state"
    if state.exists():  # a demo is one run: start from a clean state every time
        shutil.rmtree(state)
    out.mkdir(parents=True, exist_ok=True)
    (out / "anchord.log").unlink(missing_ok=True)
    artifacts, _ = ensure_artifacts(Path(args.artifacts), args.train_config, out)
    total = window_bars(args.start, args.end)
    if total < 50:
        raise AnchordError(f"--start/--end: only {total} bars in the window (need >= 50)")
    # A dummy key for the paper venue, in this process's environment only (a real key that
    # happens to be set is not needed here, and is not sent anywhere).
    os.environ[DEMO_API_KEY_ENV] = "demo-paper-venue-key"
    t0 = time.monotonic()
    result = anyio.run(_run, out, artifacts, args, total)
    wall = time.monotonic() - t0
    report_dir = out / "report"
    summary = build_report(state, report_dir)
    summary.update(result, wall_time_s=round(wall, 1), report_dir=str(report_dir))
    (out / "summary.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2,
                                                    default=str))
    print("anchord demo: summary")
    print(_fmt_summary(summary))
    if summary["daemon_position"] != summary["venue_position"]:
        raise AnchordError(f"position mismatch: daemon {summary['daemon_position']}, venue "
                           f"{summary['venue_position']}")
    return 0
