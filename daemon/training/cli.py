"""Argument parsing of `anchord train` and `anchord gates` (the work is in train.py, gates.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="build a versioned artifact set from bars (offline)")
    p.add_argument("--config", default="runtime.toml", help="path to runtime.toml")
    p.add_argument("--data", default=None,
                   help="bar source as in [data].source (default: the config's)")
    p.add_argument("--out", required=True, help="folder to write the artifact set to")
    p.add_argument("--train-end", default=None,
                   help="last bar date used (default [training].train_end, 2012-12-31)")
    p.add_argument("--install", default=None, metavar="ROOT",
                   help="then make the set current under ROOT (the old current → previous)")
    p.add_argument("--shuffle-labels", type=int, default=None, metavar="SEED",
                   help="leak check: permute the labels first (the gates must then fail)")

    def train(args: argparse.Namespace) -> int:
        from datetime import date

        from daemon.config import load_config
        from daemon.errors import ConfigError
        from daemon.training.train import train_artifacts

        cfg = load_config(args.config)
        if args.train_end:
            try:
                date.fromisoformat(args.train_end)
            except ValueError:
                raise ConfigError("--train-end", None,
                                  f"expected YYYY-MM-DD, got {args.train_end!r}") from None
        summary = train_artifacts(cfg, args.data or cfg.data.source, Path(args.out),
                                  train_end=args.train_end, shuffle_labels=args.shuffle_labels)
        if args.install:
            from daemon.training.artifacts import install_artifact_set

            summary["installed"] = str(install_artifact_set(Path(args.out), Path(args.install)))
        sys.stdout.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0

    p.set_defaults(func=train)


def add_gates_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gates", help="check an artifact set against [quality_gates]")
    p.add_argument("--artifacts", required=True, help="artifact set (or artifacts root)")
    p.add_argument("--config", default=None,
                   help="runtime.toml with [quality_gates] (default: built-in defaults)")

    def gates(args: argparse.Namespace) -> int:
        from daemon.training.gates import run_gates

        code, table = run_gates(Path(args.artifacts), args.config)
        print(table)
        return code

    p.set_defaults(func=gates)
