"""The one error type for input a person can fix: a flag, a file, a configuration, an environment.

Every command line (`pipeline/train.py`, `sweep.py`, `report.py`) turns a `UserError` into one line
on stderr and exit code 2, before anything is started or written. Its message names the problem
and the fix. Errors of the code itself are any other exception.
"""


class UserError(Exception):
    """Something the user gave or set up is wrong; the message is one line naming it and the fix."""


class DiskFullError(UserError, OSError):
    """A write found no space left on its disk; the message names the file and the fix."""


class CheckpointError(UserError):
    """A checkpoint file cannot be read (a write cut short, another file); names the file."""
