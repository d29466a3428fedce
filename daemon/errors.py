"""The daemon's exception hierarchy.

Every expected failure is an `AnchordError`: the CLI prints its one-line message and exits with
its `exit_code`, never a traceback.
"""

from __future__ import annotations


class AnchordError(Exception):
    """An expected failure an operator can act on; `str(err)` is the one line to show."""

    exit_code = 2


class ConfigError(AnchordError):
    """runtime.toml is missing, unreadable or invalid; the message names the file and the key."""

    def __init__(self, path: str, key: str | None, problem: str) -> None:
        self.path = path
        self.key = key
        self.problem = problem
        where = f"{path}: {key}: " if key else f"{path}: "
        super().__init__(where + problem)


class ArtifactError(AnchordError):
    """An artifact set or a file in it is missing, altered or of an unknown version."""


class ControlError(AnchordError):
    """The control socket cannot be reached or refused a command."""

    exit_code = 1


class ChecksFailed(AnchordError):
    """Checks ran and at least one failed (gates, preflight)."""

    exit_code = 1
