"""Dispatch by script name, and the single error boundary.

stdout carries results only, printed at the very end; every diagnostic goes
to stderr, and a failure's last line is its reason.
"""

import os
import sys
import time

from . import diag
from .errors import EXIT_BAD_INPUT, EXIT_FAILURE, ProviderError
from .runner import SAFE_PATH, Runner

USAGE = {
    "create": ("Create a disk image.",
               "VOL_NAME VOL_SIZE (MiB) [VOL_UUID VOL_CNAME]  |  design dialect: INSTANCE_NAME "
               "DISK_INDEX DISK_SIZE [POOL] -> prints the logical ID"),
    "attach": ("Map the disk on this node; prints the block device, then kvm:<gluster URI>.",
               "VOL_NAME  |  design dialect: LOGICAL_ID"),
    "detach": ("Unmap the disk on this node (and forget this node's open).",
               "VOL_NAME  |  design dialect: LOGICAL_ID"),
    "remove": ("Remove the disk image; one already gone is success.",
               "VOL_NAME  |  design dialect: LOGICAL_ID"),
    "grow": ("Grow the disk to VOL_NEW_SIZE MiB (never shrinks).", "VOL_NAME VOL_NEW_SIZE [VOL_SIZE]"),
    "resize": ("Design dialect: grow the disk to DISK_SIZE MiB; prints the new size.",
               "LOGICAL_ID DISK_SIZE"),
    "rename": ("Design dialect: rename the disk after NEW_INSTANCE_NAME; prints the new logical ID.",
               "LOGICAL_ID NEW_INSTANCE_NAME [DISK_INDEX]"),
    "setinfo": ("Store VOL_METADATA with the disk image.", "VOL_NAME VOL_METADATA"),
    "open": ("Record that this node holds the disk open.", "VOL_NAME VOL_OPEN_EXCLUSIVE=True|False"),
    "close": ("Forget this node's open of the disk.", "VOL_NAME"),
    "snapshot": ("Copy the disk (keeping holes) to VOL_SNAPSHOT_NAME.",
                 "VOL_NAME VOL_SNAPSHOT_NAME [VOL_SNAPSHOT_SIZE]"),
    "verify": ("Check configuration and volume. Arguments: checks to run "
               "(config server volume odirect space health ganeti; default all).", "[VOL_NAME]"),
}


def usage(action):
    summary, variables = USAGE.get(action, ("GlusterFS ExtStorage provider for Ganeti.", ""))
    return (f"usage: {action}{' [CHECK...]' if action == 'verify' else ''}\n"
            f"{summary}\n"
            f"Environment: {variables}\n"
            "Disk parameters (EXTP_*): servers port volume dir preallocation pool\n"
            "Node settings: GLUSTER_* variables or the file named by GLUSTER_CONFIG "
            "(default /etc/ganeti/extstorage/gluster.env); GLUSTER_DEBUG=yes for verbose logs.\n")


def main(action, args, environ=None, runner=None, stdout=None):
    environ = os.environ if environ is None else environ
    stdout = stdout or sys.stdout
    if args and args[0] in ("-h", "--help"):
        stdout.write(usage(action))
        return 0
    if action not in USAGE:
        sys.stderr.write(usage(action))
        sys.stderr.write(f"gluster: error: unknown script name {action!r}\n")
        return EXIT_BAD_INPUT
    if args and action != "verify":
        sys.stderr.write(usage(action))
        diag.configure(f"gluster {action}", False)
        diag.error(f"{action} takes no arguments; its input is the environment")
        return EXIT_BAD_INPUT
    os.environ["PATH"] = SAFE_PATH
    diag.configure(f"gluster {action}", environ.get("GLUSTER_DEBUG", "").lower() in ("1", "yes", "true", "on"))
    started = time.monotonic()
    code, lines, reason, settings = _execute(action, args, environ, runner)
    if lines:
        stdout.write("".join(line + "\n" for line in lines))
        stdout.flush()
    if reason:
        diag.error(reason)
    _log_call(settings, action, environ, code, lines, reason, time.monotonic() - started)
    return code


def run(action, args):
    """The scripts' entry point: main(), then what outlives the script."""
    code = main(action, args)
    from . import unmount_timer

    unmount_timer.start_waiting()
    return code


def _execute(action, args, environ, runner):
    """(exit code, stdout lines, failure reason or None, settings or None)."""
    from . import fuse_worker

    settings = None
    try:
        from . import config, operations, request

        fuse_worker.start()
        req = request.parse(action, environ)
        settings = config.load(req.params, environ, req.pool,
                               strict=action in request.CREATING_ACTIONS)
        diag.configure(f"gluster {action}", settings.debug or diag.debugging())
        fuse_worker.configure(settings.io_timeout)
        lines = operations.SCRIPTS[action](req, settings, runner or Runner(), list(args))
        return 0, lines, None, settings
    except ProviderError as exc:
        return exc.exit_code, exc.output, str(exc), settings
    except KeyboardInterrupt:
        return EXIT_FAILURE, [], "interrupted", settings
    except Exception as exc:  # a bug: keep the traceback, still end with one line
        import traceback

        traceback.print_exc(file=sys.stderr)
        return EXIT_FAILURE, [], f"internal error: {type(exc).__name__}: {exc}", settings
    finally:
        fuse_worker.configure(None)  # the worker ends with the script's work


_LOGGED_VARIABLES = ("VOL_", "EXTP_", "LOGICAL_ID", "INSTANCE_NAME", "DISK_", "POOL", "NEW_INSTANCE_NAME")


def _log_call(settings, action, environ, code, lines, reason, seconds):
    """One line per call in the provider's own log, so that what Ganeti did to a
    disk can be followed; skipped when the log's directory does not exist."""
    from .config import DEFAULT_CALL_LOG

    path = settings.call_log if settings else DEFAULT_CALL_LOG
    if not path or not os.path.isdir(os.path.dirname(path)):
        return
    shown = " ".join(f"{key}={_printable(value)}" for key, value in sorted(environ.items())
                     if key.startswith(_LOGGED_VARIABLES))
    outcome = reason if code else " | ".join(lines)
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"
    node = settings.node_name if settings else os.uname().nodename
    line = f"{stamp} {node} pid={os.getpid()} {action} {shown} -> exit {code} in {seconds * 1000:.0f} ms: {_printable(outcome or '')}\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        diag.debug(f"cannot write the call log {path}: {exc.strerror}")


def _printable(value):
    value = value if len(value) <= 200 else value[:197] + "..."
    return value if value.isprintable() else repr(value)
