"""Exceptions that the command line turns into one-line messages and a non-zero exit."""


class TdpcrError(Exception):
    """Base class for errors a user can fix (bad input, bad config); shown as one line."""


class InputDataError(TdpcrError):
    """A raster, folder or store does not match what tdpcr expects. The message names the path."""


class ConfigError(TdpcrError):
    """A configuration key is unknown, missing or has the wrong type. The message names the key."""


class OutputSpaceError(TdpcrError):
    """The output's disk cannot hold what a command must write. The message names the folder."""
