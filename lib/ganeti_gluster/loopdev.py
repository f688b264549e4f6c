"""Loop devices over image files: find by backing file, attach, resize, detach.

A loop device is found by its backing file's path and inode number, the
inode read with LOOP_GET_STATUS64. Not by the device number: loop devices are
global, but FUSE mounts are per mount namespace, and a disk mounted by a
second client (another namespace, or after a remount) has a new st_dev while
GlusterFS keeps its inode number (derived from the file's gfid). So one image
has one loop device per node, whichever namespace attached it.

The device's own name field (lo_file_name, which losetup fills with the
path) is set to "ganeti-gluster:<node>": a kernel that hosts several Ganeti
nodes (containers, the e2e's namespaces) keeps each node's devices apart.
A device without that mark (set up by hand, or by an older version) is
taken by any node.
"""

import fcntl
import os
import struct
import time

from . import diag, procfs
from .errors import ProviderError
from .fuse_worker import isolated

LOOP_SET_STATUS64 = 0x4C04
LOOP_GET_STATUS64 = 0x4C05
_NODE_MARK = b"ganeti-gluster:"
_LOOP_INFO64 = struct.Struct("=QQQQQIIII64s64s32s2Q")
_SYS_BLOCK = "/sys/block"
LOSETUP_TIMEOUT = 30
# The logical block sizes losetup --sector-size accepts (GLUSTER_LOOP_SECTOR_SIZE).
SECTOR_SIZES = ("512", "1024", "2048", "4096")
# What GLUSTER_LOOP_QUEUE may set in /sys/block/loopN/queue: how requests are
# queued and merged, none of which changes what a write acknowledges.
QUEUE_ATTRIBUTES = ("scheduler", "nr_requests", "read_ahead_kb", "max_sectors_kb", "nomerges", "rq_affinity")
DETACH_WAIT_SECONDS = 5.0  # udev's probes hold a new device open for a moment


def _read(path):
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return None


def bound_devices():
    """(device, backing file path) of every loop device in use."""
    result = []
    for name in os.listdir(_SYS_BLOCK):
        if name.startswith("loop"):
            backing = _read(f"{_SYS_BLOCK}/{name}/loop/backing_file")
            if backing:
                result.append(("/dev/" + name, backing))
    return result


def _status(device):
    """LOOP_GET_STATUS64 of the device as a list of loop_info64's fields, or None."""
    try:
        fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return list(_LOOP_INFO64.unpack(fcntl.ioctl(fd, LOOP_GET_STATUS64, bytes(_LOOP_INFO64.size))))
    except OSError:
        return None
    finally:
        os.close(fd)


def _backing_inode(device, node=None):
    """The inode number of the device's backing file; None if the device is
    unbound or marked as another node's."""
    status = _status(device)
    if status is None:
        return None
    name = status[9].rstrip(b"\0")
    if node and name.startswith(_NODE_MARK) and name != _mark(node):
        return None
    return status[1]


def _mark(node):
    return (_NODE_MARK + node.encode())[:63]


def _mark_as_node(device, node):
    """Writes the node's mark into the device's name field."""
    status = _status(device)
    if status is None:
        raise ProviderError(f"{device} vanished while it was being set up")
    status[9] = _mark(node)
    fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, LOOP_SET_STATUS64, _LOOP_INFO64.pack(*status))
    finally:
        os.close(fd)


def _detaching(device):
    # autoclear is set when a detach was asked for while the device was
    # still open: it vanishes at the last close, so it must not be reused.
    return _read(f"{_SYS_BLOCK}/{os.path.basename(device)}/loop/autoclear") == "1"


def _backing_path(device):
    """The path of the device's backing file, without " (deleted)"; None if unbound."""
    backing = _read(f"{_SYS_BLOCK}/{os.path.basename(device)}/loop/backing_file")
    return backing.removesuffix(" (deleted)") if backing else None


def _backs(name, image_path, image_stat, mount_point=None, node=None):
    """Whether loop device `name` is backed by this very image: its path and
    inode (and, given a node, not marked as another node's). A device set up
    through a mount that was since lazily unmounted (umount -l, or a
    remount) shows its path from that mount's root."""
    backing = _backing_path("/dev/" + name)
    if backing is None:
        return False
    paths = (image_path, image_path[len(mount_point):]) if mount_point else (image_path,)
    return backing in paths and _backing_inode("/dev/" + name, node) == image_stat.st_ino


def find(image_path, image_stat, hint=None, mount_point=None, node=None):
    """The loop device backed by this very file, or None; one that is being
    detached does not count. `hint`, a device that was backed by it before,
    is looked at first: the scan reads every bound device's backing file,
    and 200 bound devices made a warm attach 25% slower. Given `node`,
    devices marked as another node's are not this node's."""
    def usable(name):
        return _backs(name, image_path, image_stat, mount_point, node) and not _detaching("/dev/" + name)

    if hint and usable(os.path.basename(hint)):
        return hint
    for name in procfs.sized_loop_devices():
        if usable(name):
            return "/dev/" + name
    return None


def all_of(image_path, image_stat, mount_point=None):
    """Every loop device backed by this file, those being detached too."""
    return ["/dev/" + name for name in procfs.sized_loop_devices()
            if _backs(name, image_path, image_stat, mount_point)]


def users_of(directory):
    """Loop devices whose backing file path lies under `directory`."""
    prefix = directory.rstrip("/") + "/"
    return [(device, backing) for device, backing in bound_devices() if backing.startswith(prefix)]


def holders(device):
    """Who keeps `device` open: processes with it open, devices stacked on it,
    filesystems mounted from it. Empty if nothing does."""
    return kernel_holders(device) + procfs.holders_of(device)


def kernel_holders(device):
    """Devices stacked on `device` and filesystems mounted from it, in words."""
    name = os.path.basename(device)
    found = [f"device {h}" for h in _listdir(f"{_SYS_BLOCK}/{name}/holders")]
    dev_number = _read(f"{_SYS_BLOCK}/{name}/dev")
    found += [f"mount {point}" for point in procfs.mounts_of_device(dev_number)] if dev_number else []
    return found


def _listdir(path):
    try:
        return os.listdir(path)
    except OSError:
        return []


def attach(image_path, image_stat, node, runner, lock, sector_size=512, queue=()):
    """Sets up a loop device with direct I/O and checks that it has both:
    the image we looked at (not what a symlink swapped in meanwhile points
    to) and direct I/O, without which write-behind can acknowledge writes
    and lose them. `lock` serialises setups on this node: two `losetup
    --find` racing for the same free device make one of them sleep 200 ms
    and retry (util-linux), which halved throughput at 4 parallel attaches.
    The logical block size is given, not left to the kernel: it is the
    disk's geometry, which must not change between attaches or nodes.
    `queue` is (attribute, value) pairs for /sys/block/loopN/queue."""
    with lock.acquire():
        result = runner.run(["losetup", "--find", "--show", "--direct-io=on", f"--sector-size={sector_size}",
                             image_path], timeout=LOSETUP_TIMEOUT)
    device = result.stdout.strip()
    if not device.startswith("/dev/loop"):
        raise ProviderError(f"losetup printed no loop device for {image_path}")
    name = os.path.basename(device)
    problem = None
    _mark_as_node(device, node)
    if not _backs(name, image_path, image_stat, node=node):
        problem = f"{device} was set up for {image_path} but is backed by another file"
    elif _read(f"{_SYS_BLOCK}/{name}/loop/dio") != "1":
        problem = (f"{device} for {image_path} has no direct I/O (the file system refused "
                   "O_DIRECT): writes could be acknowledged before they are stored")
    if problem:
        runner.run(["losetup", "--detach", device], timeout=LOSETUP_TIMEOUT, check=False)
        raise ProviderError(problem)
    for attribute, value in queue:
        # Only a warning: the disk works without its tuning.
        refused = _tune_queue(f"{_SYS_BLOCK}/{name}/queue/{attribute}", value)
        if refused:
            diag.warn(f"cannot set {attribute} of {device} to {value}: {refused}; going on without it")
    return device


@isolated("tuning the loop device's queue")
def _tune_queue(path, value):
    """Writes one queue setting; the kernel's reason if it refuses. Isolated:
    switching the scheduler waits for the device's requests in flight, which
    the FUSE client may hold up."""
    try:
        with open(path, "w") as handle:
            handle.write(value)
    except OSError as exc:
        return exc.strerror
    return None


def detach(device, image_path, runner):
    """Detaches the device from image_path and waits until it is really gone:
    losetup only marks a device that is still open for detaching at its last
    close (and exits 0), and until then the image is in use. (The device may
    be reused for another image at once: only its backing path counts.)"""
    runner.run(["losetup", "--detach", device], timeout=LOSETUP_TIMEOUT)
    deadline = time.monotonic() + DETACH_WAIT_SECONDS
    while _backing_path(device) == image_path:
        if time.monotonic() > deadline:
            who = holders(device)
            raise ProviderError(f"{device} is still in use ({', '.join(who) or 'held open'}); "
                                "it is marked to detach at its last close; stop what holds it, "
                                "then detach again")
        time.sleep(0.05)


def require_block_device(device):
    import stat

    if not stat.S_ISBLK(os.stat(device).st_mode):
        raise ProviderError(f"{device} is not a block device")


def size_bytes(device):
    sectors = _read(f"{_SYS_BLOCK}/{os.path.basename(device)}/size")
    return int(sectors) * 512 if sectors else None


def refresh_capacity(device, runner):
    runner.run(["losetup", "--set-capacity", device], timeout=LOSETUP_TIMEOUT)
