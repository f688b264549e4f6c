"""Node-local locks (flock) guarding shared state: mounts, loop devices, disks.

Ganeti runs the scripts of different disks concurrently. A volume's lock is
held shared by every operation that uses its mount, exclusively while the
mount is made or released; a disk's lock is held by whatever changes that
disk. Every wait is bounded.
"""

import errno
import fcntl
import os
import time

from .errors import ProviderError

_POLL_SECONDS = 0.02


class _Expired(Exception):
    """The alarm bounding a lock wait went off."""


class Lock:
    def __init__(self, path, what, timeout):
        self.path = path
        self.what = what
        self.timeout = timeout
        self.fd = None
        self.mode = None

    def acquire(self, exclusive=True):
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        if self.fd is not None:
            self._flock(mode)
            return self
        deadline = time.monotonic() + self.timeout
        while True:
            fd = self._open()
            try:
                self.fd = fd
                self._flock(mode, deadline)
            except BaseException:
                self.fd = None
                os.close(fd)
                raise
            # The file may have been unlinked (by remove_file) while we waited.
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    return self
            except FileNotFoundError:
                pass
            self.fd = None
            os.close(fd)

    def _open(self):
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def _flock(self, mode, deadline=None):
        deadline = deadline or time.monotonic() + self.timeout
        if self._try(mode) or self._wait_blocking(mode, deadline):
            return
        while not self._try(mode):  # signals are for the main thread only: poll
            self._check_deadline(deadline)
            time.sleep(_POLL_SECONDS)

    def _try(self, mode):
        try:
            fcntl.flock(self.fd, mode | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            return False
        self.mode = mode
        return True

    def _wait_blocking(self, mode, deadline):
        """A blocking flock, bounded by an alarm: the waiter wakes the moment
        the holder lets go (polling made 32 parallel attaches lose time).
        False outside the main thread, where no signal handler can be set.

        _signal is the C module under `signal`, which would import enum and
        threading: 4 ms, paid by every script that waits, and under load most
        of them wait (throughput at 8-32 parallel attaches fell by 12%)."""
        import _signal

        remaining = deadline - time.monotonic()
        self._check_deadline(deadline)

        def expire(signum, frame):
            raise _Expired()

        try:
            previous = _signal.signal(_signal.SIGALRM, expire)
        except ValueError:  # not the main thread
            return False
        _signal.setitimer(_signal.ITIMER_REAL, remaining)
        try:
            fcntl.flock(self.fd, mode)
            self.mode = mode
        except _Expired:
            self._check_deadline(0)
        finally:
            _signal.setitimer(_signal.ITIMER_REAL, 0)
            _signal.signal(_signal.SIGALRM, previous)
        return True

    def _check_deadline(self, deadline):
        if time.monotonic() >= deadline:
            raise ProviderError(f"timed out after {self.timeout:g} s waiting for the lock "
                                f"on {self.what} ({self.path}); another script is still working on it")

    def try_exclusive(self):
        """Upgrades to exclusive without waiting; False if someone else holds it."""
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.mode = fcntl.LOCK_EX
            return True
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            return False

    def try_acquire(self):
        """Takes the lock exclusively if nobody holds it; False at once if
        somebody does. For lock files that are never removed."""
        self.fd = self._open()
        if self._try(fcntl.LOCK_EX):
            return True
        self.release()
        return False

    def remove_file(self):
        """Unlinks the lock file while holding it (e.g. when its disk is gone)."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def release(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
