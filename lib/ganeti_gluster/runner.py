"""Running external tools: argument lists only, a fixed PATH, a bound on time.

Not the `subprocess` module: importing it (it pulls in locale, re, enum,
threading, selectors) took 10 ms, more than the interpreter's own start, and
Ganeti runs one script per disk for nearly every command. A command here is
started with posix_spawn and read through poll, which need nothing beyond
os and select.

Also here, so that every process this package starts starts in this file:
run_detached, a child of the script's own that outlives it.
"""

import os
import select
import time

from . import diag
from .errors import ProviderError

SAFE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
TOOL_ENV = {"PATH": SAFE_PATH, "LC_ALL": "C"}
_SIGKILL = 9  # the signal module would import enum
_READ_SIZE = 65536
KILL_WAIT_SECONDS = 1.0


class CommandFailed(ProviderError):
    def __init__(self, args, returncode, stderr):
        self.args_run = list(args)
        self.returncode = returncode
        self.stderr = stderr
        lines = [line for line in (stderr or "").splitlines() if line.strip()]
        detail = lines[-1].strip() if lines else f"exit code {returncode}"
        super().__init__(f"{args[0]} failed: {detail}")


class Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


def _program(name):
    """The executable `name` on SAFE_PATH (a path is taken as it is)."""
    if "/" in name:
        return name
    for directory in SAFE_PATH.split(":"):
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    return None


class Runner:
    """Runs a command and returns its output; tests substitute a fake."""

    def run(self, args, timeout, check=True):
        args = list(args)
        diag.debug("run: " + " ".join(args))
        program = _program(args[0])
        if program is None:
            raise ProviderError(f"{args[0]} is not installed")
        returncode, stdout, stderr = _spawn_and_wait(program, args, time.monotonic() + timeout)
        if returncode is None:
            raise ProviderError(f"{args[0]} did not finish within {timeout:g} s")
        if stderr:
            diag.debug(f"{args[0]} stderr: {stderr.strip()}")
        if check and returncode != 0:
            raise CommandFailed(args, returncode, stderr)
        return Result(returncode, stdout, stderr)


def _spawn_and_wait(program, args, deadline):
    """(exit code, stdout, stderr); exit code None if the command was killed
    at the deadline. stdin is /dev/null; output is collected until both pipes
    close (as subprocess does), then the exit is awaited, all by `deadline`."""
    out_read, out_write = os.pipe()  # both ends close-on-exec
    err_read, err_write = os.pipe()
    actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
               (os.POSIX_SPAWN_DUP2, out_write, 1),
               (os.POSIX_SPAWN_DUP2, err_write, 2)]
    # Like subprocess's close_fds: descriptors we inherited stay with us (a
    # daemon such as the glusterfs client would keep them open for ever).
    actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in _inherited_descriptors()]
    try:
        pid = os.posix_spawn(program, args, TOOL_ENV, file_actions=actions)
    except OSError as exc:
        os.close(out_read)
        os.close(err_read)
        raise ProviderError(f"cannot run {args[0]}: {exc.strerror}") from None
    finally:
        os.close(out_write)
        os.close(err_write)
    output = {out_read: [], err_read: []}
    returncode = None
    try:
        if _collect(output, deadline):
            returncode = _reap(pid, deadline)
    finally:
        if returncode is None:  # the deadline passed, or we were interrupted
            os.kill(pid, _SIGKILL)
            # bounded even so: a process stuck in the kernel (a hung mount)
            # dies only when the kernel lets it; init reaps it then
            _reap(pid, time.monotonic() + KILL_WAIT_SECONDS)
        for fd in output:
            os.close(fd)
    stdout, stderr = (b"".join(output[fd]).decode("utf-8", "replace") for fd in (out_read, err_read))
    return returncode, stdout, stderr


def _inherited_descriptors():
    found = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if fd > 2 and os.get_inheritable(fd):
                found.append(fd)
        except OSError:  # the descriptor listdir itself used, now closed
            continue
    return found


def _collect(output, deadline):
    """Reads every pipe in `output` to its end; False at the deadline."""
    poller = select.poll()
    for fd in output:
        poller.register(fd, select.POLLIN)
    open_pipes = len(output)
    while open_pipes:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        for fd, _ in poller.poll(remaining * 1000):
            chunk = os.read(fd, _READ_SIZE)
            if chunk:
                output[fd].append(chunk)
            else:
                poller.unregister(fd)
                open_pipes -= 1
    return True


def _reap(pid, deadline):
    """The exit code of `pid` (-N if signal N ended it); None at the deadline.
    Waits on a pidfd, which wakes at the exit: callers may hold a node-wide
    lock (loop device setup), and a sleep between polls would hold it longer."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:  # a kernel older than 5.3
        pidfd = None
    poller = select.poll()
    if pidfd is not None:
        poller.register(pidfd, select.POLLIN)
    try:
        pause = 0.0005
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if pidfd is None:
                time.sleep(min(pause, remaining))
                pause = min(pause * 2, 0.02)
            else:
                poller.poll(remaining * 1000)
    finally:
        if pidfd is not None:
            os.close(pidfd)


def run_detached(function, keep_fds=()):
    """Runs function() in a child process that outlives the script: in a
    session of its own, its standard streams on /dev/null and no inherited
    descriptor open but keep_fds, since Ganeti reads a script's output to its
    end. False if no process could be started."""
    try:
        child = os.fork()
    except OSError as exc:
        diag.warn(f"cannot start a background process: {exc.strerror}")
        return False
    if child:
        return True
    try:
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        start = 3
        for fd in sorted(keep_fds) + [os.sysconf("SC_OPEN_MAX")]:
            os.closerange(start, fd)
            start = fd + 1
        function()
    except BaseException:
        pass  # nobody is listening any more
    finally:
        os._exit(0)
