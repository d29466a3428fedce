"""`anchord venue`: run the paper venue standalone on 127.0.0.1.

Standalone, the venue keeps its own replay clock: it starts at bar `--start` (an index, or an
ISO date = the last bar at or before it) and steps one bar every 1/`--pace` seconds (`--pace 0`
holds the clock still; drive it with POST /_venue/clock). It logs `venue_listening` with the
port (one JSON line on stdout) and stops on SIGINT/SIGTERM.

Resting orders fill completely and never expire unless told: `--max-fill-per-bar N` fills at
most N contracts of a Limit or Stop order per bar (partial fills), `--order-expiry day` or
`bars:N` expires resting orders (daemon/venue/matching.py and daemon/venue/expiry.py).
"""

from __future__ import annotations

import argparse
import os
import signal
from typing import Any

import anyio

from daemon.errors import AnchordError
from daemon.logs import configure_logging, get_logger
from daemon.timeutil import parse_utc
from daemon.venue.expiry import parse_expiry
from daemon.venue.faults import __doc__ as FAULTS_DOC
from daemon.venue.faults import parse_faults
from daemon.venue.matching import parse_max_fill
from daemon.venue.ratelimit import DEFAULT_HISTORY, DEFAULT_OTHER, parse_rate
from daemon.venue.runners import run_venue, venue_bars
from daemon.venue.server import Venue, VenueOptions


def log() -> Any:
    return get_logger("venue")  # bound at call time: configure_logging may come later


def add_venue_parser(sub: argparse._SubParsersAction) -> None:
    """Add `anchord venue` to the command line."""
    grammar = FAULTS_DOC.split("Grammar", 1)[1].split("Example")[0]
    p = sub.add_parser(
        "venue", help="run the ProjectX-Gateway-compatible paper venue",
        description=__doc__ + "\nFault spec grammar" + grammar,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 = free port)")
    p.add_argument("--data", default="sample:sp500",
                   help="replay source: sample:sp500, sample:nasdaq, CSV or Parquet file")
    p.add_argument("--contract", default="CON.F.US.EP.Z26", help="contract id of the data")
    p.add_argument("--faults", default="", help="fault spec (grammar above)")
    p.add_argument("--pace", type=float, default=1.0, help="bars per second (0 = hold still)")
    p.add_argument("--start", default="0", help="first current bar: index or ISO date")
    p.add_argument("--accounts", default="PAPER-1", help="comma-separated account names")
    p.add_argument("--token-lifetime", type=float, default=86_400.0, help="token lifetime, s")
    p.add_argument("--rate-history", default=DEFAULT_HISTORY,
                   help="History limit N/SECONDS or unlimited")
    p.add_argument("--rate-other", default=DEFAULT_OTHER,
                   help="limit of all other endpoints, N/SECONDS or unlimited")
    p.add_argument("--username", default=None,
                   help="only accept this userName (with the key from --api-key-env)")
    p.add_argument("--api-key-env", default="PROJECTX_API_KEY",
                   help="environment variable holding the only accepted API key "
                        "(used only with --username)")
    p.add_argument("--max-fill-per-bar", default="0", metavar="N",
                   help="contracts a Limit/Stop order fills per bar at most (0 = unlimited)")
    p.add_argument("--order-expiry", default="gtc", metavar="gtc|day|bars:N",
                   help="when resting orders expire: never, at the next trading date, or "
                        "after N further bars")
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=_run)


def _options(args: argparse.Namespace) -> VenueOptions:
    parse_faults(args.faults)  # refuse a bad spec before binding anything
    parse_rate(args.rate_history)
    parse_rate(args.rate_other)
    parse_expiry(args.order_expiry)
    max_fill = parse_max_fill(args.max_fill_per_bar)
    api_key = None
    if args.username:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            raise AnchordError(f"--username given but ${args.api_key_env} is empty")
    return VenueOptions(contract=args.contract, accounts=tuple(args.accounts.split(",")),
                        token_lifetime_s=args.token_lifetime, username=args.username,
                        api_key=api_key, history_limit=args.rate_history,
                        other_limit=args.rate_other, faults=args.faults, port=args.port,
                        max_fill_per_bar=max_fill, order_expiry=args.order_expiry)


def _start(venue: Venue, start: str) -> None:
    if start.lstrip("-").isdigit():
        index = int(start)
        if not 0 <= index < len(venue.market.bars):
            raise AnchordError(f"--start {start}: the data has {len(venue.market.bars)} bars")
        venue.set_bar(venue.market.bars[index])
    else:
        try:
            venue.set_time(parse_utc(start))
        except ValueError as err:
            raise AnchordError(f"--start: {err}") from None


async def _serve(args: argparse.Namespace) -> None:
    options = _options(args)  # a bad spec is refused before the data is loaded
    bars = venue_bars(args.data, args.contract)
    if not bars:
        raise AnchordError(f"--data {args.data}: no valid bars")
    async with run_venue(bars, options) as venue, anyio.create_task_group() as tg:
        _start(venue, args.start)
        if args.pace > 0:
            tg.start_soon(_step, venue, 1.0 / args.pace)
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                log().info("venue_stopping", signal=signal.Signals(signum).name,
                         orders=len(venue.book.orders), faults=venue.fault_counts())
                tg.cancel_scope.cancel()
                return


async def _step(venue: Venue, period: float) -> None:
    while True:
        await anyio.sleep(period)
        if venue.advance() is None:
            log().info("venue_data_end", index=venue.market.index)
            return


def _run(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    anyio.run(_serve, args)
    return 0
