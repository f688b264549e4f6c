"""Every touch of a FUSE mount runs in a worker process, within a bound.

A glusterfs client that hangs (stopped, deadlocked, stuck on a brick that
neither answers nor fails) leaves a system call on its mount waiting in the
kernel; once the client has read the request, not even SIGKILL ends that
wait, and a process with such a thread can never exit. So the script itself
never touches the mount: a worker forked at the first touch does, and the
script waits for each answer at most io_timeout seconds (long copies send a
heartbeat per chunk). When the bound passes, the script fails with the
reason and exits at once, taking its locks with it; the stuck worker holds
no lock and no output pipe of Ganeti's, and ends whenever the kernel lets it.

Functions marked @isolated run in the worker; their arguments and results
cross a pipe with marshal (pickle's import alone costs 6 ms).
Until configure() is called (unit tests, library use) they run in-process.
"""

import marshal
import os
import select
import struct
import time

from .errors import BadInput, ProviderError, TransientError

_FRAME = struct.Struct("=I")
_HEARTBEAT_SECONDS = 0.5
_ERRORS = {cls.__name__: cls for cls in (ProviderError, BadInput, TransientError)}

_registry = {}          # "module:function" -> function, filled at import time
_seconds = None         # io_timeout; None: run in-process
_worker = None          # (pid, request fd, reply fd) of this process's worker
_in_worker = False
_script_pid = None      # in the worker: the script it serves
_last_beat = 0.0


def configure(seconds):
    """Touches from now on run in the worker, each within `seconds`; None:
    in this process, and the worker (if any) ends."""
    global _seconds
    if seconds is None:
        _stop_worker()
    _seconds = seconds


def start():
    """Forks a fresh worker now, so that its start overlaps the script's own
    work until the first touch (on two cores, a third of its cost)."""
    _stop_worker()
    _start_worker()


def isolated(what):
    """Marks a function whose first argument is a path on a FUSE mount (called
    with positional arguments only: they cross to the worker as a tuple)."""
    def mark(function):
        key = f"{function.__module__}:{function.__qualname__}"
        _registry[key] = function

        def call(*args):
            if _seconds is None or _in_worker:
                return function(*args)
            return _call(key, what, args)

        call.__name__ = function.__name__
        call.__doc__ = function.__doc__
        return call
    return mark


def orphaned():
    """In the worker: whether its script has gone (killed)."""
    return _in_worker and os.getppid() != _script_pid


def heartbeat():
    """Called by long work in the worker, once per chunk: it still makes
    progress. Work whose script has gone (killed) stops here, and what it
    was building is removed on the way out."""
    global _last_beat
    if not _in_worker:
        return
    if orphaned():
        raise SystemExit("the script has gone")
    if time.monotonic() - _last_beat > _HEARTBEAT_SECONDS:
        _last_beat = time.monotonic()
        _send(1, ("beat",))


# -- the script's side -------------------------------------------------------------

class _WorkerGone(Exception):
    """The worker's end of the pipe closed: it died."""


def _call(key, what, args):
    pid, request_fd, reply_fd = _worker or _start_worker()
    deadline = time.monotonic() + _seconds
    try:
        _send(request_fd, (key, args))
        while True:
            reply = _receive(reply_fd, deadline)
            if reply is None:
                _abandon_worker()
                raise ProviderError(_hung(what, args[0]))
            if reply[0] != "beat":
                break
            deadline = time.monotonic() + _seconds
    except (_WorkerGone, BrokenPipeError):
        _abandon_worker()
        raise ProviderError(f"{what} {args[0]}: the worker process that touches the mount ended "
                            "unexpectedly") from None
    if reply[0] == "ok":
        return _decode(reply[1])
    _, kind, details = reply
    if kind == "OSError":
        raise OSError(*details)
    if kind in _ERRORS:
        raise _ERRORS[kind](details)
    raise RuntimeError(f"in the worker: {details}")


def _hung(what, path):
    from . import procfs

    mount_point = procfs.mount_containing(path)
    return (f"{what} {path} did not finish within {_seconds:g} s (io_timeout): the mount "
            f"{mount_point} does not answer; {procfs.describe_client(mount_point)}")


def _start_worker():
    global _worker
    to_worker, from_script = os.pipe()
    to_script, from_worker = os.pipe()
    script = os.getpid()
    pid = os.fork()
    if pid == 0:
        _serve(to_worker, from_worker, script)
    os.close(to_worker)
    os.close(from_worker)
    _worker = (pid, from_script, to_script)
    return _worker


def _stop_worker():
    """Lets the worker go: it sees the end of its requests and exits."""
    global _worker
    if _worker:
        pid, request_fd, reply_fd = _worker
        os.close(request_fd)
        os.close(reply_fd)
        _worker = None


def _abandon_worker():
    """A worker that did not answer: killed, if the kernel lets it die, and not waited for."""
    pid = _worker[0]
    _stop_worker()
    try:
        os.kill(pid, 9)
    except OSError:
        pass


def _receive(fd, deadline):
    """One message from the worker, or None at the deadline."""
    header = _read_exactly(fd, _FRAME.size, deadline)
    if header is None:
        return None
    body = _read_exactly(fd, _FRAME.unpack(header)[0], deadline)
    return None if body is None else marshal.loads(body)


def _read_exactly(fd, count, deadline):
    data = b""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while len(data) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not poller.poll(None if remaining == float("inf") else remaining * 1000):
            return None
        chunk = os.read(fd, count - len(data))
        if not chunk:
            raise _WorkerGone()
        data += chunk
    return data


def _send(fd, message):
    data = marshal.dumps(message)
    data = _FRAME.pack(len(data)) + data
    while data:
        data = data[os.write(fd, data):]


# -- the worker's side -------------------------------------------------------------

def _serve(request_fd, reply_fd, script_pid):
    """The worker: requests on request_fd, answers on fd 1. It keeps no other
    descriptor (no lock, none of Ganeti's pipes; stderr only if it is a
    terminal, for progress), so a worker stuck in the kernel holds nothing."""
    global _in_worker, _script_pid
    _in_worker, _script_pid = True, script_pid
    try:
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(request_fd, 0)
        os.dup2(reply_fd, 1)
        if not os.isatty(2):
            os.dup2(null, 2)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        while True:  # until the script closes its end (_WorkerGone)
            header = _read_exactly(0, _FRAME.size, float("inf"))
            key, args = marshal.loads(_read_exactly(0, _FRAME.unpack(header)[0], float("inf")))
            _send(1, _answer(key, args))
    finally:
        os._exit(0)


def _answer(key, args):
    try:
        if key not in _registry:  # its module was imported after the fork
            __import__(key.partition(":")[0])
        return ("ok", _encode(_registry[key](*args)))
    except OSError as exc:
        return ("err", "OSError", (exc.errno, exc.strerror, exc.filename))
    except ProviderError as exc:
        return ("err", type(exc).__name__, str(exc))
    except Exception as exc:  # a bug: reported by the script's error boundary
        return ("err", "internal", f"{type(exc).__name__}: {exc}")


_STAT_EXTRAS = ("st_blocks", "st_blksize", "st_atime_ns", "st_mtime_ns", "st_ctime_ns")


def _encode(value):
    if isinstance(value, os.stat_result):
        return ("stat_result", tuple(value), {k: getattr(value, k) for k in _STAT_EXTRAS})
    if isinstance(value, os.statvfs_result):
        return ("statvfs_result", tuple(value))
    return ("plain", value)


def _decode(encoded):
    kind = encoded[0]
    if kind == "stat_result":
        return os.stat_result(encoded[1], encoded[2])
    if kind == "statvfs_result":
        return os.statvfs_result(encoded[1])
    return encoded[1]
