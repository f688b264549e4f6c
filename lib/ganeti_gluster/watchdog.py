"""A bound on every touch of a FUSE mount.

A glusterfs client that hangs (stopped, or stuck on a brick that neither
answers nor fails) leaves a system call on its mount waiting in the kernel,
where no timer or signal handler of ours can reach it: only SIGKILL ends
that wait. So a watchdog thread watches the touch in progress and, when its
bound passes, reports which mount did not answer and why, and ends the whole
process. Its locks (flock) go with it, so no other script waits on them
longer than the bound either.

_thread rather than threading: threading's import costs milliseconds on
every script, and the watchdog needs only a sleeping loop.
"""

import _thread
import os
import time

from .errors import EXIT_FAILURE

DEFAULT_SECONDS = 60.0
_POLL_SECONDS = 0.05

_seconds = DEFAULT_SECONDS
_on_expiry = None
_armed = None          # (deadline, what, mount point) of the touch in progress
_watcher_pid = None    # the process whose watchdog thread runs (a fork has none)


def configure(seconds, on_expiry=None):
    """The bound of each touch; on_expiry(reason) runs before the exit."""
    global _seconds, _on_expiry
    _seconds = seconds
    _on_expiry = on_expiry


class touching:
    """with touching(what, path): the block, which touches `path` on a FUSE
    mount, must finish within the bound."""

    def __init__(self, what, path):
        self.what = what
        self.path = path
        self.outer = None

    def __enter__(self):
        global _armed
        _start_watcher()
        self.outer = _armed
        _armed = (time.monotonic() + _seconds, self.what, self.path)
        return self

    def __exit__(self, *exc):
        global _armed
        _armed = self.outer


def bounded(what, path, function, *args):
    """function(*args), which touches `path`, within the bound."""
    with touching(what, path):
        return function(*args)


def _start_watcher():
    global _watcher_pid
    if _watcher_pid != os.getpid():
        _watcher_pid = os.getpid()
        _thread.start_new_thread(_watch, ())


def _watch():
    while True:
        armed = _armed
        if armed is not None and time.monotonic() >= armed[0]:
            _expire(*armed)
        time.sleep(_POLL_SECONDS)


def _expire(deadline, what, path):
    from . import diag, procfs

    mount_point = procfs.mount_containing(path)
    reason = (f"{what} ({path}) did not finish within {_seconds:g} s (io_timeout): the mount "
              f"{mount_point} does not answer; {procfs.describe_client(mount_point)}")
    try:
        if _on_expiry:
            _on_expiry(reason)
        diag.error(reason)
    finally:
        os._exit(EXIT_FAILURE)
