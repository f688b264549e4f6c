"""Diagnostics: everything that is not a result goes to stderr, through here.

The `logging` module is not used: it costs several milliseconds to import,
and attach runs constantly.
"""

import os
import sys
import time

_debug = False
_program = "gluster"


def configure(program, debug):
    global _debug, _program
    _program = program
    _debug = debug


def debugging():
    return _debug


def _emit(level, message):
    stamp = time.strftime("%H:%M:%S")
    sys.stderr.write(f"{stamp} {_program}[{os.getpid()}] {level}: {message}\n")
    sys.stderr.flush()


def debug(message):
    if _debug:
        _emit("debug", message)


def info(message):
    _emit("info", message)


def warn(message):
    _emit("warning", message)


def error(message):
    """The final line of a failed script: the reason, nothing else."""
    sys.stderr.write(f"{_program}: error: {message}\n")
    sys.stderr.flush()


class Progress:
    """Progress of a long copy or fill, shown only when stderr is a terminal
    (Ganeti's logs stay quiet)."""

    def __init__(self, label, total):
        self.label = label
        self.total = total
        self.shown = -1
        self.enabled = sys.stderr.isatty() and total > 0

    def update(self, done):
        if not self.enabled:
            return
        percent = min(100, done * 100 // self.total)
        if percent != self.shown:
            self.shown = percent
            sys.stderr.write(f"\r{self.label}: {percent}%")
            sys.stderr.flush()

    def done(self):
        if self.enabled and self.shown >= 0:
            sys.stderr.write("\n")
            sys.stderr.flush()
