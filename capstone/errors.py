"""Errors the project raises on bad input, each with a message that says what to do."""


class CapstoneError(Exception):
    """Base class: bad input or missing data, reported to the user as one line."""


class DataError(CapstoneError, ValueError):
    """A data file is missing, malformed, or of the wrong shape."""


class MissingFileError(DataError, FileNotFoundError):
    """A file the project needs is not on disk; the message names the command that gets it."""


class DiskFullError(CapstoneError, OSError):
    """No space left on the device a file was being written to; nothing partial is left."""
