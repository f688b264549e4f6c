"""One function per ExtStorage script: the provider's interface.

Each takes a validated Request, the resolved Settings and a command runner,
and returns the lines to print on stdout. The docstrings say what Ganeti's
ganeti-extstorage-interface(7), or the 2011 shared-storage design document
for its dialect, asks of the script, and what this provider adds.
"""

import os
import sys

from . import diag, images, loopdev, open_records, procfs, retry, servers
from .disk import Disk, Using
from .errors import BadInput, ProviderError, TransientError
from .locks import Lock
from .request import DESIGN, design_disk_name

MIB = images.MIB
QEMU_GLUSTER_DRIVERS = (f"/usr/lib/{getattr(sys.implementation, '_multiarch', '')}/qemu/block-gluster.so",
                        "/usr/lib/qemu/block-gluster.so")


def _result_for_design(request, lines_ganeti, lines_design):
    return lines_design if request.dialect == DESIGN else lines_ganeti


# -- the scripts -----------------------------------------------------------

def create(request, settings, runner, args):
    """Creates a new disk of VOL_SIZE MiB (design: DISK_SIZE) and, in the
    design dialect, prints its logical ID. Creating a disk that already exists
    with the same size succeeds; any other existing file is an error."""
    disk = Disk(request, settings, runner)
    size = request.size_mib * MIB
    with Using(disk):
        existing = disk.stat()
        if existing is not None:
            if existing.st_size != size:
                raise ProviderError(f"disk {disk.name} already exists with a different size "
                                    f"({existing.st_size // MIB} MiB, asked {request.size_mib} MiB); "
                                    "left it alone")
            diag.info(f"disk {disk.name} already exists with {request.size_mib} MiB")
        else:
            images.make_directory(disk.mount.path, disk.location.directory)
            images.create(disk.path, size, settings.preallocation)
            diag.debug(f"created {disk.path} ({request.size_mib} MiB, {settings.preallocation})")
    return _result_for_design(request, [], [disk.location.uri])


def attach(request, settings, runner, args):
    """Maps the disk to a block device on this node and prints its path,
    then the userspace URI for KVM. Idempotent: an attached disk prints its
    existing device."""
    disk = Disk(request, settings, runner)
    # Ganeti ignores a failed attach during remove and leaks the disk, so
    # attach must outlast short outages rather than fail at the first one.
    device = retry.bounded(lambda: _map(disk, runner), TransientError, settings.mount_timeout, 1.0,
                           what=f"attaching disk {disk.name}")
    loopdev.require_block_device(device)
    lines = [device]
    if _userspace_available(settings):
        lines.append(f"kvm:{disk.location.uri}")
    return lines


def _map(disk, runner):
    with Using(disk):
        _refuse_unsafe_volume(disk)
        info = disk.require()
        device = disk.loop_device(info)
        if device is None:
            setup_lock = Lock(os.path.join(disk.settings.mount_base, ".locks", "losetup.lock"),
                              "loop device setup", disk.settings.lock_timeout)
            device = loopdev.attach(disk.path, info, disk.settings.node_name, runner, setup_lock,
                                    disk.settings.loop_sector_size, disk.settings.loop_queue)
            disk.loop_device(info, expected=device)  # notes it
            diag.debug(f"attached {disk.path} as {device}")
    return device


def _refuse_unsafe_volume(disk):
    """With strict-o-direct off, write-behind acknowledges O_DIRECT writes (KVM's
    cache=none) before a brick has them: a brick failure then loses them silently."""
    if disk.mount.strict_o_direct():
        return
    volume = disk.location.volume
    if not disk.settings.allow_strict_o_direct_off:
        raise ProviderError(
            f"volume {volume} has performance.strict-o-direct off: writes the VM was told are "
            f"on disk can be lost if a brick fails; fix: gluster volume set {volume} "
            "performance.strict-o-direct on (or set GLUSTER_ALLOW_STRICT_O_DIRECT_OFF=yes "
            "to accept the risk)")
    diag.warn(f"volume {volume} has performance.strict-o-direct off: acknowledged writes can "
              "be lost if a brick fails (allowed by GLUSTER_ALLOW_STRICT_O_DIRECT_OFF)")


def _userspace_available(settings):
    if settings.userspace != "auto":
        return settings.userspace == "always"
    return any(os.path.exists(path) for path in QEMU_GLUSTER_DRIVERS)


def detach(request, settings, runner, args):
    """Unmaps the disk from this node (and forgets this node's open); a disk
    that is not mapped is fine. Succeeds only when the loop device is really
    gone, not merely marked to go at its last close. The volume is unmounted
    when nothing else on this node uses it. Works on a dead mount too: that
    is when it is needed."""
    disk = Disk(request, settings, runner)
    state = disk.mount.hold()
    try:
        if state == "absent":
            return []
        with disk.lock.acquire():
            info = disk.stat() if state == "ok" else None
            if info:
                device = disk.loop_device(info)
                devices = [device] if device else []
            else:  # the file cannot be looked at: its path must do
                devices = [dev for dev, path in loopdev.users_of(disk.mount.path)
                           if path.removesuffix(" (deleted)") == disk.path]
            for device in devices:
                loopdev.detach(device, disk.path, runner)
                diag.debug(f"detached {device} from {disk.path}")
            if info:
                open_records.forget(disk.path, settings.node_name)
    finally:
        disk.mount.release(unmount_if_unused=True)
    return []


def remove(request, settings, runner, args):
    """Removes the disk; one that is already gone is success. Refuses while
    anything on this node uses the image: a loop device (one marked to
    detach at its last close too) or a process that has it open."""
    disk = Disk(request, settings, runner)
    with Using(disk, unmount_after=True):
        info = disk.stat()
        if info is None:
            diag.info(f"disk {disk.name} is already gone")
            images.remove(disk.path)  # an interrupted create's leftovers
            return []
        users = [f"loop device {device}" for device in loopdev.all_of(disk.path, info, disk.mount.path)]
        users += procfs.holders_of(disk.path)
        if users:
            raise ProviderError(f"disk {disk.name} is in use on this node ({', '.join(users)}); "
                                "detach it first")
        images.remove(disk.path)
        disk.forget_local_state()
    return []


def grow(request, settings, runner, args):
    """Grows the disk to exactly VOL_NEW_SIZE MiB (design: resize to DISK_SIZE,
    printing the new size). Never shrinks. The loop device on this node sees
    the new size before this returns."""
    disk = Disk(request, settings, runner)
    new_size = request.new_size_mib * MIB
    with Using(disk):
        info = disk.require()
        if request.size_mib is not None and info.st_size != request.size_mib * MIB:
            diag.debug(f"VOL_SIZE is {request.size_mib} MiB but the image has "
                       f"{info.st_size // MIB} MiB")
        images.grow(disk.path, new_size, settings.preallocation)
        device = disk.loop_device(info)
        if device:
            loopdev.refresh_capacity(device, runner)
            seen = loopdev.size_bytes(device)
            if seen != new_size:
                raise ProviderError(f"{device} shows {seen} bytes after growing, not {new_size}")
    return _result_for_design(request, [], [str(request.new_size_mib)])


resize = grow


def setinfo(request, settings, runner, args):
    """Stores VOL_METADATA with the image (xattr user.ganeti-gluster.metadata)."""
    disk = Disk(request, settings, runner)
    with Using(disk):
        disk.require()
        images.set_metadata(disk.path, request.metadata)
    return []


def open(request, settings, runner, args):  # noqa: A001 - the script's name
    """Records that this node holds the disk open, exclusively
    (VOL_OPEN_EXCLUSIVE=True) or shared, and the address its GlusterFS
    clients connect from. An exclusive open stands against every other
    node's record, a shared one against other exclusive ones: such a record
    is taken over, with a warning, only when glusterd shows that node's
    clients gone from the volume (a dead node never blocks failover; a node
    cut off from Ganeti but not from GlusterFS does, until fenced); with
    strict_open never."""
    disk = Disk(request, settings, runner)
    node = settings.node_name
    with Using(disk):
        disk.require()
        try:
            server, address = servers.first_reachable_from(disk.mount.servers, disk.location.port)
        except ProviderError as exc:  # glusterd restarting: an open no one disputes still works
            server, address = None, None
            diag.debug(f"recording the open without this node's address: {exc}")
        others = {n: r for n, r in open_records.read(disk.path).items() if n != node}
        conflicts = {n: r for n, r in others.items() if request.open_exclusive or r.exclusive}
        if conflicts:
            from . import fencing  # the gluster CLI's XML parser: not for every attach

            fencing.take_over(disk.name, disk.location.volume, conflicts, runner, settings, server,
                              disk.location.port, address)
            for other in conflicts:
                open_records.forget(disk.path, other)
        open_records.record(disk.path, node, request.open_exclusive, address)
    return []


def close(request, settings, runner, args):
    """Forgets this node's open of the disk; closing what was never opened is fine."""
    disk = Disk(request, settings, runner)
    with Using(disk):
        if disk.stat() is not None:
            open_records.forget(disk.path, settings.node_name)
    return []


def snapshot(request, settings, runner, args):
    """Copies the disk to VOL_SNAPSHOT_NAME, keeping holes; the snapshot is an
    ordinary disk afterwards. Never replaces an existing disk. The copy is one
    instant of the disk: a running QEMU on this node that uses it copies it
    with a backup job; a disk that nothing uses is copied as it is; anything
    else writing it (another process, another node) is refused, unless the
    node allows fuzzy snapshots."""
    from . import writers

    disk = Disk(request, settings, runner)
    target = Disk(request, settings, runner, name=request.snapshot_name)
    with Using(disk):
        with target.lock.acquire():
            info = disk.require()
            if target.stat() is not None:
                raise ProviderError(f"snapshot {target.name} already exists; remove it first")
            users = writers.find(disk, info, settings.node_name)
            # two QEMUs on one disk: neither's backup job sees the other's writes
            uncoordinated = users.others + ([str(q) for q in users.qemus] if len(users.qemus) > 1 else [])
            if uncoordinated:
                what = (f"disk {disk.name} is in use by {', '.join(uncoordinated)}: a copy would "
                        "mix moments")
                if not settings.fuzzy_snapshots:
                    raise ProviderError(f"{what}; stop it, or set GLUSTER_FUZZY_SNAPSHOTS=yes to "
                                        "allow such copies")
                diag.warn(f"{what}; making a fuzzy copy (GLUSTER_FUZZY_SNAPSHOTS=yes)")
                images.snapshot(disk.path, target.path)
            elif users.qemus:
                qemu = users.qemus[0]
                socket, node, size, access = writers.qemu_node(qemu, disk, users.device,
                                                               settings.io_timeout)
                diag.debug(f"copying through {qemu}'s backup job on block node {node} ({access})")
                images.snapshot_through_qemu(target.path, qemu.pid, socket, node, size or info.st_size,
                                             settings.io_timeout, access == "userspace")
            else:
                images.snapshot(disk.path, target.path)
    return []


def rename(request, settings, runner, args):
    """Design dialect: renames the disk after its instance's NEW_INSTANCE_NAME
    and prints the new logical ID. Run again after it was cut short, or
    after it succeeded, it finishes the job or prints the same ID."""
    disk = Disk(request, settings, runner)
    index = request.disk_index
    if index is None:
        prefix, sep, number = disk.name.rpartition("-disk")
        if not sep or not number.isdigit():
            raise BadInput(f"cannot tell the disk index of {disk.name}; set DISK_INDEX")
        index = int(number)
    new_name = design_disk_name(request.new_instance_name, index)
    target = Disk(request, settings, runner, name=new_name)
    if new_name == disk.name:
        return [disk.location.uri]
    with Using(disk):
        with target.lock.acquire():
            if disk.stat() is None and target.stat() is not None:
                diag.info(f"disk {disk.name} was renamed to {new_name} already")
                return [target.location.uri]
            info = disk.require()
            device = disk.loop_device(info)
            if device:
                raise ProviderError(f"disk {disk.name} is attached as {device} on this node; "
                                    "detach it before renaming")
            diag.debug(f"{images.rename(disk.path, target.path)} {disk.name} to {new_name}")
    return [target.location.uri]


def verify(request, settings, runner, args):
    """Checks the configuration and the volume; arguments name the checks
    (default: all). Prints one line per check."""
    from . import verify as checks

    return checks.run(settings, runner, args)


SCRIPTS = {f.__name__: f for f in (create, attach, detach, remove, grow, setinfo, open, close,
                                   snapshot, rename, verify)}
SCRIPTS["resize"] = resize
