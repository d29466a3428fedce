"""`anchord` command line: thin argument parsing that hands over to the commands.

Every expected failure is an AnchordError: one line on stderr and its exit code (2 for bad
usage, config or artifacts; 1 when checks ran and failed), never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from daemon.errors import AnchordError

DEFAULT_CONFIG = "runtime.toml"


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the trading daemon")
    p.add_argument("--config", default=DEFAULT_CONFIG, help="path to runtime.toml")

    def run(args: argparse.Namespace) -> int:
        from daemon.app import run_daemon

        return run_daemon(args.config)

    p.set_defaults(func=run)


def _add_ctl(sub: argparse._SubParsersAction) -> None:
    from daemon.ctl_cli import add_ctl_parser

    add_ctl_parser(sub)


def _add_venue(sub: argparse._SubParsersAction) -> None:
    from daemon.venue.cli import add_venue_parser

    add_venue_parser(sub)


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="rebuild a run's report (HTML, PNG, JSON) from its state")
    p.add_argument("run_dir", help="the run's state directory (holds store.sqlite)")
    p.add_argument("--out", default=None, help="output folder (default RUN_DIR/reports)")

    def report(args: argparse.Namespace) -> int:
        from pathlib import Path

        import orjson

        from daemon.run_report import build_report

        out = Path(args.out) if args.out else None
        summary = build_report(Path(args.run_dir), out)
        print(orjson.dumps(summary, option=orjson.OPT_INDENT_2, default=str).decode())
        return 0

    p.set_defaults(func=report)


def _add_audit(sub: argparse._SubParsersAction) -> None:
    from daemon.audit_cli import add_audit_parser

    add_audit_parser(sub)


def _bench_subparsers(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The `bench` command's sub-parsers (created by whichever bench is registered first)."""
    if "bench" in sub.choices:
        parser = sub.choices["bench"]
        return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    parser = sub.add_parser("bench", help="benchmarks")
    return parser.add_subparsers(dest="bench_command", required=True, metavar="BENCH")


def _add_bench_update(sub: argparse._SubParsersAction) -> None:
    p = _bench_subparsers(sub).add_parser(
        "update", help="continual update: projected vs naive LoRA at matched drift gain")
    p.add_argument("--data", default="sample:sp500", help="bar source (default sample:sp500)")
    p.add_argument("--windows", type=int, default=10, help="consecutive drift windows")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.add_argument("--quick", action="store_true", help="fewer frontier points and samples")
    p.add_argument("--artifacts", default=None,
                   help="artifact set to use (default: [artifacts].dir when it holds one; "
                        "otherwise a minimal base is built from --data)")
    p.add_argument("--config", default="runtime.toml", help="path to runtime.toml")

    def bench_update(args: argparse.Namespace) -> int:
        from daemon.bench.update import run_bench_update

        return run_bench_update(args)

    p.set_defaults(func=bench_update)
def _add_train(sub: argparse._SubParsersAction) -> None:
    from daemon.training.cli import add_train_parser

    add_train_parser(sub)


def _add_gates(sub: argparse._SubParsersAction) -> None:
    from daemon.training.cli import add_gates_parser

    add_gates_parser(sub)


# --- `anchord bench pipeline` (issue 4) ---
def _bench_subparsers(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The `bench` command's own sub-commands (created by whichever bench is added first)."""
    bench = sub.choices.get("bench")
    if bench is None:
        bench = sub.add_parser("bench", help="benchmarks (pipeline, submit, update)")
        bench.set_defaults(_bench_sub=bench.add_subparsers(dest="bench", required=True,
                                                            metavar="BENCH"))
    return bench.get_default("_bench_sub")


def _add_bench_pipeline(sub: argparse._SubParsersAction) -> None:
    p = _bench_subparsers(sub).add_parser(
        "pipeline", help="per-bar pipeline latency, ANN recall, naive-path ratio (one thread)")
    p.add_argument("--index-size", type=int, default=100_000, help="vectors in the index")
    p.add_argument("--dim", type=int, default=64, help="ANN vector dimension (8 x window)")
    p.add_argument("--bars", type=int, default=5000, help="bars to time (the sample repeats)")
    p.add_argument("--data", default="sample:sp500", help="bar source (sample or file)")
    p.add_argument("--naive-bars", type=int, default=600, help="bars for the naive path")
    p.add_argument("--ef-search", type=int, default=64, help="HNSW efSearch")
    p.add_argument("--hnsw-m", type=int, default=32, help="HNSW M")
    p.add_argument("--kind", default="hnsw", choices=("hnsw", "ivf", "flat"))
    p.add_argument("--cache", default=None,
                   help="index cache folder (default ~/.cache/anchord/bench; 'none' = off)")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    def bench_pipeline(args: argparse.Namespace) -> int:
        import os
        from pathlib import Path

        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")
        import orjson

        from daemon.bench.pipeline import format_text, run_bench

        cache = (None if args.cache == "none" else Path(args.cache).expanduser() if args.cache
                 else Path.home() / ".cache" / "anchord" / "bench")
        progress = None if args.json else (lambda msg: print(msg, file=sys.stderr))
        result = run_bench(index_size=args.index_size, dim=args.dim, n_bars=args.bars,
                           data=args.data, naive_bars=args.naive_bars, ef_search=args.ef_search,
                           hnsw_m=args.hnsw_m, cache=cache, kind=args.kind, progress=progress)
        print(orjson.dumps(result).decode() if args.json else format_text(result))
        return 0

    p.set_defaults(func=bench_pipeline)


# One line per command module; each adds its own sub-parser with `func` set.
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_run, _add_ctl, _add_report,
                                                               _add_venue]
COMMANDS += [_add_train, _add_gates]
COMMANDS += [_add_audit, _add_bench_update]
COMMANDS += [_add_bench_pipeline]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anchord", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `anchord` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AnchordError as err:
        return _fail(args.command, err)
    except BaseExceptionGroup as group:
        # Errors raised inside the daemon's task group arrive wrapped; show the first expected
        # one as a line, and let anything unexpected keep its traceback.
        expected, rest = group.split((AnchordError, BrokenPipeError))
        if expected is None or rest is not None:
            raise
        first = _leaves(expected)[0]
        if isinstance(first, BrokenPipeError):
            return 0
        return _fail(args.command, first)
    except BrokenPipeError:  # stdout closed by a pager or `head`: not an error
        return 0
    except KeyboardInterrupt:
        return 130


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return out


def _fail(command: str, err: BaseException) -> int:
    print(f"anchord {command}: {err}", file=sys.stderr)
    return getattr(err, "exit_code", 2)


if __name__ == "__main__":
    raise SystemExit(main())
