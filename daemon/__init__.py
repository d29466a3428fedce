"""anchord: a futures trading daemon for the ProjectX Gateway."""

__version__ = "0.1.0"
