"""The error the command line and the Python API raise for a bad option or input, and its wording."""
from __future__ import annotations


class DemoError(Exception):
    """A problem with the command line or an input, reported as one line (exit status 2)."""


def one_line(err: BaseException) -> str:
    """An exception's message on one line (checkpoint diagnostics come as several)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return ' '.join(lines) or type(err).__name__
