"""The one exception type that the CLI turns into a one-line message and exit code 1."""


class UserError(Exception):
    """A mistake the user can fix: bad input, a missing file, impossible params."""
