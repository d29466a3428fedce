"""The paper venue: a ProjectX-Gateway-compatible HTTP server on loopback that fills orders
deterministically against replayed bars and injects faults on request.

    async with run_venue(data="sample:sp500", faults="place:reset=0.1,seed=7") as venue:
        venue.advance()            # or register venue.on_bar as the first ingest handler
        ... httpx against venue.base_url + "/api/..." ...
        venue.orders(), venue.positions(), venue.fault_counts()
"""

from daemon.venue.attach import attach_to_daemon
from daemon.venue.runners import ThreadedVenue, run_venue, venue_bars, venue_in_thread
from daemon.venue.server import Venue, VenueOptions

__all__ = ["ThreadedVenue", "attach_to_daemon", "Venue", "VenueOptions", "run_venue", "venue_bars",
           "venue_in_thread"]
