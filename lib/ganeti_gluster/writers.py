"""Who may be writing a disk while snapshot copies it.

A copy of a disk that something writes meanwhile mixes moments. The one
writer the provider can coordinate with is a running QEMU on this node with
a monitor socket: its backup job gives one instant (qmp.py). Anything else
(another process or a filesystem on the loop device, another node's open)
makes the copy torn.
"""

import os
import re

from . import loopdev, open_records, procfs, qmp
from .errors import ProviderError


class Qemu:
    def __init__(self, pid, argv):
        self.pid = pid
        self.sockets = qmp.monitor_sockets(argv)

    def __str__(self):
        return f"QEMU pid {self.pid}"


class Writers:
    """device: the disk's loop device on this node (or None); qemus: QEMUs
    on this node that use the disk; others: every other user, in words."""

    def __init__(self, device, qemus, others):
        self.device = device
        self.qemus = qemus
        self.others = others


def _is_qemu(pid):
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe")).startswith("qemu-system")
    except OSError:
        return False


def find(disk, info, node):
    """The users of `disk` (whose image has lstat `info`) that may write it."""
    qemus, others = {}, []
    device = disk.loop_device(info)
    if device:
        others += [f"{holder} (on {device})" for holder in loopdev.kernel_holders(device)]
    for pid in procfs.pids_holding([p for p in (device, disk.path) if p]):
        if _is_qemu(pid):
            qemus[pid] = Qemu(pid, procfs.argv(pid))
        else:
            others.append(f"pid {pid} ({procfs.command_name(pid)})")
    # QEMU's gluster driver (access=userspace) opens nothing on this node:
    # its command line names the disk. Only QEMUs in this mount namespace
    # (noded's) count: each Ganeti node runs its instances there.
    named = re.compile(re.escape(_image(disk)) + r"(?![\w.-])")
    for pid in procfs.same_mount_namespace_pids():
        if pid not in qemus and _is_qemu(pid):
            argv = procfs.argv(pid)
            if any(named.search(arg) for arg in argv):
                qemus[pid] = Qemu(pid, argv)
    for other, record in sorted(open_records.read(disk.path).items()):
        if other != node:
            others.append(f"node {other} (open {record.mode} since {record.since})")
    return Writers(device, list(qemus.values()), others)


def qemu_node(qemu, disk, device, timeout):
    """(socket, node name, size, access) through which `qemu` uses the
    disk; a ProviderError saying why when it cannot be found."""
    rdev = os.stat(device).st_rdev if device else None
    wanted = qmp.DiskInQemu(disk.location.volume, _image(disk), rdev,
                            procfs.path_of_process(qemu.pid, "/").rstrip("/"))
    if not qemu.sockets:
        raise ProviderError(f"{qemu} uses disk {disk.name} but has no monitor socket")
    reasons = []
    for path in qemu.sockets:
        try:
            with qmp.Monitor(procfs.path_of_process(qemu.pid, path), timeout) as monitor:
                found = qmp.find_node(monitor, wanted)
        except ProviderError as exc:
            reasons.append(str(exc))
            continue
        if found:
            return (path, *found)
        reasons.append(f"its monitor {path} lists no block node for disk {disk.name}")
    raise ProviderError(f"{qemu} uses disk {disk.name}, but {'; '.join(reasons)}")


def _image(disk):
    """The image's path inside the volume, as gluster URIs name it."""
    directory = disk.location.directory
    return f"{directory}/{disk.name}" if directory else disk.name
