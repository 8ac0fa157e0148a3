"""What the commands print, and a reader that goes away mid-way (``distill-lens check RUN | head -1``).

    say("Ready to ship.")     # print; once stdout's reader has gone, the rest of the output goes nowhere

A closed pipe ends the output, never the command: it finishes its work and returns its own exit code (``check``'s 3
stays 3), following the Python documentation's advice on SIGPIPE (point stdout at devnull, so neither later writes
nor the flush at exit raise BrokenPipeError again).
"""

from __future__ import annotations

import os
import sys


def say(text: str = "") -> None:
    """``print(text)`` to stdout, flushed; silent once the reader has closed the pipe."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
