"""Log lines into the host's log, tagged with the policy's name.

In a component each call goes to the host's `log` import (the host bounds and rate-limits
lines; logging never fails). Natively the lines are kept for `take_captured()`, so tests can
assert on what a policy logged.
"""

from ._wit import NATIVE, host

Level = host.Level
_captured = []


def write(level: Level, message: str) -> None:
    """Log one line at `level`."""
    if NATIVE:
        _captured.append((level, str(message)))
    else:
        host.log(level, str(message))


def trace(message: str) -> None:
    """Log at trace level."""
    write(Level.TRACE, message)


def debug(message: str) -> None:
    """Log at debug level."""
    write(Level.DEBUG, message)


def info(message: str) -> None:
    """Log at info level."""
    write(Level.INFO, message)


def warn(message: str) -> None:
    """Log at warn level."""
    write(Level.WARN, message)


def error(message: str) -> None:
    """Log at error level."""
    write(Level.ERROR, message)


def take_captured():
    """Native runs only: the lines logged since the last call, oldest first."""
    lines = list(_captured)
    _captured.clear()
    return lines
