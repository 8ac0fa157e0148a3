"""The project's own error types: a user's mistake or a broken input, each with the fix in its message.

    DistillError          base: the CLI prints its message in one line, a page shows it as a notice
      ConfigError         a flag or config field out of range (also a ValueError)
      DataError           a dataset that cannot be used as asked
      ModelError          a model that cannot be loaded or built
      RunError            a run folder that is missing, half-written or damaged
      InputError          text a model cannot classify (also a ValueError)

Anything else that escapes is a bug of ours: the CLI and the dashboard log it with its traceback and
call it an internal error, never the user's mistake.
"""

from __future__ import annotations


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
