"""Bars: the Bar type and its validation, replay sources, and (later) live ProjectX bars."""

from daemon.bars.model import Bar, BarRejected, BarValidator, parse_row, validate_bar

__all__ = ["Bar", "BarRejected", "BarValidator", "parse_row", "validate_bar"]
