"""The errors hvdtrain expects: bad flags, bad data, a failed rank or host. Each message names the
flag, file, rank or host; the CLI turns any of them into one line and exit status 1 (``cli._call``).
Anything else is a bug and keeps its traceback."""

from pathlib import Path


class HvdtrainError(Exception):
    """Base of every error the CLI reports as a plain message, exiting with ``exit_code``."""

    exit_code = 1


class ConfigError(HvdtrainError, ValueError):
    """A flag value that cannot work; the message names the flag."""


def not_a_directory(what: str, path) -> str:
    """Why ``path`` (named by ``what``: a flag or argument) cannot be used as a directory."""
    p = Path(path)
    if p.exists():
        return f"{what} {path} is a file, not a directory"
    return f"{what} {path} does not exist"
