"""Run the paper venue inside a daemon: one replay clock, one status page.

The venue's ingest handler goes first, so that when the pipeline's handler decides on bar t,
the venue already stands on bar t and a market order fills at bar t's close.
"""

from __future__ import annotations

from typing import Any

from daemon.venue.server import Venue


def attach_to_daemon(venue: Venue, daemon: Any) -> None:
    """Feed every bar of `daemon`'s ingest loop to `venue` before any other handler, and show
    the venue's counters under "venue" in `anchord ctl status`."""
    daemon.ingest.handlers.insert(0, venue.on_bar)
    daemon.status_providers["venue"] = venue.summary
