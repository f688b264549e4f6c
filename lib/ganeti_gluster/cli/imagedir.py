"""The image directory of a mounted volume, read without following anything
the volume says.

Anyone who can write the volume can put a symbolic link (to a node-local
file or directory), a fifo or a device where a disk or the image directory
should be; ganeti-gluster runs as root. So the directory is opened one path
component at a time with O_NOFOLLOW (each checked with lstat first, for a
clear message), every entry is looked at with lstat relative to that open
directory, and xattrs are read only from regular files, without following a
link that may have replaced one since (images.get_metadata, open_records).

Each function here runs in the FUSE worker, within io_timeout (fuse_worker):
a hung client ends the command with the reason instead of hanging it. So
they take and return plain values, and report what they skipped rather than
print it.
"""

import errno
import os
import re
import stat
import time

from .. import images, open_records
from ..errors import ProviderError
from ..fuse_worker import heartbeat, isolated

_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# images.partial_path: ".<disk>.partial", made by a create or snapshot and
# linked into place when complete; one left behind is a crash's leftover.
PARTIAL = re.compile(r"^\.(?P<disk>[^/]+)\.partial$")


def kind(mode):
    """What a file of this st_mode is, in words."""
    for test, word in ((stat.S_ISREG, "a regular file"), (stat.S_ISLNK, "a symbolic link"),
                       (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a fifo"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISCHR, "a character device")):
        if test(mode):
            return word
    return "not a regular file"


def age_seconds(mtime):
    """Seconds since the file was last written (never negative)."""
    return max(0, int(time.time() - mtime))


def too_recent(name, age, min_age):
    """Why a leftover written `age` seconds ago must stay, or None."""
    if age >= min_age:
        return None
    return (f"{name} was written {age} s ago: a create or snapshot may still be making it; left "
            f"alone (it can be deleted once {min_age} s have passed without a write)")


class _Directory:
    """`<mount>/<dir>`, open for a with-block; fd is None when it does not exist."""

    def __init__(self, mount_path, directory):
        self.path = os.path.join(mount_path, directory)
        self.fd = os.open(mount_path, _DIRECTORY_FLAGS)
        walked = mount_path
        try:
            for component in directory.split("/"):
                walked = os.path.join(walked, component)
                if not self._descend(component, walked):
                    self.close()
                    return
        except BaseException:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _descend(self, component, walked):
        """Moves self.fd one directory down; False if there is none."""
        try:
            info = os.lstat(component, dir_fd=self.fd)
        except FileNotFoundError:
            return False
        if not stat.S_ISDIR(info.st_mode):
            what = kind(info.st_mode)
            if stat.S_ISLNK(info.st_mode):
                what += f" (to {os.readlink(component, dir_fd=self.fd)})"
            raise ProviderError(f"{walked} is {what}, not a directory: refusing to follow it")
        try:
            child = os.open(component, _DIRECTORY_FLAGS, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            raise ProviderError(f"{walked} is not a directory any more: refusing to follow "
                                "it") from None
        os.close(self.fd)
        self.fd = child
        return True

    def names(self):
        return sorted(os.listdir(self.fd)) if self.fd is not None else []

    def entry(self, name):
        """lstat of `name`, or None if there is none."""
        if self.fd is None:
            return None
        try:
            return os.lstat(name, dir_fd=self.fd)
        except FileNotFoundError:
            return None


@isolated("reading the image directory")
def scan(mount_path, directory):
    """What the image directory holds: {"images": {name: {"stat", "blocks",
    "metadata", "open"}}, "partials": [...], "skipped": [(path, what)]}.
    Images are the regular files not hidden, partials the regular files
    named .<disk>.partial; skipped, entries of such names that are not
    regular files."""
    found = {"images": {}, "partials": [], "skipped": []}
    with _Directory(mount_path, directory) as listing:
        for name in listing.names():
            heartbeat()  # io_timeout bounds each entry, not a listing of 10,000 disks
            match = PARTIAL.match(name)
            info = listing.entry(name) if match or not name.startswith(".") else None
            if info is None:
                continue
            path = os.path.join(listing.path, name)
            if not stat.S_ISREG(info.st_mode):
                found["skipped"].append((path, kind(info.st_mode)))
            elif match:
                found["partials"].append({"name": name, "disk": match.group("disk"), "size": info.st_size,
                                          "allocated": info.st_blocks * 512,
                                          "age_seconds": age_seconds(info.st_mtime)})
            else:
                records = open_records.read(path)
                found["images"][name] = {
                    "stat": tuple(info), "blocks": info.st_blocks, "metadata": images.get_metadata(path),
                    "open": {node: r.mode for node, r in records.items()},
                    "open_from": {node: r.address for node, r in records.items()}}
    return found


@isolated("looking at")
def look(mount_path, directory, name):
    """st_mode of `name` in the image directory (lstat), or None if there is none."""
    with _Directory(mount_path, directory) as listing:
        info = listing.entry(name)
        return None if info is None else info.st_mode


@isolated("looking for images in")
def holds_any_file(mount_path, directory):
    """Whether any regular file (a disk, or one being made) is in the image directory."""
    with _Directory(mount_path, directory) as listing:
        for name in listing.names():
            info = listing.entry(name)
            if info is not None and stat.S_ISREG(info.st_mode):
                return True
    return False


@isolated("removing")
def remove_partial(mount_path, directory, name, min_age):
    """Removes the leftover .<disk>.partial `name` if it is a regular file
    that nothing has written to for min_age seconds."""
    with _Directory(mount_path, directory) as listing:
        path = os.path.join(listing.path, name)
        info = listing.entry(name) if PARTIAL.match(name) else None
        if info is None or not stat.S_ISREG(info.st_mode):
            raise ProviderError(f"{path} is not a leftover .partial file (any more); left alone")
        refusal = too_recent(name, age_seconds(info.st_mtime), min_age)
        if refusal:
            raise ProviderError(refusal)
        os.unlink(name, dir_fd=listing.fd)
