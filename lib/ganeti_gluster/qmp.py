"""A running QEMU's monitor (QMP): which of its block nodes is a disk, and
a point-in-time copy of that disk by a backup job.

Ganeti starts each KVM instance with QMP sockets on its command line. A
backup job (blockdev-backup, sync=full) copies the disk as it was when the
job started: a guest write to a block not copied yet waits until the old
contents are (copy-before-write). So the copy is one instant of the disk,
while the guest keeps running.

QEMU's monitor serves one client at a time (Ganeti's own hotplug and
block_resize use the same socket), so each step connects, asks and leaves.
"""

import json
import os
import socket
import time
import uuid
from urllib.parse import urlsplit

from . import diag
from .errors import ProviderError

# Our job and target node names carry this prefix, so that leftovers of a
# run that was killed are recognised and cleared by the next.
PREFIX = "gg-snapshot-"  # QEMU allows node names of 31 characters
POLL_SECONDS = 0.2
_GREETING_SECONDS = 5


class Monitor:
    """One connection to a QMP socket; every read has a bound."""

    def __init__(self, path, timeout):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # A monitor someone else holds accepts the connection but never greets.
        self.sock.settimeout(min(timeout, _GREETING_SECONDS))
        self.buffer = b""
        try:
            self.sock.connect(path)
            self._receive()  # the greeting
            self.sock.settimeout(timeout)
            self.execute("qmp_capabilities")
        except (OSError, ValueError) as exc:
            self.close()
            raise ProviderError(f"QEMU's monitor {path} does not answer: {exc}") from None

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _receive(self):
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ProviderError(f"QEMU's monitor {self.path} closed the connection")
            self.buffer += chunk
            if len(self.buffer) > 16 << 20:
                raise ProviderError(f"QEMU's monitor {self.path} sent an overlong reply")
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)

    def execute(self, command, fds=(), **arguments):
        """The command's return value; its error as a ProviderError. `fds`
        travel with the command (SCM_RIGHTS), as add-fd needs."""
        message = {"execute": command, **({"arguments": arguments} if arguments else {})}
        data = json.dumps(message).encode() + b"\n"
        try:
            if fds:
                socket.send_fds(self.sock, [data], list(fds))
            else:
                self.sock.sendall(data)
            while True:
                reply = self._receive()
                if "return" in reply:
                    return reply["return"]
                if "error" in reply:
                    raise ProviderError(f"QEMU refused {command}: {reply['error'].get('desc')}")
                # an event: not ours to handle
        except (OSError, ValueError) as exc:
            raise ProviderError(f"QEMU's monitor {self.path} failed during {command}: {exc}") from None


# -- which QEMU, which socket, which node -------------------------------------

def monitor_sockets(argv):
    """The QMP socket paths a QEMU command line names: -qmp unix:PATH,... and
    -chardev socket,id=X,path=PATH with -mon chardev=X,mode=control."""
    found, chardevs, control = [], {}, set()
    for option, value in zip(argv, argv[1:]):
        fields = value.split(",")
        if option in ("-qmp", "-qmp-pretty") and fields[0].startswith("unix:"):
            found.append(fields[0][len("unix:"):])
        elif option == "-chardev" and fields[0] == "socket":
            keys = dict(f.partition("=")[::2] for f in fields[1:])
            if keys.get("id") and keys.get("path"):
                chardevs[keys["id"]] = keys["path"]
        elif option == "-mon":
            keys = dict(f.partition("=")[::2] for f in fields)
            if keys.get("mode") == "control" and keys.get("chardev"):
                control.add(keys["chardev"])
    found += [chardevs[c] for c in sorted(control) if c in chardevs]
    # Ganeti's own <instance>.qmp first: ganeti-kvmd keeps <instance>.kvmd busy
    return sorted(found, key=lambda path: not path.endswith(".qmp"))


def _access(filename, disk):
    """How a block node's filename names the disk: "kernelspace" (a path to
    its loop device), "userspace" (its gluster URI, plain or in QEMU's json:
    form), or None (another disk)."""
    if not filename:
        return None
    if filename.startswith("json:"):
        try:
            return "userspace" if _json_matches(json.loads(filename[len("json:"):]), disk) else None
        except ValueError:
            return None
    if filename.startswith("gluster"):
        return "userspace" if urlsplit(filename).path == f"/{disk.volume}/{disk.image}" else None
    if disk.device_rdev is None:
        return None
    try:
        info = os.stat(disk.root + filename)
    except OSError:
        return None
    return "kernelspace" if info.st_rdev == disk.device_rdev and info.st_rdev != 0 else None


def _json_matches(tree, disk):
    if not isinstance(tree, dict):
        return False
    if tree.get("driver") == "gluster":
        return tree.get("volume") == disk.volume and tree.get("path", "").lstrip("/") == disk.image
    return any(_json_matches(child, disk) for child in tree.values() if isinstance(child, dict))


class DiskInQemu:
    """What QEMU's block nodes are compared with."""

    def __init__(self, volume, image, device_rdev, root=""):
        self.volume = volume          # the gluster volume
        self.image = image            # path of the image inside the volume: dir/name
        self.device_rdev = device_rdev  # st_rdev of its loop device on this node, or None
        self.root = root              # QEMU's / as seen from here ("" or /proc/PID/root)


def find_node(monitor, disk):
    """(node name, size in bytes, access) of the block backend QEMU reads the
    disk through, or None when this QEMU does not use it."""
    for block in monitor.execute("query-block"):
        inserted = block.get("inserted")
        if not inserted:
            continue
        for name in (inserted.get("file"), inserted.get("image", {}).get("filename")):
            access = _access(name, disk)
            if access:
                return inserted["node-name"], inserted.get("image", {}).get("virtual-size"), access
    return None


# -- the backup job -------------------------------------------------------------

def clear_leftovers(monitor):
    """Ends jobs, removes target nodes and gives back descriptors of earlier
    runs that were killed."""
    for job in monitor.execute("query-jobs"):
        if job.get("id", "").startswith(PREFIX):
            if job.get("status") not in ("concluded", "null"):
                _quietly(monitor, "job-cancel", id=job["id"], force=True)
                _wait_for(monitor, job["id"], ("concluded", "null"), 30)
            _quietly(monitor, "job-dismiss", id=job["id"])
    for node in monitor.execute("query-named-block-nodes", flat=True):
        if node.get("node-name", "").startswith(PREFIX):
            _quietly(monitor, "blockdev-del", **{"node-name": node["node-name"]})
    for fdset in monitor.execute("query-fdsets"):
        if any(fd.get("opaque", "").startswith(PREFIX) for fd in fdset.get("fds", [])):
            _quietly(monitor, "remove-fd", **{"fdset-id": fdset["fdset-id"]})


def backup(socket_path, node, target_fd, io_timeout, still_going):
    """Copies QEMU's block node `node` as it is now to the file open as
    target_fd (O_RDWR, the node's size), keeping zero blocks holes. QEMU
    gets the descriptor, never a path: a name on the volume can be swapped
    for a symlink by another host between any check and QEMU's open. Fails
    when the job stops advancing for io_timeout seconds. still_going() is
    called on every poll."""
    name = PREFIX + uuid.uuid4().hex[:12]
    with Monitor(socket_path, io_timeout) as monitor:
        clear_leftovers(monitor)
        fdset = monitor.execute("add-fd", fds=[target_fd], opaque=name)["fdset-id"]
        try:
            monitor.execute("blockdev-add", **{
                "node-name": name, "driver": "file", "filename": f"/dev/fdset/{fdset}",
                # zeros read from the disk are written as holes
                "discard": "unmap", "detect-zeroes": "unmap"})
        except ProviderError:
            _quietly(monitor, "remove-fd", **{"fdset-id": fdset})
            raise
        try:
            monitor.execute("blockdev-backup", **{
                "job-id": name, "device": node, "target": name, "sync": "full",
                "auto-finalize": True, "auto-dismiss": False})
        except ProviderError:
            _quietly(monitor, "blockdev-del", **{"node-name": name})
            _quietly(monitor, "remove-fd", **{"fdset-id": fdset})
            raise
    try:
        _follow(socket_path, name, io_timeout, still_going)
    finally:
        _end_job(socket_path, name, fdset, io_timeout)


def _end_job(socket_path, name, fdset, io_timeout):
    """Cancels the job if it still runs, dismisses it, removes its target
    node and gives back the descriptor; a monitor gone meanwhile must not
    hide why the copy failed (the next run clears what is left)."""
    try:
        with Monitor(socket_path, io_timeout) as monitor:
            job = _job(monitor, name)
            if job and job.get("status") not in ("concluded", "null"):
                _quietly(monitor, "job-cancel", id=name, force=True)
                _wait_for(monitor, name, ("concluded", "null"), io_timeout)
            _quietly(monitor, "job-dismiss", id=name)
            # closing the node flushes what QEMU wrote to the target
            _quietly(monitor, "blockdev-del", **{"node-name": name})
            _quietly(monitor, "remove-fd", **{"fdset-id": fdset})
    except ProviderError as exc:
        diag.warn(f"could not clear backup job {name} in QEMU: {exc}")


def _follow(socket_path, name, io_timeout, still_going):
    progress = None
    last_change = time.monotonic()
    done = -1
    while True:
        with Monitor(socket_path, io_timeout) as monitor:
            job = _job(monitor, name)
        if job is None:
            raise ProviderError(f"QEMU's backup job {name} vanished")
        if job.get("error"):
            raise ProviderError(f"QEMU's backup job failed: {job['error']}")
        total, current = job.get("total-progress", 0), job.get("current-progress", 0)
        if progress is None and total:
            progress = diag.Progress("copying (QEMU backup job)", total)
        if progress:
            progress.update(current)
        if job.get("status") in ("concluded", "null"):
            if current != total:
                raise ProviderError(f"QEMU's backup job ended at {current} of {total} bytes")
            if progress:
                progress.done()
            return
        if current != done:
            done, last_change = current, time.monotonic()
        elif time.monotonic() - last_change > io_timeout:
            raise ProviderError(f"QEMU's backup job made no progress for {io_timeout:g} s "
                                f"(at {current} of {total} bytes); cancelled it")
        still_going()
        time.sleep(POLL_SECONDS)


def _job(monitor, name):
    return next((j for j in monitor.execute("query-jobs") if j.get("id") == name), None)


def _wait_for(monitor, name, statuses, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job = _job(monitor, name)
        if job is None or job.get("status") in statuses:
            return
        time.sleep(POLL_SECONDS)
    diag.warn(f"QEMU's job {name} did not end within {seconds:g} s")


def _quietly(monitor, command, **arguments):
    try:
        monitor.execute(command, **arguments)
    except ProviderError as exc:
        diag.debug(str(exc))
