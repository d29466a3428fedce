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


def _add_demo(sub: argparse._SubParsersAction) -> None:
    from daemon.demo import add_demo_parser

    add_demo_parser(sub)


def _add_train(sub: argparse._SubParsersAction) -> None:
    from daemon.training.cli import add_train_parser

    add_train_parser(sub)


def _add_gates(sub: argparse._SubParsersAction) -> None:
    from daemon.training.cli import add_gates_parser

    add_gates_parser(sub)


def _add_preflight(sub: argparse._SubParsersAction) -> None:
    from daemon.preflight import add_preflight_parser

    add_preflight_parser(sub)


# --- `anchord bench NAME`: one function per benchmark (issue 4 pipeline, 5 submit, 6 update);
# each adds its sub-parser to the bench sub-parsers, and is listed in BENCHES.
def _bench_submit(bsub: argparse._SubParsersAction) -> None:
    from daemon.bench.submit import add_parser

    add_parser(bsub)


def _bench_pipeline(bsub: argparse._SubParsersAction) -> None:
    from daemon.bench.pipeline import add_parser

    add_parser(bsub)


def _bench_update(bsub: argparse._SubParsersAction) -> None:
    from daemon.bench.update import add_parser

    add_parser(bsub)


BENCHES: list[Callable[[argparse._SubParsersAction], None]] = [
    _bench_pipeline, _bench_submit, _bench_update,
]


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks (timings depend on the machine and its load)")
    bsub = p.add_subparsers(dest="bench_command", required=True, metavar="BENCH")
    for add in BENCHES:
        add(bsub)


# One line per command module; each adds its own sub-parser with `func` set.
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_run, _add_demo, _add_ctl, _add_report, _add_venue, _add_bench, _add_train, _add_gates,
    _add_audit, _add_preflight,
]


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
