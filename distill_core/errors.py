"""The project's own error types: a user's mistake or a broken input, each with the fix in its message.

    DistillError          base: the CLI prints its message in one line, a page shows it as a notice
      ConfigError         a flag or config field out of range (also a ValueError)
      DataError           a dataset that cannot be used as asked
      ModelError          a model that cannot be loaded or built
      RunError            a run folder that is missing, half-written or damaged
      InputError          text a model cannot classify (also a ValueError)

An OSError that says a path cannot be used as asked (permission, read-only, full disk, a file where a folder
belongs) is the user's to fix too: ``os_error_message`` words it in one line for the CLI and the dashboard alike.

Anything else that escapes is a bug of ours: the CLI and the dashboard log it with its traceback and
call it an internal error, never the user's mistake.
"""

from __future__ import annotations

import errno


class DistillError(Exception):
    """A problem the user can fix; the message says how."""


class ConfigError(DistillError, ValueError):
    """A configuration value out of range; the message names the flag, the value and the valid range."""


class DataError(DistillError):
    """Data that cannot be used as asked; the message names the fix."""


class ModelError(DistillError):
    """A model that cannot be loaded or built; the message says how to fix it."""


class RunError(DistillError):
    """A run folder that cannot be read as asked; the message says what is wrong and how to fix it."""


class InputError(DistillError, ValueError):
    """Text the model cannot classify (empty, wrong type); the message says what to do."""


# The operating system's answers that mean "this path cannot be used as asked": the user's to fix, in one line.
USER_OS_ERRORS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EISDIR,
                            errno.ENOTDIR, errno.EEXIST})


def os_error_message(e: BaseException) -> str | None:
    """One line naming the path and the fix for an OSError in the user's hands (``USER_OS_ERRORS``); None for any
    other exception, which is a bug of ours and keeps its traceback."""
    if not isinstance(e, OSError) or e.errno not in USER_OS_ERRORS:
        return None
    where = f" {e.filename}" if e.filename else ""
    return (f"Cannot use{where}: {e.strerror or type(e).__name__}. Fix: check that it is the folder or file you "
            "meant, that it is writable, and that the disk has free space.")
