"""Every scan of /proc: mounts, the glusterfs clients serving them, who
holds a file or device open, the loop devices in use. Nothing here touches a
FUSE mount."""

import os


def _unescape(field):
    # mountinfo escapes space, tab, newline and backslash as octal.
    return field.encode().decode("unicode_escape") if "\\" in field else field


def _mounts(mountinfo="/proc/self/mountinfo"):
    """(device 'major:minor', mount point, fstype, source) of each mount."""
    with open(mountinfo) as handle:
        for line in handle:
            fields = line.split()
            if len(fields) < 10:
                continue
            rest = fields[fields.index("-") + 1:]
            yield fields[2], _unescape(fields[4]), rest[0], _unescape(rest[1])


def mount_entry(mount_point, mountinfo="/proc/self/mountinfo"):
    """(fstype, source) of what is mounted at mount_point (the last mount
    there), or None."""
    found = None
    for _, point, fstype, source in _mounts(mountinfo):
        if point == mount_point:
            found = (fstype, source)
    return found


def mount_containing(path):
    """The mount point under which `path` lies (the longest that matches)."""
    best = "/"
    for _, point, _, _ in _mounts():
        if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) > len(best):
            best = point
    return best


def mounts_of_device(dev_number):
    """Mount points of the file systems on the device 'major:minor'."""
    return [point for device, point, _, _ in _mounts() if device == dev_number]


def sized_loop_devices():
    """Names of the loop devices that have a size, from /proc/partitions: one
    read, where /sys/block keeps an entry for every loop device ever made
    (a node that ran 200 disks scanned 200 entries per look, 1.1 ms). A disk
    image is never empty, so its loop device is among these."""
    with open("/proc/partitions") as handle:
        return [fields[3] for fields in map(str.split, handle)
                if len(fields) == 4 and fields[3].startswith("loop")]


def _pids():
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _read(path, mode="r"):
    try:
        with open(path, mode) as handle:
            return handle.read()
    except OSError:
        return None


def command_name(pid):
    return (_read(f"/proc/{pid}/comm") or "?").strip()


def process_state(pid):
    """The one-letter state of /proc/PID/stat (R, S, D, T, Z ...), or None."""
    stat = _read(f"/proc/{pid}/stat")
    return stat.rpartition(")")[2].split()[0] if stat else None


def glusterfs_clients(mount_point):
    """PIDs of the glusterfs client processes that serve mount_point."""
    wanted = mount_point.encode()
    found = []
    for pid in _pids():
        argv = (_read(f"/proc/{pid}/cmdline", "rb") or b"").split(b"\0")
        if argv[0].endswith(b"glusterfs") and wanted in argv:
            found.append(pid)
    return found


def describe_client(mount_point):
    """How the glusterfs client of a mount is doing, in words, for a timeout."""
    pids = glusterfs_clients(mount_point)
    if not pids:
        return "no glusterfs client process serves it any more"
    words = {"T": "is stopped (SIGSTOP)", "t": "is stopped by a debugger",
             "D": "is stuck in the kernel (uninterruptible)", "Z": "has exited"}
    states = [f"pid {pid} {words.get(process_state(pid), 'is running but does not answer')}"
              for pid in pids]
    return "its glusterfs client " + ", ".join(states)


def holders_of(path):
    """'pid N (command)' of every other process with `path` open (a file or
    a device node), as its descriptors name it."""
    return [f"pid {pid} ({command_name(pid)})" for pid in pids_holding([path])]


def pids_holding(paths):
    """Every other process with one of `paths` open, as its descriptors name it."""
    wanted = set(paths) | {path + " (deleted)" for path in paths}
    found = []
    me = os.getpid()
    for pid in _pids():
        if pid == me:
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target in wanted:
                found.append(pid)
                break
    return found


def path_of_process(pid, path):
    """`path` as process `pid` sees it, reachable from this process: itself
    where the two share a mount namespace, else through /proc/PID/root."""
    return path if _namespace(pid) == _namespace("self") else f"/proc/{pid}/root{path}"


def same_mount_namespace_pids():
    mine = _namespace("self")
    return [pid for pid in _pids() if _namespace(pid) == mine]


def _namespace(pid):
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def argv(pid):
    """A process's command line as a list ([''] if it is gone)."""
    return (_read(f"/proc/{pid}/cmdline", "rb") or b"").decode(errors="replace").split("\0")
