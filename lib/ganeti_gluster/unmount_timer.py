"""The delayed unmount: a volume nothing uses any more is unmounted
unmount_delay seconds after the last script let go of it, by a child process
that outlives that script. Ganeti runs scripts in sequences (remove is
attach, detach, remove), and each would otherwise mount and unmount the
volume again.

A release restarts the wait by touching the volume's timer file; the one
process that holds the timer's lock is the one that waits, and later
releases extend its wait rather than start another.
"""

import os
import time

from . import diag
from .runner import run_detached

_left_unused = {}  # mount point -> VolumeMount, released unused by this script


def restart(mount):
    """Called by a release that leaves the volume unused: (re)starts its wait."""
    # (the timer's directory is the volume lock's, held by the caller)
    os.close(os.open(mount.timer.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
    os.utime(mount.timer.path)  # restarts the wait of a waiting process
    _left_unused[mount.path] = mount


def start_waiting():
    """Called when a script's output is out: for each volume it left unused
    and that no process waits for yet, a child waits out the delay."""
    mounts = [mount for mount in _left_unused.values() if mount.timer.try_acquire()]
    _left_unused.clear()
    if not mounts:
        return

    def unmount_when_idle():
        for mount in mounts:
            _wait_then_unmount(mount)

    if not run_detached(unmount_when_idle, keep_fds=[mount.timer.fd for mount in mounts]):
        diag.warn("the volume stays mounted until a later script lets go of it")
    for mount in mounts:
        mount.timer.release()  # the child's copy of the descriptor keeps the lock


def _wait_then_unmount(mount):
    """Holding the timer: waits until unmount_delay seconds passed since the
    last release, then unmounts the volume if nobody uses it. The timer is
    let go before the last look at its time, so that a release after that
    look finds it free and starts a process of its own."""
    delay = mount.settings.unmount_delay
    while True:
        released = os.stat(mount.timer.path).st_mtime_ns
        # min(): a clock set back must not stretch the wait
        wait = min(released / 1e9 + delay - time.time(), delay)
        if wait > 0:
            time.sleep(wait)
            continue
        mount.timer.release()
        if os.stat(mount.timer.path).st_mtime_ns == released:
            break
        if not mount.timer.try_acquire():  # another process waits now
            return
    mount.unmount_if_unused()
