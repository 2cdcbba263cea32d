"""The errors hvdtrain expects: bad flags, bad data, a failed rank or host. Each message names the
flag, file, rank or host; the CLI turns any of them into one line and exit status 1 (``cli._call``).
Anything else is a bug and keeps its traceback."""


class HvdtrainError(Exception):
    """Base of every error the CLI reports as a plain message, exiting with ``exit_code``."""

    exit_code = 1


class ConfigError(HvdtrainError, ValueError):
    """A flag value that cannot work; the message names the flag."""
