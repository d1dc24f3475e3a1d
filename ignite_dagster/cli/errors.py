"""The CLI's user-facing error: printed as one line, exit status 2 (shared by every command module)."""


class CliError(Exception):
    """A user-facing failure: printed as one line, exit status 2."""
